//! The audit trail. Changes append their event inside the same transaction
//! as the change; reads (list, view, download) go through [`AuditSink`],
//! which groups concurrent events into one commit and answers each caller
//! only once its event is durable, so a download's bytes never leave before
//! its record exists. If the write fails, the caller's request fails.
//!
//! There is no update or delete path here, and the schema's triggers refuse
//! both. The table carries `chain_seq`/`chain_hash` for the per-organization
//! hash chain.

use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::now_micros;
use kura_core::{Credential, NodeId, OrgId, ProjectId, UserId, VersionId};
use serde::Serialize;
use sqlx::{Any, Transaction};
use tokio::sync::{mpsc, oneshot};

/// Who did it and from where; built once per request.
#[derive(Clone, Debug, Default)]
pub struct AuditCtx {
    pub actor_user_id: Option<UserId>,
    pub actor_org_id: Option<OrgId>,
    pub credential: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl AuditCtx {
    pub fn credential_label(c: &Credential) -> String {
        match c {
            Credential::Session(id) => format!("session:{id}"),
            Credential::Token { id, .. } => format!("token:{id}"),
            Credential::Cli => "cli".to_string(),
        }
    }

    pub fn cli() -> Self {
        Self {
            credential: Some("cli".into()),
            ip: Some("local".into()),
            ..Self::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failure => "failure",
        }
    }
}

/// What happened, to which object.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub action: &'static str,
    pub outcome: Outcome,
    /// The organization whose data or account the event concerns.
    pub org_id: Option<OrgId>,
    pub project_id: Option<ProjectId>,
    pub node_id: Option<NodeId>,
    pub version_id: Option<VersionId>,
    pub object_name: Option<String>,
    pub bytes: Option<i64>,
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    pub fn new(action: &'static str, outcome: Outcome) -> Self {
        Self {
            action,
            outcome,
            org_id: None,
            project_id: None,
            node_id: None,
            version_id: None,
            object_name: None,
            bytes: None,
            detail: None,
        }
    }
    pub fn org(mut self, org: OrgId) -> Self {
        self.org_id = Some(org);
        self
    }
    pub fn project(mut self, org: OrgId, project: ProjectId) -> Self {
        self.org_id = Some(org);
        self.project_id = Some(project);
        self
    }
    pub fn node(mut self, node: NodeId) -> Self {
        self.node_id = Some(node);
        self
    }
    pub fn version(mut self, v: VersionId) -> Self {
        self.version_id = Some(v);
        self
    }
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.object_name = Some(name.into());
        self
    }
    pub fn bytes(mut self, n: u64) -> Self {
        self.bytes = Some(i64::try_from(n).unwrap_or(i64::MAX));
        self
    }
    pub fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = Some(d);
        self
    }
}

/// Events appended by this process (for metrics; counts attempts inside
/// transactions that may still roll back).
static APPENDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn appended_total() -> u64 {
    APPENDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Group commits made by the sinks of this process (events per commit =
/// appended / batches, for the group-commit benchmark).
static BATCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn batches_total() -> u64 {
    BATCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Append one event in its own transaction (a refusal that changes nothing else).
pub async fn record_now(db: &crate::Db, ctx: &AuditCtx, ev: &AuditEvent) -> Result<()> {
    let mut tx = db.write.begin().await?;
    append(&mut tx, ctx, ev).await?;
    tx.commit().await?;
    Ok(())
}

/// Append one event inside the caller's transaction (for changes).
pub async fn append(tx: &mut Transaction<'_, Any>, ctx: &AuditCtx, ev: &AuditEvent) -> Result<()> {
    append_many(tx, &[(ctx, ev)]).await
}

type Pending = (AuditCtx, AuditEvent, oneshot::Sender<Result<(), String>>);

/// Group-committing appender for events that are not part of a change.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Pending>,
}

const MAX_BATCH: usize = 512;

/// How often the sink moves the SQLite tail into the indexed trail when
/// fewer than `DRAIN_CHUNK` events are waiting.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl AuditSink {
    /// Start the writer task on `db`.
    pub fn start(db: Db) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(8192);
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
            let mut drained_at = std::time::Instant::now();
            loop {
                match tokio::time::timeout(DRAIN_EVERY, rx.recv_many(&mut batch, MAX_BATCH)).await {
                    Ok(0) => break,
                    Ok(_) => {
                        let result = write_batch(&db, &batch).await.map_err(|e| e.to_string());
                        if let Err(e) = &result {
                            tracing::error!(error = %e, events = batch.len(), "audit write failed");
                        }
                        for (_, _, done) in batch.drain(..) {
                            let _ = done.send(result.clone());
                        }
                    }
                    Err(_idle) => {}
                }
                // Between batches, on the same connection: the tail stays
                // short without a second writer competing for the lock.
                let pending = TAIL_PENDING.load(std::sync::atomic::Ordering::Relaxed);
                if pending > 0
                    && (pending >= DRAIN_CHUNK as u64 || drained_at.elapsed() >= DRAIN_EVERY)
                {
                    drained_at = std::time::Instant::now();
                    match drain_tail_chunk(&db).await {
                        Ok(0) => TAIL_PENDING.store(0, std::sync::atomic::Ordering::Relaxed),
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "audit tail drain failed"),
                    }
                }
            }
        });
        Self { tx }
    }

    /// Record `ev` and wait until it is durable. An error means the event was
    /// not stored; the caller must then fail its request.
    pub async fn record(&self, ctx: &AuditCtx, ev: AuditEvent) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((ctx.clone(), ev, done))
            .await
            .map_err(|_| StoreError::Internal("audit writer stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Internal(format!("audit write failed: {e}"))),
            Err(_) => Err(StoreError::Internal("audit writer stopped".into())),
        }
    }
}

async fn write_batch(db: &Db, batch: &[Pending]) -> Result<()> {
    if let Some(writer) = db.tail_writer.clone() {
        let ts = now_micros();
        let recs: Vec<crate::chain::Record> =
            batch.iter().map(|(c, e, _)| record_of(c, e, ts)).collect();
        let n = recs.len() as u64;
        writer.run(db, move |w| w.append(recs)).await?;
        APPENDED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        TAIL_PENDING.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    let mut tx = db.write.begin().await?;
    let items: Vec<(&AuditCtx, &AuditEvent)> = batch.iter().map(|(c, e, _)| (c, e)).collect();
    append_many(&mut tx, &items).await?;
    tx.commit().await?;
    BATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Count `n` events appended to the SQLite tail by a transaction of the
/// rusqlite writer that has committed (the sink counts its own batches).
pub(crate) fn note_tail_append(n: u64) {
    APPENDED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    TAIL_PENDING.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Rows per INSERT statement (19 parameters each; well under the limits of
/// both databases).
const ROWS_PER_INSERT: usize = 16;

/// Append many events in one transaction with few statements: each chain's
/// head is advanced once for all of its events, hashes are computed here in
/// order, and rows go in multi-row INSERTs. The result is the same chain as
/// appending them one by one.
pub async fn append_many(
    tx: &mut Transaction<'_, Any>,
    items: &[(&AuditCtx, &AuditEvent)],
) -> Result<()> {
    APPENDED.fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let ts = now_micros();
    let mut recs: Vec<crate::chain::Record> = items
        .iter()
        .map(|(ctx, ev)| record_of(ctx, ev, ts))
        .collect();
    let reserved = crate::chain::advance_many(tx, &chain_counts(&recs)).await?;
    let heads = link(&mut recs, reserved)?;
    let sqlite = tx.backend_name() == "SQLite";
    if sqlite {
        // The tail has no id counter of its own: reserve ids from the
        // trail's, so that moved rows keep them and never collide.
        let n = recs.len() as i64;
        let last = sqlx::query(
            "UPDATE sqlite_sequence SET seq = seq + $1 WHERE name = 'audit_events' RETURNING seq",
        )
        .bind(n)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::Internal("audit id counter missing".into()))?
        .int("seq")?;
        for (i, r) in recs.iter_mut().enumerate() {
            r.id = last - n + 1 + i as i64;
        }
        TAIL_PENDING.fetch_add(recs.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
    for chunk in recs.chunks(ROWS_PER_INSERT) {
        // SQLite: into the tail with reserved ids; PostgreSQL: into the
        // trail, ids from its sequence.
        let mut sql = String::from(if sqlite {
            "INSERT INTO audit_tail (id, ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id, action, outcome, project_id, node_id, version_id, object_name, bytes, detail, chain_seq, chain_hash) VALUES "
        } else {
            "INSERT INTO audit_events (ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id, action, outcome, project_id, node_id, version_id, object_name, bytes, detail, chain_seq, chain_hash) VALUES "
        });
        let width = if sqlite { 19 } else { 18 };
        for i in 0..chunk.len() {
            let b = i * width;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(
                &(1..=width)
                    .map(|k| {
                        // SQLite binds `$N` by looking the name up among all
                        // of the statement's parameters (quadratic in a
                        // multi-row insert); `?` binds by position.
                        if sqlite {
                            "?".to_string()
                        } else {
                            format!("${}", b + k)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            sql.push(')');
        }
        let mut q = sqlx::query(&sql);
        for r in chunk {
            if sqlite {
                q = q.bind(r.id);
            }
            q = q
                .bind(r.ts)
                .bind(r.org_id.clone())
                .bind(r.actor_user_id.clone())
                .bind(r.actor_org_id.clone())
                .bind(r.credential.clone())
                .bind(r.ip.clone())
                .bind(r.user_agent.clone())
                .bind(r.request_id.clone())
                .bind(r.action.clone())
                .bind(r.outcome.clone())
                .bind(r.project_id.clone())
                .bind(r.node_id.clone())
                .bind(r.version_id.clone())
                .bind(r.object_name.clone())
                .bind(r.bytes)
                .bind(r.detail.clone())
                .bind(r.chain_seq)
                .bind(r.chain_hash.clone());
        }
        q.execute(&mut **tx).await?;
    }
    let hashes: Vec<(&str, String)> = heads
        .iter()
        .map(|(chain, hash)| (chain.as_str(), hash.clone()))
        .collect();
    crate::chain::set_head_hashes(tx, &hashes).await?;
    Ok(())
}

/// How many of `recs` each chain gets, chains in the order they first come.
pub(crate) fn chain_counts(recs: &[crate::chain::Record]) -> Vec<(String, i64)> {
    let mut chains: Vec<(String, i64)> = Vec::new();
    for r in recs {
        match chains.iter_mut().find(|(c, _)| c == r.chain()) {
            Some((_, n)) => *n += 1,
            None => chains.push((r.chain().to_string(), 1)),
        }
    }
    chains
}

/// Give each record its position and hash in its chain, in order, from
/// `reserved` (per chain: the first position reserved and the hash before
/// it). Returns each chain's new head hash.
pub(crate) fn link(
    recs: &mut [crate::chain::Record],
    reserved: std::collections::HashMap<String, (i64, String)>,
) -> Result<Vec<(String, String)>> {
    // Per chain: the next position and the last hash (raw; stored as hex).
    let mut heads: std::collections::HashMap<String, (i64, [u8; 32])> =
        std::collections::HashMap::with_capacity(reserved.len());
    for (chain, (first, prev)) in reserved {
        let p = crate::event_hash::from_hex(prev.as_bytes())
            .ok_or_else(|| StoreError::Internal(format!("audit chain {chain}: bad head hash")))?;
        heads.insert(chain, (first, p));
    }
    let mut buf = Vec::with_capacity(1024);
    for r in recs.iter_mut() {
        let head = heads
            .get_mut(r.chain())
            .ok_or_else(|| StoreError::Internal("audit chain head".into()))?;
        let seq = head.0;
        // Events are written in the binary form (see `event_hash`).
        let hash = r.binary_hash(&head.1, seq, &mut buf);
        head.0 += 1;
        head.1 = hash;
        r.chain_seq = Some(seq);
        r.chain_hash = Some(hex::encode(hash));
    }
    Ok(heads
        .into_iter()
        .map(|(chain, (_, hash))| (chain, hex::encode(hash)))
        .collect())
}

/// SQLite: events appended to the tail since the last drain, approximately
/// (a rolled-back change counts too, which costs one empty drain).
static TAIL_PENDING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Most events moved from the tail per transaction: a move holds SQLite's
/// write lock, and appenders wait behind it, so it is kept to a few
/// milliseconds; bigger moves update each index leaf for more events.
const DRAIN_CHUNK: i64 = 5000;

/// The columns of a stored event, in table order (tail and trail alike);
/// `verify_scan` reads them by position.
pub(crate) const EVENT_COLUMNS: &str = "id, ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id, action, outcome, project_id, node_id, version_id, object_name, bytes, detail, chain_seq, chain_hash";

/// The id of the newest of the `$1` oldest events in the tail (0 if empty).
pub(crate) const TAIL_OLDEST: &str =
    "(SELECT COALESCE(MAX(id), 0) FROM (SELECT id FROM audit_tail ORDER BY id LIMIT $1))";

/// SQLite: move the oldest `DRAIN_CHUNK` events of the tail into the trail,
/// in one transaction (the insert takes the write lock first, so both
/// statements see the same oldest events). Returns how many moved; 0 on
/// PostgreSQL, which has no tail.
pub async fn drain_tail_chunk(db: &Db) -> Result<u64> {
    if db.backend != crate::db::Backend::Sqlite {
        return Ok(0);
    }
    if let Some(writer) = db.tail_writer.clone() {
        // On the sink's connection, whose page cache holds the trail's
        // indexes from the last move (another connection's commit would
        // have emptied it).
        let moved = writer.run(db, |w| w.drain(DRAIN_CHUNK)).await?;
        let _ = TAIL_PENDING.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |p| Some(p.saturating_sub(moved)),
        );
        return Ok(moved);
    }
    let oldest = TAIL_OLDEST;
    let mut tx = db.write.begin().await?;
    let moved = sqlx::query(&format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM audit_tail WHERE id <= {oldest} ORDER BY id"
    ))
    .bind(DRAIN_CHUNK)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        tx.rollback().await?;
        return Ok(0);
    }
    let deleted = sqlx::query(&format!("DELETE FROM audit_tail WHERE id <= {oldest}"))
        .bind(DRAIN_CHUNK)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted != moved {
        // Never lose or duplicate an event: leave both tables as they were.
        tx.rollback().await?;
        return Err(StoreError::Internal(format!(
            "audit tail: moved {moved} events but would remove {deleted}"
        )));
    }
    tx.commit().await?;
    let _ = TAIL_PENDING.fetch_update(
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
        |p| Some(p.saturating_sub(moved)),
    );
    Ok(moved)
}

/// Make every event committed so far readable in `audit_events`: on SQLite,
/// drain the tail up to its newest event now (later appends may stay in
/// it). Every reader of the trail calls this first. No-op on PostgreSQL.
pub async fn settle(db: &Db) -> Result<()> {
    if db.backend != crate::db::Backend::Sqlite {
        return Ok(());
    }
    let newest = sqlx::query("SELECT MAX(id) AS m FROM audit_tail")
        .fetch_one(&db.read)
        .await?
        .opt_int("m")?;
    let Some(newest) = newest else {
        return Ok(());
    };
    // Bounded: every round moves the oldest events, so the tail's oldest id
    // passes `newest` after at most (tail length / chunk) rounds, and the
    // tail cannot hold more than the counter handed out.
    for _ in 0..1_000_000 {
        let oldest = sqlx::query("SELECT MIN(id) AS m FROM audit_tail")
            .fetch_one(&db.read)
            .await?
            .opt_int("m")?;
        match oldest {
            Some(o) if o <= newest => {
                drain_tail_chunk(db).await?;
            }
            _ => return Ok(()),
        }
    }
    Err(StoreError::Internal("audit tail did not drain".into()))
}

pub(crate) fn record_of(ctx: &AuditCtx, ev: &AuditEvent, ts: i64) -> crate::chain::Record {
    crate::chain::Record {
        id: 0,
        ts,
        org_id: ev.org_id.map(|x| x.to_string()),
        actor_user_id: ctx.actor_user_id.map(|x| x.to_string()),
        actor_org_id: ctx.actor_org_id.map(|x| x.to_string()),
        credential: ctx.credential.clone(),
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        action: ev.action.to_string(),
        outcome: ev.outcome.as_str().to_string(),
        project_id: ev.project_id.map(|x| x.to_string()),
        node_id: ev.node_id.map(|x| x.to_string()),
        version_id: ev.version_id.map(|x| x.to_string()),
        object_name: ev.object_name.clone(),
        bytes: ev.bytes,
        detail: ev.detail.as_ref().map(|d| d.to_string()),
        chain_seq: None,
        chain_hash: None,
    }
}

/// One stored event, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub ts_micros: i64,
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
    pub detail: Option<serde_json::Value>,
}

/// Filters for reading the trail. `org` is set by the caller from a grant:
/// an organization admin's query is always confined to their organization.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub org: Option<OrgId>,
    pub actor: Option<UserId>,
    pub project: Option<ProjectId>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub from_micros: Option<i64>,
    pub to_micros: Option<i64>,
    /// Return events with id < before (newest first paging).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Proof of who may read which part of the trail.
pub enum AuditScope<'a> {
    Org(&'a kura_core::OrgGrant),
    Platform(&'a kura_core::PlatformGrant),
}

pub async fn query(db: &Db, scope: AuditScope<'_>, mut q: AuditQuery) -> Result<Vec<StoredEvent>> {
    if let AuditScope::Org(g) = scope {
        if g.action() != kura_core::OrgAction::ReadAudit {
            return Err(StoreError::Denied(kura_core::Denied::Forbidden));
        }
        q.org = Some(g.org_id());
    }
    settle(db).await?;
    // Built only from fixed fragments; every value is a bind parameter.
    let mut sql = String::from("SELECT * FROM audit_events WHERE 1=1");
    let mut binds: Vec<Bind> = Vec::new();
    let mut add = |frag: &str, b: Bind, sql: &mut String| {
        binds.push(b);
        sql.push_str(&frag.replace('?', &format!("${}", binds.len())));
    };
    if let Some(o) = q.org {
        add(" AND org_id = ?", Bind::S(o.to_string()), &mut sql);
    }
    if let Some(a) = q.actor {
        add(" AND actor_user_id = ?", Bind::S(a.to_string()), &mut sql);
    }
    if let Some(p) = q.project {
        add(" AND project_id = ?", Bind::S(p.to_string()), &mut sql);
    }
    if let Some(a) = &q.action {
        add(" AND action = ?", Bind::S(a.clone()), &mut sql);
    }
    if let Some(o) = &q.outcome {
        add(" AND outcome = ?", Bind::S(o.clone()), &mut sql);
    }
    if let Some(f) = q.from_micros {
        add(" AND ts >= ?", Bind::I(f), &mut sql);
    }
    if let Some(t) = q.to_micros {
        add(" AND ts < ?", Bind::I(t), &mut sql);
    }
    if let Some(b) = q.before_id {
        add(" AND id < ?", Bind::I(b), &mut sql);
    }
    add(
        " ORDER BY id DESC LIMIT ?",
        Bind::I(q.limit.clamp(1, 1000)),
        &mut sql,
    );
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = match b {
            Bind::S(s) => query.bind(s),
            Bind::I(i) => query.bind(i),
        };
    }
    let rows = query.fetch_all(&db.read).await?;
    rows.iter().map(stored_from_row).collect()
}

fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<StoredEvent> {
    Ok(StoredEvent::from(crate::chain::Record::from_row(r)?))
}

impl From<crate::chain::Record> for StoredEvent {
    /// The API's view of a stored event: `detail` parsed, chain fields left out.
    fn from(r: crate::chain::Record) -> Self {
        Self {
            id: r.id,
            ts_micros: r.ts,
            org_id: r.org_id,
            actor_user_id: r.actor_user_id,
            actor_org_id: r.actor_org_id,
            credential: r.credential,
            ip: r.ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            action: r.action,
            outcome: r.outcome,
            project_id: r.project_id,
            node_id: r.node_id,
            version_id: r.version_id,
            object_name: r.object_name,
            bytes: r.bytes,
            detail: r.detail.and_then(|d| serde_json::from_str(&d).ok()),
        }
    }
}

enum Bind {
    S(String),
    I(i64),
}

/// Recent changes in the projects `user` is a member of (the home page's
/// activity list). Membership is checked in the query itself.
pub async fn recent_activity(db: &Db, user: UserId, limit: i64) -> Result<Vec<StoredEvent>> {
    settle(db).await?;
    let rows = sqlx::query(
        "SELECT * FROM audit_events WHERE project_id IN (SELECT project_id FROM project_members WHERE user_id = $1) \
         AND outcome = 'success' AND action IN ('file.upload', 'file.upload_version', 'folder.create', 'node.rename', 'node.move', 'node.trash', 'node.restore', 'node.copy', 'member.add', 'file.restore_version') \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(user.to_string())
    .bind(limit.clamp(1, 100))
    .fetch_all(&db.read)
    .await?;
    rows.iter().map(stored_from_row).collect()
}

/// The newest event id (0 for an empty trail).
pub async fn max_id(db: &Db) -> Result<i64> {
    use crate::db::RowExt;
    sqlx::query("SELECT COALESCE(MAX(id), 0) AS m FROM audit_events")
        .fetch_one(&db.write)
        .await?
        .int("m")
}

/// How long a follower of the trail waits before reading an event on
/// PostgreSQL: ids are drawn when a transaction inserts, but transactions of
/// different chains commit in any order, so a follower that moved its
/// cursor past an id still in flight would never see that event. SQLite has
/// one writer: ids commit in order.
pub const SETTLE_MICROS: i64 = 2_000_000;

/// The newest event time a follower may read up to now.
pub fn settled_before(db: &Db) -> i64 {
    match db.backend {
        crate::db::Backend::Sqlite => i64::MAX,
        crate::db::Backend::Postgres => now_micros() - SETTLE_MICROS,
    }
}

/// Committed events after `id`, oldest first (followers of the trail). The
/// SIEM forwarder and the detector follow the same events a moment apart,
/// so the newest ones are kept in memory ([`RecentEvents`]) and each is read
/// from the database once. Read on the reader pool: the single writer
/// connection is the audit sink's.
pub async fn events_after(
    db: &Db,
    id: i64,
    limit: i64,
) -> Result<Vec<std::sync::Arc<crate::chain::Record>>> {
    let limit = limit.max(1);
    let mut recent = db.recent.lock().await;
    let complete_after = *recent.complete_after.get_or_insert(id);
    if id >= complete_after {
        let newest = recent.events.back().map_or(complete_after, |r| r.id);
        let fresh = read_after(db, newest, RECENT_READ).await?;
        recent
            .events
            .extend(fresh.into_iter().map(std::sync::Arc::new));
        while recent.events.len() > RECENT_KEEP {
            if let Some(old) = recent.events.pop_front() {
                recent.complete_after = Some(old.id);
            }
        }
    }
    if recent.complete_after.is_some_and(|c| id < c) {
        // Older than what is kept: read it directly, keep nothing.
        drop(recent);
        return Ok(read_after(db, id, limit)
            .await?
            .into_iter()
            .map(std::sync::Arc::new)
            .collect());
    }
    let start = recent.events.partition_point(|r| r.id <= id);
    Ok(recent
        .events
        .range(start..)
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .cloned()
        .collect())
}

/// Events kept in memory for the followers of the trail (about 1 KiB each:
/// enough for two followers a couple of batches apart; one further behind
/// reads the database itself), and the most read from the database at once.
const RECENT_KEEP: usize = 5_000;
const RECENT_READ: i64 = 5_000;

/// The newest committed events, complete after `complete_after`.
#[derive(Default)]
pub struct RecentEvents {
    complete_after: Option<i64>,
    events: std::collections::VecDeque<std::sync::Arc<crate::chain::Record>>,
}

/// Committed events after `id`, oldest first, read straight from the
/// database without the followers' shared cache (for one-off reads of
/// older events, such as the detector's replay after a start, which would
/// otherwise move the cache back in time).
pub async fn events_after_uncached(
    db: &Db,
    id: i64,
    limit: i64,
) -> Result<Vec<crate::chain::Record>> {
    read_after(db, id, limit.max(1)).await
}

async fn read_after(db: &Db, id: i64, limit: i64) -> Result<Vec<crate::chain::Record>> {
    // On SQLite, committed events are in the trail or still in its tail,
    // each in exactly one of them at any instant, so one statement (one
    // snapshot) over both sees every event once. Followers poll often;
    // draining the tail for each poll (`settle`) made every poll a write
    // transaction with its own sync, competing with the appends.
    let sql = match db.backend {
        crate::db::Backend::Sqlite => {
            format!(
                "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM audit_events WHERE id > $1 AND ts < $3 \
                 UNION ALL SELECT {EVENT_COLUMNS} FROM audit_tail WHERE id > $1 AND ts < $3) \
                 ORDER BY id LIMIT $2"
            )
        }
        crate::db::Backend::Postgres => {
            "SELECT * FROM audit_events WHERE id > $1 AND ts < $3 ORDER BY id LIMIT $2".to_string()
        }
    };
    if let Some(lite) = db.point_reads.clone() {
        // Straight from SQLite on a blocking thread: through sqlx, every
        // value of every row was converted twice (followers read each event
        // of a busy server).
        use crate::point_read::Param;
        let params = vec![
            Param::Int(id),
            Param::Int(limit),
            Param::Int(settled_before(db)),
        ];
        let max = usize::try_from(limit).unwrap_or(usize::MAX);
        return lite
            .fetch_rows_blocking(sql, params, max, crate::chain::Record::from_lite)
            .await;
    }
    let rows = sqlx::query(&sql)
        .bind(id)
        .bind(limit)
        .bind(settled_before(db))
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(crate::chain::Record::from_row).collect()
}
/// The id of the first event at or after `ts` (µs), in time order: where
/// the detector starts replaying recent events after a restart.
pub async fn first_id_since(db: &Db, ts: i64) -> Result<Option<i64>> {
    use crate::db::RowExt;
    let stored = sqlx::query("SELECT id FROM audit_events WHERE ts >= $1 ORDER BY ts LIMIT 1")
        .bind(ts)
        .fetch_optional(&db.read)
        .await?;
    if let Some(r) = stored {
        return Ok(Some(r.int("id")?));
    }
    if db.backend != crate::db::Backend::Sqlite {
        return Ok(None);
    }
    // Everything recent may still wait in the tail (a small table).
    sqlx::query("SELECT MIN(id) AS m FROM audit_tail WHERE ts >= $1")
        .bind(ts)
        .fetch_one(&db.read)
        .await?
        .opt_int("m")
}

/// When `actor` first did anything in `project` (None: never).
pub async fn first_access(db: &Db, actor: &str, project: &str) -> Result<Option<i64>> {
    use crate::db::RowExt;
    sqlx::query("SELECT ts FROM audit_events WHERE actor_user_id = $1 AND project_id = $2 ORDER BY id LIMIT 1")
        .bind(actor)
        .bind(project)
        .fetch_optional(&db.read)
        .await?
        .map(|r| r.int("ts"))
        .transpose()
}
