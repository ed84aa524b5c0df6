//! The signed-in user's second factors: list, enrol (TOTP, passkeys and
//! security keys), rename, remove, and new recovery codes. Adding a factor
//! to an account that has one, removing one and new codes need step-up.

use super::signin::{passkeys, register_passkey};
use super::{json_ok, op, Api, ApiJson, ApiPath};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kura_core::FactorId;
use kura_store::challenges::{self, Purpose};
use kura_store::{mfa, org_policy, users};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(api: Api) -> Api {
    let api = op!(api, get "/api/me/factors", "list_factors", "account", "user", "none", "Your second factors, recovery codes left, and what your organization requires", list_factors);
    let api = op!(api, post "/api/me/factors/totp", "add_totp", "account", "user", "json-optional", "Start enrolling an authenticator app (step-up)", add_totp);
    let api = op!(api, post "/api/me/factors/totp/{factor_id}/confirm", "confirm_totp", "account", "user", "json", "Confirm an authenticator app with its current code", confirm_totp);
    let api = op!(api, post "/api/me/factors/webauthn/options", "add_webauthn_options", "account", "user", "none", "Options for registering a passkey or security key (step-up)", add_webauthn_options);
    let api = op!(api, post "/api/me/factors/webauthn", "add_webauthn", "account", "user", "json", "Register a passkey or security key", add_webauthn);
    let api = op!(api, patch "/api/me/factors/{factor_id}", "rename_factor", "account", "user", "json", "Rename a factor", rename_factor);
    let api = op!(api, delete "/api/me/factors/{factor_id}", "remove_factor", "account", "user", "none", "Remove a factor (step-up; the last one is kept where your organization requires MFA)", remove_factor);
    op!(api, post "/api/me/recovery-codes", "new_recovery_codes", "account", "user", "none", "Replace your recovery codes (step-up; shown once)", new_recovery_codes)
}

async fn list_factors(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    let db = &s.store.db;
    let user = users::get_any(db, a.actor.user_id).await?;
    let policy = org_policy::get(db, user.org_id).await?;
    let enrolled = mfa::enrolled(db, user.id).await?;
    json_ok(
        StatusCode::OK,
        &json!({
            "items": mfa::list(db, user.id).await?,
            "recovery_codes_left": enrolled.recovery_codes_left,
            "mfa_required": policy.requires_mfa(),
            "webauthn_required": policy.requires_webauthn(crate::signin::is_admin(&user)),
            "passkeys_available": s.passkeys.is_some(),
        }),
    )
}

/// Adding a factor is a sensitive change, the first one too: a stolen
/// session must not add the thief's factor.
fn may_add(a: &Authed) -> ApiResult<()> {
    a.require_writable()?;
    if matches!(a.actor.credential, kura_core::Credential::Token { .. }) {
        return Err(ApiError::forbidden());
    }
    a.require_step_up()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AddTotpReq {
    #[serde(default)]
    name: Option<String>,
}

async fn add_totp(
    State(s): State<AppState>,
    a: Authed,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    may_add(&a)?;
    // The body is optional: empty means the default name.
    let req: AddTotpReq = if body.iter().all(u8::is_ascii_whitespace) {
        AddTotpReq::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-json", e.to_string()))?
    };
    let user = users::get_any(&s.store.db, a.actor.user_id).await?;
    let e = mfa::totp_begin(
        &s.store.db,
        &s.store.keys,
        user.id,
        user.org_id,
        &user.email,
        req.name.as_deref().unwrap_or("Authenticator app"),
    )
    .await?;
    json_ok(
        StatusCode::CREATED,
        &json!({"factor_id": e.factor_id, "secret": e.secret_base32, "otpauth_uri": e.otpauth_uri}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeReq {
    code: String,
}

async fn confirm_totp(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<FactorId>,
    ApiJson(req): ApiJson<CodeReq>,
) -> ApiResult<Response> {
    a.require_writable()?;
    if req.code.len() > 64 {
        return Err(ApiError::bad_request("code too long"));
    }
    let codes = mfa::totp_confirm(
        &s.store.db,
        &s.store.keys,
        &a.ctx,
        a.actor.user_id,
        a.actor.org_id,
        id,
        &req.code,
    )
    .await?;
    json_ok(
        StatusCode::OK,
        &json!({"factor_id": id, "recovery_codes": codes}),
    )
}

async fn add_webauthn_options(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    may_add(&a)?;
    let user = users::get_any(&s.store.db, a.actor.user_id).await?;
    let stored = mfa::webauthn_credentials(&s.store.db, user.id).await?;
    let (options, state) =
        passkeys(&s)?.register_start(user.id, &user.email, &user.display_name, &stored)?;
    let challenge = challenges::create(&s.store.db, user.id, Purpose::Ceremony).await?;
    if let Some(c) = challenges::find(&s.store.db, &challenge, Purpose::Ceremony).await? {
        challenges::set_state(&s.store.db, &c.id, &state).await?;
    }
    json_ok(
        StatusCode::OK,
        &json!({"challenge": challenge, "options": options}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddWebauthnReq {
    challenge: String,
    credential: Value,
    #[serde(default)]
    name: Option<String>,
}

async fn add_webauthn(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<AddWebauthnReq>,
) -> ApiResult<Response> {
    a.require_writable()?;
    let c = challenges::find(&s.store.db, &req.challenge, Purpose::Ceremony)
        .await?
        .filter(|c| c.user_id == a.actor.user_id)
        .ok_or_else(crate::signin::challenge_invalid)?;
    if !challenges::consume(&s.store.db, &c.id).await? {
        return Err(crate::signin::challenge_invalid());
    }
    let user = users::get_any(&s.store.db, a.actor.user_id).await?;
    let codes = register_passkey(
        &s,
        &a.ctx,
        &user,
        c.state.as_deref(),
        req.credential,
        req.name.as_deref(),
    )
    .await?;
    json_ok(StatusCode::CREATED, &json!({"recovery_codes": codes}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameReq {
    name: String,
}

async fn rename_factor(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<FactorId>,
    ApiJson(req): ApiJson<RenameReq>,
) -> ApiResult<Response> {
    a.require_writable()?;
    mfa::rename(
        &s.store.db,
        &a.ctx,
        a.actor.user_id,
        a.actor.org_id,
        id,
        &req.name,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove_factor(
    State(s): State<AppState>,
    a: Authed,
    ApiPath(id): ApiPath<FactorId>,
) -> ApiResult<Response> {
    a.require_writable()?;
    a.require_step_up()?;
    let user = users::get_any(&s.store.db, a.actor.user_id).await?;
    let policy = org_policy::get(&s.store.db, user.org_id).await?;
    let keep = mfa::KeepRule {
        one_factor: policy.requires_mfa(),
        one_webauthn: policy.requires_webauthn(crate::signin::is_admin(&user)),
    };
    mfa::remove(&s.store.db, &a.ctx, user.id, user.org_id, id, keep).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn new_recovery_codes(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    a.require_writable()?;
    a.require_step_up()?;
    if !mfa::enrolled(&s.store.db, a.actor.user_id).await?.any() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "enrol a second factor first: recovery codes stand in for it",
        ));
    }
    let codes = mfa::regenerate_codes(&s.store.db, &a.ctx, a.actor.user_id, a.actor.org_id).await?;
    json_ok(StatusCode::OK, &json!({"recovery_codes": codes}))
}
