//! What organization admins (and platform admins) do about sign-in: the
//! organization's policy, locking and unlocking accounts, resetting a
//! user's second factors, and cutting off sessions of a user or of the
//! whole organization. Every one needs a fresh second factor (the policy
//! demands step-up for org:manage_users) and is audited.

use super::{json_ok, op, Api, ApiJson, ApiPath};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_core::{OrgAction, OrgId, UserId};
use kura_store::org_policy::{self, OrgPolicy};
use kura_store::{sessions, throttle, users};
use serde::Deserialize;
use serde_json::json;

pub fn routes(api: Api) -> Api {
    let api = op!(api, get "/api/orgs/{org_id}/policy", "get_policy", "orgs", "org:manage_users", "none", "The organization's sign-in policy", get_policy);
    let api = op!(api, put "/api/orgs/{org_id}/policy", "set_policy", "orgs", "org:manage_users", "json", "Replace the organization's sign-in policy (MFA, WebAuthn for admins, allowed networks, timeouts, lockout, step-up)", set_policy);
    let api = op!(api, post "/api/orgs/{org_id}/users/{user_id}/lock", "lock_user", "orgs", "org:manage_users", "none", "Lock an account pending review (ends its sessions and API tokens)", lock_user);
    let api = op!(api, post "/api/orgs/{org_id}/users/{user_id}/unlock", "unlock_user", "orgs", "org:manage_users", "none", "Unlock an account and clear its failed sign-ins", unlock_user);
    let api = op!(api, post "/api/orgs/{org_id}/users/{user_id}/reset-mfa", "reset_mfa", "orgs", "org:manage_users", "none", "Remove a user's second factors and reopen enrolment for 7 days (ends their sessions and API tokens)", reset_mfa);
    let api = op!(api, get "/api/orgs/{org_id}/users/{user_id}/sessions", "list_user_sessions", "orgs", "org:manage_users", "none", "A user's active sessions", list_user_sessions);
    let api = op!(api, post "/api/orgs/{org_id}/users/{user_id}/revoke-sessions", "revoke_user_sessions", "orgs", "org:manage_users", "json-optional", "End every session of a user (and API tokens unless tokens=false)", revoke_user_sessions);
    let api = op!(api, get "/api/orgs/{org_id}/sso", "get_sso", "orgs", "org:manage_users", "none", "The organization's single sign-on (OpenID Connect) settings, without the client secret", get_sso);
    let api = op!(api, put "/api/orgs/{org_id}/sso", "set_sso", "orgs", "org:manage_users", "json", "Configure single sign-on: issuer, client_id, client_secret, idp_mfa_satisfies, provision_users", set_sso);
    let api = op!(api, delete "/api/orgs/{org_id}/sso", "delete_sso", "orgs", "org:manage_users", "none", "Turn single sign-on off", delete_sso);
    op!(api, post "/api/orgs/{org_id}/revoke-sessions", "revoke_org_sessions", "orgs", "org:manage_users", "json-optional", "End every session in the organization (and API tokens unless tokens=false)", revoke_org_sessions)
}

async fn get_policy(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    json_ok(
        StatusCode::OK,
        &org_policy::get(&s.store.db, g.org_id()).await?,
    )
}

async fn set_policy(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    if body.len() > 64 * 1024 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "policy documents are at most 64 KiB",
        ));
    }
    let policy: OrgPolicy = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string()))?;
    // An admin must not lock themselves out from where they stand.
    let ip = a.ctx.ip.clone().unwrap_or_default();
    if g.org_id() == a.actor.org_id && !policy.allows_ip(&ip) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the allowed networks do not include your own address {ip}; add it first"),
        ));
    }
    org_policy::set(&s.store.db, &g, &a.ctx, &policy).await?;
    json_ok(StatusCode::OK, &policy)
}

async fn target(
    s: &AppState,
    a: &Authed,
    org: OrgId,
    user: UserId,
) -> ApiResult<(kura_core::OrgGrant, users::User)> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let u = users::get_in_org(&s.store.db, &g, user).await?;
    Ok((g, u))
}

async fn lock_user(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
) -> ApiResult<Response> {
    let (g, u) = target(&s, &a, org, user).await?;
    if u.id == a.actor.user_id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot lock your own account",
        ));
    }
    throttle::lock(&s.store.db, &a.ctx, u.id, g.org_id(), "admin").await?;
    crate::notices::locked(&s, &u, "by an administrator");
    json_ok(StatusCode::OK, &users::get_any(&s.store.db, u.id).await?)
}

async fn unlock_user(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
) -> ApiResult<Response> {
    let (g, u) = target(&s, &a, org, user).await?;
    throttle::unlock(&s.store.db, &a.ctx, u.id, g.org_id(), &u.email).await?;
    json_ok(StatusCode::OK, &users::get_any(&s.store.db, u.id).await?)
}

async fn reset_mfa(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
) -> ApiResult<Response> {
    let (g, u) = target(&s, &a, org, user).await?;
    users::reset_mfa(&s.store.db, &g, &a.ctx, u.id).await?;
    json_ok(StatusCode::OK, &users::get_any(&s.store.db, u.id).await?)
}

async fn list_user_sessions(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
) -> ApiResult<Response> {
    let (_, u) = target(&s, &a, org, user).await?;
    let items = sessions::list_for_user(&s.store.db, u.id, s.config.session.idle_secs).await?;
    json_ok(StatusCode::OK, &json!({"items": items}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeReq {
    #[serde(default = "yes")]
    tokens: bool,
}

fn yes() -> bool {
    true
}

fn revoke_req(body: &[u8]) -> ApiResult<RevokeReq> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RevokeReq { tokens: true });
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string()))
}

async fn revoke_user_sessions(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((org, user)): ApiPath<(OrgId, UserId)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req = revoke_req(&body)?;
    let (g, u) = target(&s, &a, org, user).await?;
    let n = sessions::revoke_user(&s.store.db, &a.ctx, g.org_id(), u.id, req.tokens).await?;
    json_ok(StatusCode::OK, &json!({"revoked": n}))
}

async fn revoke_org_sessions(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req = revoke_req(&body)?;
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let n = sessions::revoke_org(&s.store.db, &a.ctx, g.org_id(), req.tokens).await?;
    json_ok(StatusCode::OK, &json!({"revoked": n}))
}

async fn get_sso(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let cfg = kura_store::sso::get(&s.store.db, &s.store.keys, g.org_id()).await?;
    json_ok(
        StatusCode::OK,
        &json!({"config": cfg, "redirect_uri": crate::sso::redirect_uri(&s), "login_url": format!("{}/sso?org=", s.config.public_url.trim_end_matches('/'))}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SsoReq {
    issuer: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    idp_mfa_satisfies: bool,
    #[serde(default)]
    provision_users: bool,
}

async fn set_sso(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
    ApiJson(req): ApiJson<SsoReq>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    let cfg = kura_store::sso::SsoConfig {
        // Exactly as the provider publishes it (discovery compares).
        issuer: req.issuer.trim().to_string(),
        client_id: req.client_id,
        client_secret: req.client_secret,
        idp_mfa_satisfies: req.idp_mfa_satisfies,
        provision_users: req.provision_users,
    };
    kura_store::sso::set(&s.store.db, &s.store.keys, &g, &a.ctx, Some(&cfg)).await?;
    json_ok(
        StatusCode::OK,
        &json!({"config": cfg, "redirect_uri": crate::sso::redirect_uri(&s)}),
    )
}

async fn delete_sso(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(org): ApiPath<OrgId>,
) -> ApiResult<Response> {
    let g = s
        .org_grant(&a.actor, &a.ctx, org, OrgAction::ManageUsers)
        .await?;
    kura_store::sso::set(&s.store.db, &s.store.keys, &g, &a.ctx, None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
