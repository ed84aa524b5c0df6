//! File bytes in and out: a body stream is cut into fixed chunks, each sealed
//! with the blob's data key and written to the blob store as it arrives
//! (memory stays constant whatever the size); a read fetches only the
//! ciphertext chunks that cover the requested range, authenticates and
//! decrypts each, and checks the whole-file digest when it reads it all.

use crate::blobs::BlobStore;
use crate::error::{Result, StoreError};
use bytes::{Bytes, BytesMut};
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
    let mut writer = blobs.writer(id).await?;
    let mut state = Sealer {
        cipher,
        index: 0,
        hasher: Sha256::new(),
        size: 0,
    };
    let result = pump(&mut writer, &mut state, body, &limits).await;
    match result {
        Ok(()) => {
            blobs.finish(id, writer).await?;
            Ok(BlobMeta {
                id,
                size: state.size,
                sha256: hex::encode(state.hasher.finalize()),
                wrapped_key: org_key.wrap_data_key(&key, &ctx),
                nonce_prefix,
            })
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

struct Sealer {
    cipher: ChunkCipher,
    index: u64,
    hasher: Sha256,
    size: u64,
}

impl Sealer {
    async fn emit(
        &mut self,
        w: &mut object_store::WriteMultipart,
        mut chunk: Vec<u8>,
        last: bool,
    ) -> Result<()> {
        self.cipher
            .seal(self.index, last, &mut chunk)
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        self.index += 1;
        w.wait_for_capacity(2).await?;
        w.write(&chunk);
        Ok(())
    }
}

async fn pump<S, E>(
    w: &mut object_store::WriteMultipart,
    st: &mut Sealer,
    mut body: S,
    limits: &Limits,
) -> Result<()>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE + TAG_SIZE);
    // A full chunk is held back until we know whether more data follows,
    // because the final chunk is sealed differently.
    let mut pending: Option<Vec<u8>> = None;
    while let Some(piece) = body.next().await {
        let mut piece = piece.map_err(|e| {
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
        while !piece.is_empty() {
            let take = (CHUNK_SIZE - buf.len()).min(piece.len());
            buf.extend_from_slice(&piece.split_to(take));
            if buf.len() == CHUNK_SIZE {
                if let Some(p) = pending.take() {
                    st.emit(w, p, false).await?;
                }
                pending = Some(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(CHUNK_SIZE + TAG_SIZE),
                ));
            }
        }
    }
    if buf.is_empty() && pending.is_some() {
        if let Some(p) = pending.take() {
            st.emit(w, p, true).await?;
        }
    } else {
        if let Some(p) = pending.take() {
            st.emit(w, p, false).await?;
        }
        st.emit(w, buf, true).await?;
    }
    Ok(())
}

/// A stream of plaintext bytes; an integrity failure ends it with an
/// `InvalidData` error (the client sees a broken transfer, never bad bytes).
pub type PlainStream = BoxStream<'static, std::result::Result<Bytes, std::io::Error>>;

pub struct OpenedRange {
    /// The first piece, already authenticated (so a corrupt blob fails
    /// before any response header is sent).
    pub first: Bytes,
    pub rest: PlainStream,
}

/// Open `range` (plaintext offsets, `start < end` unless the file is empty)
/// of the blob. The whole-file digest is verified when the range is the whole file.
pub async fn open_range(
    blobs: &BlobStore,
    org_key: &OrgKey,
    meta: &BlobMeta,
    range: Range<u64>,
) -> Result<OpenedRange> {
    let ctx = blob_context(meta.id);
    let key = org_key.unwrap_data_key(&meta.wrapped_key, &ctx)?;
    let cipher = ChunkCipher::open(&key, &meta.nonce_prefix, &ctx);
    let layout = ChunkLayout::new(meta.size);
    let first = layout.chunk_of(range.start);
    let last = if range.end == 0 {
        0
    } else {
        layout.chunk_of(range.end - 1)
    };
    let ct_range = layout.ciphertext_range(first, last);
    let source = blobs.read_range(meta.id, ct_range).await?;
    let whole = range.start == 0 && range.end == meta.size;
    let mut reader = ChunkReader {
        source,
        carry: BytesMut::new(),
        cipher,
        layout,
        next: first,
        last,
        range,
        hasher: whole.then(Sha256::new),
        expected: meta.sha256.clone(),
        blob: meta.id,
    };
    let first_piece = match reader.next_piece().await {
        Ok(Some(b)) => b,
        Ok(None) => Bytes::new(),
        Err(e) => return Err(StoreError::Corrupt(e.to_string())),
    };
    let rest = futures_util::stream::try_unfold(reader, |mut r| async move {
        match r.next_piece().await {
            Ok(Some(b)) => Ok(Some((b, r))),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .boxed();
    Ok(OpenedRange {
        first: first_piece,
        rest,
    })
}

struct ChunkReader {
    source: BoxStream<'static, Result<Bytes>>,
    carry: BytesMut,
    cipher: ChunkCipher,
    layout: ChunkLayout,
    next: u64,
    last: u64,
    range: Range<u64>,
    hasher: Option<Sha256>,
    expected: String,
    blob: BlobId,
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl ChunkReader {
    async fn next_piece(&mut self) -> std::result::Result<Option<Bytes>, std::io::Error> {
        if self.next > self.last {
            return Ok(None);
        }
        let idx = self.next;
        let is_last = self.layout.is_last(idx);
        let plain_len = if is_last {
            self.layout.size - idx * CHUNK_SIZE as u64
        } else {
            CHUNK_SIZE as u64
        };
        let want = plain_len as usize + TAG_SIZE;
        while self.carry.len() < want {
            match self.source.next().await {
                Some(Ok(b)) => self.carry.extend_from_slice(&b),
                Some(Err(e)) => {
                    return Err(std::io::Error::other(format!("blob {}: {e}", self.blob)))
                }
                None => {
                    return Err(invalid(format!(
                        "blob {} is truncated at chunk {idx}",
                        self.blob
                    )))
                }
            }
        }
        let mut chunk = self.carry.split_to(want).to_vec();
        self.cipher
            .open_chunk(idx, is_last, &mut chunk)
            .map_err(|e| invalid(format!("blob {}: {e}", self.blob)))?;
        self.next += 1;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&chunk);
            if is_last {
                let got = hex::encode(self.hasher.take().map(|h| h.finalize()).unwrap_or_default());
                if got != self.expected {
                    return Err(invalid(format!(
                        "blob {}: plaintext digest mismatch",
                        self.blob
                    )));
                }
            }
        }
        let chunk_start = idx * CHUNK_SIZE as u64;
        let from = self.range.start.saturating_sub(chunk_start) as usize;
        let to = ((self.range.end - chunk_start) as usize).min(chunk.len());
        let mut bytes = Bytes::from(chunk);
        Ok(Some(if from < to {
            bytes.split_off(from).split_to(to - from)
        } else {
            Bytes::new()
        }))
    }
}

/// Read and verify a whole blob (fsck); returns Err with a reason if it fails.
pub async fn verify_blob(
    blobs: &BlobStore,
    org_key: &OrgKey,
    meta: &BlobMeta,
) -> std::result::Result<(), String> {
    let opened = open_range(blobs, org_key, meta, 0..meta.size)
        .await
        .map_err(|e| e.to_string())?;
    let mut rest = opened.rest;
    while let Some(piece) = rest.next().await {
        piece.map_err(|e| e.to_string())?;
    }
    Ok(())
}
