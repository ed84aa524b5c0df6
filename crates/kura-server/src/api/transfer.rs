//! File bytes: streaming uploads (new files and new versions) and downloads
//! with single HTTP ranges and ETag revalidation. A download's audit event
//! is durable before the first byte is sent; a blob that fails its integrity
//! check is never served.

use super::{json_ok, op, Api, ApiPath, ApiQuery};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use kura_core::policy::{Read, Write};
use kura_core::{FileName, NodeId, ProjectId, VersionId};
use kura_store::upload::{encrypt_to_blob, open_range, Limits};
use kura_store::{nodes, AuditEvent, Outcome, StoreError};
use serde::Deserialize;

pub fn routes(api: Api) -> Api {
    let api = op!(api, post "/api/projects/{project_id}/folders/{node_id}/files", "upload_file", "files", "project:write", "binary", "Upload a new file (?name=…; &overwrite=true adds a version when the name exists)", upload_file);
    let api = op!(api, get "/api/projects/{project_id}/files/{node_id}/content", "download_file", "files", "project:read", "none", "Download a file or one of its versions (?version=…); supports Range and If-None-Match", download);
    op!(api, put "/api/projects/{project_id}/files/{node_id}/content", "upload_version", "versions", "project:write", "binary", "Upload a new version of a file", upload_version)
}

#[derive(Deserialize)]
struct UploadQuery {
    name: String,
    #[serde(default)]
    overwrite: bool,
}

fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Reject early what the headers already show is too large or over quota.
fn precheck(s: &AppState, remaining: u64, headers: &HeaderMap) -> ApiResult<u64> {
    if let Some(len) = declared_length(headers) {
        if len > s.config.max_upload_bytes {
            return Err(StoreError::TooLarge(s.config.max_upload_bytes).into());
        }
        if len > remaining {
            return Err(StoreError::QuotaExceeded.into());
        }
    }
    Ok(remaining)
}

/// Counts an upload in the gauge for as long as it lives, even if the
/// request is dropped half-way (client gone, shutdown deadline).
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn new(g: &prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Encrypt the body into a blob, then let `commit` make it visible. Any
/// failure removes the blob, so nothing half-written is ever visible.
async fn receive<F, Fut>(
    s: &AppState,
    org: kura_core::OrgId,
    remaining: u64,
    body: Body,
    commit: F,
) -> ApiResult<kura_store::nodes::Node>
where
    F: FnOnce(kura_store::upload::BlobMeta) -> Fut,
    Fut: std::future::Future<Output = Result<kura_store::nodes::Node, StoreError>>,
{
    let key = s.store.keys.org_key(&s.store.db, org).await?;
    let _in_flight = InFlight::new(&s.metrics.uploads_in_flight);
    let counter = s.metrics.bytes_in.clone();
    let stream = body.into_data_stream().map(move |r| {
        if let Ok(b) = &r {
            counter.inc_by(b.len() as u64);
        }
        r
    });
    let limits = Limits {
        max_bytes: s.config.max_upload_bytes,
        quota_remaining: remaining,
    };
    let mut stream = Box::pin(stream);
    let blob = encrypt_to_blob(&s.store.blobs, &key, &mut stream, limits).await;
    if let Err(StoreError::TooLarge(_) | StoreError::QuotaExceeded) = &blob {
        discard_rest(&mut stream).await;
    }
    let blob = blob?;
    let id = blob.id;
    match commit(blob).await {
        Ok(n) => Ok(n),
        Err(e) => {
            if let Err(de) = s.store.blobs.delete(id).await {
                tracing::warn!(blob = %id, error = %de, "could not remove uncommitted blob; fsck will sweep it");
            }
            Err(e.into())
        }
    }
}

/// After refusing an upload part-way (too large, quota full), read and drop
/// what the client is still sending, within bounds, before answering: a
/// connection closed with unread data is reset, and the client then reports
/// a broken pipe instead of reading the 413 or 507 (nginx's lingering close
/// does the same).
async fn discard_rest<S, E>(body: &mut S)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    const AT_MOST_BYTES: usize = 8 << 20;
    const AT_MOST: std::time::Duration = std::time::Duration::from_secs(2);
    let _ = tokio::time::timeout(AT_MOST, async {
        let mut read = 0;
        while let Some(Ok(piece)) = body.next().await {
            read += piece.len();
            if read > AT_MOST_BYTES {
                break;
            }
        }
    })
    .await;
}

async fn upload_file(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, folder)): ApiPath<(ProjectId, NodeId)>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    let name = FileName::parse(&q.name).map_err(StoreError::from)?;
    let target = nodes::upload_target(&s.store.db, &g, folder, &name).await?;
    let replace = match target.existing {
        Some((id, true)) if q.overwrite => Some(id),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "an item with this name already exists in the folder",
            ))
        }
        None => None,
    };
    let remaining = precheck(&s, target.quota_remaining, &headers)?;
    let db = s.store.db.clone();
    let ctx = a.ctx.clone();
    let node = receive(&s, g.org_id(), remaining, body, |blob| async move {
        match replace {
            Some(id) => nodes::commit_new_version(&db, &g, &ctx, id, &blob).await,
            None => nodes::commit_new_file(&db, &g, &ctx, folder, &name, &blob).await,
        }
    })
    .await?;
    json_ok(
        if replace.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        &node,
    )
}

async fn upload_version(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, file)): ApiPath<(ProjectId, NodeId)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let g = s.project_grant::<Write>(&a.actor, &a.ctx, p).await?;
    let n = nodes::get(&s.store.db, &g, file).await?;
    if !n.is_file() {
        return Err(ApiError::bad_request("not a file"));
    }
    let remaining = precheck(
        &s,
        nodes::quota_remaining(&s.store.db, g.org_id()).await?,
        &headers,
    )?;
    let db = s.store.db.clone();
    let ctx = a.ctx.clone();
    let node = receive(&s, g.org_id(), remaining, body, |blob| async move {
        nodes::commit_new_version(&db, &g, &ctx, file, &blob).await
    })
    .await?;
    json_ok(StatusCode::OK, &node)
}

#[derive(Deserialize)]
struct DownloadQuery {
    version: Option<VersionId>,
}

/// A single byte range, per RFC 9110 §14.1.2. `None`: serve the whole file.
/// `Err(())`: unsatisfiable (416).
fn parse_range(h: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(v) = h.and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: we answer with the whole file, as RFC 9110 allows
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

async fn download(
    State(s): State<AppState>,
    a: Authed,
    ApiPath((p, file)): ApiPath<(ProjectId, NodeId)>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let g = s.project_grant::<Read>(&a.actor, &a.ctx, p).await?;
    let head_only = method == axum::http::Method::HEAD;
    let (node, v) = nodes::version(&s.store.db, &g, file, q.version).await?;
    let etag = format!("\"{}\"", v.id);
    let base = AuditEvent::new("file.download", Outcome::Success)
        .project(g.org_id(), p)
        .node(file)
        .version(v.id)
        .name(node.name.clone());
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        s.record(
            &a.ctx,
            base.bytes(0)
                .detail(serde_json::json!({"not_modified": true})),
        )
        .await?;
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?,
        );
        return Ok(r);
    }
    let size = v.size as u64;
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|h| h.to_str().ok())
        .is_none_or(|h| h.trim() == etag);
    let range = if if_range_ok {
        headers.get(header::RANGE)
    } else {
        None
    };
    let range = match parse_range(range, size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range-not-satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}"))
                    .map_err(|_| ApiError::internal())?,
            );
            return Ok(r);
        }
    };
    let (start, end_excl) = match range {
        Some((a0, b0)) => (a0, b0 + 1),
        None => (0, size),
    };
    let served = end_excl - start;
    if head_only {
        // Headers only: audited as a metadata read, nothing decrypted.
        s.record(
            &a.ctx,
            AuditEvent {
                action: "file.head",
                ..base.clone()
            }
            .bytes(0),
        )
        .await?;
        let meta = ContentMeta {
            served,
            size,
            range,
            etag: &etag,
            name: &node.name,
            created_at: v.created_at,
        };
        return meta.response(Body::empty());
    }
    if let Err(e) = s
        .admit_download(&a.actor, &a.ctx, &a.policy, g.org_id(), served, start == 0)
        .await
    {
        // A browser following a Download link gets the step-up page, which
        // returns here once the factor is confirmed.
        let browser = matches!(a.actor.credential, kura_core::Credential::Session(_))
            && headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
        if e.code == "step-up-required" && browser {
            let back = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            return Ok(axum::response::Redirect::to(&format!(
                "/step-up?next={}",
                crate::web::urlencode(back)
            ))
            .into_response());
        }
        return Err(e);
    }
    // The record of this read is durable before any byte leaves.
    s.record(
        &a.ctx,
        base.clone()
            .bytes(served)
            .detail(serde_json::json!({"range": range.map(|(x, y)| format!("{x}-{y}"))})),
    )
    .await?;
    let body = decrypted_body(&s, &a.ctx, &v.blob, start..end_excl, base).await?;
    let meta = ContentMeta {
        served,
        size,
        range,
        etag: &etag,
        name: &node.name,
        created_at: v.created_at,
    };
    meta.response(body)
}

/// Decrypt `range` of a version's blob into a response body. The first
/// chunk is authenticated before this returns (a corrupt blob is a 500 and a
/// `blob.corrupt` event, with nothing sent); a failure later cuts the
/// transfer off and is audited too. `base` is the read's audit event.
pub(crate) async fn decrypted_body(
    s: &AppState,
    ctx: &kura_store::AuditCtx,
    blob: &kura_store::upload::BlobMeta,
    range: std::ops::Range<u64>,
    base: AuditEvent,
) -> ApiResult<Body> {
    let org = base.org_id.ok_or_else(ApiError::internal)?;
    let key = s.store.keys.org_key(&s.store.db, org).await?;
    let opened = match open_range(&s.store.blobs, &key, blob, range).await {
        Ok(o) => o,
        Err(e) => {
            let ev = AuditEvent {
                action: "blob.corrupt",
                outcome: Outcome::Failure,
                bytes: None,
                detail: Some(serde_json::json!({"error": e.to_string()})),
                ..base
            };
            s.record(ctx, ev).await?;
            tracing::error!(blob = %blob.id, error = %e, "refusing to serve a blob that failed its integrity check");
            return Err(ApiError::internal());
        }
    };
    let out = s.metrics.bytes_out.clone();
    out.inc_by(opened.first.len() as u64);
    let Some(rest) = opened.rest else {
        return Ok(Body::from(opened.first));
    };
    let st = s.clone();
    let ctx = ctx.clone();
    let rest = rest.map(move |r| {
        match &r {
            Ok(b) => {
                out.inc_by(b.len() as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::error!(error = %e, "integrity failure mid-stream; aborting the transfer");
                let (st, ctx) = (st.clone(), ctx.clone());
                let ev = AuditEvent {
                    action: "blob.corrupt",
                    outcome: Outcome::Failure,
                    bytes: None,
                    detail: Some(serde_json::json!({"error": e.to_string()})),
                    ..base.clone()
                };
                tokio::spawn(async move {
                    let _ = st.record(&ctx, ev).await;
                });
            }
            Err(_) => {}
        }
        r
    });
    let first = opened.first;
    Ok(Body::from_stream(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest),
    ))
}

struct ContentMeta<'a> {
    served: u64,
    size: u64,
    range: Option<(u64, u64)>,
    etag: &'a str,
    name: &'a str,
    created_at: i64,
}

impl ContentMeta<'_> {
    /// The response for file content: never rendered inline, never sniffed,
    /// sandboxed if a browser opens it anyway.
    fn response(&self, body: Body) -> ApiResult<Response> {
        let mut resp = Response::new(body);
        *resp.status_mut() = if self.range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(self.served));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::ETAG,
            HeaderValue::from_str(self.etag).map_err(|_| ApiError::internal())?,
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        h.insert(header::CONTENT_DISPOSITION, content_disposition(self.name));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox; default-src 'none'"),
        );
        let modified = std::time::UNIX_EPOCH
            + std::time::Duration::from_micros(u64::try_from(self.created_at).unwrap_or(0));
        if let Ok(lm) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            h.insert(header::LAST_MODIFIED, lm);
        }
        if let Some((a0, b0)) = self.range {
            let cr = format!("bytes {a0}-{b0}/{}", self.size);
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).map_err(|_| ApiError::internal())?,
            );
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;
    use axum::http::HeaderValue;

    fn r(s: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        parse_range(Some(&HeaderValue::from_str(s).unwrap()), size)
    }

    #[test]
    fn ranges() {
        assert_eq!(r("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(r("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(r("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(r("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(r("bytes=100-", 100), Err(()));
        assert_eq!(r("bytes=5-2", 100), Err(()));
        assert_eq!(r("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(r("items=0-1", 100), Ok(None));
        assert_eq!(r("bytes=x-1", 100), Err(()));
        assert_eq!(r("bytes=-0", 100), Err(()));
    }
}
