//! Typed identifiers: an `OrgId` can never be passed where a `ProjectId` is
//! expected. All are random UUIDs (v7 for rows, so indexes stay ordered).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered identifier.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// An organization (tenant).
    OrgId
);
typed_id!(
    /// A user account; each has exactly one home organization.
    UserId
);
typed_id!(
    /// A project, owned by one organization.
    ProjectId
);
typed_id!(
    /// A folder or a file inside a project.
    NodeId
);
typed_id!(
    /// One immutable version of a file's content.
    VersionId
);
typed_id!(
    /// A server-side session (the public handle, not the secret token).
    SessionId
);
typed_id!(
    /// An API token (the public handle, not the secret).
    TokenId
);
typed_id!(
    /// A second authentication factor (TOTP app, passkey or security key).
    FactorId
);
typed_id!(
    /// An encrypted object in the blob store. Random, never derived from user input.
    BlobId
);

impl BlobId {
    /// Blob ids are fully random (v4): they must not reveal upload times.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
}
