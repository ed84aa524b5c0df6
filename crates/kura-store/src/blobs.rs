//! The encrypted blob store over `object_store`: the local filesystem by
//! default, any S3-compatible store later through the same trait. Object
//! names are derived only from random blob ids, never from user input.

use crate::error::Result;
use futures_util::StreamExt;
use kura_core::BlobId;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, WriteMultipart};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

/// Reads up to this many bytes run on the caller's thread (one or two
/// chunks: small files and the first piece of a range).
const INLINE_READ_MAX: usize = 128 * 1024;

/// Bytes per multipart part (S3's minimum is 5 MiB; the S3 backend will
/// set its own). Parts hold pooled transfer buffers until written, so
/// smaller parts keep fewer of them in flight.
pub const PART_SIZE: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// Set for the local backend: lets us fsync finished blobs and sweep
    /// staging files that an interrupted process left behind.
    local_root: Option<PathBuf>,
}

pub struct BlobInfo {
    pub id: BlobId,
    pub age_secs: i64,
}

impl BlobStore {
    pub fn local(root: PathBuf) -> Result<Self> {
        let io =
            |e: std::io::Error| crate::StoreError::Internal(format!("{}: {e}", root.display()));
        std::fs::create_dir_all(&root).map_err(io)?;
        // Every folder a blob can land in (the first two hex digits of its
        // random id), made durable once: a committed blob then never
        // depends on a folder entry that a crash could still lose.
        for b in 0..=255u8 {
            std::fs::create_dir_all(root.join(format!("{b:02x}"))).map_err(io)?;
        }
        std::fs::File::open(&root)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        let fs = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Self {
            inner: Arc::new(fs),
            local_root: Some(root),
        })
    }

    fn path(id: BlobId) -> ObjPath {
        let s = id.to_string();
        ObjPath::from(format!("{}/{}", &s[..2], s))
    }

    /// The local backend's file for `id` (the same layout as [`Self::path`]).
    fn local_file(&self, id: BlobId) -> Option<PathBuf> {
        let s = id.to_string();
        Some(self.local_root.as_ref()?.join(&s[..2]).join(&s))
    }

    /// The local backend's staging file and final file for `id`. The
    /// staging name has a '#': `sweep_staging` removes it if a crash leaves
    /// it behind, and `list` skips it (not a blob id).
    pub(crate) fn local_staging(&self, id: BlobId) -> Option<(PathBuf, PathBuf)> {
        let file = self.local_file(id)?;
        let mut staging = file.clone().into_os_string();
        staging.push("#whole");
        Some((PathBuf::from(staging), file))
    }

    /// Start a multipart write of a new blob on a store other than the
    /// local one (see `blob_stream`); finish with `WriteMultipart::finish` (see `BlobStream::finish`).
    pub(crate) async fn writer(&self, id: BlobId) -> Result<WriteMultipart> {
        let upload = self.inner.put_multipart(&Self::path(id)).await?;
        Ok(WriteMultipart::new_with_chunk_size(upload, PART_SIZE))
    }

    /// Write a whole blob at once, durably: for bodies that fit in one
    /// sealing batch, which are most files. On the local backend this is
    /// one blocking task (write a staging file, sync it, rename it into
    /// place, sync the folder) where the multipart path takes five
    /// hand-offs between threads; elsewhere it is one `put`.
    pub async fn put_whole(&self, id: BlobId, sealed: Vec<u8>) -> Result<()> {
        let Some((staging, file)) = self.local_staging(id) else {
            let payload = object_store::PutPayload::from(crate::bufpool::into_bytes(sealed));
            self.inner.put(&Self::path(id), payload).await?;
            return Ok(());
        };
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let dir = file.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
            let mut f = create_staging(&staging)?;
            let written = f
                .write_all(&sealed)
                .and_then(|()| f.sync_all())
                .and_then(|()| std::fs::rename(&staging, &file));
            crate::bufpool::give(sealed);
            if let Err(e) = written {
                let _ = std::fs::remove_file(&staging);
                return Err(e);
            }
            // The caller never learns this id on an error: remove the blob.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&file);
                })
        })
        .await
        .map_err(|e| crate::StoreError::Internal(e.to_string()))?
        .map_err(|e| crate::StoreError::Internal(format!("write blob {id}: {e}")))
    }

    /// Read the ciphertext bytes in `range` into `buf` (emptied first),
    /// reusing its memory; fewer bytes come back if the blob is shorter.
    /// The local backend reads the file directly on a blocking thread.
    pub async fn read_into(
        &self,
        id: BlobId,
        range: Range<u64>,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| crate::StoreError::Internal("read range too large".into()))?;
        buf.clear();
        let Some(file) = self.local_file(id) else {
            buf.extend_from_slice(&self.inner.get_range(&Self::path(id), range).await?);
            return Ok(buf);
        };
        let read = move || -> std::io::Result<Vec<u8>> {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&file)?;
            buf.resize(len, 0);
            let mut got = 0;
            while got < len {
                match f.read_at(&mut buf[got..], range.start + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(got);
            Ok(buf)
        };
        // A small read is one page-cache copy, cheaper than the two thread
        // hand-offs of a blocking task (see `point_read` for the same trade).
        let result = if len <= INLINE_READ_MAX {
            read()
        } else {
            tokio::task::spawn_blocking(read)
                .await
                .map_err(|e| crate::StoreError::Internal(e.to_string()))?
        };
        // A missing blob under an existing version is damage, not a 404.
        result.map_err(|e| crate::StoreError::Internal(format!("read blob {id}: {e}")))
    }

    pub async fn delete(&self, id: BlobId) -> Result<()> {
        match self.inner.delete(&Self::path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn exists(&self, id: BlobId) -> Result<Option<u64>> {
        match self.inner.head(&Self::path(id)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob in the store (unknown names are skipped).
    pub async fn list(&self) -> Result<Vec<BlobInfo>> {
        let now = std::time::SystemTime::now();
        let mut out = Vec::new();
        let mut s = self.inner.list(None);
        while let Some(m) = s.next().await {
            let m = m?;
            let Some(id) = m.location.filename().and_then(|f| f.parse::<BlobId>().ok()) else {
                continue;
            };
            let modified: std::time::SystemTime = m.last_modified.into();
            let age = now
                .duration_since(modified)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            out.push(BlobInfo { id, age_secs: age });
        }
        Ok(out)
    }

    /// Remove staging files of multipart writes that never completed
    /// (a crashed or killed process). Only files older than `min_age_secs`.
    pub fn sweep_staging(&self, min_age_secs: u64) -> usize {
        let Some(root) = &self.local_root else {
            return 0;
        };
        let mut removed = 0;
        let Ok(dirs) = std::fs::read_dir(root) else {
            return 0;
        };
        for dir in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let is_staging = name.to_string_lossy().contains('#');
                let old = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e.as_secs() >= min_age_secs);
                if is_staging && old && std::fs::remove_file(f.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    pub async fn ping(&self) -> Result<()> {
        let mut s = self.inner.list(None);
        if let Some(Err(e)) = s.next().await {
            return Err(e.into());
        }
        Ok(())
    }
}

/// Create a staging file; if its folder was removed since start, make the
/// folder again, durably (the root synced), and retry.
pub(crate) fn create_staging(staging: &std::path::Path) -> std::io::Result<std::fs::File> {
    match std::fs::File::create_new(staging) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = staging.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
            std::fs::create_dir_all(dir)?;
            if let Some(root) = dir.parent() {
                std::fs::File::open(root)?.sync_all()?;
            }
            std::fs::File::create_new(staging)
        }
        other => other,
    }
}
