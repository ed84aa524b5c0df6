//! Projects and their members.

use super::{json_ok, op, Api, ApiJson, ApiPath};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_core::policy::{Administer, ManageMembers, View};
use kura_core::{OrgAction, OrgId, ProjectId, ProjectRole, UserId};
use kura_store::{members, projects, users, AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

pub fn routes(api: Api) -> Api {
    let api = op!(api, get "/api/projects", "list_projects", "projects", "user", "none", "Projects you are a member of (organization admins: all of their organization's)", list);
    let api = op!(api, post "/api/projects", "create_project", "projects", "org:create_project", "json", "Create a project owned by your organization; you become its owner", create);
    let api = op!(api, get "/api/projects/{project_id}", "get_project", "projects", "project:view", "none", "A project", get);
    let api = op!(api, patch "/api/projects/{project_id}", "update_project", "projects", "project:administer", "json", "Rename a project", update);
    let api = op!(api, get "/api/projects/{project_id}/members", "list_members", "members", "project:view", "none", "Members with their organization and role", list_members);
    let api = op!(api, post "/api/projects/{project_id}/members", "add_member", "members", "project:manage_members", "json", "Add a member by email (from any organization)", add_member);
    let api = op!(api, put "/api/projects/{project_id}/members/{user_id}", "set_member", "members", "project:manage_members", "json", "Set a member's role", set_member);
    op!(api, delete "/api/projects/{project_id}/members/{user_id}", "remove_member", "members", "project:manage_members", "none", "Remove a member", remove_member)
}

async fn list(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    let items = projects::list_for(&s.store.db, &a.actor).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("project.list", Outcome::Success)
            .org(a.actor.org_id)
            .detail(json!({"count": items.len()})),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({ "items": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    name: String,
    org_id: Option<OrgId>,
}

async fn create(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<CreateReq>,
) -> ApiResult<Response> {
    let org = req.org_id.unwrap_or(a.actor.org_id);
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::CreateProject)
        .await?;
    let p = projects::create(&s.store.db, &g, &a.ctx, a.actor.user_id, &req.name).await?;
    json_ok(StatusCode::CREATED, &p)
}

async fn get(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<ProjectId>,
) -> ApiResult<Response> {
    let g = s.project_grant::<View>(&a.actor, &a.ctx, id).await?;
    let p = projects::get(&s.store.db, &g).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("project.view", Outcome::Success).project(g.org_id(), id),
    )
    .await?;
    json_ok(StatusCode::OK, &p)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateReq {
    name: String,
}

async fn update(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<ProjectId>,
    ApiJson(req): ApiJson<UpdateReq>,
) -> ApiResult<Response> {
    let g = s.project_grant::<Administer>(&a.actor, &a.ctx, id).await?;
    json_ok(
        StatusCode::OK,
        &projects::rename(&s.store.db, &g, &a.ctx, &req.name).await?,
    )
}

async fn list_members(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<ProjectId>,
) -> ApiResult<Response> {
    let g = s.project_grant::<View>(&a.actor, &a.ctx, id).await?;
    let items = members::list(&s.store.db, &g).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("member.list", Outcome::Success).project(g.org_id(), id),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({ "items": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddReq {
    email: String,
    role: ProjectRole,
}

async fn add_member(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<ProjectId>,
    ApiJson(req): ApiJson<AddReq>,
) -> ApiResult<Response> {
    let g = s
        .project_grant::<ManageMembers>(&a.actor, &a.ctx, id)
        .await?;
    let Some((user, _)) = users::by_email(&s.store.db, &req.email).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "user-not-found",
            "no active account has this email",
        ));
    };
    members::set(&s.store.db, &g, &a.ctx, user.id, req.role).await?;
    json_ok(
        StatusCode::CREATED,
        &json!({"user_id": user.id, "role": req.role}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleReq {
    role: ProjectRole,
}

async fn set_member(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((id, user)): ApiPath<(ProjectId, UserId)>,
    ApiJson(req): ApiJson<RoleReq>,
) -> ApiResult<Response> {
    let g = s
        .project_grant::<ManageMembers>(&a.actor, &a.ctx, id)
        .await?;
    members::set(&s.store.db, &g, &a.ctx, user, req.role).await?;
    json_ok(StatusCode::OK, &json!({"user_id": user, "role": req.role}))
}

async fn remove_member(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((id, user)): ApiPath<(ProjectId, UserId)>,
) -> ApiResult<Response> {
    let g = s
        .project_grant::<ManageMembers>(&a.actor, &a.ctx, id)
        .await?;
    members::remove(&s.store.db, &g, &a.ctx, user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
