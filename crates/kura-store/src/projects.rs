//! Projects: owned by one organization, with members from any organization.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::orgs::validate_display;
use crate::time::now_micros;
use kura_core::policy::{Administer, View};
use kura_core::{
    Actor, NodeId, OrgAction, OrgGrant, OrgId, ProjectFacts, ProjectGrant, ProjectId, ProjectRole,
    UserId,
};
use serde::Serialize;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: ProjectId,
    pub org_id: OrgId,
    pub name: String,
    pub root_folder_id: NodeId,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    pub created_by: UserId,
    /// The caller's role, when they are a member.
    pub my_role: Option<ProjectRole>,
}

fn from_row(r: &AnyRow) -> Result<Project> {
    Ok(Project {
        id: r.id("id")?,
        org_id: r.id("org_id")?,
        name: r.str("name")?,
        root_folder_id: r.id("root_node_id")?,
        created_at: r.int("created_at")?,
        created_by: r.id("created_by")?,
        my_role: r.opt_str("role")?.and_then(|s| s.parse().ok()),
    })
}

pub async fn create(
    db: &Db,
    g: &OrgGrant,
    ctx: &AuditCtx,
    creator: UserId,
    name: &str,
) -> Result<Project> {
    if g.action() != OrgAction::CreateProject {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    let name = validate_display("name", name, 200)?;
    let id = ProjectId::new();
    let root = NodeId::new();
    let org = g.org_id();
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO projects (id, org_id, name, root_node_id, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(&name)
        .bind(root.to_string())
        .bind(now)
        .bind(creator.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO nodes (id, project_id, org_id, parent_id, is_file, name, size, created_at, created_by, modified_at, modified_by) VALUES ($1, $2, $3, NULL, 0, '', 0, $4, $5, $4, $5)")
        .bind(root.to_string())
        .bind(id.to_string())
        .bind(org.to_string())
        .bind(now)
        .bind(creator.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO project_members (project_id, user_id, org_id, role, added_at, added_by) SELECT $1, id, org_id, 'owner', $2, id FROM users WHERE id = $3")
        .bind(id.to_string())
        .bind(now)
        .bind(creator.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("project.create", Outcome::Success)
        .project(org, id)
        .name(name);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    let row = sqlx::query("SELECT p.*, 'owner' AS role FROM projects p WHERE p.id = $1")
        .bind(id.to_string())
        .fetch_one(&db.read)
        .await?;
    from_row(&row)
}

/// The authorization input for `user` on `project`; `None` if the project does not exist.
pub async fn facts(db: &Db, project: ProjectId, user: UserId) -> Result<Option<ProjectFacts>> {
    // A suspended organization's projects are closed to everyone, guests
    // from other organizations included (kill switch).
    let row = db
        .fetch_point(
            "SELECT p.org_id, m.role FROM projects p JOIN orgs o ON o.id = p.org_id AND o.suspended = 0 LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2 WHERE p.id = $1",
            vec![project.to_string().into(), user.to_string().into()],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(ProjectFacts {
            project_id: project,
            org_id: r.id("org_id")?,
            member_role: r.opt_str("role")?.and_then(|s| s.parse().ok()),
        })),
    }
}

pub async fn get(db: &Db, g: &ProjectGrant<View>) -> Result<Project> {
    get_by_id(db, g.project_id(), g.user_id()).await
}

async fn get_by_id(db: &Db, id: ProjectId, user: UserId) -> Result<Project> {
    let row = sqlx::query("SELECT p.*, m.role FROM projects p LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2 WHERE p.id = $1")
        .bind(id.to_string())
        .bind(user.to_string())
        .fetch_optional(&db.read)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

/// Projects the actor is a member of, plus (for organization admins) every
/// project their organization owns.
pub async fn list_for(db: &Db, actor: &Actor) -> Result<Vec<Project>> {
    // A contained session sees nothing until it steps up, not even names.
    if actor.held_back() {
        return Err(StoreError::Denied(kura_core::Denied::StepUpRequired));
    }
    // Projects of a suspended organization are closed (see `facts`).
    let rows = sqlx::query(
        "SELECT p.*, m.role FROM projects p JOIN orgs o ON o.id = p.org_id AND o.suspended = 0 \
         LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1 \
         WHERE m.user_id IS NOT NULL OR (p.org_id = $2 AND $3 = 1) ORDER BY p.name, p.id",
    )
    .bind(actor.user_id.to_string())
    .bind(actor.org_id.to_string())
    .bind(i64::from(actor.org_admin))
    .fetch_all(&db.read)
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn rename(
    db: &Db,
    g: &ProjectGrant<Administer>,
    ctx: &AuditCtx,
    name: &str,
) -> Result<Project> {
    let name = validate_display("name", name, 200)?;
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
        .bind(&name)
        .bind(g.project_id().to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("project.rename", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .name(name);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    get_by_id(db, g.project_id(), g.user_id()).await
}

/// Every project, for the local CLI.
pub async fn list_all(db: &Db) -> Result<Vec<Project>> {
    let rows = sqlx::query("SELECT p.*, NULL AS role FROM projects p ORDER BY p.name")
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(from_row).collect()
}

/// The projects an organization owns (its admins' overview).
pub async fn list_in_org(db: &Db, g: &kura_core::OrgGrant) -> Result<Vec<Project>> {
    let rows = sqlx::query(
        "SELECT p.*, NULL AS role FROM projects p WHERE p.org_id = $1 ORDER BY p.name, p.id",
    )
    .bind(g.org_id().to_string())
    .fetch_all(&db.read)
    .await?;
    rows.iter().map(from_row).collect()
}
