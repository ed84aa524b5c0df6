//! The one authorization choke point.
//!
//! Every use case asks one of the `authorize_*` functions for a decision on
//! (actor, action, resource). On success it receives a grant value whose
//! fields are private to this module: the store's functions that touch
//! project data demand a grant for the matching action, so code that skips
//! the decision does not compile. Deny is the default: anything not listed
//! here is refused.
//!
//! Visibility rule: a resource the actor has no relation to answers
//! `NotFound` (its existence is not leaked); a visible resource the actor may
//! not change answers `Forbidden`.

use crate::{OrgId, ProjectId, ProjectRole, SessionId, TokenId, UserId};
use std::marker::PhantomData;

/// How the actor authenticated for this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    Session(SessionId),
    Token {
        id: TokenId,
        read_only: bool,
    },
    /// The local operator CLI (`kura admin …`); never reachable over HTTP.
    Cli,
}

/// Who is asking. Built by the authentication layer after it re-checked that
/// the session, the user and the organization are active.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub org_admin: bool,
    pub platform_admin: bool,
    pub credential: Credential,
    /// The credential was obtained with a second factor (or, for an API
    /// token, created by a session that had one).
    pub mfa: bool,
    /// A second factor was presented within the organization's step-up
    /// window; sensitive actions demand it.
    pub stepped_up: bool,
    /// The detector contained this session: until the end of the session,
    /// every action needs a fresh second factor.
    pub contained: bool,
}

impl Actor {
    /// A contained session without a fresh factor may do nothing.
    pub fn held_back(&self) -> bool {
        self.contained && !self.stepped_up
    }

    fn read_only(&self) -> bool {
        matches!(
            self.credential,
            Credential::Token {
                read_only: true,
                ..
            }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// Allowed, but only with a fresh second factor (step-up authentication).
    #[error("step-up authentication required")]
    StepUpRequired,
}

/// What the policy needs to know about a project and the actor's relation to it.
#[derive(Clone, Copy, Debug)]
pub struct ProjectFacts {
    pub project_id: ProjectId,
    pub org_id: OrgId,
    /// The actor's membership role, if any.
    pub member_role: Option<ProjectRole>,
}

/// Actions on a project and its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProjectAction {
    /// See the project itself (name, owning organization) and its members.
    View,
    /// List folders, read metadata, download, list versions, trash and members.
    Read,
    /// Upload, create folders, rename, move, copy, trash, restore.
    Write,
    /// Permanently delete from the trash.
    Purge,
    /// Add, change and remove members.
    ManageMembers,
    /// Rename or delete the project itself.
    Administer,
}

impl ProjectAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Read => "read",
            Self::Write => "write",
            Self::Purge => "purge",
            Self::ManageMembers => "manage_members",
            Self::Administer => "administer",
        }
    }

    /// The least project role that allows the action.
    pub fn min_role(&self) -> ProjectRole {
        match self {
            Self::View | Self::Read => ProjectRole::Viewer,
            Self::Write => ProjectRole::Member,
            Self::Purge | Self::ManageMembers => ProjectRole::Manager,
            Self::Administer => ProjectRole::Owner,
        }
    }

    /// Changing who may see a project, or the project itself, needs a
    /// fresh second factor.
    fn needs_step_up(&self) -> bool {
        matches!(self, Self::ManageMembers | Self::Administer)
    }

    fn mutates(&self) -> bool {
        !matches!(self, Self::View | Self::Read)
    }

    /// Organization admins govern their organization's projects (membership,
    /// the project itself) without reading their contents.
    fn org_admin_may(&self) -> bool {
        matches!(self, Self::View | Self::ManageMembers | Self::Administer)
    }
}

/// Type-level project actions, so a grant for reading cannot be used to write.
pub trait ProjectPermission {
    const ACTION: ProjectAction;
}

macro_rules! permission {
    ($name:ident, $action:ident) => {
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl ProjectPermission for $name {
            const ACTION: ProjectAction = ProjectAction::$action;
        }
    };
}
permission!(View, View);
permission!(Read, Read);
permission!(Write, Write);
permission!(Purge, Purge);
permission!(ManageMembers, ManageMembers);
permission!(Administer, Administer);

/// Proof that `actor` may perform `P` on `project`. Only this module builds it.
#[derive(Debug, Clone)]
pub struct ProjectGrant<P: ProjectPermission> {
    project_id: ProjectId,
    org_id: OrgId,
    user_id: UserId,
    role: Option<ProjectRole>,
    via_org_admin: bool,
    _p: PhantomData<P>,
}

impl<P: ProjectPermission> ProjectGrant<P> {
    pub fn project_id(&self) -> ProjectId {
        self.project_id
    }
    /// The organization that owns the project (and its data).
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }
    pub fn user_id(&self) -> UserId {
        self.user_id
    }
    pub fn role(&self) -> Option<ProjectRole> {
        self.role
    }
    /// The actor administers the organization that owns the project.
    pub fn via_org_admin(&self) -> bool {
        self.via_org_admin
    }
}

/// Decide whether `actor` may do `P` on the project described by `facts`.
pub fn authorize_project<P: ProjectPermission>(
    actor: &Actor,
    facts: &ProjectFacts,
) -> Result<ProjectGrant<P>, Denied> {
    let action = P::ACTION;
    let org_admin_here = actor.org_admin && actor.org_id == facts.org_id;
    let visible = facts.member_role.is_some() || org_admin_here;
    if !visible {
        return Err(Denied::NotFound);
    }
    if action.mutates() && actor.read_only() {
        return Err(Denied::Forbidden);
    }
    if actor.held_back() {
        return Err(Denied::StepUpRequired);
    }
    let by_role = facts.member_role.is_some_and(|r| r >= action.min_role());
    let by_org_admin = org_admin_here && action.org_admin_may();
    if (by_role || by_org_admin) && action.needs_step_up() && !actor.stepped_up {
        return Err(Denied::StepUpRequired);
    }
    if by_role || by_org_admin {
        Ok(ProjectGrant {
            project_id: facts.project_id,
            org_id: facts.org_id,
            user_id: actor.user_id,
            role: facts.member_role,
            via_org_admin: org_admin_here,
            _p: PhantomData,
        })
    } else {
        Err(Denied::Forbidden)
    }
}

/// Actions on an organization as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrgAction {
    /// See the organization's name, quota and usage.
    View,
    /// Create a project owned by the organization.
    CreateProject,
    /// Create, disable and reset users; list the organization's users.
    ManageUsers,
    /// Read the organization's audit trail.
    ReadAudit,
}

impl OrgAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::View => "view",
            Self::CreateProject => "create_project",
            Self::ManageUsers => "manage_users",
            Self::ReadAudit => "read_audit",
        }
    }
}

/// Proof that the actor may perform an organization-level action.
#[derive(Debug, Clone)]
pub struct OrgGrant {
    org_id: OrgId,
    action: OrgAction,
}

impl OrgGrant {
    pub fn org_id(&self) -> OrgId {
        self.org_id
    }
    pub fn action(&self) -> OrgAction {
        self.action
    }
}

/// Platform admins run organizations and accounts (never project contents);
/// organization admins run their own organization; members may view it and
/// create projects in it.
pub fn authorize_org(actor: &Actor, org_id: OrgId, action: OrgAction) -> Result<OrgGrant, Denied> {
    let own = actor.org_id == org_id;
    if !own && !actor.platform_admin {
        return Err(Denied::NotFound);
    }
    if actor.read_only() && action != OrgAction::View && action != OrgAction::ReadAudit {
        return Err(Denied::Forbidden);
    }
    let allowed = match action {
        OrgAction::View => true,
        OrgAction::CreateProject => own,
        OrgAction::ManageUsers | OrgAction::ReadAudit => {
            (own && actor.org_admin) || actor.platform_admin
        }
    };
    let admin_action = matches!(action, OrgAction::ManageUsers | OrgAction::ReadAudit);
    if allowed && (admin_action || actor.held_back()) && !actor.stepped_up {
        return Err(Denied::StepUpRequired);
    }
    if allowed {
        Ok(OrgGrant { org_id, action })
    } else {
        Err(Denied::Forbidden)
    }
}

/// Proof that the actor is a platform administrator.
#[derive(Debug, Clone)]
pub struct PlatformGrant {
    _private: (),
}

/// Platform administration: organizations, quotas, suspension, the whole audit trail.
pub fn authorize_platform(actor: &Actor) -> Result<PlatformGrant, Denied> {
    if !actor.platform_admin {
        // Platform endpoints exist for everyone to see in the API document,
        // so refusing them leaks nothing.
        return Err(Denied::Forbidden);
    }
    if actor.read_only() {
        return Err(Denied::Forbidden);
    }
    if !actor.stepped_up {
        return Err(Denied::StepUpRequired);
    }
    Ok(PlatformGrant { _private: () })
}

/// The local operator CLI acts with platform rights; it is reachable only by
/// someone who can already read the data folder and the master key.
pub fn cli_platform_grant() -> PlatformGrant {
    PlatformGrant { _private: () }
}

/// The local operator CLI administers an organization's accounts.
pub fn cli_org_grant(org_id: OrgId) -> OrgGrant {
    OrgGrant {
        org_id,
        action: OrgAction::ManageUsers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(org: OrgId, org_admin: bool, platform_admin: bool) -> Actor {
        Actor {
            user_id: UserId::new(),
            org_id: org,
            org_admin,
            platform_admin,
            credential: Credential::Session(SessionId::new()),
            mfa: true,
            stepped_up: true,
            contained: false,
        }
    }

    #[test]
    fn contained_session_needs_a_fresh_factor_for_everything() {
        let org = OrgId::new();
        let mut a = actor(org, true, false);
        a.contained = true;
        a.stepped_up = false;
        assert_eq!(
            authorize_org(&a, org, OrgAction::View).err(),
            Some(Denied::StepUpRequired)
        );
        a.stepped_up = true;
        assert!(authorize_org(&a, org, OrgAction::View).is_ok());
    }

    #[test]
    fn sensitive_actions_need_a_fresh_factor() {
        let org = OrgId::new();
        let mut a = actor(org, true, true);
        a.stepped_up = false;
        let facts = ProjectFacts {
            project_id: ProjectId::new(),
            org_id: org,
            member_role: Some(ProjectRole::Owner),
        };
        assert!(authorize_project::<Read>(&a, &facts).is_ok());
        assert_eq!(
            authorize_project::<ManageMembers>(&a, &facts).err(),
            Some(Denied::StepUpRequired)
        );
        assert_eq!(
            authorize_org(&a, org, OrgAction::ManageUsers).err(),
            Some(Denied::StepUpRequired)
        );
        assert!(authorize_org(&a, org, OrgAction::View).is_ok());
        assert_eq!(authorize_platform(&a).err(), Some(Denied::StepUpRequired));
        // Without the right, the answer stays what it was: no hint that a factor would help.
        let mut b = actor(org, true, false);
        b.stepped_up = false;
        assert_eq!(
            authorize_org(&b, OrgId::new(), OrgAction::ManageUsers).err(),
            Some(Denied::NotFound)
        );
    }

    #[test]
    fn project_role_table() {
        let org = OrgId::new();
        let a = actor(org, false, false);
        for role in ProjectRole::ALL {
            let facts = ProjectFacts {
                project_id: ProjectId::new(),
                org_id: org,
                member_role: Some(role),
            };
            assert!(authorize_project::<Read>(&a, &facts).is_ok());
            assert_eq!(
                authorize_project::<Write>(&a, &facts).is_ok(),
                role >= ProjectRole::Member
            );
            assert_eq!(
                authorize_project::<Purge>(&a, &facts).is_ok(),
                role >= ProjectRole::Manager
            );
            assert_eq!(
                authorize_project::<Administer>(&a, &facts).is_ok(),
                role == ProjectRole::Owner
            );
            if role < ProjectRole::Member {
                assert_eq!(
                    authorize_project::<Write>(&a, &facts).err(),
                    Some(Denied::Forbidden)
                );
            }
        }
    }

    #[test]
    fn non_members_see_nothing_and_platform_admins_read_no_content() {
        let org = OrgId::new();
        let facts = ProjectFacts {
            project_id: ProjectId::new(),
            org_id: org,
            member_role: None,
        };
        let outsider = actor(OrgId::new(), true, true);
        assert_eq!(
            authorize_project::<Read>(&outsider, &facts).err(),
            Some(Denied::NotFound)
        );
        let same_org_user = actor(org, false, false);
        assert_eq!(
            authorize_project::<Read>(&same_org_user, &facts).err(),
            Some(Denied::NotFound)
        );
        let org_admin = actor(org, true, false);
        assert_eq!(
            authorize_project::<Read>(&org_admin, &facts).err(),
            Some(Denied::Forbidden)
        );
        assert!(authorize_project::<ManageMembers>(&org_admin, &facts).is_ok());
    }

    #[test]
    fn read_only_tokens_cannot_write() {
        let org = OrgId::new();
        let mut a = actor(org, false, false);
        a.credential = Credential::Token {
            id: TokenId::new(),
            read_only: true,
        };
        let facts = ProjectFacts {
            project_id: ProjectId::new(),
            org_id: org,
            member_role: Some(ProjectRole::Owner),
        };
        assert!(authorize_project::<Read>(&a, &facts).is_ok());
        assert_eq!(
            authorize_project::<Write>(&a, &facts).err(),
            Some(Denied::Forbidden)
        );
    }

    #[test]
    fn org_actions() {
        let org = OrgId::new();
        let other = OrgId::new();
        let user = actor(org, false, false);
        assert!(authorize_org(&user, org, OrgAction::View).is_ok());
        assert!(authorize_org(&user, org, OrgAction::CreateProject).is_ok());
        assert_eq!(
            authorize_org(&user, org, OrgAction::ManageUsers).err(),
            Some(Denied::Forbidden)
        );
        assert_eq!(
            authorize_org(&user, other, OrgAction::View).err(),
            Some(Denied::NotFound)
        );
        let admin = actor(org, true, false);
        assert!(authorize_org(&admin, org, OrgAction::ReadAudit).is_ok());
        assert_eq!(
            authorize_org(&admin, other, OrgAction::ReadAudit).err(),
            Some(Denied::NotFound)
        );
        let platform = actor(OrgId::new(), false, true);
        assert!(authorize_org(&platform, org, OrgAction::ManageUsers).is_ok());
        assert_eq!(
            authorize_org(&platform, org, OrgAction::CreateProject).err(),
            Some(Denied::Forbidden)
        );
        assert!(authorize_platform(&platform).is_ok());
        assert!(authorize_platform(&admin).is_err());
    }
}
