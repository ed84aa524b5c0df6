//! Web pages of the second factor: the sign-in step after the password,
//! enrolment of the first factor, recovery codes (shown once), step-up,
//! and the account page's factor management.

use super::login::{login_csrf, safe_next, signed_in_redirect};
use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::api::signin::{check_code, check_step_up, step_up_failed, step_up_methods, stepped_up};
use crate::signin;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use kura_core::FactorId;
use kura_store::challenges::Purpose;
use kura_store::sessions::Amr;
use kura_store::{mfa, users};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login_factor.html")]
struct FactorPage {
    l: Layout,
    challenge: String,
    next: String,
    login_token: String,
    webauthn: bool,
    totp: bool,
    recovery: bool,
    error: Option<String>,
    passkey_js: String,
}

pub struct TotpSetup {
    pub factor_id: String,
    pub secret: String,
    pub qr_svg: String,
}

#[derive(Template)]
#[template(path = "login_enrol.html")]
struct EnrolPage {
    l: Layout,
    challenge: String,
    next: String,
    login_token: String,
    webauthn: bool,
    totp: Option<TotpSetup>,
    error: Option<String>,
    passkey_js: String,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct CodesPage {
    l: Layout,
    codes: Vec<String>,
    next: String,
}

pub struct StepUpForm {
    pub method: &'static str,
    pub field: &'static str,
    pub label: String,
}

#[derive(Template)]
#[template(path = "step_up.html")]
struct StepUpPage {
    l: Layout,
    next: String,
    webauthn: bool,
    forms: Vec<StepUpForm>,
    error: Option<String>,
    passkey_js: String,
}

/// The QR code of an otpauth URI as inline SVG (no script, no request).
pub fn qr_svg(uri: &str) -> String {
    match qrcode::QrCode::new(uri.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build(),
        Err(_) => String::new(),
    }
}

pub fn factor_page(
    w: &Web,
    challenge: &str,
    methods: &[&str],
    next: &str,
    login_token: &str,
    error: Option<String>,
) -> Response {
    html(&FactorPage {
        l: w.layout(w.t.t("mfa.heading").into()),
        challenge: challenge.into(),
        next: next.into(),
        login_token: login_token.into(),
        webauthn: methods.contains(&"webauthn"),
        totp: methods.contains(&"totp"),
        recovery: methods.contains(&"recovery"),
        error,
        passkey_js: super::assets::url("passkey.js"),
    })
}

pub async fn enrol_page(
    s: &AppState,
    w: &Web,
    challenge: &str,
    methods: &[&str],
    next: &str,
    login_token: &str,
    error: Option<String>,
) -> Result<Response, WebError> {
    let totp = if methods.contains(&"totp") {
        let p = signin::pending(s, &w.ctx, challenge, Purpose::Enrol)
            .await
            .web(w)?;
        // After a mistyped code the same key is shown again (it was scanned).
        let again = match error {
            Some(_) => mfa::totp_pending(&s.store.db, &s.store.keys, p.user.id, &p.user.email)
                .await
                .web(w)?,
            None => None,
        };
        let e = match again {
            Some(e) => e,
            None => mfa::totp_begin(
                &s.store.db,
                &s.store.keys,
                p.user.id,
                p.user.org_id,
                &p.user.email,
                "Authenticator app",
            )
            .await
            .web(w)?,
        };
        Some(TotpSetup {
            factor_id: e.factor_id.to_string(),
            secret: e.secret_base32,
            qr_svg: qr_svg(&e.otpauth_uri),
        })
    } else {
        None
    };
    Ok(html(&EnrolPage {
        l: w.layout(w.t.t("enrol.heading").into()),
        challenge: challenge.into(),
        next: next.into(),
        login_token: login_token.into(),
        webauthn: methods.contains(&"webauthn") && s.passkeys.is_some(),
        totp,
        error,
        passkey_js: super::assets::url("passkey.js"),
    }))
}

#[derive(Deserialize)]
pub struct FactorForm {
    challenge: String,
    method: String,
    code: String,
    next: Option<String>,
    #[serde(default)]
    login_token: String,
}

/// POST /login/factor: a TOTP or recovery code completes the sign-in.
pub async fn factor_submit(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(f): axum::Form<FactorForm>,
) -> Result<Response, WebError> {
    if let Some(r) = login_csrf(&s, &w, &headers, &f.login_token, f.next.as_deref()).await {
        return Ok(r);
    }
    let next = safe_next(f.next.as_deref());
    let p = match signin::pending(&s, &w.ctx, &f.challenge, Purpose::SignIn).await {
        Ok(p) => p,
        Err(e) => return Ok(back_to_login(&w, &next, e)),
    };
    let amr = match check_code(&s, &p, &f.method, &f.code).await {
        Ok(Some(amr)) => amr,
        Ok(None) => {
            let e = signin::factor_failed(&s, &p, &f.method).await.web(&w)?;
            if e.code == "account-locked" {
                return Ok(back_to_login(&w, &next, e));
            }
            let methods = methods_for(&s, &p).await.web(&w)?;
            let mut r = factor_page(
                &w,
                &f.challenge,
                &methods,
                &next,
                &f.login_token,
                Some(w.t.t("mfa.failed").into()),
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(r);
        }
        Err(e) => {
            let methods = methods_for(&s, &p).await.web(&w)?;
            let mut r = factor_page(
                &w,
                &f.challenge,
                &methods,
                &next,
                &f.login_token,
                Some(e.detail.clone()),
            );
            *r.status_mut() = e.status;
            return Ok(r);
        }
    };
    let presented = crate::auth::cookie_from_headers(&headers, crate::auth::SESSION_COOKIE);
    match signin::complete(&s, &p, amr, presented.as_deref()).await {
        Ok(sess) => signed_in_redirect(&s, &w, &sess.token, &next),
        Err(e) => Ok(back_to_login(&w, &next, e)),
    }
}

async fn methods_for(
    s: &AppState,
    p: &signin::Pending,
) -> crate::error::ApiResult<Vec<&'static str>> {
    let e = mfa::enrolled(&s.store.db, p.user.id).await?;
    Ok(signin::factor_methods(&e, p.webauthn_only()))
}

fn back_to_login(w: &Web, next: &str, e: crate::error::ApiError) -> Response {
    let mut r =
        super::login::login_page(w, next.to_string(), String::new(), Some(e.detail.clone()));
    *r.status_mut() = if e.status.is_client_error() {
        e.status
    } else {
        StatusCode::UNAUTHORIZED
    };
    r
}

#[derive(Deserialize)]
pub struct EnrolForm {
    challenge: String,
    factor_id: String,
    code: String,
    next: Option<String>,
    #[serde(default)]
    login_token: String,
}

/// POST /login/enrol: the first code from the new app completes sign-in;
/// the recovery codes are shown once.
pub async fn enrol_submit(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(f): axum::Form<EnrolForm>,
) -> Result<Response, WebError> {
    if let Some(r) = login_csrf(&s, &w, &headers, &f.login_token, f.next.as_deref()).await {
        return Ok(r);
    }
    let next = safe_next(f.next.as_deref());
    let p = match signin::pending(&s, &w.ctx, &f.challenge, Purpose::Enrol).await {
        Ok(p) => p,
        Err(e) => return Ok(back_to_login(&w, &next, e)),
    };
    let Ok(factor) = f.factor_id.parse::<FactorId>() else {
        return Ok(back_to_login(&w, &next, signin::challenge_invalid()));
    };
    let codes = match mfa::totp_confirm(
        &s.store.db,
        &s.store.keys,
        &p.ctx,
        p.user.id,
        p.user.org_id,
        factor,
        &f.code,
    )
    .await
    {
        Ok(c) => c,
        Err(kura_store::StoreError::Invalid(_)) => {
            kura_store::challenges::failed(&s.store.db, &p.challenge.id)
                .await
                .web(&w)?;
            let methods: Vec<&str> = if p.webauthn_only() {
                vec!["webauthn"]
            } else {
                vec!["totp", "webauthn"]
            };
            let mut r = enrol_page(
                &s,
                &w,
                &f.challenge,
                &methods,
                &next,
                &f.login_token,
                Some(w.t.t("mfa.failed").into()),
            )
            .await?;
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(r);
        }
        Err(e) => return Err(w.error(e.into())),
    };
    let presented = crate::auth::cookie_from_headers(&headers, crate::auth::SESSION_COOKIE);
    let sess = match signin::complete(&s, &p, Amr::PasswordOtp, presented.as_deref()).await {
        Ok(sess) => sess,
        Err(e) => return Ok(back_to_login(&w, &next, e)),
    };
    let mut r = html(&CodesPage {
        l: w.layout(w.t.t("codes.heading").into()),
        codes: codes.unwrap_or_default(),
        next,
    });
    r.headers_mut().insert(
        header::SET_COOKIE,
        crate::api::signin::session_cookie(&s, &sess.token).map_err(|e| w.error(e))?,
    );
    Ok(r)
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

async fn step_up_page(
    s: &AppState,
    w: &Web,
    next: String,
    error: Option<String>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let methods = step_up_methods(s, &me.actor).await.web(w)?;
    let forms = methods
        .iter()
        .filter_map(|m| match *m {
            "totp" => Some(StepUpForm {
                method: "totp",
                field: "code",
                label: w.t.t("mfa.totp_code").into(),
            }),
            "recovery" => Some(StepUpForm {
                method: "recovery",
                field: "code",
                label: w.t.t("mfa.recovery_code").into(),
            }),
            "password" => Some(StepUpForm {
                method: "password",
                field: "password",
                label: w.t.t("login.password").into(),
            }),
            _ => None,
        })
        .collect();
    Ok(html(&StepUpPage {
        l: w.layout(w.t.t("stepup.heading").into()),
        next,
        webauthn: methods.contains(&"webauthn") && s.passkeys.is_some(),
        forms,
        error,
        passkey_js: super::assets::url("passkey.js"),
    }))
}

/// GET /step-up: confirm a fresh second factor, then return to `next`.
pub async fn step_up(
    State(s): State<AppState>,
    w: Web,
    Query(q): Query<NextQuery>,
) -> Result<Response, WebError> {
    step_up_page(&s, &w, safe_next(q.next.as_deref()), None).await
}

#[derive(Deserialize)]
pub struct StepUpPost {
    method: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    password: Option<String>,
    next: Option<String>,
}

pub async fn step_up_submit(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<StepUpPost>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let next = safe_next(f.next.as_deref());
    let ok = match check_step_up(
        &s,
        &me.actor,
        &w.ctx,
        &f.method,
        f.code.as_deref(),
        f.password.as_deref(),
    )
    .await
    {
        Ok(ok) => ok,
        Err(e) => {
            let mut r = step_up_page(&s, &w, next, Some(e.detail.clone())).await?;
            *r.status_mut() = e.status;
            return Ok(r);
        }
    };
    if !ok {
        step_up_failed(&s, &me.actor, &w.ctx, &f.method)
            .await
            .web(&w)?;
        let mut r = step_up_page(&s, &w, next, Some(w.t.t("mfa.failed").into())).await?;
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    }
    let (token, _) = stepped_up(&s, &me.actor, &w.ctx, &f.method).await.web(&w)?;
    if next.starts_with("/api/") {
        // A download: the page says so and starts it; the user stays here.
        let mut r = html(&StepUpDone {
            l: w.layout(w.t.t("stepup.done").into()),
            next,
        });
        r.headers_mut().insert(
            header::SET_COOKIE,
            crate::api::signin::session_cookie(&s, &token).map_err(|e| w.error(e))?,
        );
        return Ok(r);
    }
    signed_in_redirect(&s, &w, &token, &next)
}

#[derive(Template)]
#[template(path = "step_up_done.html")]
struct StepUpDone {
    l: Layout,
    next: String,
}

// ---- account page: factors ----

#[derive(Template)]
#[template(path = "totp_setup.html")]
struct TotpSetupPage {
    l: Layout,
    totp: TotpSetup,
    error: Option<String>,
}

/// POST /account/factors/totp: a new secret and its QR code.
pub async fn add_totp(
    State(s): State<AppState>,
    w: Web,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    if !me.actor.stepped_up {
        return Err(w.error(crate::error::ApiError::step_up_required()));
    }
    let e = mfa::totp_begin(
        &s.store.db,
        &s.store.keys,
        me.user.id,
        me.user.org_id,
        &me.user.email,
        "Authenticator app",
    )
    .await
    .web(&w)?;
    Ok(html(&TotpSetupPage {
        l: w.layout(w.t.t("enrol.app").into()),
        totp: TotpSetup {
            factor_id: e.factor_id.to_string(),
            secret: e.secret_base32,
            qr_svg: qr_svg(&e.otpauth_uri),
        },
        error: None,
    }))
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    factor_id: String,
    code: String,
    #[serde(default)]
    name: Option<String>,
}

pub async fn confirm_totp(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<ConfirmForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let id: FactorId = super::parse_id(&w, &f.factor_id)?;
    match mfa::totp_confirm(
        &s.store.db,
        &s.store.keys,
        &w.ctx,
        me.user.id,
        me.user.org_id,
        id,
        &f.code,
    )
    .await
    {
        Ok(codes) => {
            if let Some(n) = f.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                mfa::rename(&s.store.db, &w.ctx, me.user.id, me.user.org_id, id, n)
                    .await
                    .web(&w)?;
            }
            match codes {
                Some(codes) => Ok(html(&CodesPage {
                    l: w.layout(w.t.t("codes.heading").into()),
                    codes,
                    next: "/account".into(),
                })),
                None => Ok(see_other("/account")),
            }
        }
        Err(kura_store::StoreError::Invalid(_)) => {
            let mut r =
                super::account::render_with(&s, &w, Some(w.t.t("mfa.failed").into())).await?;
            *r.status_mut() = StatusCode::BAD_REQUEST;
            Ok(r)
        }
        Err(e) => Err(w.error(e.into())),
    }
}

#[derive(Deserialize)]
pub struct RenameForm {
    name: String,
}

pub async fn rename_factor(
    State(s): State<AppState>,
    w: Web,
    Path(id): Path<String>,
    WebForm(f): WebForm<RenameForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let id: FactorId = super::parse_id(&w, &id)?;
    mfa::rename(&s.store.db, &w.ctx, me.user.id, me.user.org_id, id, &f.name)
        .await
        .web(&w)?;
    Ok(see_other("/account"))
}

pub async fn remove_factor(
    State(s): State<AppState>,
    w: Web,
    Path(id): Path<String>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let id: FactorId = super::parse_id(&w, &id)?;
    if !me.actor.stepped_up {
        return Err(w.error(crate::error::ApiError::step_up_required()));
    }
    let user = users::get_any(&s.store.db, me.user.id).await.web(&w)?;
    let policy = kura_store::org_policy::get(&s.store.db, user.org_id)
        .await
        .web(&w)?;
    let keep = mfa::KeepRule {
        one_factor: policy.requires_mfa(),
        one_webauthn: policy.requires_webauthn(signin::is_admin(&user)),
    };
    match mfa::remove(&s.store.db, &w.ctx, user.id, user.org_id, id, keep).await {
        Ok(()) => Ok(see_other("/account")),
        Err(kura_store::StoreError::Conflict(m)) => {
            let mut r = super::account::render_with(&s, &w, Some(m)).await?;
            *r.status_mut() = StatusCode::CONFLICT;
            Ok(r)
        }
        Err(e) => Err(w.error(e.into())),
    }
}

pub async fn new_codes(
    State(s): State<AppState>,
    w: Web,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    if !me.actor.stepped_up {
        return Err(w.error(crate::error::ApiError::step_up_required()));
    }
    if !mfa::enrolled(&s.store.db, me.user.id).await.web(&w)?.any() {
        return Err(w.error(crate::error::ApiError::bad_request(
            "enrol a second factor first",
        )));
    }
    let codes = mfa::regenerate_codes(&s.store.db, &w.ctx, me.user.id, me.user.org_id)
        .await
        .web(&w)?;
    Ok(html(&CodesPage {
        l: w.layout(w.t.t("codes.heading").into()),
        codes,
        next: "/account".into(),
    }))
}
