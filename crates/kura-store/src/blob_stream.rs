//! Writing a large blob batch by batch.
//!
//! On S3-compatible stores this is `object_store`'s multipart upload. On the
//! local store the blob is written here, into a staging file next to its
//! final name, because a blob must be on disk before its upload is answered
//! and `object_store` offers no way to sync: a 1 GiB upload then ended with
//! one `fsync` of 1 GiB, which took a third of the upload's time on this
//! machine (bench/RESULTS.md, run 9). Here the data already written is
//! synced in the background every `SYNC_EVERY` bytes while the rest
//! arrives, so the final sync has little left to do.

use crate::blobs::BlobStore;
use crate::error::{Result, StoreError};
use kura_core::BlobId;
use object_store::WriteMultipart;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes written between two background syncs of a local blob.
const SYNC_EVERY: u64 = 32 * 1024 * 1024;

/// A blob being written; finish with [`BlobStream::finish`] or
/// [`BlobStream::abort`].
pub enum BlobStream {
    Local(LocalStream),
    Store(WriteMultipart),
}

pub struct LocalStream {
    file: Arc<std::fs::File>,
    /// None once `finish` or `abort` has taken charge of the file.
    staging: Option<PathBuf>,
    dest: PathBuf,
    offset: u64,
    synced_to: u64,
    /// The previous batch's write: at most one in flight.
    writing: Option<JoinHandle<std::io::Result<()>>>,
    /// A background data sync: at most one in flight.
    syncing: Option<JoinHandle<std::io::Result<()>>>,
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Internal(format!("{what}: {e}"))
}

async fn joined(job: Option<JoinHandle<std::io::Result<()>>>, what: &str) -> Result<()> {
    match job {
        Some(j) => j
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(io_error(what)),
        None => Ok(()),
    }
}

impl BlobStore {
    /// Start writing blob `id` in batches.
    pub async fn stream(&self, id: BlobId) -> Result<BlobStream> {
        let Some((staging, dest)) = self.local_staging(id) else {
            return Ok(BlobStream::Store(self.writer(id).await?));
        };
        let open = staging.clone();
        let file = tokio::task::spawn_blocking(move || crate::blobs::create_staging(&open))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(io_error("create blob"))?;
        Ok(BlobStream::Local(LocalStream {
            file: Arc::new(file),
            staging: Some(staging),
            dest,
            offset: 0,
            synced_to: 0,
            writing: None,
            syncing: None,
        }))
    }
}

impl BlobStream {
    /// Append a sealed batch (a pooled buffer, returned to the pool once
    /// written). Waits for the previous batch's write, not for this one.
    pub async fn put(&mut self, sealed: Vec<u8>) -> Result<()> {
        let s = match self {
            BlobStream::Store(w) => {
                w.wait_for_capacity(1).await?;
                // No copy: the part holds the pooled buffer until it is written.
                w.put(crate::bufpool::into_bytes(sealed));
                return Ok(());
            }
            BlobStream::Local(s) => s,
        };
        if let Err(e) = joined(s.writing.take(), "write blob").await {
            crate::bufpool::give(sealed);
            return Err(e);
        }
        let (file, at) = (s.file.clone(), s.offset);
        s.offset += sealed.len() as u64;
        s.writing = Some(tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let written = file.write_all_at(&sealed, at);
            crate::bufpool::give(sealed);
            written
        }));
        let finished_sync = s.syncing.as_ref().is_none_or(|j| j.is_finished());
        if finished_sync && s.offset - s.synced_to >= SYNC_EVERY {
            joined(s.syncing.take(), "sync blob").await?;
            // Everything up to the write before this one is in the page
            // cache; syncing it now overlaps the disk with the network.
            s.synced_to = at;
            let file = s.file.clone();
            s.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        }
        Ok(())
    }

    /// Complete the blob and make it durable: all data synced, then renamed
    /// to its final name, then its folder synced.
    pub async fn finish(self) -> Result<()> {
        let mut s = match self {
            // The store makes a completed upload durable.
            BlobStream::Store(w) => {
                w.finish().await?;
                return Ok(());
            }
            BlobStream::Local(s) => s,
        };
        joined(s.writing.take(), "write blob").await?;
        joined(s.syncing.take(), "sync blob").await?;
        let staging = s
            .staging
            .take()
            .ok_or_else(|| StoreError::Internal("blob stream already finished".into()))?;
        let (file, dest) = (s.file.clone(), s.dest.clone());
        // From here the blocking task cleans up after itself, even if this
        // request is cancelled meanwhile.
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Err(e) = file
                .sync_all()
                .and_then(|()| std::fs::rename(&staging, &dest))
            {
                let _ = std::fs::remove_file(&staging);
                return Err(e);
            }
            let synced = dest
                .parent()
                .ok_or(std::io::Error::from(std::io::ErrorKind::InvalidInput))
                .and_then(std::fs::File::open)
                .and_then(|d| d.sync_all());
            if synced.is_err() {
                // The caller never learns this id on an error: remove it.
                let _ = std::fs::remove_file(&dest);
            }
            synced
        })
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
        .map_err(io_error("finish blob"))
    }

    /// Give up: nothing of the blob remains.
    pub async fn abort(self) {
        match self {
            BlobStream::Store(w) => {
                let _ = w.abort().await;
            }
            BlobStream::Local(mut s) => {
                let _ = joined(s.writing.take(), "write blob").await;
                let _ = joined(s.syncing.take(), "sync blob").await;
                if let Some(staging) = s.staging.take() {
                    let _ =
                        tokio::task::spawn_blocking(move || std::fs::remove_file(staging)).await;
                }
            }
        }
    }
}

impl Drop for LocalStream {
    /// A stream dropped without `finish` or `abort` (its request was
    /// cancelled) leaves no staging file behind. Removing it while a write
    /// is still running is safe: the open file keeps the data until closed.
    fn drop(&mut self) {
        if let Some(staging) = self.staging.take() {
            let _ = std::fs::remove_file(staging);
        }
    }
}
