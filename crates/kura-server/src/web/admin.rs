//! Organization administration (users, projects, storage) and the audit
//! log viewer with CSV export.

use super::browser::human_size;
use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_core::{OrgAction, OrgId, UserId};
use kura_store::audit::{self as trail, AuditQuery, AuditScope, StoredEvent};
use kura_store::users::{self, NewUser, UserChanges};
use kura_store::{AuditEvent, Outcome};
use serde::Deserialize;
use std::collections::HashMap;

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub locked: bool,
    pub is_me: bool,
}

pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "org.html")]
struct OrgPage {
    l: Layout,
    org_id: String,
    org_name: String,
    storage_text: String,
    percent: i64,
    users: Vec<UserRow>,
    projects: Vec<ProjectRow>,
    message: Option<String>,
    policy: super::org_security::PolicyView,
}

fn oid(w: &Web, o: &str) -> Result<OrgId, WebError> {
    o.parse().map_err(|_| w.error(ApiError::not_found()))
}

pub(crate) async fn render_org(
    s: &AppState,
    w: &Web,
    org: OrgId,
    message: Option<String>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let g = s
        .org_grant(&me.actor, &w.ctx, org, OrgAction::ManageUsers)
        .await
        .web(w)?;
    let o = kura_store::orgs::get_any(&s.store.db, org).await.web(w)?;
    let list = users::list(&s.store.db, &g).await.web(w)?;
    let projects = kura_store::projects::list_in_org(&s.store.db, &g)
        .await
        .web(w)?;
    s.record(
        &w.ctx,
        AuditEvent::new("user.list", Outcome::Success)
            .org(org)
            .detail(serde_json::json!({"via": "web"})),
    )
    .await
    .web(w)?;
    let percent = if o.quota_bytes > 0 {
        (o.used_bytes * 100 / o.quota_bytes).clamp(0, 100)
    } else {
        100
    };
    let page = OrgPage {
        l: w.layout(o.name.clone()),
        org_id: org.to_string(),
        org_name: o.name.clone(),
        storage_text: w.t.f(
            "org.storage_use",
            &[
                ("used", &human_size(o.used_bytes)),
                ("quota", &human_size(o.quota_bytes)),
            ],
        ),
        percent,
        users: list
            .iter()
            .map(|u| UserRow {
                id: u.id.to_string(),
                email: u.email.clone(),
                name: u.display_name.clone(),
                admin: u.org_admin,
                disabled: u.disabled,
                locked: u.locked,
                is_me: u.id == me.actor.user_id,
            })
            .collect(),
        projects: projects
            .iter()
            .map(|p| ProjectRow {
                id: p.id.to_string(),
                name: p.name.clone(),
                created: w.time(p.created_at),
            })
            .collect(),
        message,
        policy: (&kura_store::org_policy::get(&s.store.db, org).await.web(w)?).into(),
    };
    let mut r = html(&page);
    *r.status_mut() = status;
    Ok(r)
}

pub async fn org(
    State(s): State<AppState>,
    w: Web,
    Path(o): Path<String>,
) -> Result<Response, WebError> {
    let o = oid(&w, &o)?;
    render_org(&s, &w, o, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    email: String,
    display_name: String,
    password: String,
    org_admin: Option<String>,
}

pub async fn create_user(
    State(s): State<AppState>,
    w: Web,
    Path(o): Path<String>,
    WebForm(f): WebForm<NewUserForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let o = oid(&w, &o)?;
    let g = s
        .org_grant(&me.actor, &w.ctx, o, OrgAction::ManageUsers)
        .await
        .web(&w)?;
    let only = crate::signin::password_only(&s, g.org_id(), None)
        .await
        .web(&w)?;
    if let Err(e) = users::check_password_policy(&f.password, &f.email, only)
        .and_then(|_| users::normalize_email(&f.email).map(|_| ()))
    {
        return render_org(&s, &w, o, Some(e.to_string()), StatusCode::BAD_REQUEST).await;
    }
    let pw = f.password.clone();
    let hash = s
        .hash_blocking(move || kura_crypto::hash_password(&pw))
        .await
        .web(&w)?
        .map_err(|_| w.error(ApiError::internal()))?;
    let new = NewUser {
        email: &f.email,
        display_name: &f.display_name,
        password_hash: &hash,
        org_admin: f.org_admin.is_some(),
        platform_admin: false,
    };
    match users::create(&s.store.db, &g, &w.ctx, new).await {
        Ok(u) => {
            render_org(
                &s,
                &w,
                o,
                Some(w.t.f("org.user_created", &[("email", &u.email)])),
                StatusCode::OK,
            )
            .await
        }
        Err(e @ (kura_store::StoreError::Conflict(_) | kura_store::StoreError::Invalid(_))) => {
            render_org(&s, &w, o, Some(e.to_string()), StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(w.error(e.into())),
    }
}

async fn set_disabled(
    s: &AppState,
    w: &Web,
    o: &str,
    u: &str,
    disabled: bool,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let o = oid(w, o)?;
    let u: UserId = u.parse().map_err(|_| w.error(ApiError::not_found()))?;
    if u == me.actor.user_id {
        return render_org(
            s,
            w,
            o,
            Some(w.t.t("org.not_yourself").into()),
            StatusCode::CONFLICT,
        )
        .await;
    }
    let g = s
        .org_grant(&me.actor, &w.ctx, o, OrgAction::ManageUsers)
        .await
        .web(w)?;
    users::update(
        &s.store.db,
        &g,
        &w.ctx,
        u,
        UserChanges {
            display_name: None,
            org_admin: None,
            disabled: Some(disabled),
        },
    )
    .await
    .web(w)?;
    Ok(see_other(&format!("/orgs/{o}")))
}

pub async fn disable_user(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    set_disabled(&s, &w, &o, &u, true).await
}

pub async fn enable_user(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    set_disabled(&s, &w, &o, &u, false).await
}

#[derive(Deserialize)]
pub struct ResetForm {
    password: String,
}

pub async fn reset_password(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(f): WebForm<ResetForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let o = oid(&w, &o)?;
    let u: UserId = u.parse().map_err(|_| w.error(ApiError::not_found()))?;
    let g = s
        .org_grant(&me.actor, &w.ctx, o, OrgAction::ManageUsers)
        .await
        .web(&w)?;
    let target = users::get_in_org(&s.store.db, &g, u).await.web(&w)?;
    let only = crate::signin::password_only(&s, g.org_id(), Some(target.id))
        .await
        .web(&w)?;
    if let Err(e) = users::check_password_policy(&f.password, &target.email, only) {
        return render_org(&s, &w, o, Some(e.to_string()), StatusCode::BAD_REQUEST).await;
    }
    let pw = f.password.clone();
    let hash = s
        .hash_blocking(move || kura_crypto::hash_password(&pw))
        .await
        .web(&w)?
        .map_err(|_| w.error(ApiError::internal()))?;
    users::reset_password(&s.store.db, &g, &w.ctx, u, &hash)
        .await
        .web(&w)?;
    render_org(
        &s,
        &w,
        o,
        Some(w.t.f("org.password_reset", &[("email", &target.email)])),
        StatusCode::OK,
    )
    .await
}

// ---- audit viewer ----

#[derive(Deserialize, Default, Clone)]
pub struct AuditFilter {
    org: Option<String>,
    actor: Option<String>,
    project: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
}

pub struct EventRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub object: String,
    pub bytes: String,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    l: Layout,
    f: AuditFilterView,
    rows: Vec<EventRow>,
    next_href: Option<String>,
    csv_href: String,
    platform: bool,
}

pub struct AuditFilterView {
    pub org: String,
    pub actor: String,
    pub project: String,
    pub action: String,
    pub outcome: String,
    pub from: String,
    pub to: String,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Resolve the filter into a query, confined to what the actor may read.
async fn scoped_query(
    s: &AppState,
    w: &Web,
    f: &AuditFilter,
    limit: i64,
) -> Result<Vec<StoredEvent>, WebError> {
    let me = w.me()?;
    let parse_local = |v: &str| -> Result<i64, WebError> {
        jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M", v)
            .ok()
            .and_then(|dt| dt.to_zoned(w.tz.clone()).ok())
            .map(|z| z.timestamp().as_microsecond())
            .ok_or_else(|| w.error(ApiError::bad_request(w.t.t("audit.bad_time"))))
    };
    let mut q = AuditQuery {
        limit,
        before_id: f.before,
        ..Default::default()
    };
    if let Some(a) = nonempty(&f.actor) {
        q.actor = match users::by_email(&s.store.db, a).await.web(w)? {
            Some((u, _)) => Some(u.id),
            None => Some(UserId::from_uuid(uuid::Uuid::nil())),
        };
    }
    q.project = nonempty(&f.project)
        .map(|p| p.parse())
        .transpose()
        .map_err(|_| w.error(ApiError::bad_request("project")))?;
    q.action = nonempty(&f.action).map(|a| a.chars().take(64).collect());
    q.outcome = nonempty(&f.outcome).map(|a| a.chars().take(16).collect());
    q.from_micros = nonempty(&f.from).map(parse_local).transpose()?;
    q.to_micros = nonempty(&f.to).map(parse_local).transpose()?;
    let requested_org: Option<OrgId> = nonempty(&f.org)
        .map(|o| o.parse())
        .transpose()
        .map_err(|_| w.error(ApiError::bad_request("org")))?;
    // With a separate admin listener, the public web shows a platform admin
    // only their own organization's trail.
    if me.actor.platform_admin && s.config.platform_on_public {
        let g = s
            .platform_grant(&me.actor, &w.ctx, "audit.read")
            .await
            .web(w)?;
        q.org = requested_org;
        trail::query(&s.store.db, AuditScope::Platform(&g), q)
            .await
            .web(w)
    } else {
        let g = s
            .org_grant(
                &me.actor,
                &w.ctx,
                requested_org.unwrap_or(me.actor.org_id),
                OrgAction::ReadAudit,
            )
            .await
            .web(w)?;
        trail::query(&s.store.db, AuditScope::Org(&g), q)
            .await
            .web(w)
    }
}

fn query_string(f: &AuditFilter) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("org", &f.org),
        ("actor", &f.actor),
        ("project", &f.project),
        ("action", &f.action),
        ("outcome", &f.outcome),
        ("from", &f.from),
        ("to", &f.to),
    ] {
        if let Some(v) = nonempty(v) {
            parts.push(format!("{k}={}", super::urlencode(v)));
        }
    }
    parts.join("&")
}

async fn rows_for(s: &AppState, w: &Web, events: &[StoredEvent]) -> Vec<EventRow> {
    let mut emails: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for e in events {
        let who = e.actor_user_id.clone().unwrap_or_default();
        if !emails.contains_key(&who) {
            let email = match who.parse() {
                Ok(id) => users::get_any(&s.store.db, id)
                    .await
                    .map(|u| u.email)
                    .unwrap_or_default(),
                Err(_) => e.credential.clone().unwrap_or_default(),
            };
            emails.insert(who.clone(), email);
        }
        out.push(EventRow {
            when: w.time(e.ts_micros),
            actor: emails.get(&who).cloned().unwrap_or_default(),
            action: e.action.clone(),
            outcome: e.outcome.clone(),
            object: e.object_name.clone().unwrap_or_default(),
            bytes: e.bytes.map(|b| b.to_string()).unwrap_or_default(),
            ip: e.ip.clone().unwrap_or_default(),
        });
    }
    out
}

const AUDIT_PAGE: i64 = 100;

pub async fn audit(
    State(s): State<AppState>,
    w: Web,
    q: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let Query(f) = q.map_err(|e| w.error(ApiError::bad_request(e.body_text())))?;
    let events = scoped_query(&s, &w, &f, AUDIT_PAGE).await?;
    s.record(
        &w.ctx,
        AuditEvent::new("audit.read", Outcome::Success)
            .org(me.actor.org_id)
            .detail(serde_json::json!({"via": "web"})),
    )
    .await
    .web(&w)?;
    let qs = query_string(&f);
    let next_href = (events.len() as i64 == AUDIT_PAGE)
        .then(|| {
            events
                .last()
                .map(|e| format!("/audit?{qs}&before={}", e.id))
        })
        .flatten();
    let page = AuditPage {
        l: w.layout(w.t.t("audit.title").into()),
        rows: rows_for(&s, &w, &events).await,
        f: AuditFilterView {
            org: f.org.clone().unwrap_or_default(),
            actor: f.actor.clone().unwrap_or_default(),
            project: f.project.clone().unwrap_or_default(),
            action: f.action.clone().unwrap_or_default(),
            outcome: f.outcome.clone().unwrap_or_default(),
            from: f.from.clone().unwrap_or_default(),
            to: f.to.clone().unwrap_or_default(),
        },
        next_href,
        csv_href: format!("/audit.csv?{qs}"),
        platform: me.actor.platform_admin && s.config.platform_on_public,
    };
    Ok(html(&page))
}

/// The filtered trail as CSV (at most 100,000 events per export).
pub async fn audit_csv(
    State(s): State<AppState>,
    w: Web,
    q: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let Query(mut f) = q.map_err(|e| w.error(ApiError::bad_request(e.body_text())))?;
    let mut out = String::from("time_utc,actor,credential,ip,user_agent,action,outcome,org_id,project_id,node_id,version_id,object,bytes,request_id\n");
    let mut emails: HashMap<String, String> = HashMap::new();
    let mut total = 0;
    for _ in 0..100 {
        let events = scoped_query(&s, &w, &f, 1000).await?;
        for e in &events {
            let who = e.actor_user_id.clone().unwrap_or_default();
            if !emails.contains_key(&who) {
                let email = match who.parse() {
                    Ok(id) => users::get_any(&s.store.db, id)
                        .await
                        .map(|u| u.email)
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                emails.insert(who.clone(), email);
            }
            let cols = [
                crate::api::rfc3339(e.ts_micros),
                emails.get(&who).cloned().unwrap_or_default(),
                e.credential.clone().unwrap_or_default(),
                e.ip.clone().unwrap_or_default(),
                e.user_agent.clone().unwrap_or_default(),
                e.action.clone(),
                e.outcome.clone(),
                e.org_id.clone().unwrap_or_default(),
                e.project_id.clone().unwrap_or_default(),
                e.node_id.clone().unwrap_or_default(),
                e.version_id.clone().unwrap_or_default(),
                e.object_name.clone().unwrap_or_default(),
                e.bytes.map(|b| b.to_string()).unwrap_or_default(),
                e.request_id.clone().unwrap_or_default(),
            ];
            out.push_str(
                &cols
                    .iter()
                    .map(|c| kura_store::incident::csv_field(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        total += events.len();
        match events.last() {
            Some(last) if events.len() == 1000 => f.before = Some(last.id),
            _ => break,
        }
    }
    s.record(
        &w.ctx,
        AuditEvent::new("audit.export", Outcome::Success)
            .org(me.actor.org_id)
            .detail(serde_json::json!({"rows": total, "filter": query_string(&f)})),
    )
    .await
    .web(&w)?;
    let mut r = out.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"kura-audit.csv\""),
    );
    Ok(r)
}
