//! The store's error type. Client mistakes are distinct variants so the HTTP
//! layer can answer them with 4xx; everything else is an internal failure.

use kura_core::{Denied, NameError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Denied(#[from] Denied),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
    #[error("the organization's storage quota would be exceeded")]
    QuotaExceeded,
    #[error("the upload exceeds the maximum file size of {0} bytes")]
    TooLarge(u64),
    #[error("the upload was interrupted")]
    Interrupted,
    #[error("stored data failed its integrity check: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// From the rusqlite connections SQLite's hot paths use (point reads,
    /// the audit writer, the upload group commit).
    #[error("database error: {0}")]
    Lite(#[from] rusqlite::Error),
    #[error("blob store error: {0}")]
    Blob(#[from] object_store::Error),
    #[error("key error: {0}")]
    Key(#[from] kura_crypto::KeyError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Turn a unique-constraint violation into a 409 with `message`.
    pub fn conflict_on_unique(self, message: &str) -> Self {
        match &self {
            StoreError::Db(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                StoreError::Conflict(message.to_string())
            }
            StoreError::Lite(rusqlite::Error::SqliteFailure(f, _))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict(message.to_string())
            }
            _ => self,
        }
    }
}
