//! A handful of reusable transfer buffers.
//!
//! Big uploads and downloads move 1 MiB batches. The allocator hands freed
//! memory straight back to the system (so an idle server stays small), which
//! made every batch fault its pages in again: half the CPU time of a big
//! transfer. Batches therefore take their buffers from this pool and return
//! them when the last reference (often inside hyper or object_store) drops.
//! At most `KEEP` buffers are kept, a few MiB in all.

use bytes::Bytes;
use std::sync::Mutex;

/// Buffers kept for reuse.
const KEEP: usize = 12;
/// Only buffers this big are worth keeping, and bigger ones are not kept
/// (an odd large request should not pin its memory).
const MIN_KEPT: usize = 512 * 1024;
const MAX_KEPT: usize = 4 * 1024 * 1024;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `cap` bytes.
pub fn take(cap: usize) -> Vec<u8> {
    let reused = POOL.lock().ok().and_then(|mut p| {
        let i = p.iter().position(|v| v.capacity() >= cap)?;
        Some(p.swap_remove(i))
    });
    match reused {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(cap),
    }
}

/// Hand a buffer back for reuse.
pub fn give(v: Vec<u8>) {
    if !(MIN_KEPT..=MAX_KEPT).contains(&v.capacity()) {
        return;
    }
    if let Ok(mut p) = POOL.lock() {
        if p.len() < KEEP {
            p.push(v);
        }
    }
}

/// Owns a pooled buffer inside a `Bytes`; returns it when dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

/// `v` as `Bytes` without copying; the buffer goes back to the pool once
/// every clone and slice of the `Bytes` is gone.
pub fn into_bytes(v: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_the_last_slice_drops() {
        let mut v = take(MIN_KEPT);
        v.extend_from_slice(b"hello");
        let ptr = v.as_ptr();
        let b = into_bytes(v);
        let part = b.slice(1..3);
        drop(b);
        assert_eq!(&part[..], b"el");
        drop(part);
        // Other tests may take buffers concurrently: look for ours.
        let mut seen = false;
        let mut held = Vec::new();
        for _ in 0..KEEP {
            let v = take(MIN_KEPT);
            seen |= v.as_ptr() == ptr;
            held.push(v);
        }
        assert!(seen, "the buffer was returned to the pool");
        // Too small or too big: not kept.
        give(Vec::with_capacity(16));
        give(Vec::with_capacity(MAX_KEPT + 1));
        assert!(POOL
            .lock()
            .unwrap()
            .iter()
            .all(|v| v.capacity() >= MIN_KEPT && v.capacity() <= MAX_KEPT));
    }
}
