//! Breach readiness over the API: alerts, detection rules, canary files, the
//! scope report, and the kill switches. Organization admins act on their own
//! organization; platform admins on the platform (/api/admin/…).

use super::{json_ok, op, parse_time, Api, ApiJson, ApiPath, ApiQuery};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_core::{NodeId, OrgAction, OrgId, ProjectId, UserId};
use kura_store::alerts::{self, AlertScope};
use kura_store::detection::{self, DetectionConfig};
use kura_store::incident::{self, ScopeView, Subject};
use kura_store::{platform, users, AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

pub fn routes(api: Api) -> Api {
    let api = op!(api, get "/api/orgs/{org_id}/alerts", "org_alerts", "security", "org:read_audit", "none", "The organization's security alerts, newest first (filter: status=open|acknowledged|closed)", org_alerts);
    let api = op!(api, post "/api/orgs/{org_id}/alerts/{alert_id}/status", "set_alert_status", "security", "org:read_audit", "json", "Acknowledge, close or reopen an alert: {\"status\": …}", set_alert_status);
    let api = op!(api, get "/api/orgs/{org_id}/detection", "get_detection", "security", "org:manage_users", "none", "The organization's detection rules and alert delivery", get_detection);
    let api = op!(api, put "/api/orgs/{org_id}/detection", "set_detection", "security", "org:manage_users", "json", "Replace the detection rules; the first webhook URL (or ?new_secret=true) returns its HMAC secret once", set_detection);
    let api = op!(api, get "/api/orgs/{org_id}/canaries", "list_canaries", "security", "org:manage_users", "none", "Files marked as canaries", list_canaries);
    let api = op!(api, put "/api/projects/{project_id}/files/{node_id}/canary", "mark_canary", "security", "org:manage_users", "none", "Mark a file of your organization's project as a canary: any read raises a critical alert", mark_canary);
    let api = op!(api, delete "/api/projects/{project_id}/files/{node_id}/canary", "unmark_canary", "security", "org:manage_users", "none", "Remove the canary mark", unmark_canary);
    let api = op!(api, get "/api/orgs/{org_id}/incident/scope", "org_scope", "security", "org:read_audit", "none", "Scope report for your organization: actor, ip, session or token; from, to; format=json|csv|html", org_scope);
    let api = op!(api, post "/api/orgs/{org_id}/force-reset", "force_reset_org", "security", "org:manage_users", "none", "Kill switch: every user of the organization must reset their password and re-enrol a second factor", force_reset_org);
    op!(api, post "/api/orgs/{org_id}/users/{user_id}/force-reset", "force_reset_user", "security", "org:manage_users", "none", "Kill switch: the user must reset their password and re-enrol a second factor (ends their sessions)", force_reset_user)
}

/// Platform-admin routes (served on the admin listener when there is one).
pub fn admin_routes(api: Api) -> Api {
    let api = op!(api, get "/api/admin/alerts", "platform_alerts", "security", "platform", "none", "Every organization's security alerts (filter: status)", platform_alerts);
    let api = op!(api, post "/api/admin/alerts/{alert_id}/status", "platform_alert_status", "security", "platform", "json", "Acknowledge, close or reopen any alert", platform_alert_status);
    let api = op!(api, get "/api/admin/incident/scope", "platform_scope", "security", "platform", "none", "Scope report across organizations, with the unaffected ones listed", platform_scope);
    let api = op!(api, get "/api/admin/platform/mode", "get_platform_mode", "security", "platform", "none", "The platform kill-switch state", get_platform_mode);
    op!(api, put "/api/admin/platform/mode", "set_platform_mode", "security", "platform", "json", "Kill switch: {\"mode\": \"normal\" | \"read-only\" | \"suspended\"}", set_platform_mode)
}

#[derive(Deserialize)]
struct AlertParams {
    status: Option<String>,
    limit: Option<i64>,
}

fn check_status(s: &Option<String>) -> ApiResult<()> {
    if s.as_deref()
        .is_some_and(|v| !matches!(v, "open" | "acknowledged" | "closed"))
    {
        return Err(ApiError::bad_request(
            "status must be open, acknowledged or closed",
        ));
    }
    Ok(())
}

async fn org_alerts(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    ApiQuery(p): ApiQuery<AlertParams>,
) -> ApiResult<Response> {
    check_status(&p.status)?;
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ReadAudit)
        .await?;
    let list = alerts::list(
        &s.store.db,
        AlertScope::Org(&g),
        p.status.as_deref(),
        p.limit.unwrap_or(100),
    )
    .await?;
    s.record(
        &a.ctx,
        AuditEvent::new("alert.list", Outcome::Success).org(g.org_id()),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({"items": list}))
}

async fn platform_alerts(
    State(s): State<AppState>,
    a: Authed,
    ApiQuery(p): ApiQuery<AlertParams>,
) -> ApiResult<Response> {
    check_status(&p.status)?;
    let g = s.platform_grant(&a.actor, &a.ctx, "alert.list").await?;
    let list = alerts::list(
        &s.store.db,
        AlertScope::Platform(&g),
        p.status.as_deref(),
        p.limit.unwrap_or(100),
    )
    .await?;
    s.record(
        &a.ctx,
        AuditEvent::new("alert.list", Outcome::Success).detail(json!({"scope": "platform"})),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({"items": list}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
}

fn alert_id(id: &str) -> ApiResult<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::not_found())
}

async fn set_alert_status(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, id)): ApiPath<(OrgId, String)>,
    ApiJson(b): ApiJson<StatusBody>,
) -> ApiResult<Response> {
    a.require_writable()?;
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ReadAudit)
        .await?;
    change_status(&s, &a, AlertScope::Org(&g), &id, &b).await
}

async fn change_status(
    s: &AppState,
    a: &Authed,
    scope: AlertScope<'_>,
    id: &str,
    b: &StatusBody,
) -> ApiResult<Response> {
    let alert = alerts::set_status(&s.store.db, scope, &a.ctx, &alert_id(id)?, &b.status).await?;
    json_ok(StatusCode::OK, &alert)
}

async fn platform_alert_status(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(b): ApiJson<StatusBody>,
) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "alert.status").await?;
    change_status(&s, &a, AlertScope::Platform(&g), &id, &b).await
}

async fn get_detection(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    s.record(
        &a.ctx,
        AuditEvent::new("org.detection_read", Outcome::Success).org(g.org_id()),
    )
    .await?;
    json_ok(
        StatusCode::OK,
        &detection::get(&s.store.db, g.org_id()).await?,
    )
}

#[derive(Deserialize)]
struct DetectionParams {
    new_secret: Option<bool>,
}

async fn set_detection(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    ApiQuery(p): ApiQuery<DetectionParams>,
    ApiJson(cfg): ApiJson<DetectionConfig>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let secret = detection::set(
        &s.store.db,
        &s.store.keys,
        &g,
        &a.ctx,
        &cfg,
        p.new_secret.unwrap_or(false),
    )
    .await?;
    json_ok(
        StatusCode::OK,
        &json!({"config": cfg, "webhook_secret": secret}),
    )
}

async fn list_canaries(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    s.record(
        &a.ctx,
        AuditEvent::new("canary.list", Outcome::Success).org(g.org_id()),
    )
    .await?;
    json_ok(
        StatusCode::OK,
        &json!({"items": alerts::org_canaries(&s.store.db, &g).await?}),
    )
}

async fn canary(
    s: &AppState,
    a: &Authed,
    project: ProjectId,
    node: NodeId,
    on: bool,
) -> ApiResult<Response> {
    // Only admins of the organization that owns the project (or platform
    // admins); the store checks that the file lies in that project (404 else).
    let facts = kura_store::projects::facts(&s.store.db, project, a.actor.user_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let g = s
        .org_grant(&a.actor, &a.ctx, facts.org_id, OrgAction::ManageUsers)
        .await?;
    alerts::mark_canary(&s.store.db, &g, &a.ctx, project, node, on).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn mark_canary(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, n)): ApiPath<(ProjectId, NodeId)>,
) -> ApiResult<Response> {
    canary(&s, &a, p, n, true).await
}

async fn unmark_canary(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, n)): ApiPath<(ProjectId, NodeId)>,
) -> ApiResult<Response> {
    canary(&s, &a, p, n, false).await
}

#[derive(Deserialize)]
pub struct ScopeParams {
    pub actor: Option<UserId>,
    pub ip: Option<String>,
    pub session: Option<String>,
    pub token: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub format: Option<String>,
}

pub fn subject_of(p: &ScopeParams) -> ApiResult<Subject> {
    let given = [
        p.actor.is_some(),
        p.ip.is_some(),
        p.session.is_some(),
        p.token.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(ApiError::bad_request(
            "give exactly one of actor, ip, session or token",
        ));
    }
    if [&p.ip, &p.session, &p.token]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| v.len() > 64))
    {
        return Err(ApiError::bad_request("filter value too long"));
    }
    Ok(if let Some(u) = p.actor {
        Subject::Actor(u)
    } else if let Some(ip) = &p.ip {
        Subject::Ip(Subject::parse_ip(ip)?)
    } else if let Some(sid) = &p.session {
        Subject::Session(sid.clone())
    } else {
        Subject::Token(p.token.clone().unwrap_or_default())
    })
}

async fn scope_response(
    s: &AppState,
    a: &Authed,
    view: ScopeView<'_>,
    org: Option<OrgId>,
    p: ScopeParams,
) -> ApiResult<Response> {
    let subject = subject_of(&p)?;
    let from = p.from.as_deref().map(parse_time).transpose()?;
    let to = p.to.as_deref().map(parse_time).transpose()?;
    let format = p.format.as_deref().unwrap_or("json");
    if !matches!(format, "json" | "csv" | "html") {
        return Err(ApiError::bad_request("format must be json, csv or html"));
    }
    let report = incident::scope(&s.store.db, view, &subject, from, to).await?;
    let mut ev = AuditEvent::new("incident.scope", Outcome::Success).detail(json!({
        "subject": report.subject, "events": report.events_matched, "format": format
    }));
    if let Some(o) = org {
        ev = ev.org(o);
    }
    s.record(&a.ctx, ev).await?;
    Ok(match format {
        "csv" => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"kura-scope.csv\"",
                ),
            ],
            report.to_csv(),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::web::scope_html(&report),
        )
            .into_response(),
        _ => json_ok(StatusCode::OK, &report)?,
    })
}

async fn org_scope(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    ApiQuery(p): ApiQuery<ScopeParams>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ReadAudit)
        .await?;
    scope_response(&s, &a, ScopeView::Org(&g), Some(g.org_id()), p).await
}

async fn platform_scope(
    State(s): State<AppState>,
    a: Authed,
    ApiQuery(p): ApiQuery<ScopeParams>,
) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "incident.scope").await?;
    scope_response(&s, &a, ScopeView::Platform(&g), None, p).await
}

async fn force_reset_org(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let n = users::force_reset(&s.store.db, &g, &a.ctx, None).await?;
    json_ok(StatusCode::OK, &json!({"users": n}))
}

async fn force_reset_user(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let n = users::force_reset(&s.store.db, &g, &a.ctx, Some(user)).await?;
    json_ok(StatusCode::OK, &json!({"users": n}))
}

async fn get_platform_mode(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    s.platform_grant(&a.actor, &a.ctx, "platform.mode").await?;
    s.record(
        &a.ctx,
        AuditEvent::new("platform.mode_read", Outcome::Success),
    )
    .await?;
    json_ok(
        StatusCode::OK,
        &json!({"mode": platform::mode(&s.store.db).await?}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
}

async fn set_platform_mode(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(b): ApiJson<ModeBody>,
) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "platform.mode").await?;
    let mode = platform::Mode::from_arg(&b.mode)?;
    let old = platform::set_mode(&s.store.db, &g, &a.ctx, mode).await?;
    s.mode.set(mode);
    json_ok(StatusCode::OK, &json!({"mode": mode, "previous": old}))
}
