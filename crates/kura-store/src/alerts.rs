//! Alerts raised by the detector, and the canary files that raise them.
//! An alert is never deleted: admins acknowledge or close it, and every
//! change is audited in the same transaction.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::now_micros;
use kura_core::{NodeId, OrgAction, OrgGrant, OrgId, PlatformGrant, ProjectId, UserId};
use serde::Serialize;
use sqlx::any::AnyRow;

#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub id: String,
    pub org_id: Option<String>,
    pub rule: String,
    pub severity: String,
    pub status: String,
    pub actor_user_id: Option<String>,
    pub credential: Option<String>,
    pub ip: Option<String>,
    pub project_id: Option<String>,
    pub summary: String,
    pub detail: serde_json::Value,
    pub containment: String,
    pub first_event_id: i64,
    pub last_event_id: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub updated_at: i64,
    pub updated_by: Option<String>,
}

fn from_row(r: &AnyRow) -> Result<Alert> {
    Ok(Alert {
        id: r.str("id")?,
        org_id: r.opt_str("org_id")?,
        rule: r.str("rule")?,
        severity: r.str("severity")?,
        status: r.str("status")?,
        actor_user_id: r.opt_str("actor_user_id")?,
        credential: r.opt_str("credential")?,
        ip: r.opt_str("ip")?,
        project_id: r.opt_str("project_id")?,
        summary: r.str("summary")?,
        detail: serde_json::from_str(&r.str("detail")?).unwrap_or_default(),
        containment: r.str("containment")?,
        first_event_id: r.int("first_event_id")?,
        last_event_id: r.int("last_event_id")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
        updated_by: r.opt_str("updated_by")?,
    })
}

/// A new alert, as the detector found it.
#[derive(Clone, Debug, Serialize)]
pub struct NewAlert {
    pub org_id: Option<OrgId>,
    pub rule: &'static str,
    pub severity: &'static str,
    pub actor_user_id: Option<UserId>,
    pub credential: Option<String>,
    pub ip: Option<String>,
    pub project_id: Option<ProjectId>,
    pub summary: String,
    pub detail: serde_json::Value,
    pub containment: &'static str,
    pub first_event_id: i64,
    pub last_event_id: i64,
}

/// Store an alert and its audit event in one transaction.
pub async fn insert(db: &Db, n: &NewAlert) -> Result<Alert> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO alerts (id, org_id, rule, severity, status, actor_user_id, credential, ip, project_id, summary, detail, containment, first_event_id, last_event_id, created_at, updated_at) VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)")
        .bind(&id)
        .bind(n.org_id.map(|o| o.to_string()))
        .bind(n.rule)
        .bind(n.severity)
        .bind(n.actor_user_id.map(|u| u.to_string()))
        .bind(n.credential.clone())
        .bind(n.ip.clone())
        .bind(n.project_id.map(|p| p.to_string()))
        .bind(&n.summary)
        .bind(n.detail.to_string())
        .bind(n.containment)
        .bind(n.first_event_id)
        .bind(n.last_event_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let mut ev = AuditEvent::new("alert.raised", Outcome::Success).detail(serde_json::json!({
        "alert_id": id, "rule": n.rule, "severity": n.severity, "subject_user_id": n.actor_user_id,
        "subject_credential": n.credential, "containment": n.containment, "summary": n.summary,
    }));
    if let Some(o) = n.org_id {
        ev = ev.org(o);
    }
    audit::append(&mut tx, &detector_ctx(), &ev).await?;
    tx.commit().await?;
    get(db, &id).await
}

/// The audit context of the detector's own actions.
pub fn detector_ctx() -> AuditCtx {
    AuditCtx {
        credential: Some("detector".into()),
        ip: Some("local".into()),
        ..AuditCtx::default()
    }
}

/// One alert by id, for the system's own use (the notice delivery loop);
/// callers acting for a user go through [`list`] and its scope.
pub async fn get(db: &Db, id: &str) -> Result<Alert> {
    let r = sqlx::query("SELECT * FROM alerts WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.write)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&r)
}

/// Which alerts a caller may see: their organization's, or all.
pub enum AlertScope<'a> {
    Org(&'a OrgGrant),
    Platform(&'a PlatformGrant),
}

impl AlertScope<'_> {
    fn org(&self) -> Result<Option<OrgId>> {
        match self {
            Self::Org(g) if g.action() == OrgAction::ReadAudit => Ok(Some(g.org_id())),
            Self::Org(_) => Err(StoreError::Denied(kura_core::Denied::Forbidden)),
            Self::Platform(_) => Ok(None),
        }
    }
}

/// Newest first; `status` filters (open, acknowledged, closed).
pub async fn list(
    db: &Db,
    scope: AlertScope<'_>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<Alert>> {
    let org = scope.org()?;
    let rows = sqlx::query(
        "SELECT * FROM alerts WHERE ($1 IS NULL OR org_id = $1) AND ($2 IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(org.map(|o| o.to_string()))
    .bind(status.map(str::to_string))
    .bind(limit.clamp(1, 1000))
    .fetch_all(&db.read)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Acknowledge or close an alert the caller may see (404 otherwise).
pub async fn set_status(
    db: &Db,
    scope: AlertScope<'_>,
    ctx: &AuditCtx,
    id: &str,
    status: &str,
) -> Result<Alert> {
    if !matches!(status, "open" | "acknowledged" | "closed") {
        return Err(StoreError::Invalid(
            "status must be open, acknowledged or closed".into(),
        ));
    }
    let org = scope.org()?;
    let alert = get(db, id).await?;
    if org.is_some_and(|o| alert.org_id.as_deref() != Some(o.to_string().as_str())) {
        return Err(StoreError::NotFound);
    }
    // Nobody closes an alert about themselves.
    if ctx.actor_user_id.is_some()
        && ctx.actor_user_id.map(|u| u.to_string()) == alert.actor_user_id
    {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE alerts SET status = $1, updated_at = $2, updated_by = $3 WHERE id = $4")
        .bind(status)
        .bind(now_micros())
        .bind(ctx.actor_user_id.map(|u| u.to_string()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let mut ev = AuditEvent::new("alert.status", Outcome::Success)
        .detail(serde_json::json!({"alert_id": id, "old": alert.status, "new": status}));
    if let Some(o) = alert.org_id.as_deref().and_then(|o| o.parse().ok()) {
        ev = ev.org(o);
    }
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    get(db, id).await
}

/// Record what the detector did to the actor (containment, notification).
pub async fn record_response(
    db: &Db,
    org: Option<OrgId>,
    alert_id: &str,
    action: &'static str,
    outcome: Outcome,
    detail: serde_json::Value,
) -> Result<()> {
    let mut ev = AuditEvent::new(action, outcome).detail(serde_json::json!({
        "alert_id": alert_id, "response": detail
    }));
    if let Some(o) = org {
        ev = ev.org(o);
    }
    audit::record_now(db, &detector_ctx(), &ev).await
}

/// Containment "require step-up": every open session of the user needs a
/// fresh factor from now on (the current freshness is withdrawn), and API
/// tokens, which cannot present one, are revoked.
pub async fn contain_step_up(db: &Db, user: UserId) -> Result<u64> {
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    let n = sqlx::query("UPDATE sessions SET contained_at = $1, mfa_at = NULL WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// Containment "end sessions": every session and token of the user.
pub async fn contain_end_sessions(db: &Db, user: UserId) -> Result<()> {
    let mut tx = db.write.begin().await?;
    crate::sessions::revoke_all_credentials_tx(&mut tx, user).await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct Canary {
    pub node_id: String,
    pub org_id: String,
    pub project_id: String,
    pub marked_by: String,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub marked_at: i64,
}

/// Mark a file of the organization's project as a canary (admins of the
/// owning organization; the grant proves it).
pub async fn mark_canary(
    db: &Db,
    g: &OrgGrant,
    ctx: &AuditCtx,
    project: ProjectId,
    node: NodeId,
    on: bool,
) -> Result<()> {
    if g.action() != OrgAction::ManageUsers {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    let found = sqlx::query("SELECT n.id FROM nodes n JOIN projects p ON p.id = n.project_id WHERE n.id = $1 AND n.project_id = $2 AND p.org_id = $3 AND n.is_file = 1")
        .bind(node.to_string())
        .bind(project.to_string())
        .bind(g.org_id().to_string())
        .fetch_optional(&db.read)
        .await?;
    if found.is_none() {
        return Err(StoreError::NotFound);
    }
    let mut tx = db.write.begin().await?;
    sqlx::query("DELETE FROM canaries WHERE node_id = $1")
        .bind(node.to_string())
        .execute(&mut *tx)
        .await?;
    if on {
        sqlx::query("INSERT INTO canaries (node_id, org_id, project_id, marked_by, marked_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(node.to_string())
            .bind(g.org_id().to_string())
            .bind(project.to_string())
            .bind(ctx.actor_user_id.map(|u| u.to_string()).unwrap_or_else(|| "cli".into()))
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
    }
    let ev = AuditEvent::new(
        if on { "canary.mark" } else { "canary.unmark" },
        Outcome::Success,
    )
    .project(g.org_id(), project)
    .node(node);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

/// Every canary (the detector's lookup set).
pub async fn all_canaries(db: &Db) -> Result<Vec<Canary>> {
    let rows = sqlx::query("SELECT * FROM canaries")
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(canary_row).collect()
}

pub async fn org_canaries(db: &Db, g: &OrgGrant) -> Result<Vec<Canary>> {
    let rows = sqlx::query("SELECT * FROM canaries WHERE org_id = $1 ORDER BY marked_at")
        .bind(g.org_id().to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(canary_row).collect()
}

fn canary_row(r: &AnyRow) -> Result<Canary> {
    Ok(Canary {
        node_id: r.str("node_id")?,
        org_id: r.str("org_id")?,
        project_id: r.str("project_id")?,
        marked_by: r.str("marked_by")?,
        marked_at: r.int("marked_at")?,
    })
}

/// Who hears of an alert by default: the organization's admins, or for
/// platform alerts the platform's.
pub async fn default_recipients(db: &Db, org: Option<&str>) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT email FROM users WHERE disabled = 0 AND ((org_id = $1 AND org_admin = 1) OR ($1 IS NULL AND platform_admin = 1)) LIMIT 50")
        .bind(org.map(str::to_string))
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(|r| r.str("email")).collect()
}

pub async fn is_canary(db: &Db, node: NodeId) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 AS x FROM canaries WHERE node_id = $1")
            .bind(node.to_string())
            .fetch_optional(&db.read)
            .await?
            .is_some(),
    )
}
