//! Kura's domain: typed identifiers, validated names, roles, and the one
//! authorization policy every read and write passes through.
//!
//! This crate does no I/O. The store asks it for a decision and receives a
//! proof value it cannot construct itself, so an unchecked data path does not
//! compile (see [`policy`]).

pub mod ids;
pub mod name;
pub mod policy;
pub mod role;

pub use ids::*;
pub use name::{FileName, NameError};
pub use policy::{
    authorize_org, authorize_platform, authorize_project, cli_org_grant, cli_platform_grant, Actor,
    Credential, Denied, OrgAction, OrgGrant, PlatformGrant, ProjectAction, ProjectFacts,
    ProjectGrant, ProjectPermission,
};
pub use role::ProjectRole;
