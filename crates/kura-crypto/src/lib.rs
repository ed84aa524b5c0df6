//! Kura's cryptography, built only from reviewed primitives (RustCrypto):
//! - the key hierarchy: master key file → organization key → per-blob data key,
//!   each wrapped with AES-256-GCM under its parent ([`keys`]);
//! - the streaming chunked AEAD for file contents: STREAM (Hoang, Reyhanitabar,
//!   Rogaway, Vizár) over AES-256-GCM from `aead::stream`, fixed 64 KiB chunks,
//!   so a range read decrypts only the chunks it needs ([`stream`]);
//! - password hashing with Argon2id and random secret tokens ([`secrets`]).

pub mod keys;
pub mod passwords;
pub mod secrets;
pub mod signing;
pub mod stream;

pub use keys::{DataKey, KeyError, MasterKey, OrgKey};
pub use secrets::{hash_password, random_token, token_digest, verify_password, PasswordError};
pub use sha2::{Digest, Sha256};
pub use signing::{verify_signature, AuditSigner};
pub use stream::{ChunkCipher, ChunkLayout, CHUNK_SIZE, TAG_SIZE};
