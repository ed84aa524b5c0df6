//! Password reset by email. Asking answers 202 whether or not the account
//! exists (no enumeration); the link's token works once, for 30 minutes,
//! and changes only the password: the second factor is still required.

use super::{op, Api, ApiJson};
use crate::auth::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_store::{orgs, password_resets, users, AuditCtx, AuditEvent, Outcome};
use serde::Deserialize;

pub fn routes(api: Api) -> Api {
    let api = op!(api, post "/api/auth/password-reset", "request_password_reset", "account", "public", "json", "Email a password reset link (202 whether or not the account exists)", request_reset);
    op!(api, post "/api/auth/password-reset/confirm", "confirm_password_reset", "account", "public", "json", "Set a new password with the emailed token (single use, 30 minutes); ends every session", confirm_reset)
}

/// Issue and mail a reset token when the account can use one; say nothing
/// either way.
pub(crate) async fn request(s: &AppState, ctx: &AuditCtx, email: &str) -> ApiResult<()> {
    if email.len() > 254 {
        return Err(ApiError::bad_request("email too long"));
    }
    let Some((user, Some(_))) = users::by_email(&s.store.db, email).await? else {
        let ev = AuditEvent::new("auth.password_reset_request", Outcome::Failure)
            .name(email.trim().to_lowercase())
            .detail(serde_json::json!({"reason": "unknown_account"}));
        s.record(ctx, ev).await?;
        return Ok(());
    };
    let org = orgs::get_any(&s.store.db, user.org_id).await?;
    if user.disabled || user.locked || org.suspended {
        let ev = AuditEvent::new("auth.password_reset_request", Outcome::Denied)
            .org(user.org_id)
            .detail(serde_json::json!({"user_id": user.id, "reason": "inactive"}));
        s.record(ctx, ev).await?;
        return Ok(());
    }
    let token = password_resets::issue(&s.store.db, ctx, user.id, user.org_id).await?;
    crate::notices::password_reset(s, &user, &token);
    Ok(())
}

/// Check the token and password rules, then set the password.
pub(crate) async fn confirm(
    s: &AppState,
    ctx: &AuditCtx,
    token: &str,
    password: &str,
) -> ApiResult<()> {
    let invalid = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "reset-token-invalid",
            "the reset link is invalid, expired or already used: ask for a new one",
        )
    };
    let Some(user_id) = password_resets::check(&s.store.db, token).await? else {
        let ev = AuditEvent::new("user.password_reset_by_email", Outcome::Denied)
            .detail(serde_json::json!({"reason": "token_invalid"}));
        s.record(ctx, ev).await?;
        return Err(invalid());
    };
    let user = users::get_any(&s.store.db, user_id).await?;
    let only = crate::signin::password_only(s, user.org_id, Some(user.id)).await?;
    users::check_password_policy(password, &user.email, only)?;
    let pw = password.to_string();
    let hash = s
        .hash_blocking(move || kura_crypto::hash_password(&pw))
        .await?
        .map_err(|_| ApiError::internal())?;
    match password_resets::complete(&s.store.db, ctx, token, &hash).await {
        Ok(_) => Ok(()),
        Err(kura_store::StoreError::NotFound) => Err(invalid()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestReq {
    email: String,
}

async fn request_reset(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RequestReq>,
) -> ApiResult<Response> {
    request(&s, &ctx, &req.email).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmReq {
    token: String,
    password: String,
}

async fn confirm_reset(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<ConfirmReq>,
) -> ApiResult<Response> {
    if req.token.len() > 200 || req.password.len() > 1024 {
        return Err(ApiError::bad_request("token or password too long"));
    }
    confirm(&s, &ctx, &req.token, &req.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
