//! Folders and files inside a project, with immutable versions and a trash.
//! This module holds the types and listing; `write`, `trash` and `versions`
//! hold the changes.
//!
//! Every function takes a grant for its project; every query filters on the
//! grant's project id, so an id from another project is simply not found.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::point_read::{bind_all, Param};
use crate::time::now_micros;
use crate::upload::BlobMeta;
use kura_core::policy::{Purge, Read, Write};
use kura_core::{
    BlobId, FileName, NodeId, ProjectGrant, ProjectId, ProjectPermission, UserId, VersionId,
};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

mod group_commit;
mod trash;
mod versions;
mod write;
pub use group_commit::{commit_new_file, FileCommits};
pub use trash::*;
pub use versions::*;
pub use write::*;

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: NodeId,
    pub project_id: ProjectId,
    pub parent_id: Option<NodeId>,
    pub kind: &'static str,
    pub name: String,
    pub size: i64,
    pub current_version_id: Option<VersionId>,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    pub created_by: UserId,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub modified_at: i64,
    pub modified_by: UserId,
    pub modified_by_name: Option<String>,
    #[serde(serialize_with = "crate::time::serialize_opt_rfc3339")]
    pub trashed_at: Option<i64>,
}

impl Node {
    pub fn is_file(&self) -> bool {
        self.kind == "file"
    }
}

const NODE_COLS: &str = "n.id, n.project_id, n.parent_id, n.is_file, n.name, n.size, n.current_version_id, n.created_at, n.created_by, n.modified_at, n.modified_by, n.trashed_at, u.display_name AS modified_by_name";

pub(super) fn node_from_row(r: &impl RowExt) -> Result<Node> {
    Ok(Node {
        id: r.id("id")?,
        project_id: r.id("project_id")?,
        parent_id: r.opt_id("parent_id")?,
        kind: if r.flag("is_file")? { "file" } else { "folder" },
        name: r.str("name")?,
        size: r.int("size")?,
        current_version_id: r.opt_id("current_version_id")?,
        created_at: r.int("created_at")?,
        created_by: r.id("created_by")?,
        modified_at: r.int("modified_at")?,
        modified_by: r.id("modified_by")?,
        modified_by_name: r.opt_str("modified_by_name")?,
        trashed_at: r.opt_int("trashed_at")?,
    })
}

type NodeTuple = (
    String,
    String,
    Option<String>,
    i64,
    String,
    i64,
    Option<String>,
    i64,
    String,
    i64,
    String,
    Option<i64>,
    Option<String>,
    i64,
);

/// Nodes from a JSON array of rows (see `list_children`), in row-number order.
fn nodes_from_json(j: &str) -> Result<Vec<Node>> {
    let bad = |_| StoreError::Internal("malformed listing row".into());
    let mut rows: Vec<NodeTuple> =
        serde_json::from_str(j).map_err(|e| StoreError::Internal(format!("listing: {e}")))?;
    rows.sort_by_key(|r| r.13);
    rows.into_iter()
        .map(|r| {
            Ok(Node {
                id: r.0.parse().map_err(bad)?,
                project_id: r.1.parse().map_err(bad)?,
                parent_id: r.2.map(|p| p.parse()).transpose().map_err(bad)?,
                kind: if r.3 != 0 { "file" } else { "folder" },
                name: r.4,
                size: r.5,
                current_version_id: r.6.map(|v| v.parse()).transpose().map_err(bad)?,
                created_at: r.7,
                created_by: r.8.parse().map_err(bad)?,
                modified_at: r.9,
                modified_by: r.10.parse().map_err(bad)?,
                trashed_at: r.11,
                modified_by_name: r.12,
            })
        })
        .collect()
}

pub(super) async fn load<'e, E>(ex: E, project: ProjectId, id: NodeId, live: bool) -> Result<Node>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let sql = format!(
        "SELECT {NODE_COLS} FROM nodes n LEFT JOIN users u ON u.id = n.modified_by WHERE n.id = $1 AND n.project_id = $2{}",
        if live { " AND n.trashed_at IS NULL" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(project.to_string())
        .fetch_optional(ex)
        .await?
        .ok_or(StoreError::NotFound)?;
    node_from_row(&row)
}

/// A live (not trashed) node of the grant's project.
pub async fn get<P: ProjectPermission>(db: &Db, g: &ProjectGrant<P>, id: NodeId) -> Result<Node> {
    load(&db.read, g.project_id(), id, true).await
}

pub(super) async fn live_folder(
    tx: &mut Transaction<'_, Any>,
    project: ProjectId,
    id: NodeId,
) -> Result<Node> {
    let n = load(&mut **tx, project, id, true).await?;
    if n.is_file() {
        return Err(StoreError::Invalid(
            "the target is a file, not a folder".into(),
        ));
    }
    Ok(n)
}

pub(super) fn name_taken(e: StoreError) -> StoreError {
    e.conflict_on_unique("an item with this name already exists in the folder")
}

// ---- listing ----

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    #[default]
    Name,
    Modified,
    Size,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    f: i64,
    s: Option<String>,
    i: Option<i64>,
    id: String,
}

#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<Node>,
    pub next_cursor: Option<String>,
}

pub const MAX_PAGE: i64 = 10_000;

/// Children of a live folder, folders first, then by the sort key; keyset
/// pagination so every page costs the same however deep.
pub async fn list_children(
    db: &Db,
    g: &ProjectGrant<Read>,
    folder: NodeId,
    sort: SortKey,
    order: SortOrder,
    cursor: Option<&str>,
    limit: i64,
) -> Result<Page> {
    let f = load(&db.read, g.project_id(), folder, true).await?;
    if f.is_file() {
        return Err(StoreError::Invalid("not a folder".into()));
    }
    let limit = limit.clamp(1, MAX_PAGE);
    let col = match sort {
        SortKey::Name => "n.name",
        SortKey::Modified => "n.modified_at",
        SortKey::Size => "n.size",
    };
    let (cmp, dir) = match order {
        SortOrder::Asc => (">", "ASC"),
        SortOrder::Desc => ("<", "DESC"),
    };
    let cur: Option<Cursor> = match cursor {
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| StoreError::Invalid("malformed cursor".into()))?,
        ),
        None => None,
    };
    let mut filter =
        String::from("n.parent_id = $1 AND n.project_id = $2 AND n.trashed_at IS NULL");
    if cur.is_some() {
        filter.push_str(&format!(
            " AND (n.is_file > $3 OR (n.is_file = $3 AND ({col} {cmp} $4 OR ({col} = $4 AND n.id {cmp} $5))))"
        ));
    }
    let terms = format!("n.is_file ASC, {col} {dir}, n.id {dir}");
    let order = format!("ORDER BY {terms} LIMIT {}", limit + 1);
    let mut params: Vec<Param> = vec![folder.to_string().into(), g.project_id().to_string().into()];
    if let Some(c) = &cur {
        params.push(c.f.into());
        params.push(match sort {
            SortKey::Name => c.s.clone().unwrap_or_default().into(),
            _ => c.i.unwrap_or_default().into(),
        });
        params.push(c.id.clone().into());
    }
    let mut items = match &db.point_reads {
        // SQLite file: the rows straight from SQLite, in order, on a
        // blocking thread (no JSON document to build and parse).
        Some(lite) => {
            let sql = format!("SELECT {NODE_COLS} FROM nodes n LEFT JOIN users u ON u.id = n.modified_by WHERE {filter} {order}");
            lite.fetch_all_blocking(sql, params, (limit + 1) as usize, node_from_row)
                .await?
        }
        None => {
            let sql = format!("SELECT {NODE_COLS}, ROW_NUMBER() OVER (ORDER BY {terms}) AS rn FROM nodes n LEFT JOIN users u ON u.id = n.modified_by WHERE {filter} {order}");
            list_as_json(db, &sql, &params).await?
        }
    };
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|n| {
            let c = Cursor {
                f: i64::from(n.is_file()),
                s: (sort == SortKey::Name).then(|| n.name.clone()),
                i: match sort {
                    SortKey::Name => None,
                    SortKey::Modified => Some(n.modified_at),
                    SortKey::Size => Some(n.size),
                },
                id: n.id.to_string(),
            };
            hex::encode(serde_json::to_vec(&c).unwrap_or_default())
        })
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// PostgreSQL (and SQLite in memory): the page of `sql` as one JSON
/// document, because handing thousands of rows one by one from the database
/// costs far more than building and parsing the document.
async fn list_as_json(db: &Db, sql: &str, params: &[Param]) -> Result<Vec<Node>> {
    let row_json = "s.id, s.project_id, s.parent_id, s.is_file, s.name, s.size, s.current_version_id, s.created_at, s.created_by, s.modified_at, s.modified_by, s.trashed_at, s.modified_by_name, s.rn";
    let sql = match db.backend {
        crate::db::Backend::Sqlite => {
            format!("SELECT json_group_array(json_array({row_json})) AS j FROM ({sql}) s")
        }
        crate::db::Backend::Postgres => {
            format!("SELECT json_agg(json_build_array({row_json}))::text AS j FROM ({sql}) s")
        }
    };
    let row = bind_all(sqlx::query(&sql), params)
        .fetch_one(&db.read)
        .await?;
    nodes_from_json(row.opt_str("j")?.as_deref().unwrap_or("[]"))
}

/// The folders from the root down to `id` (for breadcrumbs).
pub async fn path(db: &Db, g: &ProjectGrant<Read>, id: NodeId) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    let mut cur = Some(id);
    let mut guard = 0;
    while let Some(c) = cur {
        guard += 1;
        if guard > 256 {
            break;
        }
        let n = load(&db.read, g.project_id(), c, true).await?;
        cur = n.parent_id;
        out.push(n);
    }
    out.reverse();
    Ok(out)
}
