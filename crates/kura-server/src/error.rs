//! One error type for the HTTP layer and the one place it becomes a response:
//! RFC 9457 problem details with a stable machine-readable `code`. Internal
//! failures are logged with their cause; the client sees a generic 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_core::Denied;
use kura_store::StoreError;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// RFC 9457 extension members a client acts on (a sign-in challenge,
    /// the accepted second factors).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds for a Retry-After header (429 and throttled sign-ins).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }
    /// Add an extension member to the problem document.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
        self
    }
    /// 429 for a client address over its budget, with Retry-After.
    pub fn rate_limited(wait_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many requests from your address: try again in {wait_secs} seconds"),
        );
        e.retry_after = Some(wait_secs);
        e
    }
    pub fn step_up_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "step-up-required",
            "this action needs a fresh second factor: confirm it at /api/auth/step-up and retry",
        )
    }
    /// Kill switch: the platform is suspended.
    pub fn platform_suspended() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "platform-suspended",
            "the platform is suspended for maintenance; sign-in is refused",
        )
    }

    /// Kill switch: the platform is read-only.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "read-only",
            "the platform is in read-only mode: nothing can be changed right now",
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "the resource does not exist or is not visible to you",
        )
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you may not perform this action",
        )
    }
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in or present a valid API token",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed; the request was not completed",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = Problem {
            kind: format!("urn:kura:problem:{}", self.code),
            title,
            status: self.status.as_u16(),
            detail: &self.detail,
            code: self.code,
            extra: self.extra.as_ref(),
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kura\""),
            );
        }
        resp
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound => Self::not_found(),
            Denied::Forbidden => Self::forbidden(),
            Denied::StepUpRequired => Self::step_up_required(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            StoreError::Denied(d) => d.into(),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Invalid(m) => Self::bad_request(m),
            StoreError::Name(n) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-name", n.to_string())
            }
            StoreError::QuotaExceeded => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quota-exceeded",
                "the organization's storage quota would be exceeded; nothing was stored",
            ),
            StoreError::TooLarge(max) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "the upload exceeds the maximum file size of {max} bytes; nothing was stored"
                ),
            ),
            StoreError::Interrupted => Self::bad_request(
                "the upload was interrupted before it completed; nothing was stored",
            ),
            other => {
                tracing::error!(error = %other, "internal error");
                Self::internal()
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
