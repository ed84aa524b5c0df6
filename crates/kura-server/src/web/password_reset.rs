//! "Forgot your password?": ask for a link by email, then set a new
//! password from it. The answers never tell whether an account exists.

use super::{html, see_other, Layout, Web, WebError};
use crate::api::password_reset::{confirm, request};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    l: Layout,
    sent: bool,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "reset_password.html")]
struct ResetPage {
    l: Layout,
    token: String,
    valid: bool,
    error: Option<String>,
}

pub async fn forgot_form(w: Web) -> Response {
    html(&ForgotPage {
        l: w.layout(w.t.t("reset.heading").into()),
        sent: false,
        error: None,
    })
}

#[derive(Deserialize)]
pub struct ForgotForm {
    email: String,
}

pub async fn forgot_submit(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ForgotForm>,
) -> Result<Response, WebError> {
    if super::foreign_origin(&headers) {
        let mut r = html(&ForgotPage {
            l: w.layout(w.t.t("reset.heading").into()),
            sent: false,
            error: Some(w.t.t("error.csrf").into()),
        });
        *r.status_mut() = StatusCode::FORBIDDEN;
        return Ok(r);
    }
    if let Err(e) = request(&s, &w.ctx, &f.email).await {
        let mut r = html(&ForgotPage {
            l: w.layout(w.t.t("reset.heading").into()),
            sent: false,
            error: Some(e.detail.clone()),
        });
        *r.status_mut() = e.status;
        return Ok(r);
    }
    Ok(html(&ForgotPage {
        l: w.layout(w.t.t("reset.heading").into()),
        sent: true,
        error: None,
    }))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

pub async fn reset_form(
    State(s): State<AppState>,
    w: Web,
    Query(q): Query<TokenQuery>,
) -> Result<Response, WebError> {
    let valid = kura_store::password_resets::check(&s.store.db, &q.token)
        .await
        .map_err(|e| w.error(e.into()))?
        .is_some();
    let mut r = html(&ResetPage {
        l: w.layout(w.t.t("reset.new_heading").into()),
        token: q.token.chars().take(200).collect(),
        valid,
        error: (!valid).then(|| w.t.t("reset.invalid").to_string()),
    });
    if !valid {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(r)
}

#[derive(Deserialize)]
pub struct ResetForm {
    token: String,
    password: String,
}

pub async fn reset_submit(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(f): axum::Form<ResetForm>,
) -> Result<Response, WebError> {
    let foreign = super::foreign_origin(&headers);
    let result = if foreign {
        Err(crate::error::ApiError::forbidden())
    } else if f.token.len() > 200 || f.password.len() > 1024 {
        Err(crate::error::ApiError::bad_request(
            "token or password too long",
        ))
    } else {
        confirm(&s, &w.ctx, &f.token, &f.password).await
    };
    match result {
        Ok(()) => Ok(see_other("/login?reset=1")),
        Err(e) if e.status.is_client_error() => {
            let valid = e.code != "reset-token-invalid" && !foreign;
            let mut r = html(&ResetPage {
                l: w.layout(w.t.t("reset.new_heading").into()),
                token: f.token.chars().take(200).collect(),
                valid,
                error: Some(if valid {
                    e.detail.clone()
                } else {
                    w.t.t("reset.invalid").into()
                }),
            });
            *r.status_mut() = e.status;
            Ok(r)
        }
        Err(e) => Err(w.error(e)),
    }
}
