//! Sign-in with a second factor, enrolment of the first factor inside the
//! enrolment window, and step-up for sensitive actions.
//!
//! `POST /api/auth/login` answers 200 with a session only where no factor
//! is due; otherwise 401 with `code: mfa-required` (or
//! `mfa-enrolment-required`), a `challenge` and the accepted `methods`.

use super::{json_ok, op, Api, ApiJson};
use crate::auth::{cookie_from_headers, Authed, Ctx, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::signin::{self, Pending, Step};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use kura_core::{Credential, FactorId};
use kura_store::challenges::{self, Purpose};
use kura_store::sessions::{self, Amr, NewSession};
use kura_store::{mfa, users, AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes(api: Api) -> Api {
    let api = op!(api, post "/api/auth/login", "login", "account", "public", "json", "Sign in with email and password: a session, or a challenge for the second factor (401 mfa-required / mfa-enrolment-required)", login);
    let api = op!(api, post "/api/auth/mfa", "login_factor", "account", "public", "json", "Complete sign-in with a TOTP or recovery code", login_factor);
    let api = op!(api, post "/api/auth/mfa/webauthn/options", "login_webauthn_options", "account", "public", "json", "Options for signing in with a passkey or security key", login_webauthn_options);
    let api = op!(api, post "/api/auth/mfa/webauthn", "login_webauthn", "account", "public", "json", "Complete sign-in with a passkey or security key", login_webauthn);
    let api = op!(api, post "/api/auth/enrol/totp", "enrol_totp", "account", "public", "json", "During sign-in: start enrolling an authenticator app", enrol_totp);
    let api = op!(api, post "/api/auth/enrol/totp/confirm", "enrol_totp_confirm", "account", "public", "json", "During sign-in: confirm the app with a code; signs in and shows recovery codes once", enrol_totp_confirm);
    let api = op!(api, post "/api/auth/enrol/webauthn/options", "enrol_webauthn_options", "account", "public", "json", "During sign-in: options for registering a passkey or security key", enrol_webauthn_options);
    let api = op!(api, post "/api/auth/enrol/webauthn", "enrol_webauthn", "account", "public", "json", "During sign-in: register a passkey or security key; signs in and shows recovery codes once", enrol_webauthn);
    let api = op!(api, post "/api/auth/step-up", "step_up", "account", "user", "json", "Confirm a fresh second factor (TOTP, recovery code, or password where you have no factor); renews the session secret", step_up);
    let api = op!(api, post "/api/auth/step-up/webauthn/options", "step_up_webauthn_options", "account", "user", "none", "Options for a step-up with a passkey or security key", step_up_webauthn_options);
    op!(api, post "/api/auth/step-up/webauthn", "step_up_webauthn", "account", "user", "json", "Step up with a passkey or security key; renews the session secret", step_up_webauthn)
}

pub(crate) fn session_cookie(s: &AppState, token: &str) -> ApiResult<axum::http::HeaderValue> {
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={}",
        s.config.session.absolute_secs
    );
    axum::http::HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())
}

fn signed_in(
    s: &AppState,
    user: &users::User,
    sess: &NewSession,
    extra: Option<Vec<String>>,
) -> ApiResult<Response> {
    let mut body = json!({"user": user, "session_id": sess.id, "csrf_token": sess.csrf_token, "expires_at": super::rfc3339(sess.absolute_expires_at)});
    if let Some(codes) = extra {
        body["recovery_codes"] = json!(codes);
    }
    let mut resp = json_ok(StatusCode::OK, &body)?;
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(s, &sess.token)?);
    Ok(resp)
}

/// The problem document for a pending second factor or enrolment.
pub(crate) fn step_problem(step: &Step) -> Option<ApiError> {
    match step {
        Step::Session(..) => None,
        Step::Factor { challenge, methods } => Some(
            ApiError::new(StatusCode::UNAUTHORIZED, "mfa-required", "password accepted: present a second factor with the challenge")
                .with("challenge", json!(challenge))
                .with("methods", json!(methods)),
        ),
        Step::Enrol { challenge, methods } => Some(
            ApiError::new(StatusCode::UNAUTHORIZED, "mfa-enrolment-required", "password accepted: your organization requires a second factor; enrol one with the challenge to finish signing in")
                .with("challenge", json!(challenge))
                .with("methods", json!(methods)),
        ),
    }
}

#[derive(Deserialize)]
struct LoginReq {
    email: String,
    password: String,
}

async fn login(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginReq>,
) -> ApiResult<Response> {
    let presented = cookie_from_headers(&headers, SESSION_COOKIE);
    let step =
        signin::password_step(&s, &ctx, &req.email, &req.password, presented.as_deref()).await?;
    if let Some(p) = step_problem(&step) {
        return Err(p);
    }
    match step {
        Step::Session(user, sess) => signed_in(&s, &user, &sess, None),
        _ => Err(ApiError::internal()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FactorReq {
    challenge: String,
    method: String,
    code: String,
}

/// Check a TOTP or recovery code for a pending user. Ok(Some(amr)) when valid.
pub(crate) async fn check_code(
    s: &AppState,
    p: &Pending,
    method: &str,
    code: &str,
) -> ApiResult<Option<Amr>> {
    if code.len() > 64 {
        return Err(ApiError::bad_request("code too long"));
    }
    let db = &s.store.db;
    match method {
        "totp" if p.webauthn_only() => Err(webauthn_required()),
        "totp" => Ok(mfa::verify_totp(db, &s.store.keys, p.user.id, code, true)
            .await?
            .map(|_| Amr::PasswordOtp)),
        "recovery" => {
            let ok = mfa::use_recovery_code(db, p.user.id, code).await?;
            if ok {
                let left = mfa::enrolled(db, p.user.id).await?.recovery_codes_left;
                let ev = AuditEvent::new("mfa.recovery_code_used", Outcome::Success)
                    .org(p.user.org_id)
                    .detail(json!({"remaining": left}));
                s.record(&p.ctx, ev).await?;
            }
            Ok(ok.then_some(Amr::PasswordRecovery))
        }
        _ => Err(ApiError::bad_request("method must be totp or recovery")),
    }
}

fn webauthn_required() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "webauthn-required",
        "administrators of your organization must use a passkey or security key",
    )
}

async fn login_factor(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<FactorReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::SignIn).await?;
    let Some(amr) = check_code(&s, &p, &req.method, &req.code).await? else {
        return Err(signin::factor_failed(&s, &p, &req.method).await?);
    };
    let presented = cookie_from_headers(&headers, SESSION_COOKIE);
    let sess = signin::complete(&s, &p, amr, presented.as_deref()).await?;
    signed_in(&s, &p.user, &sess, None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeReq {
    challenge: String,
}

pub(crate) fn passkeys(s: &AppState) -> ApiResult<&crate::passkeys::Passkeys> {
    s.passkeys.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "webauthn-unavailable",
            "passkeys need the server's public_url to be a host name (not an IP address)",
        )
    })
}

async fn login_webauthn_options(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<ChallengeReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::SignIn).await?;
    let stored = mfa::webauthn_credentials(&s.store.db, p.user.id).await?;
    let (options, state) = passkeys(&s)?.auth_start(&stored)?;
    challenges::set_state(&s.store.db, &p.challenge.id, &state).await?;
    json_ok(StatusCode::OK, &options)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CeremonyReq {
    challenge: String,
    credential: Value,
    #[serde(default)]
    name: Option<String>,
}

/// Verify an assertion for a pending or signed-in user; Ok(None) if refused.
pub(crate) async fn check_assertion(
    s: &AppState,
    user: kura_core::UserId,
    state: Option<&str>,
    credential: Value,
) -> ApiResult<Option<FactorId>> {
    let Some(state) = state else {
        return Ok(None);
    };
    let stored = mfa::webauthn_credentials(&s.store.db, user).await?;
    match passkeys(s)?.auth_finish(state, credential, &stored) {
        Ok((id, updated)) => {
            mfa::webauthn_used(&s.store.db, id, updated.as_deref()).await?;
            Ok(Some(id))
        }
        Err(e) if e.status == StatusCode::BAD_REQUEST => Ok(None),
        Err(e) => Err(e),
    }
}

async fn login_webauthn(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CeremonyReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::SignIn).await?;
    if check_assertion(&s, p.user.id, p.challenge.state.as_deref(), req.credential)
        .await?
        .is_none()
    {
        return Err(signin::factor_failed(&s, &p, "webauthn").await?);
    }
    let presented = cookie_from_headers(&headers, SESSION_COOKIE);
    let sess = signin::complete(&s, &p, Amr::PasswordHwk, presented.as_deref()).await?;
    signed_in(&s, &p.user, &sess, None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolTotpReq {
    challenge: String,
    #[serde(default)]
    name: Option<String>,
}

async fn enrol_totp(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<EnrolTotpReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::Enrol).await?;
    if p.webauthn_only() {
        return Err(webauthn_required());
    }
    let e = mfa::totp_begin(
        &s.store.db,
        &s.store.keys,
        p.user.id,
        p.user.org_id,
        &p.user.email,
        req.name.as_deref().unwrap_or("Authenticator app"),
    )
    .await?;
    json_ok(
        StatusCode::OK,
        &json!({"factor_id": e.factor_id, "secret": e.secret_base32, "otpauth_uri": e.otpauth_uri}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmReq {
    challenge: String,
    factor_id: FactorId,
    code: String,
}

async fn enrol_totp_confirm(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ConfirmReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::Enrol).await?;
    if req.code.len() > 64 {
        return Err(ApiError::bad_request("code too long"));
    }
    let codes = match mfa::totp_confirm(
        &s.store.db,
        &s.store.keys,
        &p.ctx,
        p.user.id,
        p.user.org_id,
        req.factor_id,
        &req.code,
    )
    .await
    {
        Ok(c) => c,
        Err(kura_store::StoreError::Invalid(m)) => {
            challenges::failed(&s.store.db, &p.challenge.id).await?;
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid-code", m));
        }
        Err(e) => return Err(e.into()),
    };
    let presented = cookie_from_headers(&headers, SESSION_COOKIE);
    let sess = signin::complete(&s, &p, Amr::PasswordOtp, presented.as_deref()).await?;
    signed_in(&s, &p.user, &sess, codes)
}

async fn enrol_webauthn_options(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<ChallengeReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::Enrol).await?;
    let stored = mfa::webauthn_credentials(&s.store.db, p.user.id).await?;
    let (options, state) =
        passkeys(&s)?.register_start(p.user.id, &p.user.email, &p.user.display_name, &stored)?;
    challenges::set_state(&s.store.db, &p.challenge.id, &state).await?;
    json_ok(StatusCode::OK, &options)
}

/// Verify a registration and store the passkey; returns new recovery codes.
pub(crate) async fn register_passkey(
    s: &AppState,
    ctx: &kura_store::AuditCtx,
    user: &users::User,
    state: Option<&str>,
    credential: Value,
    name: Option<&str>,
) -> ApiResult<Option<Vec<String>>> {
    let Some(state) = state else {
        return Err(ApiError::bad_request(
            "request the registration options first",
        ));
    };
    let (cred_id, json) = match passkeys(s)?.register_finish(state, credential) {
        Ok(v) => v,
        Err(e) => {
            let ev = AuditEvent::new("mfa.enrol", Outcome::Failure)
                .org(user.org_id)
                .detail(json!({"kind": "webauthn"}));
            s.record(ctx, ev).await?;
            return Err(e);
        }
    };
    let (_, codes) = mfa::add_webauthn(
        &s.store.db,
        ctx,
        user.id,
        user.org_id,
        name.unwrap_or("Passkey"),
        &cred_id,
        &json,
    )
    .await?;
    Ok(codes)
}

async fn enrol_webauthn(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CeremonyReq>,
) -> ApiResult<Response> {
    let p = signin::pending(&s, &ctx, &req.challenge, Purpose::Enrol).await?;
    let codes = register_passkey(
        &s,
        &p.ctx,
        &p.user,
        p.challenge.state.as_deref(),
        req.credential,
        req.name.as_deref(),
    )
    .await?;
    let presented = cookie_from_headers(&headers, SESSION_COOKIE);
    let sess = signin::complete(&s, &p, Amr::PasswordHwk, presented.as_deref()).await?;
    signed_in(&s, &p.user, &sess, codes)
}

// ---- step-up ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepUpReq {
    method: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn session_of(actor: &kura_core::Actor) -> ApiResult<kura_core::SessionId> {
    match actor.credential {
        Credential::Session(id) => Ok(id),
        _ => Err(ApiError::bad_request(
            "step-up applies to browser sessions; API tokens carry the factor of the session that created them",
        )),
    }
}

/// A signed-in user as a pending sign-in, to share the code checks.
async fn as_pending(
    s: &AppState,
    actor: &kura_core::Actor,
    ctx: &kura_store::AuditCtx,
) -> ApiResult<Pending> {
    let user = users::get_any(&s.store.db, actor.user_id).await?;
    let policy = kura_store::org_policy::get(&s.store.db, user.org_id).await?;
    Ok(Pending {
        challenge: challenges::Challenge {
            id: String::new(),
            user_id: user.id,
            state: None,
        },
        user,
        policy,
        ctx: ctx.clone(),
    })
}

/// Renew the session secret after a fresh factor; returns (token, csrf).
pub(crate) async fn stepped_up(
    s: &AppState,
    actor: &kura_core::Actor,
    ctx: &kura_store::AuditCtx,
    method: &str,
) -> ApiResult<(String, String)> {
    let id = session_of(actor)?;
    Ok(
        sessions::rotate_after_step_up(&s.store.db, ctx, actor.user_id, actor.org_id, id, method)
            .await?,
    )
}

fn step_up_response(s: &AppState, token: &str, csrf: &str, method: &str) -> ApiResult<Response> {
    let mut resp = json_ok(
        StatusCode::OK,
        &json!({"csrf_token": csrf, "method": method}),
    )?;
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(s, token)?);
    Ok(resp)
}

pub(crate) async fn step_up_failed(
    s: &AppState,
    actor: &kura_core::Actor,
    ctx: &kura_store::AuditCtx,
    method: &str,
) -> ApiResult<ApiError> {
    let ev = AuditEvent::new("auth.step_up", Outcome::Failure)
        .org(actor.org_id)
        .detail(json!({"method": method}));
    s.record(ctx, ev).await?;
    // Guessing codes with a stolen session counts toward the account's lock.
    let user = users::get_any(&s.store.db, actor.user_id).await?;
    if signin::count_failure(s, ctx, &user).await? {
        return Ok(signin::locked());
    }
    Ok(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid-code",
        "the code, password or key response is not valid",
    ))
}

/// The methods a signed-in user can step up with.
pub(crate) async fn step_up_methods(
    s: &AppState,
    actor: &kura_core::Actor,
) -> ApiResult<Vec<&'static str>> {
    let user = users::get_any(&s.store.db, actor.user_id).await?;
    let policy = kura_store::org_policy::get(&s.store.db, user.org_id).await?;
    let enrolled = mfa::enrolled(&s.store.db, user.id).await?;
    let webauthn_only = policy.requires_webauthn(signin::is_admin(&user));
    let mut m = signin::factor_methods(&enrolled, webauthn_only);
    if m.is_empty() && !enrolled.any() && !policy.requires_mfa() && !webauthn_only {
        m.push("password");
    }
    Ok(m)
}

/// Check a step-up proof: a TOTP or recovery code, or the password where
/// the user has no factor at all (an organization without MFA).
pub(crate) async fn check_step_up(
    s: &AppState,
    actor: &kura_core::Actor,
    ctx: &kura_store::AuditCtx,
    method: &str,
    code: Option<&str>,
    password: Option<&str>,
) -> ApiResult<bool> {
    session_of(actor)?;
    let p = as_pending(s, actor, ctx).await?;
    // A locked account (even a lock from failed sign-ins, which leaves open
    // sessions working) takes no confirmations: no guessing codes with a
    // stolen session until an administrator has looked.
    if p.user.locked {
        return Err(signin::locked());
    }
    if method == "password" {
        if !step_up_methods(s, actor).await?.contains(&"password") {
            return Err(ApiError::bad_request("use your second factor to confirm"));
        }
        let pw = password.unwrap_or_default().to_string();
        if pw.len() > 1024 {
            return Err(ApiError::bad_request("password too long"));
        }
        let Some((_, Some(hash))) = users::by_email(&s.store.db, &p.user.email).await? else {
            return Err(ApiError::forbidden());
        };
        return s
            .hash_blocking(move || kura_crypto::verify_password(&pw, &hash))
            .await;
    }
    Ok(check_code(s, &p, method, code.unwrap_or(""))
        .await?
        .is_some())
}

async fn step_up(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<StepUpReq>,
) -> ApiResult<Response> {
    if !check_step_up(
        &s,
        &a.actor,
        &a.ctx,
        &req.method,
        req.code.as_deref(),
        req.password.as_deref(),
    )
    .await?
    {
        return Err(step_up_failed(&s, &a.actor, &a.ctx, &req.method).await?);
    }
    let (token, csrf) = stepped_up(&s, &a.actor, &a.ctx, &req.method).await?;
    step_up_response(&s, &token, &csrf, &req.method)
}

async fn step_up_webauthn_options(State(s): State<AppState>, a: Authed) -> ApiResult<Response> {
    session_of(&a.actor)?;
    let stored = mfa::webauthn_credentials(&s.store.db, a.actor.user_id).await?;
    let (options, state) = passkeys(&s)?.auth_start(&stored)?;
    let challenge = challenges::create(&s.store.db, a.actor.user_id, Purpose::Ceremony).await?;
    if let Some(c) = challenges::find(&s.store.db, &challenge, Purpose::Ceremony).await? {
        challenges::set_state(&s.store.db, &c.id, &state).await?;
    }
    json_ok(
        StatusCode::OK,
        &json!({"challenge": challenge, "options": options}),
    )
}

async fn step_up_webauthn(
    State(s): State<AppState>,
    a: Authed,
    ApiJson(req): ApiJson<CeremonyReq>,
) -> ApiResult<Response> {
    session_of(&a.actor)?;
    if users::get_any(&s.store.db, a.actor.user_id).await?.locked {
        return Err(signin::locked());
    }
    let c = challenges::find(&s.store.db, &req.challenge, Purpose::Ceremony)
        .await?
        .filter(|c| c.user_id == a.actor.user_id)
        .ok_or_else(signin::challenge_invalid)?;
    let ok = check_assertion(&s, a.actor.user_id, c.state.as_deref(), req.credential).await?;
    if ok.is_none() || !challenges::consume(&s.store.db, &c.id).await? {
        challenges::failed(&s.store.db, &c.id).await?;
        return Err(step_up_failed(&s, &a.actor, &a.ctx, "webauthn").await?);
    }
    let (token, csrf) = stepped_up(&s, &a.actor, &a.ctx, "webauthn").await?;
    step_up_response(&s, &token, &csrf, "webauthn")
}
