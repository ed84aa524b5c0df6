//! Verification of every chain of a SQLite trail in one sequential pass.
//!
//! Reading each chain in position order through the (org_id, chain_seq)
//! index visits the table's pages at random, and handing rows over through
//! the async driver costs more than hashing them. This pass instead reads
//! the table in id order inside one read transaction that also covers the
//! chain heads and the unindexed tail, so heads and events are one
//! consistent snapshot. The rows reach the verifier as the arguments of an
//! aggregate function run by SQLite itself: reading a value that way costs
//! a fraction of fetching a result column (bench/RESULTS.md, run 11).
//!
//! An honest chain's ids grow with its positions (a chain's head is advanced
//! under the writer's lock before its rows are inserted), so in id order each
//! chain's events arrive in position order. A chain where anything looks
//! wrong, including an order that merely differs, is handed back as
//! "suspect" and verified again in position order by `chain::verify_db`,
//! which then reports exactly what it finds.

use crate::audit::EVENT_COLUMNS;
use crate::chain::{ChainVerifier, HashForms, Problem, PLATFORM_CHAIN};
use crate::stored_row;
use hashbrown::hash_map::EntryRef;
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::ValueRef;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the pass learnt about each chain.
pub struct Scan {
    /// Every chain seen in the heads or the events, with its verifier.
    pub chains: HashMap<String, ChainVerifier>,
    /// Head (position, hash) per chain, from the same snapshot.
    pub heads: HashMap<String, (i64, String)>,
    /// Chained events read per chain.
    pub events: HashMap<String, u64>,
    /// Chains to verify again in position order.
    pub suspect: HashSet<String>,
    /// What the pass found outside any chain Kura writes: events whose
    /// organization id is not text.
    pub problems: Vec<Problem>,
    /// Events from before chaining existed, per chain.
    pub unchained_history: HashMap<String, u64>,
}

/// Why the pass gave up (the caller then verifies everything the slow way).
#[derive(Debug)]
pub struct Unusable(pub String);

impl From<rusqlite::Error> for Unusable {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// Why the pass cannot go on (a plain message: rows are checked per column).
type Bad = &'static str;

/// A read-only connection for one long sequential read of the trail at
/// `file` (verification, scope reports): a 64 MiB page cache and the file
/// memory-mapped, so pages are read without copying.
pub(crate) fn open_reader(file: &Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "mmap_size", 1i64 << 34)?;
    Ok(conn)
}

/// The pass's state while SQLite feeds it rows.
struct Pass {
    only: Option<String>,
    history_until: i64,
    forms: HashForms,
    keep: HashMap<String, Vec<i64>>,
    /// Per chain (by its name's bytes, checked to be UTF-8 once, when the
    /// chain is first seen), its verifier and the chained events read: one
    /// lookup per event, by the borrowed name.
    tallies: hashbrown::HashMap<Box<[u8]>, (ChainVerifier, u64)>,
    suspect: HashSet<String>,
    problems: Vec<Problem>,
    /// Whether a chained event within the history was reported.
    raised_history: bool,
    /// Organization ids Kura never writes, already reported (by hash).
    foreign: HashSet<u64>,
    foreign_keys: std::collections::hash_map::RandomState,
    unchained_history: HashMap<String, u64>,
    /// The id of the last row read (rows must come in id order).
    last_id: i64,
    unusable: Option<Unusable>,
}

/// A verifier for `chain` that keeps the hashes its checkpoints need.
fn verifier(chain: &str, forms: HashForms, keep: &HashMap<String, Vec<i64>>) -> ChainVerifier {
    let v = ChainVerifier::new(chain, forms);
    match keep.get(chain) {
        Some(seqs) => v.keeping(seqs.iter().copied()),
        None => v.keeping([]),
    }
}

impl Pass {
    /// One row of `EVENT_COLUMNS`, as the aggregate's arguments.
    fn row(&mut self, ctx: &Context<'_>) -> Result<(), Bad> {
        let ValueRef::Integer(id) = ctx.get_raw(stored_row::ID) else {
            return Err("an event id that is not a number");
        };
        if id <= self.last_id {
            return Err("rows out of id order");
        }
        self.last_id = id;
        let chain = match ctx.get_raw(stored_row::ORG_ID) {
            ValueRef::Null => PLATFORM_CHAIN.as_bytes(),
            // Kura writes no organization id "platform": the platform's
            // events have none, and the name must not reach its chain.
            ValueRef::Text(b) if b == PLATFORM_CHAIN.as_bytes() => {
                self.foreign(id, ctx, "the platform's chain name", ValueRef::Text(b));
                return Ok(());
            }
            ValueRef::Text(b) => b,
            other => {
                self.foreign(id, ctx, "a value that is not text", other);
                return Ok(());
            }
        };
        if self.only.as_deref().is_some_and(|o| o.as_bytes() != chain) {
            return Ok(());
        }
        let (v, events) = match self.tallies.entry_ref(chain) {
            EntryRef::Occupied(e) => e.into_mut(),
            EntryRef::Vacant(e) => match std::str::from_utf8(chain) {
                Ok(name) => e.insert((verifier(name, self.forms, &self.keep), 0)),
                Err(_) => {
                    let raw = ctx.get_raw(stored_row::ORG_ID);
                    self.foreign(id, ctx, "text that is not UTF-8", raw);
                    return Ok(());
                }
            },
        };
        // Chain names were checked to be UTF-8 when first seen.
        let name = || String::from_utf8_lossy(chain).into_owned();
        let chain_seq = match stored_row::int(ctx.get_raw(stored_row::CHAIN_SEQ), 0) {
            Ok(seq) => seq,
            Err(_) => {
                self.suspect.insert(name());
                return Ok(());
            }
        };
        let Some(seq) = chain_seq else {
            if stored_row::is_history(id, self.history_until) {
                *self.unchained_history.entry(name()).or_default() += 1;
            } else {
                self.suspect.insert(name());
            }
            return Ok(());
        };
        *events += 1;
        if id <= self.history_until && !self.raised_history {
            self.raised_history = true;
            self.problems.push(stored_row::raised_history(
                &name(),
                seq,
                id,
                self.history_until,
            ));
        }
        if v.is_broken() {
            return Ok(());
        }
        // A value of the wrong type, like a hash that does not match, sends
        // the chain to the walk in position order, which reports it.
        let broken = match stored_row::view(id, |i| ctx.get_raw(i)) {
            Ok(view) => v.push_view(&view).is_some(),
            Err(_) => true,
        };
        if broken {
            self.suspect.insert(name());
        }
        Ok(())
    }

    /// An event whose organization id (`raw`) is not a chain name Kura can
    /// have written (`stored_row::foreign`), reported once per such id.
    #[cold]
    #[inline(never)]
    fn foreign(&mut self, id: i64, ctx: &Context<'_>, what: &str, raw: ValueRef<'_>) {
        let lossy;
        let bytes = match raw {
            ValueRef::Text(b) | ValueRef::Blob(b) => b,
            other => {
                lossy = stored_row::lossy(other);
                lossy.as_bytes()
            }
        };
        // Remembered by a keyed hash (random keys: no one can make two ids
        // collide on purpose): a stored id can be as long as the database.
        let seen = std::hash::BuildHasher::hash_one(&self.foreign_keys, bytes);
        if self.only.is_some() || !self.foreign.insert(seen) {
            return;
        }
        let seq = stored_row::int(ctx.get_raw(stored_row::CHAIN_SEQ), 0)
            .ok()
            .flatten();
        self.problems
            .push(stored_row::foreign(Some(id), seq, bytes, what));
    }
}

/// The aggregate `kura_verify_rows(EVENT_COLUMNS)`: it takes the pass out of
/// `slot` when SQLite starts it and puts it back when SQLite finishes.
struct VerifyRows {
    slot: Arc<Mutex<Option<Pass>>>,
}

fn user_error(msg: &str) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(msg.to_string().into())
}

impl Aggregate<Pass, i64> for VerifyRows {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Pass> {
        self.slot
            .lock()
            .map_err(|_| user_error("verification state poisoned"))?
            .take()
            .ok_or_else(|| user_error("verification state missing"))
    }

    fn step(&self, ctx: &mut Context<'_>, pass: &mut Pass) -> rusqlite::Result<()> {
        if pass.unusable.is_none() {
            if let Err(e) = pass.row(ctx) {
                pass.unusable = Some(Unusable(e.to_string()));
            }
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, pass: Option<Pass>) -> rusqlite::Result<i64> {
        // No rows: SQLite never called `init`, and the pass is still in the slot.
        if let Some(pass) = pass {
            *self
                .slot
                .lock()
                .map_err(|_| user_error("verification state poisoned"))? = Some(pass);
        }
        Ok(0)
    }
}

/// Scan the trail at `file`. `keep` lists, per chain, the positions whose
/// hashes the signed checkpoints will be compared with; `only` limits the
/// pass to one chain; events with ids up to `history_until` predate
/// chaining; `forms` says which events are hashed in which form.
pub fn scan(
    file: &Path,
    only: Option<&str>,
    history_until: i64,
    forms: HashForms,
    keep: HashMap<String, Vec<i64>>,
) -> Result<Scan, Unusable> {
    let mut conn = open_reader(file)?;
    let slot = Arc::new(Mutex::new(None));
    conn.create_aggregate_function(
        "kura_verify_rows",
        19,
        // Callable only from this pass's own statements, never from a view
        // or trigger stored in the database.
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        VerifyRows { slot: slot.clone() },
    )?;
    // One read transaction: the heads and both tables as of one instant.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    let mut pass = Pass {
        only: only.map(str::to_string),
        history_until,
        forms,
        keep,
        tallies: Default::default(),
        suspect: HashSet::new(),
        problems: Vec::new(),
        foreign: HashSet::new(),
        foreign_keys: Default::default(),
        raised_history: false,
        unchained_history: HashMap::new(),
        last_id: i64::MIN,
        unusable: None,
    };
    let mut heads = HashMap::new();
    {
        let mut stmt = tx.prepare("SELECT chain, seq, hash FROM audit_chain_heads")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (chain, head) = stored_row::head(r)?;
            if only.is_some_and(|o| o != chain) {
                continue;
            }
            heads.insert(chain.clone(), head);
            let v = verifier(&chain, pass.forms, &pass.keep);
            pass.tallies
                .insert(chain.into_bytes().into_boxed_slice(), (v, 0));
        }
    }
    // The tail's ids all follow the trail's (one counter, drained in order).
    // A rowid table without a condition is read in id order; the pass
    // checks that it was.
    for table in ["audit_events", "audit_tail"] {
        *slot
            .lock()
            .map_err(|_| Unusable("verification state poisoned".into()))? = Some(pass);
        tx.query_row(
            &format!("SELECT kura_verify_rows({EVENT_COLUMNS}) FROM {table}"),
            [],
            |r| r.get::<_, i64>(0),
        )?;
        pass = slot
            .lock()
            .map_err(|_| Unusable("verification state poisoned".into()))?
            .take()
            .ok_or_else(|| Unusable("verification state lost".into()))?;
        if let Some(e) = pass.unusable.take() {
            return Err(e);
        }
    }
    let mut out = Scan {
        chains: HashMap::new(),
        heads,
        events: HashMap::new(),
        suspect: pass.suspect,
        problems: pass.problems,
        unchained_history: pass.unchained_history,
    };
    for (chain, (v, events)) in pass.tallies {
        let chain = String::from_utf8(chain.into_vec())
            .map_err(|_| Unusable("an organization id that is not UTF-8".into()))?;
        out.events.insert(chain.clone(), events);
        out.chains.insert(chain, v);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::audit::{append_many, AuditCtx, AuditEvent, Outcome};
    use crate::chain::verify_db;
    use crate::db::Db;
    use kura_core::{OrgId, ProjectId};

    /// Three organizations' chains and the platform's, 60 events in all,
    /// still in the tail.
    pub(crate) async fn trail(name: &str) -> (Db, Vec<OrgId>) {
        let (db, _) = crate::db::test_db(&format!("scan-{name}")).await;
        let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new()).collect();
        let ctx = AuditCtx::cli();
        // Two transactions of interleaved chains, plus platform events.
        for round in 0..2 {
            let evs: Vec<AuditEvent> = (0..30)
                .map(|i| {
                    let ev = AuditEvent::new("file.download", Outcome::Success)
                        .name(format!("r{round}-f{i}.txt"))
                        .bytes(i);
                    match i % 4 {
                        3 => ev,
                        k => ev.project(orgs[k as usize], ProjectId::new()),
                    }
                })
                .collect();
            let items: Vec<(&AuditCtx, &AuditEvent)> = evs.iter().map(|e| (&ctx, e)).collect();
            let mut tx = db.write.begin().await.expect("begin");
            append_many(&mut tx, &items).await.expect("append");
            tx.commit().await.expect("commit");
        }
        (db, orgs)
    }

    /// The same database verified chain by chain, without the one-pass scan.
    pub(crate) fn in_order(db: &Db) -> Db {
        let mut slow = db.clone();
        slow.sqlite_file = None;
        slow
    }

    async fn count(db: &Db, table: &str) -> i64 {
        use crate::db::RowExt;
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&db.read)
            .await
            .expect("count")
            .int("n")
            .expect("n")
    }

    #[tokio::test]
    async fn one_pass_matches_chain_by_chain_and_reads_the_tail() {
        let (db, _) = trail("clean").await;
        // Nothing drained yet: all 60 events wait in the tail, and the scan
        // reads them there.
        assert_eq!(count(&db, "audit_tail").await, 60);
        let file = db.sqlite_file.clone().expect("a file");
        let forms = crate::chain::hash_forms(&db).await.expect("forms");
        let scan = super::scan(&file, None, 0, forms, Default::default()).expect("usable");
        assert!(scan.suspect.is_empty());
        assert_eq!(scan.events.values().sum::<u64>(), 60);
        let fast = verify_db(&db, None, None).await.expect("verify");
        assert!(fast.problems.is_empty(), "{:?}", fast.problems);
        assert_eq!((fast.events, fast.chains), (60, 4));
        // Verification drained the tail into the indexed trail, ids kept.
        assert_eq!(count(&db, "audit_tail").await, 0);
        assert_eq!(count(&db, "audit_events").await, 60);
        let slow = verify_db(&in_order(&db), None, None).await.expect("verify");
        assert_eq!((slow.events, slow.chains), (60, 4));
        assert!(slow.problems.is_empty());
        let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
    }

    #[tokio::test]
    async fn the_sinks_own_writer_links_the_same_chains() {
        // Events from the sink (rusqlite, `tail_writer`) and from changes
        // (sqlx, `append_many`) interleave in the same chains; the trail
        // verifies, and each chain's positions are 1..=n without a gap.
        let (db, orgs) = trail("sink").await;
        assert!(db.tail_writer.is_some());
        let sink = crate::audit::AuditSink::start(db.clone());
        let ctx = AuditCtx::cli();
        for round in 0..3 {
            let mut waits = Vec::new();
            for i in 0..40 {
                let (sink, ctx) = (sink.clone(), ctx.clone());
                let ev = AuditEvent::new("file.download", Outcome::Success)
                    .project(orgs[i % 3], ProjectId::new())
                    .name(format!("sink-{round}-{i}.txt"))
                    .bytes(i as u64);
                waits.push(tokio::spawn(async move { sink.record(&ctx, ev).await }));
            }
            for w in waits {
                w.await.expect("join").expect("recorded");
            }
            let ev =
                AuditEvent::new("file.upload", Outcome::Success).project(orgs[0], ProjectId::new());
            let mut tx = db.write.begin().await.expect("begin");
            append_many(&mut tx, &[(&ctx, &ev)]).await.expect("append");
            tx.commit().await.expect("commit");
        }
        let report = verify_db(&db, None, None).await.expect("verify");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.events, 60 + 3 * 41);
        for org in &orgs {
            let (n, max) = {
                use crate::db::RowExt;
                let r = sqlx::query(
                    "SELECT COUNT(*) AS n, MAX(chain_seq) AS m FROM audit_events WHERE org_id = $1",
                )
                .bind(org.to_string())
                .fetch_one(&db.read)
                .await
                .expect("count");
                (r.int("n").expect("n"), r.int("m").expect("m"))
            };
            assert_eq!(max, n, "chain of {org} has gaps");
        }
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    #[tokio::test]
    async fn followers_read_the_tail_without_draining_it() {
        let (db, orgs) = trail("follow").await;
        crate::audit::settle(&db).await.expect("settle");
        let ctx = AuditCtx::cli();
        let evs: Vec<AuditEvent> = (0..30)
            .map(|i| {
                AuditEvent::new("file.download", Outcome::Success)
                    .project(orgs[i % 3], ProjectId::new())
                    .name(format!("late-{i}.txt"))
            })
            .collect();
        let items: Vec<(&AuditCtx, &AuditEvent)> = evs.iter().map(|e| (&ctx, e)).collect();
        let mut tx = db.write.begin().await.expect("begin");
        append_many(&mut tx, &items).await.expect("append");
        tx.commit().await.expect("commit");
        assert_eq!(count(&db, "audit_tail").await, 30);
        let all = crate::audit::events_after(&db, 0, 1_000)
            .await
            .expect("follow");
        let ids: Vec<i64> = all.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), 90);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let names: Vec<&str> = all[60..]
            .iter()
            .filter_map(|r| r.object_name.as_deref())
            .collect();
        assert_eq!(names.first(), Some(&"late-0.txt"));
        assert_eq!(names.len(), 30);
        // Following wrote nothing: the late events are still in the tail.
        assert_eq!(count(&db, "audit_tail").await, 30);
        // Read by position (`Record::from_lite`), the events are exactly
        // what reading them by column name gives.
        let by_name: Vec<crate::chain::Record> = db
            .point_reads
            .as_ref()
            .expect("a SQLite file")
            .fetch_all(
                &format!(
                    "SELECT {} FROM audit_tail ORDER BY id",
                    crate::audit::EVENT_COLUMNS
                ),
                &[],
                1_000,
            )
            .expect("read")
            .iter()
            .map(crate::chain::Record::from_row)
            .collect::<crate::error::Result<_>>()
            .expect("records");
        let by_position: Vec<crate::chain::Record> =
            all[60..].iter().map(|r| (**r).clone()).collect();
        assert_eq!(by_position, by_name);
        let after = crate::audit::events_after(&db, ids[59], 1_000)
            .await
            .expect("follow");
        assert_eq!(after.len(), 30);
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }

    #[tokio::test]
    async fn tampering_is_reported_as_chain_by_chain_would() {
        let (db, orgs) = trail("tampered").await;
        crate::audit::settle(&db).await.expect("settle");
        let org = orgs[1].to_string();
        for sql in [
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ] {
            sqlx::query(sql).execute(&db.write).await.expect(sql);
        }
        // Edit position 3 of one chain; delete position 5 of another.
        sqlx::query("UPDATE audit_events SET object_name = 'innocent.txt' WHERE org_id = $1 AND chain_seq = 3")
            .bind(&org)
            .execute(&db.write)
            .await
            .expect("edit");
        sqlx::query("DELETE FROM audit_events WHERE org_id = $1 AND chain_seq = 5")
            .bind(orgs[2].to_string())
            .execute(&db.write)
            .await
            .expect("delete");
        // Swap the contents of two rows of the platform chain (same
        // positions stay, ids reversed): only an in-order reading can say
        // what happened, so the one-pass scan must defer to it.
        let ids: Vec<i64> =
            sqlx::query("SELECT id FROM audit_events WHERE org_id IS NULL ORDER BY id LIMIT 2")
                .fetch_all(&db.read)
                .await
                .expect("ids")
                .iter()
                .map(|r| crate::db::RowExt::int(r, "id").expect("id"))
                .collect();
        sqlx::query("UPDATE audit_events SET id = -1 WHERE id = $1")
            .bind(ids[0])
            .execute(&db.write)
            .await
            .expect("swap");
        sqlx::query("UPDATE audit_events SET id = $1 WHERE id = $2")
            .bind(ids[0])
            .bind(ids[1])
            .execute(&db.write)
            .await
            .expect("swap");
        sqlx::query("UPDATE audit_events SET id = $1 WHERE id = -1")
            .bind(ids[1])
            .execute(&db.write)
            .await
            .expect("swap");
        let fast = verify_db(&db, None, None).await.expect("verify");
        let slow = verify_db(&in_order(&db), None, None).await.expect("verify");
        let kinds = |r: &crate::chain::Report| {
            let mut v: Vec<(String, Option<i64>, Option<i64>, &str)> = r
                .problems
                .iter()
                .map(|p| (p.chain.clone(), p.seq, p.event_id, p.kind))
                .collect();
            v.sort();
            v
        };
        assert_eq!(kinds(&fast), kinds(&slow));
        let found = kinds(&fast);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.0 == org && p.1 == Some(3) && p.3 == "modified"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.0 == orgs[2].to_string() && p.1 == Some(5) && p.3 == "deleted"),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.0 == "platform" && p.3 == "reordered"),
            "{found:?}"
        );
    }

    /// Rewrite the trail as a database upgraded from the JSON form would
    /// hold it: events up to id `switch` hashed in the JSON form, the later
    /// ones in the binary form, each chain linked across the switch.
    async fn rehash(db: &crate::db::Db, switch: i64, recorded: i64) {
        use std::collections::HashMap;
        crate::audit::settle(db).await.expect("settle");
        for sql in [
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_no_delete",
        ] {
            sqlx::query(sql).execute(&db.write).await.expect(sql);
        }
        let rows = sqlx::query(&format!(
            "SELECT {} FROM audit_events ORDER BY id",
            crate::audit::EVENT_COLUMNS
        ))
        .fetch_all(&db.read)
        .await
        .expect("events");
        let forms = crate::event_hash::HashForms {
            binary_after_id: switch,
        };
        let mut prev: HashMap<String, [u8; 32]> = HashMap::new();
        let mut buf = Vec::new();
        for row in &rows {
            let r = crate::chain::Record::from_row(row).expect("record");
            let p = prev.entry(r.chain().to_string()).or_insert([0; 32]);
            let hex = crate::event_hash::to_hex(p);
            let h = r
                .view()
                .hash(forms, p, &hex, r.chain_seq.expect("chained"), &mut buf);
            *p = h;
            sqlx::query("UPDATE audit_events SET chain_hash = $1 WHERE id = $2")
                .bind(hex::encode(h))
                .bind(r.id)
                .execute(&db.write)
                .await
                .expect("rehash");
        }
        for (chain, h) in prev {
            sqlx::query("UPDATE audit_chain_heads SET hash = $1 WHERE chain = $2")
                .bind(hex::encode(h))
                .bind(chain)
                .execute(&db.write)
                .await
                .expect("head");
        }
        sqlx::query("UPDATE settings SET value = $1 WHERE key = 'audit_binary_hash_after_id'")
            .bind(recorded.to_string())
            .execute(&db.write)
            .await
            .expect("switch");
    }

    async fn problems(db: &crate::db::Db) -> Vec<(String, Option<i64>, &'static str)> {
        let fast = verify_db(db, None, None).await.expect("verify");
        let slow = verify_db(&in_order(db), None, None).await.expect("verify");
        let list = |r: &crate::chain::Report| {
            let mut v: Vec<_> = r
                .problems
                .iter()
                .map(|p| (p.chain.clone(), p.seq, p.kind))
                .collect();
            v.sort();
            v
        };
        assert_eq!(list(&fast), list(&slow));
        assert_eq!(fast.events, 60);
        list(&fast)
    }

    #[tokio::test]
    async fn a_trail_upgraded_from_the_json_form_verifies_on_both_sides_of_the_switch() {
        let (db, orgs) = trail("upgraded").await;
        // A new database hashes every event in the binary form.
        assert_eq!(
            crate::chain::hash_forms(&db).await.expect("forms"),
            crate::event_hash::HashForms { binary_after_id: 0 }
        );
        // Events written in the JSON form above the switch (by a node from
        // before migration 11) verify too.
        rehash(&db, i64::MAX, 30).await;
        assert_eq!(problems(&db).await, vec![]);
        // The first transaction's 30 events in the JSON form, the rest binary.
        rehash(&db, 30, 30).await;
        assert_eq!(problems(&db).await, vec![]);
        // An edit before the switch and one after it are both found.
        let org0 = orgs[0].to_string();
        let org1 = orgs[1].to_string();
        sqlx::query("UPDATE audit_events SET bytes = 999 WHERE org_id = $1 AND chain_seq = 2")
            .bind(&org0)
            .execute(&db.write)
            .await
            .expect("edit json event");
        let (id_json,): (i64,) = {
            use crate::db::RowExt;
            let r = sqlx::query("SELECT id FROM audit_events WHERE org_id = $1 AND chain_seq = 2")
                .bind(&org0)
                .fetch_one(&db.read)
                .await
                .expect("id");
            (r.int("id").expect("id"),)
        };
        assert!(id_json <= 30);
        sqlx::query("UPDATE audit_events SET ip = '10.9.9.9' WHERE org_id = $1 AND chain_seq = 12")
            .bind(&org1)
            .execute(&db.write)
            .await
            .expect("edit binary event");
        let mut want = vec![
            (org0.clone(), Some(2), "modified"),
            (org1.clone(), Some(12), "modified"),
        ];
        want.sort();
        assert_eq!(problems(&db).await, want);
        // Moving the switch (or deleting it) makes honest events fail: it
        // cannot hide an edit.
        sqlx::query("DELETE FROM settings WHERE key = 'audit_binary_hash_after_id'")
            .execute(&db.write)
            .await
            .expect("drop switch");
        let found = problems(&db).await;
        assert!(found.len() >= 4, "{found:?}");
        let _ =
            std::fs::remove_dir_all(db.sqlite_file.clone().expect("file").parent().expect("dir"));
    }
}
