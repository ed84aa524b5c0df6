//! Integrity checks and housekeeping: every blob the metadata references
//! must exist, authenticate chunk by chunk and match its recorded digest;
//! blobs nobody references (an interrupted upload, a crash between the blob
//! write and the metadata commit) are swept once they are old enough that no
//! upload can still be about to commit them.

use crate::db::RowExt;
use crate::error::Result;
use crate::upload::{verify_blob, BlobMeta};
use crate::Store;
use kura_core::{BlobId, OrgId};
use kura_crypto::ChunkLayout;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub missing: Vec<String>,
    pub corrupt: Vec<String>,
    pub orphans_removed: u64,
    pub staging_removed: u64,
}

impl FsckReport {
    pub fn healthy(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Remove unreferenced blobs and stale staging files older than `min_age_secs`.
pub async fn sweep(store: &Store, min_age_secs: u64, report: &mut FsckReport) -> Result<()> {
    report.staging_removed += store.blobs.sweep_staging(min_age_secs) as u64;
    let known: HashSet<String> = sqlx::query("SELECT id FROM blobs")
        .fetch_all(&store.db.read)
        .await?
        .iter()
        .map(|r| r.str("id"))
        .collect::<Result<_>>()?;
    for b in store.blobs.list().await? {
        if !known.contains(&b.id.to_string()) && b.age_secs >= min_age_secs as i64 {
            store.blobs.delete(b.id).await?;
            report.orphans_removed += 1;
        }
    }
    Ok(())
}

/// Verify every referenced blob.
pub async fn verify_all(store: &Store, report: &mut FsckReport) -> Result<()> {
    let rows = sqlx::query(
        "SELECT id, org_id, size, wrapped_key, nonce_prefix, sha256, blake3 FROM blobs ORDER BY id",
    )
    .fetch_all(&store.db.read)
    .await?;
    for r in &rows {
        let id: BlobId = r.id("id")?;
        let org: OrgId = r.id("org_id")?;
        let meta = BlobMeta {
            id,
            size: u64::try_from(r.int("size")?).unwrap_or(0),
            sha256: r.str("sha256")?,
            blake3: r.opt_str("blake3")?,
            wrapped_key: r.bytes("wrapped_key")?,
            nonce_prefix: r.bytes("nonce_prefix")?,
        };
        report.blobs_checked += 1;
        match store.blobs.exists(id).await? {
            None => {
                report.missing.push(id.to_string());
                continue;
            }
            Some(len) if len != ChunkLayout::new(meta.size).ciphertext_len() => {
                report
                    .corrupt
                    .push(format!("{id}: stored length {len} does not match"));
                continue;
            }
            Some(_) => {}
        }
        let key = match store.keys.org_key(&store.db, org).await {
            Ok(k) => k,
            Err(e) => {
                report.corrupt.push(format!("{id}: organization key: {e}"));
                continue;
            }
        };
        match verify_blob(&store.blobs, &key, &meta).await {
            Ok(()) => report.bytes_checked += meta.size,
            Err(e) => report.corrupt.push(format!("{id}: {e}")),
        }
    }
    Ok(())
}
