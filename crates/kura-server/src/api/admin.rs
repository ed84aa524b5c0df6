//! Platform and organization administration: organizations (platform
//! admins), users (organization admins; platform admins for account
//! administration), the platform-wide audit trail. Platform routes live
//! under /api/admin so they can be served on a separate listener.

use super::audit::{page, to_query, AuditParams};
use super::{json_ok, op, Api, ApiJson, ApiPath, ApiQuery};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_core::{OrgAction, OrgId, UserId};
use kura_store::audit::{self as trail, AuditScope};
use kura_store::orgs::{self, NewOrg, OrgChanges};
use kura_store::users::{self, NewUser, UserChanges};
use kura_store::{AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

/// Routes under /api/admin (platform administration).
pub fn routes(api: Api) -> Api {
    let api = op!(api, get "/api/admin/orgs", "list_orgs", "admin", "platform", "none", "All organizations", list_orgs);
    let api = op!(api, post "/api/admin/orgs", "create_org", "admin", "platform", "json", "Create an organization", create_org);
    let api = op!(api, patch "/api/admin/orgs/{org_id}", "update_org", "admin", "platform", "json", "Rename, set quota, suspend or reinstate an organization", update_org);
    op!(api, get "/api/admin/audit", "platform_audit", "admin", "platform", "none", "The whole platform's audit trail (filter org=…)", platform_audit)
}

/// Organization routes (public listener).
pub fn org_routes(api: Api) -> Api {
    let api = op!(api, get "/api/orgs/{org_id}", "get_org", "orgs", "org:view", "none", "An organization with its quota and usage", get_org);
    let api = op!(api, get "/api/orgs/{org_id}/users", "list_users", "orgs", "org:manage_users", "none", "The organization's users", list_users);
    let api = op!(api, post "/api/orgs/{org_id}/users", "create_user", "orgs", "org:manage_users", "json", "Create a user in the organization", create_user);
    let api = op!(api, patch "/api/orgs/{org_id}/users/{user_id}", "update_user", "orgs", "org:manage_users", "json", "Rename, disable/enable, or make a user organization admin", update_user);
    op!(api, post "/api/orgs/{org_id}/users/{user_id}/password", "reset_password", "orgs", "org:manage_users", "json", "Set a new password for a user (revokes their sessions and API tokens)", reset_password)
}

async fn list_orgs(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "org.list").await?;
    let items = orgs::list(&s.store.db, &g).await?;
    json_ok(StatusCode::OK, &json!({ "items": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrgReq {
    name: String,
    slug: String,
    quota_bytes: Option<i64>,
}

async fn create_org(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<CreateOrgReq>,
) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "org.create").await?;
    let quota = req.quota_bytes.unwrap_or(s.config.default_quota_bytes);
    let org = orgs::create(
        &s.store.db,
        &s.store.keys,
        &g,
        &a.ctx,
        NewOrg {
            name: &req.name,
            slug: &req.slug,
            quota_bytes: quota,
            is_platform: false,
        },
    )
    .await?;
    json_ok(StatusCode::CREATED, &org)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateOrgReq {
    name: Option<String>,
    quota_bytes: Option<i64>,
    suspended: Option<bool>,
}

async fn update_org(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<OrgId>,
    ApiJson(req): ApiJson<UpdateOrgReq>,
) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "org.update").await?;
    if req.suspended == Some(true) && id == a.actor.org_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot suspend your own organization",
        ));
    }
    let org = orgs::update(
        &s.store.db,
        &g,
        &a.ctx,
        id,
        OrgChanges {
            name: req.name,
            quota_bytes: req.quota_bytes,
            suspended: req.suspended,
        },
    )
    .await?;
    json_ok(StatusCode::OK, &org)
}

async fn platform_audit(
    State(s): State<AppState>,
    a: Authed,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Response> {
    let g = s.platform_grant(&a.actor, &a.ctx, "audit.read").await?;
    let q = to_query(p)?;
    let limit = q.limit;
    s.record(
        &a.ctx,
        AuditEvent::new("audit.read", Outcome::Success)
            .org(a.actor.org_id)
            .detail(json!({"scope": "platform"})),
    )
    .await?;
    page(
        trail::query(&s.store.db, AuditScope::Platform(&g), q).await?,
        limit,
    )
}

async fn get_org(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s.org_grant(&a.actor, &a.ctx, id, OrgAction::View).await?;
    json_ok(StatusCode::OK, &orgs::get(&s.store.db, &g).await?)
}

async fn list_users(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, id, OrgAction::ManageUsers)
        .await?;
    let items = users::list(&s.store.db, &g).await?;
    s.record(
        &a.ctx,
        AuditEvent::new("user.list", Outcome::Success).org(id),
    )
    .await?;
    json_ok(StatusCode::OK, &json!({ "items": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserReq {
    email: String,
    display_name: String,
    password: String,
    #[serde(default)]
    org_admin: bool,
}

async fn create_user(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<OrgId>,
    ApiJson(req): ApiJson<CreateUserReq>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, id, OrgAction::ManageUsers)
        .await?;
    let only = crate::signin::password_only(&s, g.org_id(), None).await?;
    users::check_password_policy(&req.password, &req.email, only)?;
    users::normalize_email(&req.email)?;
    let pw = req.password.clone();
    let hash = s
        .hash_blocking(move || kura_crypto::hash_password(&pw))
        .await?
        .map_err(|_| ApiError::internal())?;
    let u = users::create(
        &s.store.db,
        &g,
        &a.ctx,
        NewUser {
            email: &req.email,
            display_name: &req.display_name,
            password_hash: &hash,
            org_admin: req.org_admin,
            platform_admin: false,
        },
    )
    .await?;
    json_ok(StatusCode::CREATED, &u)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserReq {
    display_name: Option<String>,
    org_admin: Option<bool>,
    disabled: Option<bool>,
}

async fn update_user(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
    ApiJson(req): ApiJson<UpdateUserReq>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    if user == a.actor.user_id && (req.disabled == Some(true) || req.org_admin == Some(false)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot disable yourself or remove your own admin role",
        ));
    }
    let u = users::update(
        &s.store.db,
        &g,
        &a.ctx,
        user,
        UserChanges {
            display_name: req.display_name,
            org_admin: req.org_admin,
            disabled: req.disabled,
        },
    )
    .await?;
    json_ok(StatusCode::OK, &u)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetReq {
    password: String,
}

async fn reset_password(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
    ApiJson(req): ApiJson<ResetReq>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let target = users::get_in_org(&s.store.db, &g, user).await?;
    let only = crate::signin::password_only(&s, g.org_id(), Some(target.id)).await?;
    users::check_password_policy(&req.password, &target.email, only)?;
    let pw = req.password.clone();
    let hash = s
        .hash_blocking(move || kura_crypto::hash_password(&pw))
        .await?
        .map_err(|_| ApiError::internal())?;
    users::reset_password(&s.store.db, &g, &a.ctx, user, &hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
