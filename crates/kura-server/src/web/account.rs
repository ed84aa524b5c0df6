//! The account page: password, language and time zone, active sessions and
//! API tokens.

use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::api::account::clear_cookie;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use kura_core::{Credential, SessionId, TokenId};
use kura_store::{sessions, users, AuditEvent, Outcome};
use serde::Deserialize;

pub struct SessionRow {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub last_seen: String,
    pub current: bool,
}

pub struct FactorRow {
    pub id: String,
    pub kind: &'static str,
    pub name: String,
    pub added: String,
    pub last_used: String,
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub expires: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    email: String,
    name: String,
    locale: String,
    time_zone: String,
    zones: Vec<&'static str>,
    sessions: Vec<SessionRow>,
    tokens: Vec<TokenRow>,
    factors: Vec<FactorRow>,
    recovery_left: usize,
    mfa_required: bool,
    passkeys: bool,
    passkey_js: String,
    new_secret: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

const ZONES: &[&str] = &[
    "Asia/Tokyo",
    "UTC",
    "Asia/Seoul",
    "Asia/Shanghai",
    "Asia/Singapore",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
];

/// A short device description from a User-Agent header.
fn device(ua: &str) -> String {
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/", "curl/"]
        .iter()
        .find(|b| ua.contains(*b))
        .map(|b| b.trim_end_matches('/'))
        .unwrap_or("");
    let os = ["Windows", "Mac OS X", "Android", "iPhone", "Linux"]
        .iter()
        .find(|o| ua.contains(*o))
        .copied()
        .unwrap_or("");
    let d = format!("{browser} {os}").trim().to_string();
    if d.is_empty() {
        ua.chars().take(40).collect()
    } else {
        d
    }
}

async fn render(
    s: &AppState,
    w: &Web,
    new_secret: Option<String>,
    message: Option<String>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let current = match me.actor.credential {
        Credential::Session(id) => Some(id),
        _ => None,
    };
    let sess = sessions::list_for_user(&s.store.db, me.actor.user_id, s.config.session.idle_secs)
        .await
        .web(w)?;
    let toks = sessions::list_tokens(&s.store.db, me.actor.user_id)
        .await
        .web(w)?;
    let factors = kura_store::mfa::list(&s.store.db, me.actor.user_id)
        .await
        .web(w)?;
    let enrolled = kura_store::mfa::enrolled(&s.store.db, me.actor.user_id)
        .await
        .web(w)?;
    let policy = kura_store::org_policy::get(&s.store.db, me.actor.org_id)
        .await
        .web(w)?;
    let has_error = error.is_some();
    let page = AccountPage {
        factors: factors
            .iter()
            .map(|f| FactorRow {
                id: f.id.to_string(),
                kind: match f.kind {
                    kura_store::mfa::FactorKind::Totp => "account.factor_totp",
                    kura_store::mfa::FactorKind::Webauthn => "account.factor_webauthn",
                },
                name: f.name.clone(),
                added: w.time(f.created_at),
                last_used: f
                    .last_used_at
                    .map(|x| w.time(x))
                    .unwrap_or_else(|| "—".into()),
            })
            .collect(),
        recovery_left: enrolled.recovery_codes_left,
        mfa_required: policy.requires_mfa(),
        passkeys: s.passkeys.is_some(),
        passkey_js: super::assets::url("passkey.js"),
        l: w.layout(w.t.t("account.title").into()),
        email: me.user.email.clone(),
        name: me.user.display_name.clone(),
        locale: me.user.locale.clone().unwrap_or_default(),
        time_zone: me.user.time_zone.clone().unwrap_or_default(),
        zones: ZONES.to_vec(),
        sessions: sess
            .iter()
            .map(|x| SessionRow {
                id: x.id.to_string(),
                device: device(&x.user_agent),
                ip: x.ip.clone(),
                last_seen: w.time(x.last_seen_at),
                current: Some(x.id) == current,
            })
            .collect(),
        tokens: toks
            .iter()
            .map(|t| TokenRow {
                id: t.id.to_string(),
                name: t.name.clone(),
                scope: w
                    .t
                    .t(if t.read_only {
                        "account.token_read_only"
                    } else {
                        "account.token_read_write"
                    })
                    .to_string(),
                expires: w.time(t.expires_at),
                last_used: t
                    .last_used_at
                    .map(|x| w.time(x))
                    .unwrap_or_else(|| "—".into()),
            })
            .collect(),
        new_secret,
        message,
        error,
    };
    let mut r = html(&page);
    if has_error {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

pub(crate) async fn render_with(
    s: &AppState,
    w: &Web,
    error: Option<String>,
) -> Result<Response, WebError> {
    render(s, w, None, None, error).await
}

pub async fn page(State(s): State<AppState>, w: Web) -> Result<Response, WebError> {
    render(&s, &w, None, None, None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

pub async fn password(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<PasswordForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let only = crate::signin::password_only(&s, me.user.org_id, Some(me.user.id))
        .await
        .web(&w)?;
    if let Err(e) = users::check_password_policy(&f.new_password, &me.user.email, only) {
        return render(&s, &w, None, None, Some(e.to_string())).await;
    }
    let hash = match users::by_email(&s.store.db, &me.user.email).await.web(&w)? {
        Some((_, Some(h))) => h,
        _ => return Err(w.error(ApiError::forbidden())),
    };
    let cur = f.current_password.chars().take(1024).collect::<String>();
    if !s
        .hash_blocking(move || kura_crypto::verify_password(&cur, &hash))
        .await
        .web(&w)?
    {
        s.record(
            &w.ctx,
            AuditEvent::new("user.password_change", Outcome::Failure).org(me.actor.org_id),
        )
        .await
        .web(&w)?;
        if crate::signin::count_failure(&s, &w.ctx, &me.user)
            .await
            .web(&w)?
        {
            return Err(w.error(crate::signin::locked()));
        }
        return render(
            &s,
            &w,
            None,
            None,
            Some(w.t.t("account.wrong_password").into()),
        )
        .await;
    }
    let new = f.new_password.clone();
    let new_hash = s
        .hash_blocking(move || kura_crypto::hash_password(&new))
        .await
        .web(&w)?
        .map_err(|_| w.error(ApiError::internal()))?;
    users::set_password_hash(
        &s.store.db,
        me.actor.org_id,
        &w.ctx,
        me.actor.user_id,
        &new_hash,
        "user.password_change",
    )
    .await
    .web(&w)?;
    // Every session ended, this one too: sign in again with the new password.
    let mut r = see_other("/login");
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(r)
}

#[derive(Deserialize)]
pub struct PrefsForm {
    locale: String,
    time_zone: String,
}

pub async fn preferences(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<PrefsForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let locale = super::i18n::Lang::parse(&f.locale).map(|l| l.code());
    let tz = f.time_zone.trim();
    let tz = if tz.is_empty() {
        None
    } else if tz.len() <= 64 && jiff::tz::TimeZone::get(tz).is_ok() {
        Some(tz)
    } else {
        return render(&s, &w, None, None, Some(w.t.t("account.bad_zone").into())).await;
    };
    users::set_preferences(
        &s.store.db,
        &w.ctx,
        me.actor.user_id,
        me.actor.org_id,
        locale,
        tz,
    )
    .await
    .web(&w)?;
    Ok(see_other("/account"))
}

pub async fn revoke_session(
    State(s): State<AppState>,
    w: Web,
    Path(id): Path<String>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let id: SessionId = id.parse().map_err(|_| w.error(ApiError::not_found()))?;
    sessions::revoke(&s.store.db, &w.ctx, me.actor.user_id, me.actor.org_id, id)
        .await
        .web(&w)?;
    Ok(see_other("/account"))
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: String,
    read_only: Option<String>,
    days: i64,
}

pub async fn create_token(
    State(s): State<AppState>,
    w: Web,
    WebForm(f): WebForm<TokenForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    match sessions::create_token(
        &s.store.db,
        &w.ctx,
        &me.actor,
        &f.name,
        f.read_only.is_some(),
        f.days,
    )
    .await
    {
        Ok((_info, secret)) => {
            render(
                &s,
                &w,
                Some(secret),
                Some(w.t.t("account.token_created").into()),
                None,
            )
            .await
        }
        Err(kura_store::StoreError::Invalid(m)) => render(&s, &w, None, None, Some(m)).await,
        Err(e) => Err(w.error(e.into())),
    }
}

pub async fn revoke_token(
    State(s): State<AppState>,
    w: Web,
    Path(id): Path<String>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let id: TokenId = id.parse().map_err(|_| w.error(ApiError::not_found()))?;
    sessions::revoke_token(&s.store.db, &w.ctx, &me.actor, id)
        .await
        .web(&w)?;
    Ok(see_other("/account"))
}
