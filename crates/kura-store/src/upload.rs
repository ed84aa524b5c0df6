//! File bytes in and out: a body stream is cut into fixed chunks, each sealed
//! with the blob's data key and written to the blob store as it arrives
//! (memory stays constant whatever the size); a read fetches only the
//! ciphertext chunks that cover the requested range, authenticates and
//! decrypts each, and checks the whole-file digest when it reads it all.

use crate::blobs::BlobStore;
use crate::error::{Result, StoreError};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use kura_core::BlobId;
use kura_crypto::{
    ChunkCipher, ChunkLayout, DataKey, Digest, OrgKey, Sha256, CHUNK_SIZE, TAG_SIZE,
};
use std::ops::Range;

/// What the metadata store keeps about an encrypted blob.
#[derive(Debug, Clone)]
pub struct BlobMeta {
    pub id: BlobId,
    pub size: u64,
    pub sha256: String,
    /// The digest reads check (hex); None for blobs stored before it was
    /// recorded, which are checked against `sha256`.
    pub blake3: Option<String>,
    pub wrapped_key: Vec<u8>,
    pub nonce_prefix: Vec<u8>,
}

pub fn blob_context(id: BlobId) -> Vec<u8> {
    format!("kura-blob:{id}").into_bytes()
}

pub struct Limits {
    pub max_bytes: u64,
    pub quota_remaining: u64,
}

/// Encrypt `body` into a new blob. On any error the partial blob is removed.
pub async fn encrypt_to_blob<S, E>(
    blobs: &BlobStore,
    org_key: &OrgKey,
    body: S,
    limits: Limits,
) -> Result<BlobMeta>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let id = BlobId::random();
    let key = DataKey::generate();
    let ctx = blob_context(id);
    let (cipher, nonce_prefix) = ChunkCipher::new_for_blob(&key, &ctx);
    let mut body = body;
    let mut state = Sealer {
        cipher: std::sync::Arc::new(cipher),
        index: 0,
        hasher: Sha256::new(),
        checker: blake3::Hasher::new(),
        size: 0,
        inflight: None,
    };
    // The first batch decides: a body that ends within it (most files) is
    // sealed and written in one step; a longer one streams batch by batch
    // (`blob_stream`). Nothing exists in the store until then, so a refusal
    // here (too large, quota, interrupted) leaves nothing to remove.
    let mut pending = crate::bufpool::take(SEAL_BATCH + CHUNK_SIZE);
    let ended = fill(&mut body, &mut state, &mut pending, &limits).await?;
    if ended {
        let sealed = if pending.len() <= INLINE_SEAL_MAX {
            seal_batch(&state.cipher, 0, pending, true)
        } else {
            let cipher = state.cipher.clone();
            tokio::task::spawn_blocking(move || seal_batch(&cipher, 0, pending, true))
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?
        }
        .map_err(StoreError::Internal)?;
        blobs.put_whole(id, sealed).await?;
    } else {
        let mut writer = blobs.stream(id).await?;
        if let Err(e) = pump(&mut writer, &mut state, body, pending, &limits).await {
            writer.abort().await;
            return Err(e);
        }
        writer.finish().await?;
    }
    Ok(BlobMeta {
        id,
        size: state.size,
        sha256: hex::encode(state.hasher.finalize()),
        blake3: Some(state.checker.finalize().to_hex().to_string()),
        wrapped_key: org_key.wrap_data_key(&key, &ctx),
        nonce_prefix,
    })
}

/// Plaintext sealed on the caller's thread at most: AES-GCM seals 64 KiB in
/// tens of microseconds, less than a hand-off to a blocking thread.
const INLINE_SEAL_MAX: usize = 64 * 1024;

/// Plaintext sealed per step (16 chunks = 1 MiB). Sealing runs on a
/// blocking thread while the next batch is being received.
const SEAL_BATCH: usize = 16 * CHUNK_SIZE;

type Sealed = tokio::task::JoinHandle<std::result::Result<Vec<u8>, String>>;

struct Sealer {
    cipher: std::sync::Arc<ChunkCipher>,
    index: u64,
    hasher: Sha256,
    /// BLAKE3 of the plaintext, what reads check (see `BlobMeta::blake3`).
    checker: blake3::Hasher,
    size: u64,
    inflight: Option<Sealed>,
}

/// Seal `data` as chunks `first..`; the final chunk of the blob (`last`)
/// is flagged so truncation is detected. Empty data is one empty chunk.
/// Both buffers come from and go back to the transfer pool.
fn seal_batch(
    cipher: &ChunkCipher,
    first: u64,
    data: Vec<u8>,
    last: bool,
) -> std::result::Result<Vec<u8>, String> {
    let n = if data.is_empty() {
        1
    } else {
        data.len().div_ceil(CHUNK_SIZE)
    };
    let mut out = crate::bufpool::take(data.len() + n * TAG_SIZE);
    for k in 0..n {
        let piece = data
            .get(k * CHUNK_SIZE..((k + 1) * CHUNK_SIZE).min(data.len()))
            .unwrap_or(&[]);
        let start = out.len();
        out.extend_from_slice(piece);
        cipher
            .seal_at(first + k as u64, last && k + 1 == n, &mut out, start)
            .map_err(|e| e.to_string())?;
    }
    crate::bufpool::give(data);
    Ok(out)
}

impl Sealer {
    /// Write out the batch sealed before, then start sealing `data`.
    async fn submit(
        &mut self,
        w: &mut crate::blob_stream::BlobStream,
        data: Option<Vec<u8>>,
        last: bool,
    ) -> Result<()> {
        if let Some(job) = self.inflight.take() {
            let sealed = job
                .await
                .map_err(|e| StoreError::Internal(e.to_string()))?
                .map_err(StoreError::Internal)?;
            w.put(sealed).await?;
        }
        if let Some(data) = data {
            let chunks = if data.is_empty() {
                1
            } else {
                data.len().div_ceil(CHUNK_SIZE)
            } as u64;
            let (cipher, first) = (self.cipher.clone(), self.index);
            self.index += chunks;
            self.inflight = Some(tokio::task::spawn_blocking(move || {
                seal_batch(&cipher, first, data, last)
            }));
        }
        Ok(())
    }
}

/// Read `body` into `pending` until it holds more than one batch (false)
/// or the body ends (true), enforcing the limits and hashing the plaintext.
async fn fill<S, E>(
    body: &mut S,
    st: &mut Sealer,
    pending: &mut Vec<u8>,
    limits: &Limits,
) -> Result<bool>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    while pending.len() <= SEAL_BATCH {
        let Some(piece) = body.next().await else {
            return Ok(true);
        };
        let piece = piece.map_err(|e| {
            tracing::debug!(error = %e, "upload body ended early");
            StoreError::Interrupted
        })?;
        st.size += piece.len() as u64;
        if st.size > limits.max_bytes {
            return Err(StoreError::TooLarge(limits.max_bytes));
        }
        if st.size > limits.quota_remaining {
            return Err(StoreError::QuotaExceeded);
        }
        st.hasher.update(&piece);
        st.checker.update(&piece);
        pending.extend_from_slice(&piece);
    }
    Ok(false)
}

/// Stream the rest of a body longer than one batch; `pending` holds what
/// `fill` read so far.
async fn pump<S, E>(
    w: &mut crate::blob_stream::BlobStream,
    st: &mut Sealer,
    mut body: S,
    mut pending: Vec<u8>,
    limits: &Limits,
) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    loop {
        // Strictly more than a batch: the batch is not the end of the blob.
        while pending.len() > SEAL_BATCH {
            let mut rest = crate::bufpool::take(SEAL_BATCH + CHUNK_SIZE);
            rest.extend_from_slice(&pending[SEAL_BATCH..]);
            pending.truncate(SEAL_BATCH);
            let batch = std::mem::replace(&mut pending, rest);
            st.submit(w, Some(batch), false).await?;
        }
        if fill(&mut body, st, &mut pending, limits).await? {
            break;
        }
    }
    st.submit(w, Some(pending), true).await?;
    st.submit(w, None, true).await
}

/// A stream of plaintext bytes; an integrity failure ends it with an
/// `InvalidData` error (the client sees a broken transfer, never bad bytes).
pub type PlainStream = BoxStream<'static, std::result::Result<Bytes, std::io::Error>>;

pub struct OpenedRange {
    /// The first piece, already authenticated (so a corrupt blob fails
    /// before any response header is sent).
    pub first: Bytes,
    /// The rest of the range; None when `first` is all of it (a small file
    /// then goes out as one buffer, headers and body in one write).
    pub rest: Option<PlainStream>,
}

/// Chunks fetched and decrypted per step: 1 MiB of plaintext, so a big
/// download makes few storage requests and few hand-offs between threads.
const BATCH_CHUNKS: u64 = 16;

/// Open `range` (plaintext offsets, `start < end` unless the file is empty)
/// of the blob. The whole-file digest is verified when the range is the
/// whole file. After the first batch, a task reads and decrypts ahead of the
/// client by two batches.
pub async fn open_range(
    blobs: &BlobStore,
    org_key: &OrgKey,
    meta: &BlobMeta,
    range: Range<u64>,
) -> Result<OpenedRange> {
    let ctx = blob_context(meta.id);
    let key = org_key.unwrap_data_key(&meta.wrapped_key, &ctx)?;
    let cipher = std::sync::Arc::new(ChunkCipher::open(&key, &meta.nonce_prefix, &ctx));
    let layout = ChunkLayout::new(meta.size);
    let first = layout.chunk_of(range.start);
    let last = if range.end == 0 {
        0
    } else {
        layout.chunk_of(range.end - 1)
    };
    let whole = range.start == 0 && range.end == meta.size;
    let mut reader = ChunkReader {
        blobs: blobs.clone(),
        cipher,
        layout,
        next: first,
        last,
        range,
        hasher: whole.then(|| Hashing::Idle(PlainDigest::for_blob(meta))),
        expected: meta.blake3.clone().unwrap_or_else(|| meta.sha256.clone()),
        blob: meta.id,
    };
    let first_piece = match reader.next_batch().await {
        Ok(Some(b)) => b,
        Ok(None) => Bytes::new(),
        Err(e) => return Err(StoreError::Corrupt(e.to_string())),
    };
    if reader.next > reader.last {
        return Ok(OpenedRange {
            first: first_piece,
            rest: None,
        });
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        loop {
            match reader.next_batch().await {
                Ok(Some(b)) => {
                    if tx.send(Ok(b)).await.is_err() {
                        break; // the client went away
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
    });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed();
    Ok(OpenedRange {
        first: first_piece,
        rest: Some(rest),
    })
}

struct ChunkReader {
    blobs: BlobStore,
    cipher: std::sync::Arc<ChunkCipher>,
    layout: ChunkLayout,
    next: u64,
    last: u64,
    range: Range<u64>,
    hasher: Option<Hashing>,
    expected: String,
    blob: BlobId,
}

/// The whole-file digest a read checks: BLAKE3 where the blob has one
/// (several times faster than SHA-256), SHA-256 for blobs stored before.
enum PlainDigest {
    Blake3(Box<blake3::Hasher>),
    Sha256(Sha256),
}

impl PlainDigest {
    fn for_blob(meta: &BlobMeta) -> Self {
        match meta.blake3 {
            Some(_) => PlainDigest::Blake3(Box::default()),
            None => PlainDigest::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            PlainDigest::Blake3(h) => {
                h.update(data);
            }
            PlainDigest::Sha256(h) => h.update(data),
        }
    }

    fn finish_hex(self) -> String {
        match self {
            PlainDigest::Blake3(h) => h.finalize().to_hex().to_string(),
            PlainDigest::Sha256(h) => hex::encode(h.finalize()),
        }
    }
}

/// The whole-file digest, computed on another thread while the next batch
/// is read and decrypted.
enum Hashing {
    Idle(PlainDigest),
    Busy(tokio::task::JoinHandle<PlainDigest>),
}

impl Hashing {
    async fn take(self) -> std::result::Result<PlainDigest, std::io::Error> {
        match self {
            Hashing::Idle(h) => Ok(h),
            Hashing::Busy(j) => j.await.map_err(|e| std::io::Error::other(e.to_string())),
        }
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// What one decryption step needs and returns (moved to a blocking thread).
struct Batch {
    cipher: std::sync::Arc<ChunkCipher>,
    layout: ChunkLayout,
    first: u64,
    last: u64,
    range: Range<u64>,
    /// The chunks' ciphertext, in a pooled buffer that the plaintext
    /// replaces in place.
    ciphertext: Vec<u8>,
    blob: BlobId,
}

fn decrypt_batch(b: Batch) -> std::result::Result<Bytes, std::io::Error> {
    let mut data = b.ciphertext;
    // Each chunk is opened where it lies and the wanted part of its
    // plaintext moved down to `write`, which never passes the chunk being
    // read (plaintext is shorter than ciphertext and tag).
    let mut offset = 0usize;
    let mut write = 0usize;
    for idx in b.first..=b.last {
        let is_last = b.layout.is_last(idx);
        let plain_len = if is_last {
            b.layout.size - idx * CHUNK_SIZE as u64
        } else {
            CHUNK_SIZE as u64
        } as usize;
        let end = offset + plain_len + TAG_SIZE;
        let Some(chunk) = data.get_mut(offset..end) else {
            return Err(invalid(format!(
                "blob {} is truncated at chunk {idx}",
                b.blob
            )));
        };
        let n = b
            .cipher
            .open_in(idx, is_last, chunk)
            .map_err(|e| invalid(format!("blob {}: {e}", b.blob)))?;
        let chunk_start = idx * CHUNK_SIZE as u64;
        let from = b.range.start.saturating_sub(chunk_start) as usize;
        let to = (b.range.end.saturating_sub(chunk_start) as usize).min(n);
        if from < to {
            data.copy_within(offset + from..offset + to, write);
            write += to - from;
        }
        offset = end;
    }
    data.truncate(write);
    Ok(crate::bufpool::into_bytes(data))
}

impl ChunkReader {
    async fn next_batch(&mut self) -> std::result::Result<Option<Bytes>, std::io::Error> {
        if self.next > self.last {
            return Ok(None);
        }
        let first = self.next;
        let last = (first + BATCH_CHUNKS - 1).min(self.last);
        let ct_range = self.layout.ciphertext_range(first, last);
        let buf = crate::bufpool::take((ct_range.end - ct_range.start) as usize);
        let ciphertext = self
            .blobs
            .read_into(self.blob, ct_range, buf)
            .await
            .map_err(|e| std::io::Error::other(format!("blob {}: {e}", self.blob)))?;
        let batch = Batch {
            cipher: self.cipher.clone(),
            layout: self.layout,
            first,
            last,
            range: self.range.clone(),
            ciphertext,
            blob: self.blob,
        };
        // A chunk or two is cheaper to decrypt here than to hand off.
        let bytes = if last - first < 2 {
            decrypt_batch(batch)?
        } else {
            tokio::task::spawn_blocking(move || decrypt_batch(batch))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??
        };
        self.next = last + 1;
        if let Some(state) = self.hasher.take() {
            // The range is the whole file here, so `bytes` is the plaintext in order.
            let mut h = state.take().await?;
            let piece = bytes.clone();
            if self.layout.is_last(last) {
                h.update(&piece);
                if h.finish_hex() != self.expected {
                    return Err(invalid(format!(
                        "blob {}: plaintext digest mismatch",
                        self.blob
                    )));
                }
            } else {
                self.hasher = Some(Hashing::Busy(tokio::task::spawn_blocking(move || {
                    h.update(&piece);
                    h
                })));
            }
        }
        Ok(Some(bytes))
    }
}

/// Read and verify a whole blob (fsck): every chunk's authentication, the
/// digest reads check, and SHA-256 (the digest clients see) as well.
/// Returns Err with a reason if anything fails.
pub async fn verify_blob(
    blobs: &BlobStore,
    org_key: &OrgKey,
    meta: &BlobMeta,
) -> std::result::Result<(), String> {
    let opened = open_range(blobs, org_key, meta, 0..meta.size)
        .await
        .map_err(|e| e.to_string())?;
    // Reads check SHA-256 themselves for blobs without BLAKE3.
    let mut sha = meta.blake3.is_some().then(Sha256::new);
    let mut feed = |piece: &[u8]| {
        if let Some(h) = sha.as_mut() {
            h.update(piece);
        }
    };
    feed(&opened.first);
    if let Some(mut rest) = opened.rest {
        while let Some(piece) = rest.next().await {
            feed(&piece.map_err(|e| e.to_string())?);
        }
    }
    if sha.is_some_and(|h| hex::encode(h.finalize()) != meta.sha256) {
        return Err(format!("blob {}: plaintext SHA-256 mismatch", meta.id));
    }
    Ok(())
}
