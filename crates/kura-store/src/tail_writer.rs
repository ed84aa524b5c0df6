//! The audit sink's writes on SQLite, on a rusqlite connection of their own.
//!
//! Through sqlx, a batch of events was a dozen or more statements, each one a
//! hand-off to sqlx's connection thread and back, and every row's nineteen
//! values went through sqlx's generic arguments. Here the whole batch (chain
//! heads, ids, rows, new heads, commit) is one call on a blocking thread with
//! prepared statements. The result is byte for byte what `audit::append_many`
//! writes: the same records, linked by `audit::link`.
//!
//! Moving the tail into the indexed trail (`audit::drain_tail_chunk`) runs
//! here too: one connection keeps the trail's index pages in its cache,
//! where another connection's commits would empty it each time.
//!
//! SQLite has one writer. The caller holds sqlx's only write connection
//! while this runs, so the two never wait on SQLite's lock for each other:
//! the pool is the queue.

use crate::audit::{chain_counts, link};
use crate::chain::{Record, GENESIS};
use crate::error::{Result, StoreError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct TailWriter {
    file: PathBuf,
    conn: Mutex<Option<rusqlite::Connection>>,
}

fn db_error(e: rusqlite::Error) -> StoreError {
    StoreError::Internal(format!("audit write: {e}"))
}

impl TailWriter {
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            conn: Mutex::new(None),
        }
    }

    /// The same settings as sqlx's writer (`db::sqlite_pool`): a commit is
    /// on disk before it returns.
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        // The database exists (migrations ran): never create a stray one.
        let conn = rusqlite::Connection::open_with_flags(
            &self.file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=8192;",
        )?;
        Ok(conn)
    }

    /// Run `f` on a blocking thread while holding sqlx's one write
    /// connection (held, not used: no sqlx write runs meanwhile). The hold
    /// moves into the blocking task, so it lasts as long as the write even
    /// if the caller's future is dropped.
    pub async fn run<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        db: &crate::Db,
        f: impl FnOnce(&Self) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let one_writer = db.write.acquire().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _held = one_writer;
            f(&me)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// Link `recs` into their chains and append them to the tail, durably, in
    /// one transaction. Blocking: call it on a blocking thread.
    pub fn append(&self, mut recs: Vec<Record>) -> Result<()> {
        self.transaction(|tx| Self::append_in(tx, &mut recs))
    }

    /// Run `f` in one write transaction, committed (durably) if it returns
    /// Ok and rolled back otherwise. Blocking, as `append`.
    pub(crate) fn transaction<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_error)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_error)?;
            Ok(out)
        })
    }

    /// Move the oldest `chunk` events of the tail into the indexed trail in
    /// one transaction, ids kept; how many moved. Blocking, as `append`.
    pub fn drain(&self, chunk: i64) -> Result<u64> {
        self.with_conn(|conn| Self::drain_on(conn, chunk))
    }

    /// Run `f` on the connection, opened on first use. After a failure (the
    /// transaction rolled back) the next call starts on a fresh connection.
    fn with_conn<T>(&self, f: impl FnOnce(&mut rusqlite::Connection) -> Result<T>) -> Result<T> {
        // After a panic in an earlier call, start over on a fresh connection
        // rather than refusing every audit write until a restart.
        let mut guard = self.conn.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            *g = None;
            g
        });
        if guard.is_none() {
            *guard = Some(self.open().map_err(db_error)?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(StoreError::Internal("audit writer closed".into()));
        };
        let result = f(conn);
        if result.is_err() {
            *guard = None;
        }
        result
    }

    fn drain_on(conn: &mut rusqlite::Connection, chunk: i64) -> Result<u64> {
        use crate::audit::{EVENT_COLUMNS, TAIL_OLDEST};
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let moved = tx
            .prepare_cached(&format!(
                "INSERT INTO audit_events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM audit_tail WHERE id <= {TAIL_OLDEST} ORDER BY id"
            ))
            .and_then(|mut st| st.execute([chunk]))
            .map_err(db_error)?;
        if moved == 0 {
            return Ok(0); // dropping `tx` rolls it back
        }
        let deleted = tx
            .prepare_cached(&format!("DELETE FROM audit_tail WHERE id <= {TAIL_OLDEST}"))
            .and_then(|mut st| st.execute([chunk]))
            .map_err(db_error)?;
        if deleted != moved {
            // Never lose or duplicate an event: leave both tables as they were.
            return Err(StoreError::Internal(format!(
                "audit tail: moved {moved} events but would remove {deleted}"
            )));
        }
        tx.commit().map_err(db_error)?;
        Ok(moved as u64)
    }

    /// Link `recs` into their chains and append them to the tail inside
    /// `tx`, setting their ids.
    pub(crate) fn append_in(tx: &rusqlite::Transaction<'_>, recs: &mut [Record]) -> Result<()> {
        // Reserve each chain's positions (in chain order, as append_many does).
        let mut counts = chain_counts(recs);
        counts.sort();
        let mut reserved: HashMap<String, (i64, String)> = HashMap::with_capacity(counts.len());
        {
            let mut advance = tx
                .prepare_cached(
                    "INSERT INTO audit_chain_heads (chain, seq, hash) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (chain) DO UPDATE SET seq = audit_chain_heads.seq + excluded.seq \
                     RETURNING seq, hash",
                )
                .map_err(db_error)?;
            for (chain, n) in &counts {
                let (seq, hash): (i64, String) = advance
                    .query_row(rusqlite::params![chain, n, GENESIS], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(db_error)?;
                reserved.insert(chain.clone(), (seq - n + 1, hash));
            }
        }
        let heads = link(recs, reserved)?;
        // The tail has no id counter of its own: ids come from the trail's.
        let n = recs.len() as i64;
        let last: i64 = tx
            .query_row(
                "UPDATE sqlite_sequence SET seq = seq + ?1 WHERE name = 'audit_events' RETURNING seq",
                [n],
                |r| r.get(0),
            )
            .map_err(db_error)?;
        {
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO audit_tail ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                    crate::audit::EVENT_COLUMNS
                ))
                .map_err(db_error)?;
            for (i, r) in recs.iter_mut().enumerate() {
                r.id = last - n + 1 + i as i64;
                insert
                    .execute(rusqlite::params![
                        r.id,
                        r.ts,
                        r.org_id,
                        r.actor_user_id,
                        r.actor_org_id,
                        r.credential,
                        r.ip,
                        r.user_agent,
                        r.request_id,
                        r.action,
                        r.outcome,
                        r.project_id,
                        r.node_id,
                        r.version_id,
                        r.object_name,
                        r.bytes,
                        r.detail,
                        r.chain_seq,
                        r.chain_hash,
                    ])
                    .map_err(db_error)?;
            }
            let mut set_head = tx
                .prepare_cached("UPDATE audit_chain_heads SET hash = ?2 WHERE chain = ?1")
                .map_err(db_error)?;
            for (chain, hash) in &heads {
                set_head.execute([chain, hash]).map_err(db_error)?;
            }
        }
        Ok(())
    }
}
