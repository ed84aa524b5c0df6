//! The project file browser: breadcrumbs, folder listing with sorting and
//! paging, folder creation, upload (the page's script talks to the API),
//! and the trash.

use super::{html, see_other, urlencode, Layout, OrWeb, Web, WebError, WebForm};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use kura_core::policy::{Purge, Read, View, Write};
use kura_core::{FileName, NodeId, ProjectId, ProjectRole};
use kura_store::nodes::{self, Node, SortKey, SortOrder};
use kura_store::{AuditEvent, Outcome};
use serde::Deserialize;

pub struct Crumb {
    pub id: String,
    pub name: String,
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub is_folder: bool,
    pub kind: &'static str,
    pub size: String,
    pub modified: String,
    pub modified_by: String,
}

pub struct SortLink {
    /// "hide-narrow" for columns dropped on phone-sized screens.
    pub class: &'static str,
    pub label: String,
    pub href: String,
    pub active: bool,
    pub arrow: &'static str,
}

#[derive(Template)]
#[template(path = "browser.html")]
struct BrowserPage {
    l: Layout,
    project_id: String,
    folder_id: String,
    crumbs: Vec<Crumb>,
    rows: Vec<Row>,
    sorts: Vec<SortLink>,
    next_href: Option<String>,
    first_href: Option<String>,
    can_write: bool,
    max_upload: u64,
    upload_js: String,
}

/// A short type label from the file name (display only, never trusted).
pub fn kind_of(name: &str, is_folder: bool) -> &'static str {
    if is_folder {
        return "folder";
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "webp" | "bmp" | "svg" => "image",
        "pdf" => "pdf",
        "txt" | "md" | "csv" | "log" | "json" | "xml" | "yaml" | "yml" => "text",
        "doc" | "docx" | "odt" | "rtf" => "doc",
        "xls" | "xlsx" | "ods" => "sheet",
        "ppt" | "pptx" | "odp" => "slides",
        "zip" | "7z" | "gz" | "tar" | "rar" => "archive",
        _ => "file",
    }
}

pub fn human_size(n: i64) -> String {
    let n = n.max(0) as f64;
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", n as u64)
    } else {
        format!("{v:.1} {}", units[i])
    }
}

pub fn row(w: &Web, n: &Node) -> Row {
    Row {
        id: n.id.to_string(),
        name: n.name.clone(),
        is_folder: !n.is_file(),
        kind: kind_of(&n.name, !n.is_file()),
        size: if n.is_file() {
            human_size(n.size)
        } else {
            String::new()
        },
        modified: w.time(n.modified_at),
        modified_by: n.modified_by_name.clone().unwrap_or_default(),
    }
}

pub async fn project_root(
    State(s): State<AppState>,
    w: Web,
    Path(p): Path<String>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let p: ProjectId = p
        .parse()
        .map_err(|_| w.error(crate::error::ApiError::not_found()))?;
    let g = s
        .project_grant::<View>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let project = kura_store::projects::get(&s.store.db, &g).await.web(&w)?;
    if project.my_role.is_none() {
        // Organization admins who are not members manage the project's members.
        return Ok(see_other(&format!("/projects/{p}/members")));
    }
    Ok(see_other(&format!(
        "/projects/{p}/folders/{}",
        project.root_folder_id
    )))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    sort: SortKey,
    #[serde(default)]
    order: SortOrder,
    cursor: Option<String>,
}

pub const PAGE_SIZE: i64 = 200;

pub async fn folder(
    State(s): State<AppState>,
    w: Web,
    Path((p, f)): Path<(String, String)>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, f): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &f)?);
    let Query(q) = q.map_err(|e| w.error(crate::error::ApiError::bad_request(e.body_text())))?;
    let g = s
        .project_grant::<Read>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let db = &s.store.db;
    let path = nodes::path(db, &g, f).await.web(&w)?;
    let page = nodes::list_children(db, &g, f, q.sort, q.order, q.cursor.as_deref(), PAGE_SIZE)
        .await
        .web(&w)?;
    s.record(
        &w.ctx,
        AuditEvent::new("folder.list", Outcome::Success)
            .project(g.org_id(), p)
            .node(f)
            .detail(serde_json::json!({"count": page.items.len(), "via": "web"})),
    )
    .await
    .web(&w)?;
    let view = s
        .project_grant::<View>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let project = kura_store::projects::get(db, &view).await.web(&w)?;
    let base = format!("/projects/{p}/folders/{f}");
    let sort_str = |k: SortKey| match k {
        SortKey::Name => "name",
        SortKey::Modified => "modified",
        SortKey::Size => "size",
    };
    let order_str = |o: SortOrder| match o {
        SortOrder::Asc => "asc",
        SortOrder::Desc => "desc",
    };
    let sorts = [
        (SortKey::Name, "browser.name"),
        (SortKey::Size, "browser.size"),
        (SortKey::Modified, "browser.modified"),
    ]
    .into_iter()
    .map(|(k, label)| {
        let active = q.sort == k;
        let next_order = if active && q.order == SortOrder::Asc {
            SortOrder::Desc
        } else {
            SortOrder::Asc
        };
        SortLink {
            class: if k == SortKey::Modified {
                "hide-narrow"
            } else {
                ""
            },
            label: w.t.t(label).to_string(),
            href: format!(
                "{base}?sort={}&order={}",
                sort_str(k),
                order_str(next_order)
            ),
            active,
            arrow: if !active {
                ""
            } else if q.order == SortOrder::Asc {
                "▲"
            } else {
                "▼"
            },
        }
    })
    .collect();
    let next_href = page.next_cursor.as_ref().map(|c| {
        format!(
            "{base}?sort={}&order={}&cursor={}",
            sort_str(q.sort),
            order_str(q.order),
            urlencode(c)
        )
    });
    let first_href = q.cursor.as_ref().map(|_| {
        format!(
            "{base}?sort={}&order={}",
            sort_str(q.sort),
            order_str(q.order)
        )
    });
    let role = g.role();
    let crumbs = path
        .iter()
        .enumerate()
        .map(|(i, n)| Crumb {
            id: n.id.to_string(),
            name: if i == 0 {
                project.name.clone()
            } else {
                n.name.clone()
            },
        })
        .collect();
    let title = path
        .last()
        .filter(|n| n.parent_id.is_some())
        .map(|n| n.name.clone())
        .unwrap_or_else(|| project.name.clone());
    let page = BrowserPage {
        l: w.layout(title),
        project_id: p.to_string(),
        folder_id: f.to_string(),
        crumbs,
        rows: page.items.iter().map(|n| row(&w, n)).collect(),
        sorts,
        next_href,
        first_href,
        can_write: role.is_some_and(|r| r >= ProjectRole::Member),
        max_upload: s.config.max_upload_bytes,
        upload_js: super::assets::url("upload.js"),
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
pub struct NameForm {
    pub name: String,
}

pub async fn mkdir(
    State(s): State<AppState>,
    w: Web,
    Path((p, f)): Path<(String, String)>,
    WebForm(form): WebForm<NameForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, f): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &f)?);
    let g = s
        .project_grant::<Write>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let name = FileName::parse(&form.name)
        .map_err(kura_store::StoreError::from)
        .web(&w)?;
    nodes::create_folder(&s.store.db, &g, &w.ctx, f, &name)
        .await
        .web(&w)?;
    Ok(see_other(&format!("/projects/{p}/folders/{f}")))
}

pub struct TrashRow {
    pub id: String,
    pub name: String,
    pub kind: &'static str,
    pub size: String,
    pub trashed: String,
}

#[derive(Template)]
#[template(path = "trash.html")]
struct TrashPage {
    l: Layout,
    project_id: String,
    project_name: String,
    rows: Vec<TrashRow>,
    can_write: bool,
    can_purge: bool,
}

pub async fn trash(
    State(s): State<AppState>,
    w: Web,
    Path(p): Path<String>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let p: ProjectId = p
        .parse()
        .map_err(|_| w.error(crate::error::ApiError::not_found()))?;
    let g = s
        .project_grant::<Read>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let items = nodes::list_trash(&s.store.db, &g).await.web(&w)?;
    s.record(
        &w.ctx,
        AuditEvent::new("trash.list", Outcome::Success).project(g.org_id(), p),
    )
    .await
    .web(&w)?;
    let view = s
        .project_grant::<View>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    let project = kura_store::projects::get(&s.store.db, &view)
        .await
        .web(&w)?;
    let rows = items
        .iter()
        .map(|n| TrashRow {
            id: n.id.to_string(),
            name: n.name.clone(),
            kind: kind_of(&n.name, !n.is_file()),
            size: if n.is_file() {
                human_size(n.size)
            } else {
                String::new()
            },
            trashed: n.trashed_at.map(|t| w.time(t)).unwrap_or_default(),
        })
        .collect();
    let role = g.role();
    let page = TrashPage {
        l: w.layout(w.t.t("trash.title").into()),
        project_id: p.to_string(),
        project_name: project.name,
        rows,
        can_write: role.is_some_and(|r| r >= ProjectRole::Member),
        can_purge: role.is_some_and(|r| r >= ProjectRole::Manager),
    };
    Ok(html(&page))
}

pub async fn restore(
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
    let node = nodes::restore(&s.store.db, &g, &w.ctx, n, None)
        .await
        .web(&w)?;
    let parent = node.parent_id.map(|x| x.to_string()).unwrap_or_default();
    Ok(see_other(&format!("/projects/{p}/folders/{parent}")))
}

pub async fn purge(
    State(s): State<AppState>,
    w: Web,
    Path((p, n)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (p, n): (ProjectId, NodeId) = (super::parse_id(&w, &p)?, super::parse_id(&w, &n)?);
    let g = s
        .project_grant::<Purge>(&me.actor, &w.ctx, p)
        .await
        .web(&w)?;
    for b in nodes::purge(&s.store.db, &g, &w.ctx, n).await.web(&w)? {
        if let Err(e) = s.store.blobs.delete(b).await {
            tracing::warn!(blob = %b, error = %e, "could not delete purged blob; fsck will sweep it");
        }
    }
    Ok(see_other(&format!("/projects/{p}/trash")))
}
