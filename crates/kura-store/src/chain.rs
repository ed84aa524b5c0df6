//! The tamper-evident audit trail.
//!
//! Each organization's events form a hash chain: event `n` stores
//! `hash_n = SHA-256(hash_{n-1}, n, every stored field of event n)` in one
//! of the two forms `event_hash` defines. Changing, deleting, inserting or
//! reordering a stored event breaks the chain at that point. Checkpoints (chain, seq, hash, time)
//! are signed with an Ed25519 key kept outside the database, so a rewritten
//! chain does not match the signed checkpoints, and an exported trail can be
//! verified elsewhere with the public key alone.

pub use crate::audit_export::{export, verify_export, ExportLine};
use crate::db::{Db, RowExt};
use crate::error::Result;
use crate::event_hash::to_hex;
pub use crate::event_hash::{HashForms, RecordView, PLATFORM_CHAIN};
pub use crate::verify::verify_db;
use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};
use std::collections::HashMap;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event with every field the chain covers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: i64,
    pub ts: i64,
    pub org_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub actor_org_id: Option<String>,
    pub credential: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub outcome: String,
    pub project_id: Option<String>,
    pub node_id: Option<String>,
    pub version_id: Option<String>,
    pub object_name: Option<String>,
    pub bytes: Option<i64>,
    pub detail: Option<String>,
    pub chain_seq: Option<i64>,
    pub chain_hash: Option<String>,
}

impl Record {
    pub fn chain(&self) -> &str {
        self.org_id.as_deref().unwrap_or(PLATFORM_CHAIN)
    }

    /// The hash this event carries in the binary form (how events are
    /// written now), after the head hash `prev`.
    pub fn binary_hash(&self, prev: &[u8; 32], seq: i64, buf: &mut Vec<u8>) -> [u8; 32] {
        self.view().binary_hash(prev, seq, buf)
    }

    /// The same fields, borrowed.
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            id: self.id,
            ts: self.ts,
            org_id: self.org_id.as_deref().map(str::as_bytes),
            actor_user_id: self.actor_user_id.as_deref().map(str::as_bytes),
            actor_org_id: self.actor_org_id.as_deref().map(str::as_bytes),
            credential: self.credential.as_deref().map(str::as_bytes),
            ip: self.ip.as_deref().map(str::as_bytes),
            user_agent: self.user_agent.as_deref().map(str::as_bytes),
            request_id: self.request_id.as_deref().map(str::as_bytes),
            action: self.action.as_bytes(),
            outcome: self.outcome.as_bytes(),
            project_id: self.project_id.as_deref().map(str::as_bytes),
            node_id: self.node_id.as_deref().map(str::as_bytes),
            version_id: self.version_id.as_deref().map(str::as_bytes),
            object_name: self.object_name.as_deref().map(str::as_bytes),
            bytes: self.bytes,
            detail: self.detail.as_deref().map(str::as_bytes),
            chain_seq: self.chain_seq,
            chain_hash: self.chain_hash.as_deref().map(str::as_bytes),
        }
    }

    pub fn from_row(r: &impl RowExt) -> Result<Self> {
        Ok(Self {
            id: r.int("id")?,
            ts: r.int("ts")?,
            org_id: r.opt_str("org_id")?,
            actor_user_id: r.opt_str("actor_user_id")?,
            actor_org_id: r.opt_str("actor_org_id")?,
            credential: r.opt_str("credential")?,
            ip: r.opt_str("ip")?,
            user_agent: r.opt_str("user_agent")?,
            request_id: r.opt_str("request_id")?,
            action: r.str("action")?,
            outcome: r.str("outcome")?,
            project_id: r.opt_str("project_id")?,
            node_id: r.opt_str("node_id")?,
            version_id: r.opt_str("version_id")?,
            object_name: r.opt_str("object_name")?,
            bytes: r.opt_int("bytes")?,
            detail: r.opt_str("detail")?,
            chain_seq: r.opt_int("chain_seq")?,
            chain_hash: r.opt_str("chain_hash")?,
        })
    }

    /// A row of `SELECT {EVENT_COLUMNS}` read by position, straight from
    /// SQLite's buffers (one copy per field): the trail's followers read
    /// every event of a busy server.
    pub fn from_lite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            ts: r.get(1)?,
            org_id: r.get(2)?,
            actor_user_id: r.get(3)?,
            actor_org_id: r.get(4)?,
            credential: r.get(5)?,
            ip: r.get(6)?,
            user_agent: r.get(7)?,
            request_id: r.get(8)?,
            action: r.get(9)?,
            outcome: r.get(10)?,
            project_id: r.get(11)?,
            node_id: r.get(12)?,
            version_id: r.get(13)?,
            object_name: r.get(14)?,
            bytes: r.get(15)?,
            detail: r.get(16)?,
            chain_seq: r.get(17)?,
            chain_hash: r.get(18)?,
        })
    }
}

/// Reserve positions on several chains at once, inside the caller's
/// transaction: for each `(chain, n)` returns the first reserved position
/// and the hash before it. One statement for all chains; the chains are
/// taken in sorted order so that concurrent PostgreSQL transactions lock
/// the heads' rows in the same order and cannot deadlock (SQLite has one
/// writer).
pub async fn advance_many(
    tx: &mut Transaction<'_, Any>,
    chains: &[(String, i64)],
) -> Result<HashMap<String, (i64, String)>> {
    let mut sorted: Vec<&(String, i64)> = chains.iter().collect();
    sorted.sort();
    let mut out = HashMap::with_capacity(sorted.len());
    for part in sorted.chunks(HEADS_PER_STATEMENT) {
        let values = head_rows(part.len(), |a, b| format!("(${a}, ${b}, '{GENESIS}')"));
        // A new chain starts at 0, so its reserved range ends at n as well.
        let sql = format!(
            "INSERT INTO audit_chain_heads (chain, seq, hash) VALUES {values} \
             ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq + excluded.seq \
             RETURNING chain, seq, hash"
        );
        let mut q = sqlx::query(&sql);
        for (chain, n) in part {
            q = q.bind(chain.as_str()).bind(*n);
        }
        for r in q.fetch_all(&mut **tx).await? {
            let chain = r.str("chain")?;
            let n = part
                .iter()
                .find(|(c, _)| *c == chain)
                .map(|(_, n)| *n)
                .ok_or_else(|| crate::StoreError::Internal("audit chain head".into()))?;
            out.insert(chain, (r.int("seq")? - n + 1, r.str("hash")?));
        }
    }
    if out.len() != sorted.len() {
        return Err(crate::StoreError::Internal(
            "audit chain heads: not every chain advanced".into(),
        ));
    }
    Ok(out)
}

/// Store the new head hash of every chain in `heads`, in one statement per
/// `HEADS_PER_STATEMENT` chains (rows already locked by `advance_many`).
pub async fn set_head_hashes(
    tx: &mut Transaction<'_, Any>,
    heads: &[(&str, String)],
) -> Result<()> {
    for part in heads.chunks(HEADS_PER_STATEMENT) {
        let values = head_rows(part.len(), |a, b| format!("(${a}, 0, ${b})"));
        let sql = format!(
            "INSERT INTO audit_chain_heads (chain, seq, hash) VALUES {values} \
             ON CONFLICT (chain) DO UPDATE SET hash = excluded.hash"
        );
        let mut q = sqlx::query(&sql);
        for (chain, hash) in part {
            q = q.bind(*chain).bind(hash.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `n` VALUES rows of a head statement, row `i` binding parameters
/// `2i + 1` and `2i + 2`.
fn head_rows(n: usize, row: fn(usize, usize) -> String) -> String {
    (0..n)
        .map(|i| row(2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Chains per head statement (two parameters each).
const HEADS_PER_STATEMENT: usize = 256;

/// A signed statement that `chain` had `seq` events ending in `hash` at `ts`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub ts: i64,
    pub public_key: String,
    pub signature: String,
}

impl Checkpoint {
    pub fn message(chain: &str, seq: i64, hash: &str, ts: i64) -> Vec<u8> {
        format!("kura-audit-checkpoint-v1\n{chain}\n{seq}\n{hash}\n{ts}").into_bytes()
    }

    pub fn signature_valid(&self, public_key: &str) -> bool {
        kura_crypto::verify_signature(
            public_key,
            &Self::message(&self.chain, self.seq, &self.hash, self.ts),
            &self.signature,
        )
    }
}

/// Sign the current head of every chain that moved since its last checkpoint.
pub async fn checkpoint_all(db: &Db, signer: &kura_crypto::AuditSigner) -> Result<usize> {
    let heads = sqlx::query("SELECT chain, seq, hash FROM audit_chain_heads")
        .fetch_all(&db.read)
        .await?;
    let mut made = Vec::new();
    for h in &heads {
        let (chain, seq, hash) = (h.str("chain")?, h.int("seq")?, h.str("hash")?);
        let last = sqlx::query("SELECT MAX(seq) AS s FROM audit_checkpoints WHERE chain = $1")
            .bind(&chain)
            .fetch_one(&db.read)
            .await?
            .opt_int("s")?;
        if last == Some(seq) || seq == 0 {
            continue;
        }
        let ts = crate::time::now_micros();
        let signature = signer.sign_hex(&Checkpoint::message(&chain, seq, &hash, ts));
        made.push(Checkpoint {
            chain: chain.clone(),
            seq,
            hash: hash.clone(),
            ts,
            public_key: signer.public_key_hex(),
            signature: signature.clone(),
        });
        sqlx::query("INSERT INTO audit_checkpoints (chain, seq, hash, ts, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&chain)
            .bind(seq)
            .bind(&hash)
            .bind(ts)
            .bind(signer.public_key_hex())
            .bind(signature)
            .execute(&db.write)
            .await?;
    }
    // Each signed checkpoint also goes into the trail itself (platform
    // chain): the SIEM forwarder then keeps a copy off the database, and a
    // checkpoint deleted from its table is still found by `verify`.
    if !made.is_empty() {
        let ctx = crate::AuditCtx {
            credential: Some("checkpointer".into()),
            ip: Some("local".into()),
            ..crate::AuditCtx::default()
        };
        let ev = crate::AuditEvent::new(CHECKPOINT_ACTION, crate::Outcome::Success)
            .detail(serde_json::json!({ "checkpoints": made }));
        crate::audit::record_now(db, &ctx, &ev).await?;
    }
    Ok(made.len())
}

/// The audit action that records signed checkpoints in the trail.
pub const CHECKPOINT_ACTION: &str = "audit.checkpoint";

pub async fn checkpoints(db: &Db, chain: Option<&str>) -> Result<Vec<Checkpoint>> {
    let rows = match chain {
        Some(c) => {
            sqlx::query("SELECT * FROM audit_checkpoints WHERE chain = $1 ORDER BY seq")
                .bind(c)
                .fetch_all(&db.read)
                .await?
        }
        None => {
            sqlx::query("SELECT * FROM audit_checkpoints ORDER BY chain, seq")
                .fetch_all(&db.read)
                .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(Checkpoint {
                chain: r.str("chain")?,
                seq: r.int("seq")?,
                hash: r.str("hash")?,
                ts: r.int("ts")?,
                public_key: r.str("public_key")?,
                signature: r.str("signature")?,
            })
        })
        .collect()
}

/// What `verify` found wrong, pinpointed to the first broken event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    pub chain: String,
    pub seq: Option<i64>,
    pub event_id: Option<i64>,
    pub kind: &'static str,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub chains: usize,
    pub events: u64,
    pub checkpoints: usize,
    pub unchained_history: u64,
    pub problems: Vec<Problem>,
}

/// Walks one chain's events in sequence order and checks every link.
pub struct ChainVerifier {
    chain: String,
    forms: HashForms,
    /// The last hash, raw and as the hex digits events store.
    prev: [u8; 32],
    prev_hex: [u8; 64],
    next_seq: i64,
    last_id: i64,
    broken: bool,
    buf: Vec<u8>,
    /// Positions whose hash a checkpoint will be compared with, sorted (None:
    /// all, when the checkpoints come after the events, as in an export).
    wanted: Option<Vec<i64>>,
    pub hashes: std::collections::HashMap<i64, String>,
}

impl ChainVerifier {
    /// A verifier for `chain`, whose events are hashed in `forms`.
    pub fn new(chain: &str, forms: HashForms) -> Self {
        let mut prev_hex = [0u8; 64];
        prev_hex.copy_from_slice(GENESIS.as_bytes());
        Self {
            chain: chain.to_string(),
            forms,
            prev: [0u8; 32],
            prev_hex,
            next_seq: 1,
            last_id: 0,
            broken: false,
            buf: Vec::with_capacity(1024),
            wanted: None,
            hashes: Default::default(),
        }
    }

    /// Keep only the hashes at these positions (the known checkpoints).
    pub fn keeping(mut self, seqs: impl IntoIterator<Item = i64>) -> Self {
        let mut wanted: Vec<i64> = seqs.into_iter().collect();
        wanted.sort_unstable();
        self.wanted = Some(wanted);
        self
    }

    fn prev_str(&self) -> String {
        String::from_utf8_lossy(&self.prev_hex).into_owned()
    }

    fn problem(
        &mut self,
        seq: Option<i64>,
        id: Option<i64>,
        kind: &'static str,
        message: String,
    ) -> Option<Problem> {
        Some(self.break_at(seq, id, kind, message))
    }

    /// The problem found here; the chain is broken from here on.
    fn break_at(
        &mut self,
        seq: Option<i64>,
        id: Option<i64>,
        kind: &'static str,
        message: String,
    ) -> Problem {
        self.broken = true;
        Problem {
            chain: self.chain.clone(),
            seq,
            event_id: id,
            kind,
            message,
        }
    }

    /// Check the next event; returns the first problem (later ones follow from it).
    pub fn push(&mut self, r: &Record) -> Option<Problem> {
        self.push_view(&r.view())
    }

    /// A row that cannot be read as an event at all (its id is not a
    /// number): a modification here, unless an earlier one was found.
    pub fn unreadable(
        &mut self,
        seq: Option<i64>,
        id: Option<i64>,
        message: String,
    ) -> Option<Problem> {
        if self.broken {
            return None;
        }
        self.problem(seq, id, "modified", message)
    }

    /// The chain this verifier walks.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Whether a problem was found (later events are then not checked).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The position checks of the next event, `id` at `seq`: its position
    /// if it is the next one and its id follows the previous event's, else
    /// the problem (the chain is then broken).
    #[inline(always)]
    fn position(&mut self, id: i64, seq: Option<i64>) -> Result<i64, Problem> {
        match seq {
            Some(seq) if seq == self.next_seq && id > self.last_id => Ok(seq),
            _ => Err(self.position_problem(id, seq)),
        }
    }

    /// What is wrong with the position of `id` at `seq` (kept out of the
    /// per-event path: verification checks a million events a second).
    #[cold]
    #[inline(never)]
    fn position_problem(&mut self, id: i64, seq: Option<i64>) -> Problem {
        let Some(seq) = seq else {
            return self.break_at(
                None,
                Some(id),
                "inserted",
                format!("event id {id} carries no chain position (inserted outside the chain)"),
            );
        };
        if seq < self.next_seq {
            return self.break_at(
                Some(seq),
                Some(id),
                "inserted",
                format!("event id {id} repeats position {seq} (inserted)"),
            );
        }
        if seq > self.next_seq {
            let what = if seq == self.next_seq + 1 {
                format!("position {}", self.next_seq)
            } else {
                format!("positions {}..{}", self.next_seq, seq - 1)
            };
            return self.break_at(
                Some(self.next_seq),
                None,
                "deleted",
                format!("{what} missing before event id {id} (deleted)"),
            );
        }
        // The right position, so the id is what is wrong (`position`
        // calls this only when something is).
        let last = self.last_id;
        self.break_at(
            Some(seq),
            Some(id),
            "reordered",
            format!("event id {id} at position {seq} comes before the previous event id {last} (reordered)"),
        )
    }

    /// The next event, `id` at `seq`, when one of its stored values has a
    /// type Kura never writes (`what` says which), so that it has no hash to
    /// check: its position is checked as any event's (a finding about it
    /// stands, with `what` added), and otherwise it is a modification here.
    pub fn push_unreadable(&mut self, id: i64, seq: Option<i64>, what: String) -> Option<Problem> {
        if self.broken {
            return None;
        }
        match self.position(id, seq) {
            Ok(seq) => self.problem(Some(seq), Some(id), "modified", what),
            Err(mut p) => {
                if p.event_id == Some(id) {
                    p.message = format!("{}; {what}", p.message);
                }
                Some(p)
            }
        }
    }

    /// [`push`](Self::push) for a borrowed event.
    pub fn push_view(&mut self, r: &RecordView<'_>) -> Option<Problem> {
        if self.broken {
            return None;
        }
        let seq = match self.position(r.id, r.chain_seq) {
            Ok(seq) => seq,
            Err(p) => return Some(p),
        };
        let mut expected = r.hash(self.forms, &self.prev, &self.prev_hex, seq, &mut self.buf);
        let mut expected_hex = to_hex(&expected);
        if r.chain_hash != Some(&expected_hex[..]) && self.forms.is_binary(r.id) {
            // A node from before migration 11 still writes the JSON form. No
            // input is valid in both forms (a binary one has the tag 0x01 at
            // byte 40, where a JSON one has a hex digit), so accepting either
            // above the switch lets no edit through.
            let json = r.json_hash(&self.prev_hex, seq, &mut self.buf);
            let json_hex = to_hex(&json);
            if r.chain_hash == Some(&json_hex[..]) {
                (expected, expected_hex) = (json, json_hex);
            }
        }
        if r.chain_hash != Some(&expected_hex[..]) {
            return self.problem(
                Some(seq),
                Some(r.id),
                "modified",
                format!(
                    "event id {} at position {seq} does not match its hash (modified)",
                    r.id
                ),
            );
        }
        self.prev = expected;
        self.prev_hex = expected_hex;
        self.next_seq += 1;
        self.last_id = r.id;
        if self
            .wanted
            .as_ref()
            .is_none_or(|w| w.binary_search(&seq).is_ok())
        {
            self.hashes.insert(seq, self.prev_str());
        }
        None
    }

    /// After the last event: the head and every signed checkpoint must agree.
    pub fn finish(
        &mut self,
        head: Option<(i64, String)>,
        checkpoints: &[Checkpoint],
        public_key: Option<&str>,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        let last = self.next_seq - 1;
        if let Some((seq, hash)) = head {
            if seq != last || (seq > 0 && hash.as_bytes() != &self.prev_hex[..]) {
                out.extend(self.problem(Some(last + 1), None, "deleted", format!("the chain head says {seq} events but {last} remain (events after position {last} deleted)")));
            }
        }
        for c in checkpoints.iter().filter(|c| c.chain == self.chain) {
            if let Some(pk) = public_key {
                if !c.signature_valid(pk) {
                    out.push(Problem {
                        chain: self.chain.clone(),
                        seq: Some(c.seq),
                        event_id: None,
                        kind: "checkpoint",
                        message: format!(
                            "checkpoint at position {} has an invalid signature",
                            c.seq
                        ),
                    });
                    continue;
                }
            }
            match self.hashes.get(&c.seq) {
                Some(h) if *h == c.hash => {}
                Some(_) => out.push(Problem { chain: self.chain.clone(), seq: Some(c.seq), event_id: None, kind: "modified", message: format!("the chain differs from the signed checkpoint at position {} (rewritten)", c.seq) }),
                None => out.push(Problem { chain: self.chain.clone(), seq: Some(c.seq), event_id: None, kind: "deleted", message: format!("the signed checkpoint covers position {} but the chain ends at {last} (deleted)", c.seq) }),
            }
        }
        out
    }
}

/// Which events are hashed in which form: the binary form after the id that
/// migration 11 recorded. Without that record every event is read in the
/// JSON form, so removing it makes every newer event fail verification.
pub async fn hash_forms(db: &Db) -> Result<HashForms> {
    let r = sqlx::query("SELECT value FROM settings WHERE key = 'audit_binary_hash_after_id'")
        .fetch_optional(&db.read)
        .await?;
    Ok(match r {
        Some(r) => {
            let value = r.str("value")?;
            HashForms {
                binary_after_id: value.parse().map_err(|_| {
                    crate::StoreError::Internal(format!(
                        "the setting audit_binary_hash_after_id is not an event id: {value:?}"
                    ))
                })?,
            }
        }
        None => HashForms::ALL_JSON,
    })
}

const PAGE: i64 = 5000;

/// The condition selecting `chain`'s events, with the chain name bound as
/// `$1`; written so that the index on (org_id, chain_seq) serves it.
pub(crate) fn chain_filter(chain: &str) -> &'static str {
    if chain == PLATFORM_CHAIN {
        // Kura never writes the organization id "platform"; a row that
        // says so is read with the platform's chain, where it cannot match.
        "(org_id IS NULL OR org_id = $1)"
    } else {
        "org_id = $1"
    }
}

/// The next page of a chain's events after (`seq`, `id`), fetched as one
/// JSON document: handing thousands of rows over one by one from the
/// database thread costs more than building and parsing the document.
async fn chained_page(db: &Db, chain: &str, after: (i64, i64)) -> Result<Vec<Record>> {
    let fields = [
        "id",
        "ts",
        "org_id",
        "actor_user_id",
        "actor_org_id",
        "credential",
        "ip",
        "user_agent",
        "request_id",
        "action",
        "outcome",
        "project_id",
        "node_id",
        "version_id",
        "object_name",
        "bytes",
        "detail",
        "chain_seq",
        "chain_hash",
    ];
    let pairs = fields
        .iter()
        .map(|f| format!("'{f}', s.{f}"))
        .collect::<Vec<_>>()
        .join(", ");
    let inner = format!(
        "SELECT * FROM audit_events WHERE {} AND chain_seq IS NOT NULL \
         AND (chain_seq > $2 OR (chain_seq = $2 AND id > $3)) ORDER BY chain_seq, id LIMIT $4",
        chain_filter(chain)
    );
    let sql = match db.backend {
        crate::db::Backend::Sqlite => {
            format!("SELECT json_group_array(json_object({pairs})) AS j FROM ({inner}) s")
        }
        crate::db::Backend::Postgres => {
            format!("SELECT json_agg(json_build_object({pairs}))::text AS j FROM ({inner}) s")
        }
    };
    let row = sqlx::query(&sql)
        .bind(chain)
        .bind(after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_one(&db.read)
        .await?;
    let mut page: Vec<Record> = serde_json::from_str(row.opt_str("j")?.as_deref().unwrap_or("[]"))
        .map_err(|e| crate::StoreError::Internal(format!("audit page: {e}")))?;
    page.sort_by_key(|r| (r.chain_seq, r.id));
    Ok(page)
}

/// Every chained event of `chain`, page by page, in order.
pub(crate) async fn for_each_chained(
    db: &Db,
    chain: &str,
    mut f: impl FnMut(Record) -> Result<()>,
) -> Result<()> {
    let mut after = (i64::MIN, i64::MIN);
    loop {
        let page = chained_page(db, chain, after).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = (last.chain_seq.unwrap_or(i64::MAX), last.id);
        let full = page.len() as i64 == PAGE;
        for r in page {
            f(r)?;
        }
        if !full {
            return Ok(());
        }
    }
}
