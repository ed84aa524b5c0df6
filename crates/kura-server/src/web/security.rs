//! The security dashboard (organization and platform admins): open alerts,
//! failed sign-ins, top downloaders, canary hits, the last verified
//! checkpoint; the scope report; and the kill switches as one action each.
//! Same store calls and grants as the API, same audit.

use super::browser::human_size;
use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use kura_core::{OrgAction, OrgId};
use kura_store::alerts::{self, Alert, AlertScope};
use kura_store::incident::{self, Report, ScopeView};
use kura_store::{platform, AuditEvent, Outcome};
use serde::Deserialize;
use std::collections::HashMap;

pub struct AlertRow {
    pub id: String,
    pub org_id: String,
    pub when: String,
    pub rule: String,
    pub severity: String,
    pub status: String,
    pub actor: String,
    pub ip: String,
    pub summary: String,
    pub containment: String,
}

pub struct Row3 {
    pub a: String,
    pub b: String,
    pub c: String,
    pub d: String,
}

pub struct OrgRow {
    pub id: String,
    pub name: String,
    pub suspended: bool,
}

#[derive(Template)]
#[template(path = "security.html")]
struct Dashboard {
    l: Layout,
    platform: bool,
    mode: String,
    alerts: Vec<AlertRow>,
    canary_hits: Vec<AlertRow>,
    failed: Vec<Row3>,
    downloaders: Vec<Row3>,
    checkpoint: String,
    verified: String,
    orgs: Vec<OrgRow>,
}

#[derive(Template)]
#[template(path = "scope.html")]
struct ScopePage {
    l: Layout,
    q: ScopeForm,
    report: Option<Report>,
    error: Option<String>,
    links: Vec<(String, String)>,
}

/// The standalone report (API `format=html` and `kura incident scope --format html`).
#[derive(Template)]
#[template(path = "scope_report.html")]
struct ScopeReportPage<'a> {
    report: &'a Report,
}

pub fn scope_html(report: &Report) -> String {
    ScopeReportPage { report }
        .render()
        .unwrap_or_else(|e| format!("report could not be rendered: {e}"))
}

/// Times in reports are UTC RFC 3339 (they go to other organizations).
pub fn utc(micros: impl Micros) -> String {
    kura_store::time::rfc3339(micros.micros())
}

pub fn size(b: impl Micros) -> String {
    human_size(b.micros())
}

/// An i64 however deeply the template borrows it.
pub trait Micros {
    fn micros(&self) -> i64;
}

impl Micros for i64 {
    fn micros(&self) -> i64 {
        *self
    }
}

impl<T: Micros + ?Sized> Micros for &T {
    fn micros(&self) -> i64 {
        (**self).micros()
    }
}

/// Who is looking: an organization admin (own organization) or a platform admin.
enum Viewer {
    Org(kura_core::OrgGrant),
    Platform(kura_core::PlatformGrant),
}

async fn viewer(s: &AppState, w: &Web) -> Result<Viewer, WebError> {
    let me = w.me()?;
    // With a separate admin listener, platform administration is not
    // served on the public one: a platform admin sees their organization.
    if me.actor.platform_admin && s.config.platform_on_public {
        return Ok(Viewer::Platform(
            s.platform_grant(&me.actor, &w.ctx, "security.dashboard")
                .await
                .web(w)?,
        ));
    }
    Ok(Viewer::Org(
        s.org_grant(&me.actor, &w.ctx, me.actor.org_id, OrgAction::ReadAudit)
            .await
            .web(w)?,
    ))
}

async fn emails(s: &AppState, ids: impl Iterator<Item = String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        let email = match id.parse() {
            Ok(u) => kura_store::users::get_any(&s.store.db, u)
                .await
                .map(|u| u.email)
                .unwrap_or_else(|_| id.clone()),
            Err(_) => id.clone(),
        };
        out.insert(id, email);
    }
    out
}

fn alert_row(w: &Web, a: &Alert, names: &HashMap<String, String>) -> AlertRow {
    let actor = a.actor_user_id.clone().unwrap_or_default();
    AlertRow {
        id: a.id.clone(),
        org_id: a.org_id.clone().unwrap_or_default(),
        when: w.time(a.created_at),
        rule: a.rule.clone(),
        severity: a.severity.clone(),
        status: a.status.clone(),
        actor: names.get(&actor).cloned().unwrap_or(actor),
        ip: a.ip.clone().unwrap_or_default(),
        summary: a.summary.clone(),
        containment: a.containment.clone(),
    }
}

pub async fn dashboard(State(s): State<AppState>, w: Web) -> Result<Response, WebError> {
    let v = viewer(&s, &w).await?;
    let db = &s.store.db;
    let (scope, org) = match &v {
        Viewer::Org(g) => (AlertScope::Org(g), Some(g.org_id())),
        Viewer::Platform(g) => (AlertScope::Platform(g), None),
    };
    let since = kura_store::time::now_micros() - 24 * 3600 * 1_000_000;
    let list = alerts::list(db, scope, None, 200).await.web(&w)?;
    let failed = incident::failed_sign_ins(db, org, since, 20)
        .await
        .web(&w)?;
    let top = incident::top_downloaders(db, org, since, 10)
        .await
        .web(&w)?;
    let names = emails(
        &s,
        list.iter()
            .filter_map(|a| a.actor_user_id.clone())
            .chain(top.iter().map(|d| d.actor_user_id.clone())),
    )
    .await;
    let checkpoints = kura_store::chain::checkpoints(db, org.map(|o| o.to_string()).as_deref())
        .await
        .web(&w)?;
    let checkpoint = checkpoints
        .iter()
        .max_by_key(|c| c.ts)
        .map(|c| {
            format!(
                "{} #{} ({})",
                w.time(c.ts),
                c.seq,
                &c.hash[..c.hash.len().min(16)]
            )
        })
        .unwrap_or_else(|| w.t.t("security.none").to_string());
    let verified = match incident::last_verification(db).await.web(&w)? {
        Some(v) => format!(
            "{}: {} ({} events, {} problems)",
            w.time(v["at_micros"].as_i64().unwrap_or(0)),
            if v["healthy"].as_bool() == Some(true) {
                "OK"
            } else {
                "FAILED"
            },
            v["events"].as_u64().unwrap_or(0),
            v["problems"].as_u64().unwrap_or(0)
        ),
        None => w.t.t("security.never_verified").to_string(),
    };
    let orgs = match &v {
        Viewer::Platform(g) => kura_store::orgs::list(db, g)
            .await
            .web(&w)?
            .into_iter()
            .filter(|o| !o.is_platform)
            .map(|o| OrgRow {
                id: o.id.to_string(),
                name: o.name,
                suspended: o.suspended,
            })
            .collect(),
        Viewer::Org(_) => Vec::new(),
    };
    s.record(
        &w.ctx,
        match org {
            Some(o) => AuditEvent::new("security.dashboard", Outcome::Success).org(o),
            None => AuditEvent::new("security.dashboard", Outcome::Success),
        },
    )
    .await
    .web(&w)?;
    let page = Dashboard {
        l: w.layout(w.t.t("security.title").into()),
        platform: org.is_none(),
        mode: platform::mode(db).await.web(&w)?.as_str().to_string(),
        alerts: list
            .iter()
            .filter(|a| a.status != "closed")
            .map(|a| alert_row(&w, a, &names))
            .collect(),
        canary_hits: list
            .iter()
            .filter(|a| a.rule == "canary")
            .map(|a| alert_row(&w, a, &names))
            .collect(),
        failed: failed
            .into_iter()
            .map(|f| Row3 {
                a: w.time(f.ts),
                b: f.email,
                c: f.ip,
                d: f.reason,
            })
            .collect(),
        downloaders: top
            .into_iter()
            .map(|d| Row3 {
                a: names
                    .get(&d.actor_user_id)
                    .cloned()
                    .unwrap_or(d.actor_user_id),
                b: d.files.to_string(),
                c: human_size(d.bytes),
                d: String::new(),
            })
            .collect(),
        checkpoint,
        verified,
        orgs,
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: String,
}

pub async fn alert_status(
    State(s): State<AppState>,
    w: Web,
    Path(id): Path<String>,
    WebForm(f): WebForm<StatusForm>,
) -> Result<Response, WebError> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| w.error(ApiError::not_found()))?
        .hyphenated()
        .to_string();
    let v = viewer(&s, &w).await?;
    let scope = match &v {
        Viewer::Org(g) => AlertScope::Org(g),
        Viewer::Platform(g) => AlertScope::Platform(g),
    };
    alerts::set_status(&s.store.db, scope, &w.ctx, &id, &f.status)
        .await
        .web(&w)?;
    Ok(see_other("/security"))
}

#[derive(Deserialize)]
pub struct ModeForm {
    mode: String,
}

pub async fn set_mode(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<ModeForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    if !s.config.platform_on_public {
        return Err(w.error(ApiError::not_found()));
    }
    let g = s
        .platform_grant(&me.actor, &w.ctx, "platform.mode")
        .await
        .web(&w)?;
    let mode = platform::Mode::from_arg(&f.mode).web(&w)?;
    platform::set_mode(&s.store.db, &g, &w.ctx, mode)
        .await
        .web(&w)?;
    s.mode.set(mode);
    // Suspension ended every session, this one included.
    Ok(see_other(if mode == platform::Mode::Suspended {
        "/login"
    } else {
        "/security"
    }))
}

#[derive(Deserialize)]
pub struct SuspendForm {
    suspended: String,
}

pub async fn suspend_org(
    State(s): State<AppState>,
    w: Web,
    Path(o): Path<String>,
    WebForm(f): WebForm<SuspendForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    if !s.config.platform_on_public {
        return Err(w.error(ApiError::not_found()));
    }
    let org: OrgId = o.parse().map_err(|_| w.error(ApiError::not_found()))?;
    let g = s
        .platform_grant(&me.actor, &w.ctx, "org.update")
        .await
        .web(&w)?;
    if org == me.actor.org_id {
        return Err(w.error(ApiError::bad_request(
            "you cannot suspend your own organization",
        )));
    }
    kura_store::orgs::update(
        &s.store.db,
        &g,
        &w.ctx,
        org,
        kura_store::orgs::OrgChanges {
            name: None,
            quota_bytes: None,
            suspended: Some(f.suspended == "1"),
        },
    )
    .await
    .web(&w)?;
    Ok(see_other("/security"))
}

#[derive(Deserialize, Default)]
pub struct ScopeForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
}

pub async fn scope(
    State(s): State<AppState>,
    w: Web,
    Query(q): Query<ScopeForm>,
) -> Result<Response, WebError> {
    let v = viewer(&s, &w).await?;
    let mut page = ScopePage {
        l: w.layout(w.t.t("scope.title").into()),
        q,
        report: None,
        error: None,
        links: Vec::new(),
    };
    if page.q.value.trim().is_empty() {
        return Ok(html(&page));
    }
    // An actor may be given by email.
    let mut value = page.q.value.trim().to_string();
    if page.q.kind == "actor" && value.contains('@') {
        match kura_store::users::by_email(&s.store.db, &value)
            .await
            .web(&w)?
        {
            Some((u, _)) => value = u.id.to_string(),
            None => {
                page.error = Some(w.t.t("scope.no_user").into());
                return Ok(html(&page));
            }
        }
    }
    let local = |t: &str| -> Option<String> {
        let t = t.trim();
        if t.is_empty() {
            None
        } else if t.len() == 16 {
            Some(format!("{t}:00Z"))
        } else {
            Some(t.to_string())
        }
    };
    let params = super::super::api::security::ScopeParams {
        actor: if page.q.kind == "actor" {
            value.parse().ok()
        } else {
            None
        },
        ip: (page.q.kind == "ip").then(|| value.clone()),
        session: (page.q.kind == "session").then(|| value.clone()),
        token: (page.q.kind == "token").then(|| value.clone()),
        from: local(&page.q.from),
        to: local(&page.q.to),
        format: None,
    };
    if page.q.kind == "actor" && params.actor.is_none() {
        page.error = Some(w.t.t("scope.no_user").into());
        return Ok(html(&page));
    }
    let subject = match super::super::api::security::subject_of(&params) {
        Ok(s) => s,
        Err(e) => {
            page.error = Some(e.detail);
            return Ok(html(&page));
        }
    };
    let from = params
        .from
        .as_deref()
        .map(crate::api::parse_time)
        .transpose()
        .web(&w)?;
    let to = params
        .to
        .as_deref()
        .map(crate::api::parse_time)
        .transpose()
        .web(&w)?;
    let (view, base) = match &v {
        Viewer::Org(g) => (
            ScopeView::Org(g),
            format!("/api/orgs/{}/incident/scope", g.org_id()),
        ),
        Viewer::Platform(g) => (
            ScopeView::Platform(g),
            "/api/admin/incident/scope".to_string(),
        ),
    };
    let report = incident::scope(&s.store.db, view, &subject, from, to)
        .await
        .web(&w)?;
    let mut qs = format!("{}={}", page.q.kind, super::urlencode(&value));
    for (k, t) in [("from", &params.from), ("to", &params.to)] {
        if let Some(t) = t {
            qs.push_str(&format!("&{k}={}", super::urlencode(t)));
        }
    }
    page.links = ["json", "csv", "html"]
        .iter()
        .map(|f| (f.to_uppercase(), format!("{base}?{qs}&format={f}")))
        .collect();
    let org = match &v {
        Viewer::Org(g) => Some(g.org_id()),
        Viewer::Platform(_) => None,
    };
    let mut ev = AuditEvent::new("incident.scope", Outcome::Success).detail(
        serde_json::json!({"subject": report.subject, "events": report.events_matched, "format": "page"}),
    );
    if let Some(o) = org {
        ev = ev.org(o);
    }
    s.record(&w.ctx, ev).await.web(&w)?;
    page.report = Some(report);
    Ok(html(&page))
}

/// Mark or unmark a file as a canary (admins of the owning organization).
pub async fn canary(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
    WebForm(f): WebForm<SuspendForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (Ok(project), Ok(node)) = (p.parse(), n.parse()) else {
        return Err(w.error(ApiError::not_found()));
    };
    let facts = kura_store::projects::facts(&s.store.db, project, me.actor.user_id)
        .await
        .web(&w)?
        .ok_or_else(|| w.error(ApiError::not_found()))?;
    let g = s
        .org_grant(&me.actor, &w.ctx, facts.org_id, OrgAction::ManageUsers)
        .await
        .web(&w)?;
    alerts::mark_canary(&s.store.db, &g, &w.ctx, project, node, f.suspended == "1")
        .await
        .web(&w)?;
    Ok(see_other(&format!("/projects/{p}/nodes/{n}")))
}

/// Kill switch: force a password reset and MFA re-enrolment for the whole
/// organization (the admin who does it excepted, so someone can still act).
pub async fn force_reset_org(
    State(s): State<AppState>,
    w: Web,
    Path(o): Path<String>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    force_reset(&s, &w, &o, None).await
}

/// Kill switch for one user.
pub async fn force_reset_user(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    force_reset(&s, &w, &o, Some(&u)).await
}

async fn force_reset(
    s: &AppState,
    w: &Web,
    o: &str,
    u: Option<&str>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let org: OrgId = o.parse().map_err(|_| w.error(ApiError::not_found()))?;
    let user = match u {
        Some(u) => Some(u.parse().map_err(|_| w.error(ApiError::not_found()))?),
        None => None,
    };
    let g = s
        .org_grant(&me.actor, &w.ctx, org, OrgAction::ManageUsers)
        .await
        .web(w)?;
    if user == Some(me.actor.user_id) {
        return Err(w.error(ApiError::bad_request(
            "you cannot force a reset of your own account",
        )));
    }
    let n = kura_store::users::force_reset(&s.store.db, &g, &w.ctx, user)
        .await
        .web(w)?;
    super::admin::render_org(
        s,
        w,
        org,
        Some(w.t.f("security.forced", &[("n", &n.to_string())])),
        axum::http::StatusCode::OK,
    )
    .await
}
