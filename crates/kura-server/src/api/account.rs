//! Sign-in, sign-out, bootstrap of the first platform administrator, and the
//! caller's own account: password, sessions, API tokens.

use super::{json_ok, op, Api, ApiJson, ApiPath};
use crate::auth::{Authed, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_core::{Credential, SessionId, TokenId};
use kura_store::{orgs, sessions, users, AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

pub fn routes(api: Api) -> Api {
    let api = op!(api, post "/api/bootstrap", "bootstrap", "account", "public", "json", "Create the first platform administrator with the one-time bootstrap token", bootstrap);
    let api = op!(api, post "/api/auth/logout", "logout", "account", "user", "none", "Sign out: revokes the current session", logout);
    let api = op!(api, get "/api/me", "me", "account", "user", "none", "The signed-in user", me);
    let api = op!(api, post "/api/me/password", "change_password", "account", "user", "json", "Change your password (ends every session and revokes API tokens; sign in again)", change_password);
    let api = op!(api, get "/api/me/sessions", "list_sessions", "account", "user", "none", "Your active sessions", list_sessions);
    let api = op!(api, delete "/api/me/sessions/{session_id}", "revoke_session", "account", "user", "none", "Revoke one of your sessions", revoke_session);
    let api = op!(api, get "/api/me/tokens", "list_tokens", "account", "user", "none", "Your API tokens", list_tokens);
    let api = op!(api, post "/api/me/tokens", "create_token", "account", "user", "json", "Create an API token (the secret is shown once)", create_token);
    op!(api, delete "/api/me/tokens/{token_id}", "revoke_token", "account", "user", "none", "Revoke an API token", revoke_token)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapReq {
    token: String,
    email: String,
    display_name: String,
    password: String,
}

async fn bootstrap(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<BootstrapReq>,
) -> ApiResult<Response> {
    let db = &s.store.db;
    let stored = kura_store::users::bootstrap_digest(db).await?;
    let ok = stored.as_deref().is_some_and(|d| {
        kura_crypto::secrets::secrets_equal(
            kura_crypto::token_digest(&req.token).as_bytes(),
            d.as_bytes(),
        )
    });
    if !ok || users::count_platform_admins(db).await? > 0 {
        let ev = AuditEvent::new("platform.bootstrap", Outcome::Denied);
        s.record(&ctx, ev).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bootstrap-invalid",
            "the bootstrap token is invalid or was already used",
        ));
    }
    // The first administrator is a platform admin: WebAuthn is due at sign-in.
    users::check_password_policy(&req.password, &req.email, false)?;
    let pw = req.password.clone();
    let hash = s
        .hash_blocking(move || kura_crypto::hash_password(&pw))
        .await?
        .map_err(|_| ApiError::internal())?;
    let user = kura_store::users::bootstrap_admin(
        db,
        &s.store.keys,
        &ctx,
        &req.email,
        &req.display_name,
        &hash,
    )
    .await?;
    json_ok(StatusCode::CREATED, &user)
}

pub(crate) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("kura_session=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
}

async fn logout(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    match a.actor.credential {
        Credential::Session(id) => {
            sessions::revoke(&s.store.db, &a.ctx, a.actor.user_id, a.actor.org_id, id).await?
        }
        _ => {
            return Err(ApiError::bad_request(
                "logout applies to browser sessions; revoke API tokens instead",
            ))
        }
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    Ok(resp)
}

async fn me(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    let user = users::get_any(&s.store.db, a.actor.user_id).await?;
    let org = orgs::get_any(&s.store.db, a.actor.org_id).await?;
    json_ok(StatusCode::OK, &json!({"user": user, "org": org}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordReq {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<PasswordReq>,
) -> ApiResult<Response> {
    a.require_writable()?;
    if req.current_password.len() > 1024 {
        return Err(ApiError::bad_request("password too long"));
    }
    let me = users::get_any(&s.store.db, a.actor.user_id).await?;
    let only = crate::signin::password_only(&s, me.org_id, Some(me.id)).await?;
    users::check_password_policy(&req.new_password, &me.email, only)?;
    let Some((_, Some(hash))) = users::by_email(&s.store.db, &me.email).await? else {
        return Err(ApiError::forbidden());
    };
    let cur = req.current_password.clone();
    if !s
        .hash_blocking(move || kura_crypto::verify_password(&cur, &hash))
        .await?
    {
        s.record(
            &a.ctx,
            AuditEvent::new("user.password_change", Outcome::Failure).org(a.actor.org_id),
        )
        .await?;
        // A stolen session guessing the password counts toward the lock.
        if crate::signin::count_failure(&s, &a.ctx, &me).await? {
            return Err(crate::signin::locked());
        }
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid-credentials",
            "the current password is wrong",
        ));
    }
    let new = req.new_password.clone();
    let new_hash = s
        .hash_blocking(move || kura_crypto::hash_password(&new))
        .await?
        .map_err(|_| ApiError::internal())?;
    users::set_password_hash(
        &s.store.db,
        a.actor.org_id,
        &a.ctx,
        a.actor.user_id,
        &new_hash,
        "user.password_change",
    )
    .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie());
    Ok(resp)
}

async fn list_sessions(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    let list =
        sessions::list_for_user(&s.store.db, a.actor.user_id, s.config.session.idle_secs).await?;
    let current = match a.actor.credential {
        Credential::Session(id) => Some(id),
        _ => None,
    };
    json_ok(
        StatusCode::OK,
        &json!({"items": list, "current_session_id": current}),
    )
}

async fn revoke_session(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<SessionId>,
) -> ApiResult<Response> {
    a.require_writable()?;
    sessions::revoke(&s.store.db, &a.ctx, a.actor.user_id, a.actor.org_id, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_tokens(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    json_ok(
        StatusCode::OK,
        &json!({"items": sessions::list_tokens(&s.store.db, a.actor.user_id).await?}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenReq {
    name: String,
    #[serde(default)]
    read_only: bool,
    #[serde(default = "default_ttl")]
    expires_in_days: i64,
}

fn default_ttl() -> i64 {
    90
}

async fn create_token(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<TokenReq>,
) -> ApiResult<Response> {
    if matches!(a.actor.credential, Credential::Token { .. }) {
        return Err(ApiError::forbidden());
    }
    a.require_step_up()?;
    let (info, secret) = sessions::create_token(
        &s.store.db,
        &a.ctx,
        &a.actor,
        &req.name,
        req.read_only,
        req.expires_in_days,
    )
    .await?;
    json_ok(
        StatusCode::CREATED,
        &json!({"token": info, "secret": secret}),
    )
}

async fn revoke_token(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<TokenId>,
) -> ApiResult<Response> {
    a.require_writable()?;
    sessions::revoke_token(&s.store.db, &a.ctx, &a.actor, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
