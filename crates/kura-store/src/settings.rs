//! Small platform-wide values (cursors, leases) in the `settings` table.

use crate::db::{Db, RowExt};
use crate::error::Result;

pub async fn get(db: &Db, key: &str) -> Result<Option<String>> {
    sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.read)
        .await?
        .map(|r| r.str("value"))
        .transpose()
}

/// Compare-and-set: replace `old` by `new` (with `old` None: create). True
/// when this call made the change, false when someone else got there first.
pub async fn compare_and_set(db: &Db, key: &str, old: Option<&str>, new: &str) -> Result<bool> {
    let n = match old {
        Some(o) => sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
            .bind(new)
            .bind(key)
            .bind(o)
            .execute(&db.write)
            .await?
            .rows_affected(),
        // A concurrent insert of the same key fails on the primary key.
        None => sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(new)
            .execute(&db.write)
            .await
            .map(|r| r.rows_affected())
            .unwrap_or(0),
    };
    Ok(n == 1)
}
