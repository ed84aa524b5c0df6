//! The REST API. Routes are registered through [`Api`], which records each
//! operation (method, path, summary, the policy action it needs) so the
//! OpenAPI document at /api/openapi.json is generated from the same table
//! that builds the router: no route can exist without being documented.

pub(crate) mod account;
mod admin;
mod audit;
mod factors;
mod files;
mod org_security;
pub(crate) mod password_reset;
mod projects;
pub mod security;
pub(crate) mod signin;
pub(crate) mod transfer;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// One documented operation.
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// The authorization the operation needs, for readers and for the
    /// authorization-matrix test: "public", "user", "project:<action>",
    /// "org:<action>" or "platform".
    pub auth: &'static str,
    /// Request body: "none", "json", "json-optional" or "binary".
    pub body: &'static str,
}

pub struct Api {
    router: Router<AppState>,
    ops: Vec<Op>,
}

impl Api {
    fn new() -> Self {
        Self {
            router: Router::new(),
            ops: Vec::new(),
        }
    }

    fn op(mut self, op: Op, handler: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(op.path, handler);
        self.ops.push(op);
        self
    }
}

macro_rules! op {
    ($api:expr, $method:ident $path:literal, $id:literal, $tag:literal, $auth:literal, $body:literal, $summary:literal, $h:expr) => {
        $api.op(
            $crate::api::Op {
                method: stringify!($method),
                path: $path,
                id: $id,
                summary: $summary,
                tag: $tag,
                auth: $auth,
                body: $body,
            },
            axum::routing::$method($h),
        )
    };
}
pub(crate) use op;

/// Public routes, platform-admin routes (/api/admin/…), and the API document.
pub fn routes() -> (Router<AppState>, Router<AppState>, Value) {
    let public = signin::routes(Api::new());
    let public = account::routes(public);
    let public = factors::routes(public);
    let public = password_reset::routes(public);
    let public = projects::routes(public);
    let public = files::routes(public);
    let public = transfer::routes(public);
    let public = audit::routes(public);
    let public = admin::org_routes(public);
    let public = org_security::routes(public);
    let public = security::routes(public);
    let admin = security::admin_routes(admin::routes(Api::new()));
    let doc = openapi(&[&public.ops, &admin.ops]);
    (public.router, admin.router, doc)
}

fn openapi(groups: &[&Vec<Op>]) -> Value {
    let mut paths = serde_json::Map::new();
    for op in groups.iter().flat_map(|g| g.iter()) {
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}))
            .collect();
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": params,
            "x-kura-auth": op.auth,
            "responses": {
                "2XX": {"description": "success"},
                "4XX": {"description": "client error", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            },
        });
        if op.auth != "public" {
            operation["security"] = json!([{"session": []}, {"token": []}]);
        }
        match op.body {
            "json" | "json-optional" => {
                operation["requestBody"] = json!({"required": op.body == "json", "content": {"application/json": {"schema": {"type": "object"}}}})
            }
            "binary" => {
                operation["requestBody"] = json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}})
            }
            _ => {}
        }
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Kura API", "version": env!("CARGO_PKG_VERSION"), "description": "Zero-trust project information sharing. Every call is authorized and audited."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE},
                "token": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {
                "Problem": {"type": "object", "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "code": {"type": "string"}}}
            }
        }
    })
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint")
}

/// JSON body extractor whose rejections are problem documents
/// (415 wrong type, 413 too large, 400 malformed or wrong shape).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection as J;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(J::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "send the body as application/json",
            )),
            Err(J::JsonSyntaxError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                e.body_text(),
            )),
            Err(J::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-json",
                e.body_text(),
            )),
            Err(J::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "the request body is larger than 64 KiB",
                ))
            }
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Path parameters; a malformed id is an unknown id (404).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_| ApiError::not_found())
    }
}

/// Query parameters; malformed ones are a 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", e.body_text()))
    }
}

/// A JSON response. Timestamps are already RFC 3339 strings: the store's
/// types serialize their `*_at` fields that way.
pub fn json_ok<T: Serialize>(status: StatusCode, body: &T) -> ApiResult<Response> {
    Ok((status, axum::Json(body)).into_response())
}

/// `json_ok` for a large body whose size is known roughly in advance: the
/// buffer is allocated once instead of doubling its way up (a 5 MB listing
/// spent a fifth of its time in regrowing and faulting in memory).
pub fn json_ok_sized<T: Serialize>(
    status: StatusCode,
    body: &T,
    capacity: usize,
) -> ApiResult<Response> {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, body).map_err(|_| ApiError::internal())?;
    Ok((
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response())
}

pub fn rfc3339(micros: i64) -> String {
    kura_store::time::rfc3339(micros)
}

/// Parse an RFC 3339 timestamp from a query into microseconds.
pub fn parse_time(s: &str) -> ApiResult<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::bad_request(format!("'{s}' is not an RFC 3339 timestamp")))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .map_err(|_| ApiError::bad_request("timestamp out of range"))
}
