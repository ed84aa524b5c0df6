//! Point reads that stay on the calling thread (SQLite).
//!
//! sqlx runs every SQLite connection on a thread of its own, so each query is
//! two hand-offs between threads. An authenticated download made four such
//! queries, and on a two-core machine the wake-ups cost more than the queries
//! themselves (bench/RESULTS.md, run 8). The lookups by key on every
//! request's path (credential, project facts, file and version) therefore run
//! on a small pool of read-only rusqlite connections, on the caller's thread:
//! each is a few B-tree probes in SQLite's page cache, microseconds. In WAL
//! mode a reader never waits for the writer. PostgreSQL, and SQLite in
//! memory (one connection only), go through sqlx as before.

use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use rusqlite::types::Value;
use sqlx::any::AnyRow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A bound parameter: `$1` is the first of the list, `$2` the second, …
#[derive(Clone, Debug)]
pub enum Param {
    Text(String),
    Int(i64),
    Blob(Vec<u8>),
    Null,
}

impl From<Vec<u8>> for Param {
    fn from(v: Vec<u8>) -> Self {
        Param::Blob(v)
    }
}

/// Bind `params` to a rusqlite statement as `$1`, `$2`, … by name: SQLite
/// numbers `$N` parameters in order of first appearance, which need not be N.
pub(crate) fn bind_numbered(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[Param],
) -> rusqlite::Result<()> {
    for (i, p) in params.iter().enumerate() {
        // Every request binds a few: their names without an allocation.
        const NAMES: [&str; 10] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10"];
        let name = match NAMES.get(i) {
            Some(n) => std::borrow::Cow::Borrowed(*n),
            None => std::borrow::Cow::Owned(format!("${}", i + 1)),
        };
        let Some(at) = stmt.parameter_index(&name)? else {
            continue; // a parameter the statement does not use
        };
        match p {
            Param::Text(s) => stmt.raw_bind_parameter(at, s.as_str())?,
            Param::Int(v) => stmt.raw_bind_parameter(at, v)?,
            Param::Blob(b) => stmt.raw_bind_parameter(at, b.as_slice())?,
            Param::Null => stmt.raw_bind_parameter(at, rusqlite::types::Null)?,
        }
    }
    Ok(())
}

/// Bind `params` to a sqlx query in order (`$1` first).
pub(crate) fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    params: &[Param],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for p in params {
        q = match p {
            Param::Text(s) => q.bind(s.clone()),
            Param::Int(v) => q.bind(*v),
            Param::Blob(b) => q.bind(b.clone()),
            Param::Null => q.bind(None::<String>),
        };
    }
    q
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        v.map_or(Param::Null, Param::Text)
    }
}

/// One row read by [`Db::fetch_point`], whichever way it was read.
pub enum PointRow {
    Any(AnyRow),
    Lite(LiteRow),
}

/// A row copied out of SQLite: column names and values.
pub struct LiteRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl LiteRow {
    fn get(&self, col: &str) -> Result<&Value> {
        self.names
            .iter()
            .position(|n| n == col)
            .map(|i| &self.values[i])
            .ok_or_else(|| StoreError::Internal(format!("no column {col} in the row")))
    }
}

fn wrong_type(col: &str) -> StoreError {
    StoreError::Internal(format!("column {col} holds another type"))
}

impl RowExt for LiteRow {
    fn str(&self, col: &str) -> Result<String> {
        self.opt_str(col)?.ok_or_else(|| wrong_type(col))
    }
    fn opt_str(&self, col: &str) -> Result<Option<String>> {
        match self.get(col)? {
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            _ => Err(wrong_type(col)),
        }
    }
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?.ok_or_else(|| wrong_type(col))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        match self.get(col)? {
            Value::Integer(i) => Ok(Some(*i)),
            Value::Null => Ok(None),
            _ => Err(wrong_type(col)),
        }
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        match self.get(col)? {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(wrong_type(col)),
        }
    }
}

impl RowExt for PointRow {
    fn str(&self, col: &str) -> Result<String> {
        match self {
            PointRow::Any(r) => r.str(col),
            PointRow::Lite(r) => r.str(col),
        }
    }
    fn opt_str(&self, col: &str) -> Result<Option<String>> {
        match self {
            PointRow::Any(r) => r.opt_str(col),
            PointRow::Lite(r) => r.opt_str(col),
        }
    }
    fn int(&self, col: &str) -> Result<i64> {
        match self {
            PointRow::Any(r) => r.int(col),
            PointRow::Lite(r) => r.int(col),
        }
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        match self {
            PointRow::Any(r) => r.opt_int(col),
            PointRow::Lite(r) => r.opt_int(col),
        }
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        match self {
            PointRow::Any(r) => r.bytes(col),
            PointRow::Lite(r) => r.bytes(col),
        }
    }
}

/// Idle read-only connections to one SQLite file, opened on demand.
pub struct LiteReaders {
    file: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Reads of many rows at once (each on a blocking thread with a
    /// connection of its own): a client asking for many big listings at once
    /// waits here instead of taking every thread and connection.
    many: Arc<tokio::sync::Semaphore>,
}

/// Reads of many rows that run at the same time, at most.
const MANY_AT_ONCE: usize = 4;

/// More idle connections than threads that can ask at once are never used.
const MAX_IDLE: usize = 8;

impl LiteReaders {
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            idle: Mutex::new(Vec::new()),
            many: Arc::new(tokio::sync::Semaphore::new(MANY_AT_ONCE)),
        }
    }

    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.file,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // A WAL reader waits only while the WAL index is rebuilt (after a
        // crash); these reads run on request threads, so not for long.
        conn.busy_timeout(std::time::Duration::from_secs(2))?;
        conn.pragma_update(None, "cache_size", -8192)?;
        Ok(conn)
    }

    /// Run `f` on an idle connection (or a new one), then keep it for the
    /// next caller unless `f` failed.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        // A connection that failed is dropped rather than reused.
        if out.is_ok() {
            if let Ok(mut idle) = self.idle.lock() {
                if idle.len() < MAX_IDLE {
                    idle.push(conn);
                }
            }
        }
        Ok(out?)
    }

    /// The first row of `sql` with `params` bound as `$1`, `$2`, …
    pub fn fetch_optional(&self, sql: &str, params: &[Param]) -> Result<Option<LiteRow>> {
        self.with_conn(|conn| Ok(Self::query(conn, sql, params, 1)?.pop()))
    }

    /// Every row of `sql` (at most `max`). Many rows take a while: call it on
    /// a blocking thread, or use `fetch_all_blocking`.
    pub fn fetch_all(&self, sql: &str, params: &[Param], max: usize) -> Result<Vec<LiteRow>> {
        self.with_conn(|conn| Self::query(conn, sql, params, max))
    }

    /// `fetch_all` on a blocking thread, each row turned into a `T` there;
    /// at most `MANY_AT_ONCE` at a time.
    pub async fn fetch_all_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        sql: String,
        params: Vec<Param>,
        max: usize,
        map: fn(&LiteRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.blocking(move |me| me.fetch_all(&sql, &params, max)?.iter().map(map).collect())
            .await
    }

    /// Like `fetch_all_blocking`, with each row mapped straight from
    /// rusqlite's row (by position) instead of through a `LiteRow`.
    pub async fn fetch_rows_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        sql: String,
        params: Vec<Param>,
        max: usize,
        map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.blocking(move |me| me.with_conn(|conn| Self::rows(conn, &sql, &params, max, map)))
            .await
    }

    /// Run a read of many rows on a blocking thread, at most `MANY_AT_ONCE`
    /// at a time.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Self) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .many
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Internal("readers closed".into()))?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the read ends, even if the caller went away.
            let _permit = permit;
            read(&me)
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
    }

    /// The first `max` rows of `sql`, each mapped by `map`.
    fn rows<T>(
        conn: &rusqlite::Connection,
        sql: &str,
        params: &[Param],
        max: usize,
        mut map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut stmt = conn.prepare_cached(sql)?;
        bind_numbered(&mut stmt, params)?;
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while out.len() < max {
            let Some(row) = rows.next()? else {
                break;
            };
            out.push(map(row)?);
        }
        Ok(out)
    }

    /// Rows copied out with their column names.
    fn query(
        conn: &rusqlite::Connection,
        sql: &str,
        params: &[Param],
        max: usize,
    ) -> rusqlite::Result<Vec<LiteRow>> {
        let mut names: Option<Arc<[String]>> = None;
        Self::rows(conn, sql, params, max, |row| {
            let names = names
                .get_or_insert_with(|| {
                    let stmt: &rusqlite::Statement<'_> = row.as_ref();
                    stmt.column_names().iter().map(|s| s.to_string()).collect()
                })
                .clone();
            let values = (0..names.len())
                .map(|i| row.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(LiteRow { names, values })
        })
    }
}

impl Db {
    /// The first row of a lookup by key on the request path, with `params`
    /// bound as `$1`, `$2`, …; on the calling thread where the database is a
    /// SQLite file (see the module documentation).
    pub async fn fetch_point(&self, sql: &str, params: Vec<Param>) -> Result<Option<PointRow>> {
        if let Some(lite) = &self.point_reads {
            return Ok(lite.fetch_optional(sql, &params)?.map(PointRow::Lite));
        }
        Ok(bind_all(sqlx::query(sql), &params)
            .fetch_optional(&self.read)
            .await?
            .map(PointRow::Any))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_by_number_and_reads_each_type_like_sqlx() {
        let dir = std::env::temp_dir().join(format!("kura-point-read-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let db = Db::connect(&url).await.unwrap();
        assert!(db.point_reads.is_some());
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, o TEXT, b BLOB)")
            .execute(&db.write)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('a', 7, NULL, x'0102'), ('b', 0, 'x', x'')")
            .execute(&db.write)
            .await
            .unwrap();
        // `$2` appears before `$1`: each is still bound to its own value.
        let sql = "SELECT k, n, o, b FROM t WHERE n = $2 AND k = $1";
        let row = db
            .fetch_point(sql, vec!["a".to_string().into(), 7i64.into()])
            .await
            .unwrap()
            .expect("row");
        assert_eq!(row.str("k").unwrap(), "a");
        assert_eq!(row.int("n").unwrap(), 7);
        assert!(row.flag("n").unwrap());
        assert_eq!(row.opt_str("o").unwrap(), None);
        assert_eq!(row.bytes("b").unwrap(), vec![1, 2]);
        assert!(row.int("k").is_err(), "a text is not an integer");
        assert!(row.str("missing").is_err());
        // The same statement through sqlx gives the same answers.
        let any = sqlx::query(sql)
            .bind("a")
            .bind(7i64)
            .fetch_one(&db.read)
            .await
            .unwrap();
        assert_eq!(any.str("k").unwrap(), row.str("k").unwrap());
        assert_eq!(any.opt_str("o").unwrap(), row.opt_str("o").unwrap());
        // No row, a NULL parameter, and a write made after the first read is seen.
        let none = db
            .fetch_point(sql, vec!["a".to_string().into(), 8i64.into()])
            .await
            .unwrap();
        assert!(none.is_none());
        let null = db
            .fetch_point(
                "SELECT k FROM t WHERE o IS $1 OR o = $1",
                vec![Param::from(None::<String>)],
            )
            .await
            .unwrap()
            .expect("row with o NULL");
        assert_eq!(null.str("k").unwrap(), "a");
        sqlx::query("UPDATE t SET n = 8 WHERE k = 'a'")
            .execute(&db.write)
            .await
            .unwrap();
        let seen = db
            .fetch_point(sql, vec!["a".to_string().into(), 8i64.into()])
            .await
            .unwrap();
        assert!(
            seen.is_some(),
            "a committed write is visible to the next read"
        );
        // A read-only connection refuses writes.
        assert!(db
            .fetch_point("DELETE FROM t RETURNING k", vec![])
            .await
            .is_err());
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
