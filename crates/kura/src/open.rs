//! Opening the data folder: master key, database (migrated), blob store.
//!
//! Master-key rotation writes the new key to `<key>.next` before re-wrapping
//! the organization keys, so a crash at any point leaves a key that opens the
//! database; opening finishes an interrupted rotation.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use kura_crypto::MasterKey;
use kura_store::{AuditSink, BlobStore, Db, Keyring, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn next_key_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod 700 {}", dir.display()))?;
    }
    Ok(())
}

/// Load the master key that matches the database, finishing an interrupted rotation.
pub async fn master_key(path: &Path, db: &Db, create: bool) -> Result<(MasterKey, bool)> {
    let next = next_key_path(path);
    let in_use = kura_store::keyring::master_ids_in_use(db).await?;
    if next.exists() {
        let n = MasterKey::load(&next)?;
        if in_use.iter().any(|id| *id == n.id()) {
            std::fs::rename(&next, path).context("finishing master key rotation")?;
            tracing::warn!("finished an interrupted master key rotation");
            return Ok((n, false));
        }
        std::fs::remove_file(&next).ok();
    }
    let (key, created) = if create {
        MasterKey::load_or_create(path)?
    } else {
        (MasterKey::load(path)?, false)
    };
    if let Some(other) = in_use.iter().find(|id| **id != key.id()) {
        bail!("the master key {} (id {}) does not match the database (organizations wrapped with {other})", path.display(), key.id());
    }
    Ok((key, created))
}

pub async fn store(c: &Config, create_key: bool) -> Result<Store> {
    ensure_private_dir(&c.data_dir)?;
    let url = c.database_url();
    let db = Db::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", crate::config::redact_url(&url)))?;
    let applied = db.migrate().await.context("migrating the database")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "database migrated");
    }
    let (key, created) = master_key(&c.master_key_path(), &db, create_key).await?;
    if created {
        tracing::warn!(path = %c.master_key_path().display(), "created a new master key; back it up: without it the data cannot be read");
    }
    let blobs = BlobStore::local(c.data_dir.join("blobs"))?;
    let audit = AuditSink::start(db.clone());
    Ok(Store {
        db,
        blobs,
        keys: Arc::new(Keyring::new(key)),
        audit,
    })
}
