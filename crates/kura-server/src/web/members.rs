//! Project members: who is in the project, from which organization, with
//! which role; managers (and the owning organization's admins) change it.

use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kura_core::policy::{ManageMembers, View};
use kura_core::{authorize_project, ProjectId, ProjectRole, UserId};
use kura_store::{members, AuditEvent, Outcome};
use serde::Deserialize;

pub struct MemberRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub org: String,
    pub role: String,
    pub role_label: String,
}

pub struct RoleOption {
    pub value: &'static str,
    pub label: String,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    l: Layout,
    project_id: String,
    project_name: String,
    rows: Vec<MemberRow>,
    can_manage: bool,
    roles: Vec<RoleOption>,
    error: Option<String>,
}

fn pid(w: &Web, p: &str) -> Result<ProjectId, WebError> {
    p.parse().map_err(|_| w.error(ApiError::not_found()))
}

async fn render(
    s: &AppState,
    w: &Web,
    p: ProjectId,
    error: Option<String>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let g = s.project_grant::<View>(&me.actor, &w.ctx, p).await.web(w)?;
    let project = kura_store::projects::get(&s.store.db, &g).await.web(w)?;
    let list = members::list(&s.store.db, &g).await.web(w)?;
    s.record(
        &w.ctx,
        AuditEvent::new("member.list", Outcome::Success).project(g.org_id(), p),
    )
    .await
    .web(w)?;
    // Whether to show the controls; the POST handlers decide again.
    let facts = kura_store::projects::facts(&s.store.db, p, me.actor.user_id)
        .await
        .web(w)?;
    let can_manage =
        facts.is_some_and(|f| authorize_project::<ManageMembers>(&me.actor, &f).is_ok());
    let rows = list
        .iter()
        .map(|m| MemberRow {
            user_id: m.user_id.to_string(),
            name: m.display_name.clone(),
            email: m.email.clone(),
            org: m.org_name.clone(),
            role: m.role.as_str().to_string(),
            role_label: w.t.t(&format!("role.{}", m.role.as_str())).to_string(),
        })
        .collect();
    let roles = ProjectRole::ALL
        .iter()
        .map(|r| RoleOption {
            value: r.as_str(),
            label: w.t.t(&format!("role.{}", r.as_str())).to_string(),
        })
        .collect();
    let has_error = error.is_some();
    let page = MembersPage {
        l: w.layout(w.t.t("members.title").into()),
        project_id: p.to_string(),
        project_name: project.name,
        rows,
        can_manage,
        roles,
        error,
    };
    let mut r = html(&page);
    if has_error {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

pub async fn list(
    State(s): State<AppState>,
    w: Web,
    Path(p): Path<String>,
) -> Result<Response, WebError> {
    let p = pid(&w, &p)?;
    render(&s, &w, p, None).await
}

#[derive(Deserialize)]
pub struct AddForm {
    email: String,
    role: ProjectRole,
}

pub async fn add(
    State(s): State<AppState>,
    w: Web,
    Path(p): Path<String>,
    WebForm(f): WebForm<AddForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let p = pid(&w, &p)?;
    let g = s
        .project_grant::<ManageMembers>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let Some((user, _)) = kura_store::users::by_email(&s.store.db, &f.email)
        .await
        .web(&w)?
    else {
        return render(&s, &w, p, Some(w.t.t("members.no_such_user").into())).await;
    };
    match members::set(&s.store.db, &g, &w.ctx, user.id, f.role).await {
        Ok(()) => Ok(see_other(&format!("/projects/{p}/members"))),
        Err(kura_store::StoreError::Conflict(m)) => render(&s, &w, p, Some(m)).await,
        Err(e) => Err(w.error(e.into())),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: ProjectRole,
}

fn uid(w: &Web, u: &str) -> Result<UserId, WebError> {
    u.parse().map_err(|_| w.error(ApiError::not_found()))
}

pub async fn set_role(
    State(s): State<AppState>,
    w: Web,
    Path((p, u)): Path<(String, String)>,
    WebForm(f): WebForm<RoleForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, u) = (pid(&w, &p)?, uid(&w, &u)?);
    let g = s
        .project_grant::<ManageMembers>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    match members::set(&s.store.db, &g, &w.ctx, u, f.role).await {
        Ok(()) => Ok(see_other(&format!("/projects/{p}/members"))),
        Err(kura_store::StoreError::Conflict(m)) => render(&s, &w, p, Some(m)).await,
        Err(e) => Err(w.error(e.into())),
    }
}

pub async fn remove(
    State(s): State<AppState>,
    w: Web,
    Path((p, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, u) = (pid(&w, &p)?, uid(&w, &u)?);
    let g = s
        .project_grant::<ManageMembers>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    match members::remove(&s.store.db, &g, &w.ctx, u).await {
        Ok(()) => Ok(see_other(&format!("/projects/{p}/members"))),
        Err(kura_store::StoreError::Conflict(m)) => render(&s, &w, p, Some(m)).await,
        Err(e) => Err(w.error(e.into())),
    }
}
