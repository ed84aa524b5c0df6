//! Kura's persistence: the metadata repository (one schema on SQLite and
//! PostgreSQL, through sqlx's `Any` driver so every query is written once),
//! the encrypted blob store (object_store), and the audit trail.
//!
//! Functions that read or change project data take a grant from
//! `kura_core::policy`; they cannot be called without a prior decision.

pub mod alert_outbox;
pub mod alerts;
pub mod audit;
mod audit_export;
pub mod blob_stream;
pub mod blobs;
pub mod bufpool;
mod canonical_json;
pub mod chain;
pub mod challenges;
pub mod db;
pub mod detect;
pub mod detection;
pub mod error;
pub mod event_hash;
pub mod forward;
pub mod fsck;
pub mod incident;
pub mod keyring;
pub mod members;
pub mod mfa;
pub mod nodes;
pub mod org_policy;
pub mod orgs;
pub mod password_resets;
pub mod platform;
pub mod point_read;
pub mod projects;
pub mod sessions;
pub mod settings;
pub mod sso;
mod stored_row;
pub mod tail_writer;
pub mod throttle;
pub mod time;
pub mod upload;
pub mod users;
mod verify;
mod verify_in_order;
mod verify_scan;

pub use audit::{AuditCtx, AuditEvent, AuditSink, Outcome};
pub use blobs::BlobStore;
pub use db::{Backend, Db};
pub use error::StoreError;
pub use keyring::Keyring;

use std::sync::Arc;

/// Everything a request handler needs from persistence.
#[derive(Clone)]
pub struct Store {
    pub db: Db,
    pub blobs: BlobStore,
    pub keys: Arc<Keyring>,
    pub audit: AuditSink,
}
