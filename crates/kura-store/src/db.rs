//! Connection pools and migrations for both backends.
//!
//! SQLite allows one writer at a time, so writes go through a pool of one
//! connection (no busy-retry storms) while reads use a wider pool; WAL mode
//! lets readers proceed during a write. PostgreSQL uses one pool for both.

use crate::error::Result;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub write: AnyPool,
    pub read: AnyPool,
    pub backend: Backend,
    /// The SQLite database file, for bulk readers that scan it directly
    /// (audit verification); None for PostgreSQL and in-memory databases.
    pub sqlite_file: Option<std::path::PathBuf>,
    /// Read-only connections to that file for lookups on the request path
    /// (see `point_read`); None where `sqlite_file` is.
    pub point_reads: Option<std::sync::Arc<crate::point_read::LiteReaders>>,
    /// The audit sink's own connection to that file (see `tail_writer`).
    pub tail_writer: Option<std::sync::Arc<crate::tail_writer::TailWriter>>,
    /// The newest audit events, shared by this process's followers of the trail.
    pub recent: std::sync::Arc<tokio::sync::Mutex<crate::audit::RecentEvents>>,
    /// Where uploads queue their commits to share a transaction.
    pub file_commits: std::sync::Arc<std::sync::OnceLock<crate::nodes::FileCommits>>,
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Migrations are paired: every version has a SQLite and a PostgreSQL file.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "user_preferences",
        sqlite: include_str!("../migrations/sqlite/0002_user_preferences.sql"),
        postgres: include_str!("../migrations/postgres/0002_user_preferences.sql"),
    },
    Migration {
        version: 3,
        name: "audit_chain",
        sqlite: include_str!("../migrations/sqlite/0003_audit_chain.sql"),
        postgres: include_str!("../migrations/postgres/0003_audit_chain.sql"),
    },
    Migration {
        version: 4,
        name: "zero_trust",
        sqlite: include_str!("../migrations/sqlite/0004_zero_trust.sql"),
        postgres: include_str!("../migrations/postgres/0004_zero_trust.sql"),
    },
    Migration {
        version: 5,
        name: "password_resets",
        sqlite: include_str!("../migrations/sqlite/0005_password_resets.sql"),
        postgres: include_str!("../migrations/postgres/0005_password_resets.sql"),
    },
    Migration {
        version: 6,
        name: "sso",
        sqlite: include_str!("../migrations/sqlite/0006_sso.sql"),
        postgres: include_str!("../migrations/postgres/0006_sso.sql"),
    },
    Migration {
        version: 7,
        name: "breach",
        sqlite: include_str!("../migrations/sqlite/0007_breach.sql"),
        postgres: include_str!("../migrations/postgres/0007_breach.sql"),
    },
    Migration {
        version: 8,
        name: "audit_tail",
        sqlite: include_str!("../migrations/sqlite/0008_audit_tail.sql"),
        postgres: include_str!("../migrations/postgres/0008_audit_tail.sql"),
    },
    Migration {
        version: 9,
        name: "blob_blake3",
        sqlite: include_str!("../migrations/sqlite/0009_blob_blake3.sql"),
        postgres: include_str!("../migrations/postgres/0009_blob_blake3.sql"),
    },
    Migration {
        version: 10,
        name: "alert_deliveries",
        sqlite: include_str!("../migrations/sqlite/0010_alert_deliveries.sql"),
        postgres: include_str!("../migrations/postgres/0010_alert_deliveries.sql"),
    },
    Migration {
        version: 11,
        name: "audit_binary_hash",
        sqlite: include_str!("../migrations/sqlite/0011_audit_binary_hash.sql"),
        postgres: include_str!("../migrations/postgres/0011_audit_binary_hash.sql"),
    },
];

impl Db {
    /// Connect to `url` (`sqlite://PATH` or `postgres://…`).
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let url = if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            let write = sqlite_pool(&url, 1).await?;
            // WAL is a property of the database file; set it once, on the writer.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&write)
                .await?;
            // Each SQLite connection is a thread; more readers only add context switches on small machines.
            let read = sqlite_pool(&url, 4).await?;
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default();
            let sqlite_file = (!path.is_empty() && !path.contains(":memory:"))
                .then(|| std::path::PathBuf::from(path));
            let point_reads = sqlite_file
                .clone()
                .map(|f| std::sync::Arc::new(crate::point_read::LiteReaders::new(f)));
            let tail_writer = sqlite_file
                .clone()
                .map(|f| std::sync::Arc::new(crate::tail_writer::TailWriter::new(f)));
            Ok(Self {
                write,
                read,
                backend: Backend::Sqlite,
                sqlite_file,
                point_reads,
                tail_writer,
                recent: Default::default(),
                file_commits: Default::default(),
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            Ok(Self {
                write: pool.clone(),
                read: pool,
                backend: Backend::Postgres,
                sqlite_file: None,
                point_reads: None,
                tail_writer: None,
                recent: Default::default(),
                file_commits: Default::default(),
            })
        } else {
            Err(crate::StoreError::Invalid(
                "database URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    /// Apply every migration not yet applied, each in its own transaction.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        // One connection for the whole run; on PostgreSQL it holds an
        // advisory lock so nodes starting together migrate one at a time.
        let mut conn = self.write.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7427383001)")
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_on(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock(7427383001)")
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_on(&self, conn: &mut sqlx::AnyConnection) -> Result<Vec<i64>> {
        use sqlx::Connection;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS kura_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        let done: Vec<i64> = sqlx::query("SELECT version FROM kura_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        let mut applied = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
            let sql = match self.backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            let mut tx = conn.begin().await?;
            tx.execute(sql).await?;
            sqlx::query(
                "INSERT INTO kura_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(crate::time::now_micros())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            applied.push(m.version);
        }
        Ok(applied)
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }
}

async fn sqlite_pool(url: &str, max: u32) -> Result<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        // A local file: no round trip to test a connection before each use
        // (the audit sink takes the writer just to hold it, see `tail_writer`).
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // FULL: a commit is on disk before we answer (durability promise).
                // A 32 MiB page cache (grown only as used) keeps the audit
                // indexes' hot pages in memory: with SQLite's 2 MiB default,
                // every append re-read index pages from the OS. Checkpoints
                // every 8,192 pages (32 MiB of WAL) rather than 1,000: an
                // index page rewritten by many commits is copied back once.
                conn.execute(
                    "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=8192;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

/// Small helpers for reading columns from rows (sqlx's `AnyRow`, and the
/// rows of `point_read`). A row type provides the five typed readers; flags
/// and ids are read through them.
pub trait RowExt {
    fn str(&self, col: &str) -> Result<String>;
    fn opt_str(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }
    fn id<T: std::str::FromStr>(&self, col: &str) -> Result<T> {
        self.str(col)?.parse().map_err(|_| bad_id(col))
    }
    fn opt_id<T: std::str::FromStr>(&self, col: &str) -> Result<Option<T>> {
        match self.opt_str(col)? {
            Some(s) => s.parse().map(Some).map_err(|_| bad_id(col)),
            None => Ok(None),
        }
    }
}

fn bad_id(col: &str) -> crate::StoreError {
    crate::StoreError::Internal(format!("column {col} holds a malformed id"))
}

impl RowExt for AnyRow {
    fn str(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn opt_str(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
    fn bytes(&self, col: &str) -> Result<Vec<u8>> {
        Ok(self.try_get(col)?)
    }
}

/// A fresh, migrated SQLite database in its own temporary folder
/// (`kura-<name>-<pid>`), for unit tests; the caller removes the folder.
#[cfg(test)]
pub(crate) async fn test_db(name: &str) -> (Db, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("kura-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = Db::connect(&format!("sqlite://{}", dir.join("t.db").display()))
        .await
        .expect("open");
    db.migrate().await.expect("migrate");
    (db, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_paired_and_ordered() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(!m.sqlite.trim().is_empty() && !m.postgres.trim().is_empty());
            // The audit tail is how SQLite's single writer keeps up; PostgreSQL
            // appends to the trail directly.
            if m.name == "audit_tail" {
                continue;
            }
            let count = |s: &str, what: &str| s.matches(what).count();
            for what in [
                "CREATE TABLE",
                "ALTER TABLE",
                "CREATE INDEX",
                "CREATE UNIQUE INDEX",
                "TRIGGER",
            ] {
                assert_eq!(
                    count(m.sqlite, what),
                    count(m.postgres, what),
                    "migration {} differs in {what}",
                    m.name
                );
            }
        }
    }
}
