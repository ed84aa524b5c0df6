//! Per-project roles, ordered by what they allow.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A member's role in one project. Ordering matters: a higher role includes
/// every right of the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// Reads folders and files.
    Viewer,
    /// Also uploads, organizes and trashes.
    Member,
    /// Also manages members and purges the trash.
    Manager,
    /// Also renames, archives and deletes the project.
    Owner,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 4] = [Self::Viewer, Self::Member, Self::Manager, Self::Owner];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Manager => "manager",
            Self::Owner => "owner",
        }
    }
}

impl FromStr for ProjectRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "viewer" => Ok(Self::Viewer),
            "member" => Ok(Self::Member),
            "manager" => Ok(Self::Manager),
            "owner" => Ok(Self::Owner),
            _ => Err(()),
        }
    }
}
