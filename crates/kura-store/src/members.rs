//! Project membership. A grant never exceeds its grantor: managers assign up
//! to manager; only owners and the owning organization's admins make owners.
//! The last owner cannot be removed or demoted.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::now_micros;
use kura_core::policy::{ManageMembers, View};
use kura_core::{OrgId, ProjectGrant, ProjectRole, UserId};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub display_name: String,
    pub org_id: OrgId,
    pub org_name: String,
    pub role: ProjectRole,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub added_at: i64,
}

pub async fn list(db: &Db, g: &ProjectGrant<View>) -> Result<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT m.user_id, m.role, m.added_at, u.email, u.display_name, u.org_id, o.name AS org_name \
         FROM project_members m JOIN users u ON u.id = m.user_id JOIN orgs o ON o.id = u.org_id \
         WHERE m.project_id = $1 ORDER BY o.name, u.display_name",
    )
    .bind(g.project_id().to_string())
    .fetch_all(&db.read)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                user_id: r.id("user_id")?,
                email: r.str("email")?,
                display_name: r.str("display_name")?,
                org_id: r.id("org_id")?,
                org_name: r.str("org_name")?,
                role: r
                    .str("role")?
                    .parse()
                    .map_err(|_| StoreError::Internal("bad role".into()))?,
                added_at: r.int("added_at")?,
            })
        })
        .collect()
}

async fn current_role(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    g: &ProjectGrant<ManageMembers>,
    user: UserId,
) -> Result<Option<ProjectRole>> {
    let row =
        sqlx::query("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(g.project_id().to_string())
            .bind(user.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match row {
        Some(r) => r.str("role")?.parse().ok(),
        None => None,
    })
}

/// Owners and the owning organization's admins may touch owners.
fn may_touch_owner(g: &ProjectGrant<ManageMembers>) -> bool {
    g.role() == Some(ProjectRole::Owner) || g.via_org_admin()
}

async fn owners(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    g: &ProjectGrant<ManageMembers>,
) -> Result<i64> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM project_members WHERE project_id = $1 AND role = 'owner'",
    )
    .bind(g.project_id().to_string())
    .fetch_one(&mut **tx)
    .await?;
    r.int("n")
}

/// Add a member or change their role.
pub async fn set(
    db: &Db,
    g: &ProjectGrant<ManageMembers>,
    ctx: &AuditCtx,
    user: UserId,
    role: ProjectRole,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let target = sqlx::query("SELECT org_id, disabled FROM users WHERE id = $1")
        .bind(user.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    if target.flag("disabled")? {
        return Err(StoreError::Conflict("the account is disabled".into()));
    }
    let before = current_role(&mut tx, g, user).await?;
    if (role == ProjectRole::Owner || before == Some(ProjectRole::Owner)) && !may_touch_owner(g) {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    if before == Some(ProjectRole::Owner)
        && role != ProjectRole::Owner
        && owners(&mut tx, g).await? <= 1
    {
        return Err(StoreError::Conflict(
            "a project must keep at least one owner".into(),
        ));
    }
    let now = now_micros();
    if before.is_some() {
        sqlx::query("UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3")
            .bind(role.as_str())
            .bind(g.project_id().to_string())
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query("INSERT INTO project_members (project_id, user_id, org_id, role, added_at, added_by) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(g.project_id().to_string())
            .bind(user.to_string())
            .bind(target.str("org_id")?)
            .bind(role.as_str())
            .bind(now)
            .bind(g.user_id().to_string())
            .execute(&mut *tx)
            .await?;
    }
    let ev = AuditEvent::new(if before.is_some() { "member.role_change" } else { "member.add" }, Outcome::Success)
        .project(g.org_id(), g.project_id())
        .detail(serde_json::json!({"user_id": user, "role": role, "previous_role": before, "member_org_id": target.str("org_id")?}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn remove(
    db: &Db,
    g: &ProjectGrant<ManageMembers>,
    ctx: &AuditCtx,
    user: UserId,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let before = current_role(&mut tx, g, user)
        .await?
        .ok_or(StoreError::NotFound)?;
    if before == ProjectRole::Owner {
        if !may_touch_owner(g) {
            return Err(StoreError::Denied(kura_core::Denied::Forbidden));
        }
        if owners(&mut tx, g).await? <= 1 {
            return Err(StoreError::Conflict(
                "a project must keep at least one owner".into(),
            ));
        }
    }
    sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(g.project_id().to_string())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("member.remove", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .detail(serde_json::json!({"user_id": user, "previous_role": before}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}
