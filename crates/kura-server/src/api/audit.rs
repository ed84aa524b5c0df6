//! Reading the audit trail: organization admins read their organization's
//! events (filters, newest first, paginated); platform admins read all of
//! them through /api/admin/audit.

use super::{json_ok, op, parse_time, Api, ApiPath, ApiQuery};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kura_core::{OrgAction, OrgId, ProjectId, UserId};
use kura_store::audit::{self as trail, AuditQuery, AuditScope};
use kura_store::{AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

pub fn routes(api: Api) -> Api {
    op!(api, get "/api/orgs/{org_id}/audit", "org_audit", "audit", "org:read_audit", "none", "The organization's audit trail (filters: actor, project, action, outcome, from, to; before=cursor)", org_audit)
}

#[derive(Deserialize)]
pub struct AuditParams {
    actor: Option<UserId>,
    project: Option<ProjectId>,
    action: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
    org: Option<OrgId>,
}

pub fn to_query(p: AuditParams) -> ApiResult<AuditQuery> {
    if p.action.as_ref().is_some_and(|a| a.len() > 64)
        || p.outcome.as_ref().is_some_and(|a| a.len() > 16)
    {
        return Err(ApiError::bad_request("filter value too long"));
    }
    Ok(AuditQuery {
        org: p.org,
        actor: p.actor,
        project: p.project,
        action: p.action,
        outcome: p.outcome,
        from_micros: p.from.as_deref().map(parse_time).transpose()?,
        to_micros: p.to.as_deref().map(parse_time).transpose()?,
        before_id: p.before,
        limit: p.limit.unwrap_or(100),
    })
}

pub fn page(events: Vec<trail::StoredEvent>, limit: i64) -> ApiResult<Response> {
    let next = if events.len() as i64 >= limit.clamp(1, 1000) {
        events.last().map(|e| e.id)
    } else {
        None
    };
    let items: Vec<_> = events
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            v["ts"] = json!(super::rfc3339(e.ts_micros));
            v
        })
        .collect();
    json_ok(
        StatusCode::OK,
        &json!({"items": items, "next_before": next}),
    )
}

async fn org_audit(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ReadAudit)
        .await?;
    let q = to_query(p)?;
    let limit = q.limit;
    s.record(
        &a.ctx,
        AuditEvent::new("audit.read", Outcome::Success).org(org),
    )
    .await?;
    let events = trail::query(&s.store.db, AuditScope::Org(&g), q).await?;
    page(events, limit)
}
