//! The in-memory side of the key hierarchy: the master key and a cache of
//! unwrapped organization keys (a cache only: every node can rebuild it from
//! the database and the master key).

use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use kura_core::OrgId;
use kura_crypto::{MasterKey, OrgKey};
use std::collections::HashMap;
use std::sync::RwLock;

pub struct Keyring {
    master: MasterKey,
    cache: RwLock<HashMap<OrgId, OrgKey>>,
}

fn org_context(org: OrgId) -> Vec<u8> {
    format!("kura-org-key:{org}").into_bytes()
}

impl Keyring {
    pub fn new(master: MasterKey) -> Self {
        Self {
            master,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn master_id(&self) -> String {
        self.master.id()
    }

    /// A fresh organization key, wrapped for storage.
    pub fn new_org_key(&self, org: OrgId) -> (OrgKey, Vec<u8>) {
        let key = OrgKey::generate();
        let wrapped = self.master.wrap_org_key(&key, &org_context(org));
        (key, wrapped)
    }

    /// The organization's key, unwrapped from the database on first use.
    pub async fn org_key(&self, db: &Db, org: OrgId) -> Result<OrgKey> {
        if let Some(k) = self.cache.read().ok().and_then(|c| c.get(&org).cloned()) {
            return Ok(k);
        }
        let row = sqlx::query("SELECT wrapped_key FROM orgs WHERE id = $1")
            .bind(org.to_string())
            .fetch_optional(&db.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        let key = self
            .master
            .unwrap_org_key(&row.bytes("wrapped_key")?, &org_context(org))?;
        if let Ok(mut c) = self.cache.write() {
            c.insert(org, key.clone());
        }
        Ok(key)
    }
}

/// Re-wrap every organization key from `old` to `new` in one transaction.
/// Blobs are untouched: their data keys are wrapped by organization keys.
pub async fn rewrap_all(db: &Db, old: &MasterKey, new: &MasterKey) -> Result<usize> {
    let mut tx = db.write.begin().await?;
    let rows = sqlx::query("SELECT id, wrapped_key FROM orgs")
        .fetch_all(&mut *tx)
        .await?;
    for r in &rows {
        let org: OrgId = r.id("id")?;
        let key = old.unwrap_org_key(&r.bytes("wrapped_key")?, &org_context(org))?;
        let wrapped = new.wrap_org_key(&key, &org_context(org));
        sqlx::query("UPDATE orgs SET wrapped_key = $1, master_key_id = $2 WHERE id = $3")
            .bind(wrapped)
            .bind(new.id())
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(rows.len())
}

/// The master key ids that wrapped the organization keys now stored.
pub async fn master_ids_in_use(db: &Db) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT master_key_id FROM orgs")
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(|r| r.str("master_key_id")).collect()
}
