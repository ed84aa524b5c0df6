//! One file or folder: details, versions, preview, rename, move, delete.

use super::browser::{human_size, kind_of, NameForm};
use super::{html, see_other, Layout, OrWeb, Web, WebError, WebForm};
use crate::api::transfer::decrypted_body;
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_core::policy::{Read, Write};
use kura_core::{FileName, NodeId, ProjectId, ProjectRole, VersionId};
use kura_store::nodes::{self, SortKey, SortOrder};
use kura_store::{AuditEvent, Outcome};
use serde::Deserialize;

pub struct VersionRow {
    pub id: String,
    pub number: i64,
    pub size: String,
    pub created: String,
    pub created_by: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "file.html")]
struct FilePage {
    l: Layout,
    project_id: String,
    node_id: String,
    parent_id: String,
    name: String,
    is_folder: bool,
    kind: &'static str,
    size: String,
    modified: String,
    modified_by: String,
    versions: Vec<VersionRow>,
    preview: Option<&'static str>,
    can_write: bool,
    /// Admins of the owning organization may mark the file as a canary.
    can_canary: bool,
    is_canary: bool,
}

/// Types shown inline, with the Content-Type we serve them as. Anything
/// that can carry script (HTML, SVG, XML) is never previewed.
fn preview_type(name: &str) -> Option<(&'static str, &'static str)> {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Some(("image", "image/png")),
        "jpg" | "jpeg" => Some(("image", "image/jpeg")),
        "gif" => Some(("image", "image/gif")),
        "webp" => Some(("image", "image/webp")),
        "pdf" => Some(("pdf", "application/pdf")),
        "txt" | "md" | "csv" | "log" | "json" => Some(("text", "text/plain; charset=utf-8")),
        _ => None,
    }
}

const PREVIEW_MAX: i64 = 50 * 1024 * 1024;

pub async fn details(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let g = s
        .project_grant::<Read>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let node = nodes::get(&s.store.db, &g, n).await.web(&w)?;
    let versions = if node.is_file() {
        nodes::versions(&s.store.db, &g, n).await.web(&w)?
    } else {
        Vec::new()
    };
    s.record(
        &w.ctx,
        AuditEvent::new("node.view", Outcome::Success)
            .project(g.org_id(), p)
            .node(n)
            .name(node.name.clone()),
    )
    .await
    .web(&w)?;
    let me = w.me()?;
    let can_canary = node.is_file() && me.actor.org_admin && me.actor.org_id == g.org_id();
    let is_canary = can_canary
        && kura_store::alerts::is_canary(&s.store.db, n)
            .await
            .web(&w)?;
    let rows = versions
        .iter()
        .map(|v| VersionRow {
            id: v.id.to_string(),
            number: v.number,
            size: human_size(v.size),
            created: w.time(v.created_at),
            created_by: v.created_by_name.clone().unwrap_or_default(),
            current: Some(v.id) == node.current_version_id,
        })
        .collect();
    let page = FilePage {
        l: w.layout(node.name.clone()),
        project_id: p.to_string(),
        node_id: n.to_string(),
        parent_id: node.parent_id.map(|x| x.to_string()).unwrap_or_default(),
        kind: kind_of(&node.name, !node.is_file()),
        is_folder: !node.is_file(),
        size: human_size(node.size),
        modified: w.time(node.modified_at),
        modified_by: node.modified_by_name.clone().unwrap_or_default(),
        preview: preview_type(&node.name)
            .filter(|_| node.is_file() && node.size <= PREVIEW_MAX)
            .map(|(k, _)| k),
        name: node.name,
        versions: rows,
        can_write: g.role().is_some_and(|r| r >= ProjectRole::Member),
        can_canary,
        is_canary,
    };
    Ok(html(&page))
}

/// Inline preview of safe types: sandboxed, never sniffed, framed only by us.
pub async fn preview(
    State(s): State<AppState>,
    w: Web,
    method: axum::http::Method,
    Path((p, n)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let g = s
        .project_grant::<Read>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let (node, v) = nodes::version(&s.store.db, &g, n, None).await.web(&w)?;
    let Some((kind, ctype)) = preview_type(&node.name).filter(|_| v.size <= PREVIEW_MAX) else {
        return Err(w.error(ApiError::new(
            StatusCode::NOT_FOUND,
            "no-preview",
            w.t.t("file.no_preview"),
        )));
    };
    let size = v.size as u64;
    let base = AuditEvent::new("file.preview", Outcome::Success)
        .project(g.org_id(), p)
        .node(n)
        .version(v.id)
        .name(node.name.clone())
        .bytes(size);
    // HEAD: headers only, recorded as such, nothing decrypted.
    let body = if method == axum::http::Method::HEAD {
        s.record(
            &w.ctx,
            AuditEvent {
                action: "file.head",
                ..base
            }
            .bytes(0),
        )
        .await
        .web(&w)?;
        axum::body::Body::empty()
    } else {
        s.admit_download(&me.actor, &w.ctx, &me.policy, g.org_id(), size, true)
            .await
            .web(&w)?;
        s.record(&w.ctx, base.clone()).await.web(&w)?;
        decrypted_body(&s, &w.ctx, &v.blob, 0..size, base)
            .await
            .web(&w)?
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("inline"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    // PDFs need the browser's viewer, which a sandbox blocks; they cannot run
    // script in our origin either way. Everything else is sandboxed.
    let csp = if kind == "pdf" {
        "default-src 'none'; object-src 'self'; frame-ancestors 'self'"
    } else {
        "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"
    };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    Ok(r)
}

pub async fn rename(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
    WebForm(f): WebForm<NameForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let g = s
        .project_grant::<Write>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let name = FileName::parse(&f.name)
        .map_err(kura_store::StoreError::from)
        .web(&w)?;
    let node = nodes::rename_move(&s.store.db, &g, &w.ctx, n, Some(&name), None)
        .await
        .web(&w)?;
    Ok(back_to(p, &node))
}

fn back_to(p: ProjectId, node: &nodes::Node) -> Response {
    if node.is_file() {
        see_other(&format!("/projects/{p}/nodes/{}", node.id))
    } else {
        see_other(&format!(
            "/projects/{p}/folders/{}",
            node.parent_id.map(|x| x.to_string()).unwrap_or_default()
        ))
    }
}

pub struct FolderChoice {
    pub id: String,
    pub name: String,
}

#[derive(Template)]
#[template(path = "move.html")]
struct MovePage {
    l: Layout,
    project_id: String,
    node_id: String,
    node_name: String,
    here_id: String,
    crumbs: Vec<FolderChoice>,
    folders: Vec<FolderChoice>,
}

#[derive(Deserialize)]
pub struct MoveQuery {
    folder: Option<String>,
}

/// A folder picker: browse folders, then move the item into the one shown.
pub async fn move_picker(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
    Query(q): Query<MoveQuery>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let g = s
        .project_grant::<Read>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let node = nodes::get(&s.store.db, &g, n).await.web(&w)?;
    let view = s
        .project_grant::<kura_core::policy::View>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let project = kura_store::projects::get(&s.store.db, &view)
        .await
        .web(&w)?;
    let here: NodeId = q
        .folder
        .as_deref()
        .and_then(|f| f.parse().ok())
        .unwrap_or(project.root_folder_id);
    let path = nodes::path(&s.store.db, &g, here).await.web(&w)?;
    let page = nodes::list_children(
        &s.store.db,
        &g,
        here,
        SortKey::Name,
        SortOrder::Asc,
        None,
        1000,
    )
    .await
    .web(&w)?;
    let folders = page
        .items
        .iter()
        .filter(|c| !c.is_file() && c.id != n)
        .map(|c| FolderChoice {
            id: c.id.to_string(),
            name: c.name.clone(),
        })
        .collect();
    let crumbs = path
        .iter()
        .enumerate()
        .map(|(i, c)| FolderChoice {
            id: c.id.to_string(),
            name: if i == 0 {
                project.name.clone()
            } else {
                c.name.clone()
            },
        })
        .collect();
    let page = MovePage {
        l: w.layout(w.t.t("move.title").into()),
        project_id: p.to_string(),
        node_id: n.to_string(),
        node_name: node.name,
        here_id: here.to_string(),
        crumbs,
        folders,
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
pub struct MoveForm {
    parent_id: String,
}

pub async fn move_to(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
    WebForm(f): WebForm<MoveForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let parent: NodeId = f
        .parent_id
        .parse()
        .map_err(|_| w.error(ApiError::not_found()))?;
    let g = s
        .project_grant::<Write>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    nodes::rename_move(&s.store.db, &g, &w.ctx, n, None, Some(parent))
        .await
        .web(&w)?;
    Ok(see_other(&format!("/projects/{p}/folders/{parent}")))
}

pub async fn delete(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let g = s
        .project_grant::<Write>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let node = nodes::get(&s.store.db, &g, n).await.web(&w)?;
    nodes::trash(&s.store.db, &g, &w.ctx, n).await.web(&w)?;
    Ok(see_other(&format!(
        "/projects/{p}/folders/{}",
        node.parent_id.map(|x| x.to_string()).unwrap_or_default()
    )))
}

pub async fn restore_version(
    State(s): State<AppState>,
    w: Web,
    Path((p, n, v)): Path<(String, String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let v: VersionId = v.parse().map_err(|_| w.error(ApiError::not_found()))?;
    let g = s
        .project_grant::<Write>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    nodes::restore_version(&s.store.db, &g, &w.ctx, n, v)
        .await
        .web(&w)?;
    Ok(see_other(&format!("/projects/{p}/nodes/{n}")))
}
