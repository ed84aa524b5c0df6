//! Folders and files inside a project, with immutable versions and a trash.
//!
//! Every function takes a grant for its project; every query filters on the
//! grant's project id, so an id from another project is simply not found.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::now_micros;
use crate::upload::BlobMeta;
use kura_core::policy::{Purge, Read, Write};
use kura_core::{
    BlobId, FileName, NodeId, ProjectGrant, ProjectId, ProjectPermission, UserId, VersionId,
};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

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

fn node_from_row(r: &AnyRow) -> Result<Node> {
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

async fn load<'e, E>(ex: E, project: ProjectId, id: NodeId, live: bool) -> Result<Node>
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

async fn live_folder(
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

fn name_taken(e: StoreError) -> StoreError {
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
    let mut sql = format!("SELECT {NODE_COLS}, ROW_NUMBER() OVER (ORDER BY n.is_file ASC, {col} {dir}, n.id {dir}) AS rn FROM nodes n LEFT JOIN users u ON u.id = n.modified_by WHERE n.parent_id = $1 AND n.project_id = $2 AND n.trashed_at IS NULL");
    if cur.is_some() {
        sql.push_str(&format!(
            " AND (n.is_file > $3 OR (n.is_file = $3 AND ({col} {cmp} $4 OR ({col} = $4 AND n.id {cmp} $5))))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY n.is_file ASC, {col} {dir}, n.id {dir} LIMIT {}",
        limit + 1
    ));
    // Large folders: the rows come back as one JSON document, because
    // handing thousands of rows one by one from the database thread costs
    // far more than building and parsing the document.
    let row_json = "s.id, s.project_id, s.parent_id, s.is_file, s.name, s.size, s.current_version_id, s.created_at, s.created_by, s.modified_at, s.modified_by, s.trashed_at, s.modified_by_name, s.rn";
    let sql = match db.backend {
        crate::db::Backend::Sqlite => {
            format!("SELECT json_group_array(json_array({row_json})) AS j FROM ({sql}) s")
        }
        crate::db::Backend::Postgres => {
            format!("SELECT json_agg(json_build_array({row_json}))::text AS j FROM ({sql}) s")
        }
    };
    let mut q = sqlx::query(&sql)
        .bind(folder.to_string())
        .bind(g.project_id().to_string());
    if let Some(c) = &cur {
        q = q.bind(c.f);
        q = match sort {
            SortKey::Name => q.bind(c.s.clone().unwrap_or_default()),
            _ => q.bind(c.i.unwrap_or_default()),
        };
        q = q.bind(c.id.clone());
    }
    let row = q.fetch_one(&db.read).await?;
    let mut items = nodes_from_json(row.opt_str("j")?.as_deref().unwrap_or("[]"))?;
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

// ---- creating ----

pub async fn create_folder(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    parent: NodeId,
    name: &FileName,
) -> Result<Node> {
    let mut tx = db.write.begin().await?;
    live_folder(&mut tx, g.project_id(), parent).await?;
    let id = NodeId::new();
    let now = now_micros();
    sqlx::query("INSERT INTO nodes (id, project_id, org_id, parent_id, is_file, name, size, created_at, created_by, modified_at, modified_by) VALUES ($1, $2, $3, $4, 0, $5, 0, $6, $7, $6, $7)")
        .bind(id.to_string())
        .bind(g.project_id().to_string())
        .bind(g.org_id().to_string())
        .bind(parent.to_string())
        .bind(name.as_str())
        .bind(now)
        .bind(g.user_id().to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e.into()))?;
    let ev = AuditEvent::new("folder.create", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(name.as_str());
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), id, true).await
}

async fn charge_quota(
    tx: &mut Transaction<'_, Any>,
    org: kura_core::OrgId,
    bytes: i64,
) -> Result<()> {
    let n = sqlx::query("UPDATE orgs SET used_bytes = used_bytes + $1 WHERE id = $2 AND used_bytes + $1 <= quota_bytes")
        .bind(bytes)
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::QuotaExceeded);
    }
    Ok(())
}

async fn release_quota(
    tx: &mut Transaction<'_, Any>,
    org: kura_core::OrgId,
    bytes: i64,
) -> Result<()> {
    sqlx::query("UPDATE orgs SET used_bytes = CASE WHEN used_bytes >= $1 THEN used_bytes - $1 ELSE 0 END WHERE id = $2")
        .bind(bytes)
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Bytes the organization may still store.
pub async fn quota_remaining(db: &Db, org: kura_core::OrgId) -> Result<u64> {
    let r = sqlx::query("SELECT quota_bytes, used_bytes FROM orgs WHERE id = $1")
        .bind(org.to_string())
        .fetch_one(&db.read)
        .await?;
    Ok(u64::try_from(r.int("quota_bytes")? - r.int("used_bytes")?).unwrap_or(0))
}

async fn insert_blob(
    tx: &mut Transaction<'_, Any>,
    org: kura_core::OrgId,
    b: &BlobMeta,
) -> Result<()> {
    sqlx::query("INSERT INTO blobs (id, org_id, size, chunk_size, wrapped_key, nonce_prefix, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(b.id.to_string())
        .bind(org.to_string())
        .bind(b.size as i64)
        .bind(kura_crypto::CHUNK_SIZE as i64)
        .bind(b.wrapped_key.clone())
        .bind(b.nonce_prefix.clone())
        .bind(b.sha256.clone())
        .bind(now_micros())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_version(
    tx: &mut Transaction<'_, Any>,
    g_project: ProjectId,
    org: kura_core::OrgId,
    node: NodeId,
    blob: BlobId,
    size: i64,
    user: UserId,
) -> Result<(VersionId, i64)> {
    // Serialize version numbering per file: this write takes the row lock on
    // PostgreSQL (and the database lock on SQLite) before we read MAX(number).
    sqlx::query("UPDATE nodes SET modified_at = modified_at WHERE id = $1")
        .bind(node.to_string())
        .execute(&mut **tx)
        .await?;
    let r =
        sqlx::query("SELECT COALESCE(MAX(number), 0) AS n FROM file_versions WHERE node_id = $1")
            .bind(node.to_string())
            .fetch_one(&mut **tx)
            .await?;
    let number = r.int("n")? + 1;
    let id = VersionId::new();
    let now = now_micros();
    sqlx::query("INSERT INTO file_versions (id, node_id, project_id, org_id, number, size, blob_id, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(id.to_string())
        .bind(node.to_string())
        .bind(g_project.to_string())
        .bind(org.to_string())
        .bind(number)
        .bind(size)
        .bind(blob.to_string())
        .bind(now)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE nodes SET current_version_id = $1, size = $2, modified_at = $3, modified_by = $4 WHERE id = $5")
        .bind(id.to_string())
        .bind(size)
        .bind(now)
        .bind(user.to_string())
        .bind(node.to_string())
        .execute(&mut **tx)
        .await?;
    Ok((id, number))
}

/// Make an uploaded blob visible as a new file. Only after this commit does
/// the file exist; on failure the caller deletes the blob.
pub async fn commit_new_file(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    parent: NodeId,
    name: &FileName,
    blob: &BlobMeta,
) -> Result<Node> {
    // Few statements on purpose: this is every upload's commit, serialized on
    // the single SQLite writer.
    let mut tx = db.write.begin().await?;
    charge_quota(&mut tx, g.org_id(), blob.size as i64).await?;
    insert_blob(&mut tx, g.org_id(), blob).await?;
    let id = NodeId::new();
    let vid = VersionId::new();
    let now = now_micros();
    let user = g.user_id();
    // Inserted only under a live folder of this project.
    let inserted = sqlx::query(
        "INSERT INTO nodes (id, project_id, org_id, parent_id, is_file, name, size, current_version_id, created_at, created_by, modified_at, modified_by) \
         SELECT $1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $8, $9 WHERE EXISTS \
         (SELECT 1 FROM nodes p WHERE p.id = $4 AND p.project_id = $2 AND p.is_file = 0 AND p.trashed_at IS NULL)",
    )
    .bind(id.to_string())
    .bind(g.project_id().to_string())
    .bind(g.org_id().to_string())
    .bind(parent.to_string())
    .bind(name.as_str())
    .bind(blob.size as i64)
    .bind(vid.to_string())
    .bind(now)
    .bind(user.to_string())
    .execute(&mut *tx)
    .await
    .map_err(|e| name_taken(e.into()))?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::NotFound);
    }
    sqlx::query("INSERT INTO file_versions (id, node_id, project_id, org_id, number, size, blob_id, created_at, created_by) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8)")
        .bind(vid.to_string())
        .bind(id.to_string())
        .bind(g.project_id().to_string())
        .bind(g.org_id().to_string())
        .bind(blob.size as i64)
        .bind(blob.id.to_string())
        .bind(now)
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("file.upload", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .version(vid)
        .name(name.as_str())
        .bytes(blob.size)
        .detail(serde_json::json!({"sha256": blob.sha256}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(Node {
        id,
        project_id: g.project_id(),
        parent_id: Some(parent),
        kind: "file",
        name: name.as_str().to_string(),
        size: blob.size as i64,
        current_version_id: Some(vid),
        created_at: now,
        created_by: user,
        modified_at: now,
        modified_by: user,
        modified_by_name: None,
        trashed_at: None,
    })
}

/// What an upload needs to know before it reads the body, in one query:
/// the target folder is live, whether the name is taken (and by what), and
/// how many bytes the organization may still store.
pub struct UploadTarget {
    pub existing: Option<(NodeId, bool)>,
    pub quota_remaining: u64,
}

pub async fn upload_target(
    db: &Db,
    g: &ProjectGrant<Write>,
    folder: NodeId,
    name: &FileName,
) -> Result<UploadTarget> {
    let r = sqlx::query(
        "SELECT p.is_file AS parent_is_file, \
         (SELECT e.id FROM nodes e WHERE e.parent_id = p.id AND e.name = $3 AND e.trashed_at IS NULL) AS existing_id, \
         (SELECT e.is_file FROM nodes e WHERE e.parent_id = p.id AND e.name = $3 AND e.trashed_at IS NULL) AS existing_is_file, \
         (SELECT o.quota_bytes - o.used_bytes FROM orgs o WHERE o.id = $4) AS remaining \
         FROM nodes p WHERE p.id = $1 AND p.project_id = $2 AND p.trashed_at IS NULL",
    )
    .bind(folder.to_string())
    .bind(g.project_id().to_string())
    .bind(name.as_str())
    .bind(g.org_id().to_string())
    .fetch_optional(&db.read)
    .await?
    .ok_or(StoreError::NotFound)?;
    if r.flag("parent_is_file")? {
        return Err(StoreError::Invalid(
            "the target is a file, not a folder".into(),
        ));
    }
    let existing = match r.opt_id::<NodeId>("existing_id")? {
        Some(id) => Some((id, r.opt_int("existing_is_file")?.unwrap_or(0) != 0)),
        None => None,
    };
    let remaining = r.opt_int("remaining")?.unwrap_or(0);
    Ok(UploadTarget {
        existing,
        quota_remaining: u64::try_from(remaining).unwrap_or(0),
    })
}

/// Add a version to an existing live file.
pub async fn commit_new_version(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    file: NodeId,
    blob: &BlobMeta,
) -> Result<Node> {
    let mut tx = db.write.begin().await?;
    let n = load(&mut *tx, g.project_id(), file, true).await?;
    if !n.is_file() {
        return Err(StoreError::Invalid("not a file".into()));
    }
    charge_quota(&mut tx, g.org_id(), blob.size as i64).await?;
    insert_blob(&mut tx, g.org_id(), blob).await?;
    let (vid, number) = insert_version(
        &mut tx,
        g.project_id(),
        g.org_id(),
        file,
        blob.id,
        blob.size as i64,
        g.user_id(),
    )
    .await?;
    let ev = AuditEvent::new("file.upload_version", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(file)
        .version(vid)
        .name(n.name)
        .bytes(blob.size)
        .detail(serde_json::json!({"sha256": blob.sha256, "number": number}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), file, true).await
}

// ---- organizing ----

/// Is `candidate` the node `id` itself or inside it?
async fn is_within(tx: &mut Transaction<'_, Any>, candidate: NodeId, id: NodeId) -> Result<bool> {
    let r = sqlx::query("WITH RECURSIVE up(id, parent_id) AS (SELECT id, parent_id FROM nodes WHERE id = $1 UNION ALL SELECT n.id, n.parent_id FROM nodes n JOIN up ON n.id = up.parent_id) SELECT COUNT(*) AS c FROM up WHERE id = $2")
        .bind(candidate.to_string())
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    Ok(r.int("c")? > 0)
}

/// Rename and/or move a node within its project.
pub async fn rename_move(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    id: NodeId,
    new_name: Option<&FileName>,
    new_parent: Option<NodeId>,
) -> Result<Node> {
    let mut tx = db.write.begin().await?;
    let n = load(&mut *tx, g.project_id(), id, true).await?;
    let Some(old_parent) = n.parent_id else {
        return Err(StoreError::Invalid(
            "the project's root folder cannot be renamed or moved".into(),
        ));
    };
    let parent = new_parent.unwrap_or(old_parent);
    if parent != old_parent {
        live_folder(&mut tx, g.project_id(), parent).await?;
        if is_within(&mut tx, parent, id).await? {
            return Err(StoreError::Conflict(
                "a folder cannot be moved into itself or its subfolders".into(),
            ));
        }
    }
    let name = new_name
        .map(|n| n.as_str().to_string())
        .unwrap_or(n.name.clone());
    sqlx::query("UPDATE nodes SET name = $1, parent_id = $2, modified_at = $3, modified_by = $4 WHERE id = $5")
        .bind(&name)
        .bind(parent.to_string())
        .bind(now_micros())
        .bind(g.user_id().to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| name_taken(e.into()))?;
    let action = if parent != old_parent {
        "node.move"
    } else {
        "node.rename"
    };
    let ev = AuditEvent::new(action, Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(name)
        .detail(serde_json::json!({"old_name": n.name, "old_parent_id": old_parent, "parent_id": parent}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), id, true).await
}

/// Copy a file (its current version) or a folder tree into `target`.
/// Content is shared copy-on-write: the copy references the same blobs.
pub async fn copy(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    id: NodeId,
    target: NodeId,
    new_name: Option<&FileName>,
) -> Result<Node> {
    let mut tx = db.write.begin().await?;
    let src = load(&mut *tx, g.project_id(), id, true).await?;
    if src.parent_id.is_none() {
        return Err(StoreError::Invalid(
            "the project's root folder cannot be copied".into(),
        ));
    }
    live_folder(&mut tx, g.project_id(), target).await?;
    if !src.is_file() && is_within(&mut tx, target, id).await? {
        return Err(StoreError::Conflict(
            "a folder cannot be copied into itself".into(),
        ));
    }
    let rows = sqlx::query("WITH RECURSIVE sub(id, depth) AS (SELECT id, 0 FROM nodes WHERE id = $1 UNION ALL SELECT n.id, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.id WHERE n.trashed_at IS NULL) \
        SELECT n.id, n.parent_id, n.is_file, n.name, n.size, v.blob_id, sub.depth FROM sub JOIN nodes n ON n.id = sub.id LEFT JOIN file_versions v ON v.id = n.current_version_id ORDER BY sub.depth")
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let mut file_total = 0i64;
    for r in &rows {
        if r.flag("is_file")? {
            file_total += r.int("size")?;
        }
    }
    charge_quota(&mut tx, g.org_id(), file_total).await?;
    let mut map: std::collections::HashMap<String, NodeId> = std::collections::HashMap::new();
    let now = now_micros();
    let user = g.user_id();
    let mut root_new = None;
    for r in &rows {
        let old_id = r.str("id")?;
        let is_file = r.flag("is_file")?;
        let new_id = NodeId::new();
        let (parent, name) = if root_new.is_none() {
            (
                target,
                new_name
                    .map(|n| n.as_str().to_string())
                    .unwrap_or(r.str("name")?),
            )
        } else {
            let p = r
                .opt_str("parent_id")?
                .and_then(|p| map.get(&p).copied())
                .ok_or(StoreError::Internal("copy: orphan".into()))?;
            (p, r.str("name")?)
        };
        sqlx::query("INSERT INTO nodes (id, project_id, org_id, parent_id, is_file, name, size, created_at, created_by, modified_at, modified_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $9)")
            .bind(new_id.to_string())
            .bind(g.project_id().to_string())
            .bind(g.org_id().to_string())
            .bind(parent.to_string())
            .bind(i64::from(is_file))
            .bind(&name)
            .bind(r.int("size")?)
            .bind(now)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| name_taken(e.into()))?;
        if is_file {
            let blob: BlobId = r.id("blob_id")?;
            insert_version(
                &mut tx,
                g.project_id(),
                g.org_id(),
                new_id,
                blob,
                r.int("size")?,
                user,
            )
            .await?;
        }
        map.insert(old_id, new_id);
        root_new.get_or_insert(new_id);
    }
    let new_root = root_new.ok_or(StoreError::NotFound)?;
    let ev = AuditEvent::new("node.copy", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(new_root)
        .name(src.name.clone())
        .bytes(file_total as u64)
        .detail(serde_json::json!({"source_id": id, "target_id": target, "nodes": rows.len()}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), new_root, true).await
}

// ---- trash ----

pub async fn trash(db: &Db, g: &ProjectGrant<Write>, ctx: &AuditCtx, id: NodeId) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = load(&mut *tx, g.project_id(), id, true).await?;
    if n.parent_id.is_none() {
        return Err(StoreError::Invalid(
            "the project's root folder cannot be deleted".into(),
        ));
    }
    let batch = NodeId::new().to_string();
    let now = now_micros();
    sqlx::query("WITH RECURSIVE sub(id) AS (SELECT id FROM nodes WHERE id = $1 UNION ALL SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id WHERE n.trashed_at IS NULL) \
        UPDATE nodes SET trashed_at = $2, trashed_by = $3, trash_batch = $4 WHERE id IN (SELECT id FROM sub) AND trashed_at IS NULL")
        .bind(id.to_string())
        .bind(now)
        .bind(g.user_id().to_string())
        .bind(&batch)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE nodes SET trash_root = 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("node.trash", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(n.name);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list_trash(db: &Db, g: &ProjectGrant<Read>) -> Result<Vec<Node>> {
    let rows = sqlx::query(&format!("SELECT {NODE_COLS} FROM nodes n LEFT JOIN users u ON u.id = n.modified_by WHERE n.project_id = $1 AND n.trash_root = 1 AND n.trashed_at IS NOT NULL ORDER BY n.trashed_at DESC LIMIT 10000"))
        .bind(g.project_id().to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(node_from_row).collect()
}

async fn trashed_root(
    tx: &mut Transaction<'_, Any>,
    project: ProjectId,
    id: NodeId,
) -> Result<(Node, String)> {
    let n = load(&mut **tx, project, id, false).await?;
    let r = sqlx::query("SELECT trash_root, trash_batch FROM nodes WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    if n.trashed_at.is_none() || !r.flag("trash_root")? {
        return Err(StoreError::NotFound);
    }
    Ok((n, r.opt_str("trash_batch")?.unwrap_or_default()))
}

/// Restore a trashed item to where it was (or the root, if that folder is
/// gone), optionally under a new name when the old one is taken.
pub async fn restore(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    id: NodeId,
    new_name: Option<&FileName>,
) -> Result<Node> {
    let mut tx = db.write.begin().await?;
    let (n, batch) = trashed_root(&mut tx, g.project_id(), id).await?;
    let parent_live = match n.parent_id {
        Some(p) => load(&mut *tx, g.project_id(), p, true).await.is_ok(),
        None => false,
    };
    let parent = if parent_live {
        n.parent_id.ok_or(StoreError::NotFound)?
    } else {
        let r = sqlx::query("SELECT root_node_id FROM projects WHERE id = $1")
            .bind(g.project_id().to_string())
            .fetch_one(&mut *tx)
            .await?;
        r.id("root_node_id")?
    };
    let name = new_name
        .map(|x| x.as_str().to_string())
        .unwrap_or(n.name.clone());
    // While trashed the item holds no name in its folder; the second
    // statement makes it live and is where a name collision shows.
    sqlx::query("UPDATE nodes SET trash_root = 0, parent_id = $1, name = $2 WHERE id = $3")
        .bind(parent.to_string())
        .bind(&name)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE nodes SET trashed_at = NULL, trashed_by = NULL, trash_batch = NULL WHERE trash_batch = $1 AND project_id = $2")
        .bind(&batch)
        .bind(g.project_id().to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            StoreError::from(e).conflict_on_unique(
                "an item with this name already exists where it would be restored; give a new name",
            )
        })?;
    let ev = AuditEvent::new("node.restore", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(name);
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), id, true).await
}

/// Permanently delete a trashed item. Returns blobs no longer referenced,
/// which the caller deletes from the blob store after the commit.
pub async fn purge(
    db: &Db,
    g: &ProjectGrant<Purge>,
    ctx: &AuditCtx,
    id: NodeId,
) -> Result<Vec<BlobId>> {
    let mut tx = db.write.begin().await?;
    let (n, _) = trashed_root(&mut tx, g.project_id(), id).await?;
    let rows = sqlx::query("WITH RECURSIVE sub(id, depth) AS (SELECT id, 0 FROM nodes WHERE id = $1 UNION ALL SELECT n.id, sub.depth + 1 FROM nodes n JOIN sub ON n.parent_id = sub.id) SELECT id, depth FROM sub ORDER BY depth DESC")
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
    let mut freed_bytes = 0i64;
    let mut blobs: Vec<String> = Vec::new();
    for r in &rows {
        let nid = r.str("id")?;
        let vs = sqlx::query("SELECT blob_id, size FROM file_versions WHERE node_id = $1")
            .bind(&nid)
            .fetch_all(&mut *tx)
            .await?;
        for v in &vs {
            freed_bytes += v.int("size")?;
            blobs.push(v.str("blob_id")?);
        }
        sqlx::query("DELETE FROM file_versions WHERE node_id = $1")
            .bind(&nid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(&nid)
            .execute(&mut *tx)
            .await?;
    }
    blobs.sort();
    blobs.dedup();
    let mut unreferenced = Vec::new();
    for b in blobs {
        let c = sqlx::query("SELECT COUNT(*) AS c FROM file_versions WHERE blob_id = $1")
            .bind(&b)
            .fetch_one(&mut *tx)
            .await?;
        if c.int("c")? == 0 {
            sqlx::query("DELETE FROM blobs WHERE id = $1")
                .bind(&b)
                .execute(&mut *tx)
                .await?;
            if let Ok(id) = b.parse() {
                unreferenced.push(id);
            }
        }
    }
    release_quota(&mut tx, g.org_id(), freed_bytes).await?;
    let ev = AuditEvent::new("node.purge", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(id)
        .name(n.name)
        .bytes(freed_bytes as u64)
        .detail(serde_json::json!({"nodes": rows.len()}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(unreferenced)
}

// ---- versions ----

#[derive(Debug, Clone, Serialize)]
pub struct Version {
    pub id: VersionId,
    pub node_id: NodeId,
    pub number: i64,
    pub size: i64,
    pub sha256: String,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    pub created_by: UserId,
    pub created_by_name: Option<String>,
    #[serde(skip)]
    pub blob: BlobMeta,
}

fn version_from_row(r: &AnyRow) -> Result<Version> {
    Ok(Version {
        id: r.id("id")?,
        node_id: r.id("node_id")?,
        number: r.int("number")?,
        size: r.int("size")?,
        sha256: r.str("sha256")?,
        created_at: r.int("created_at")?,
        created_by: r.id("created_by")?,
        created_by_name: r.opt_str("created_by_name")?,
        blob: BlobMeta {
            id: r.id("blob_id")?,
            size: u64::try_from(r.int("blob_size")?).unwrap_or(0),
            sha256: r.str("sha256")?,
            wrapped_key: r.bytes("wrapped_key")?,
            nonce_prefix: r.bytes("nonce_prefix")?,
        },
    })
}

const VERSION_SELECT: &str = "SELECT v.id, v.node_id, v.number, v.size, v.created_at, v.created_by, v.blob_id, b.size AS blob_size, b.sha256, b.wrapped_key, b.nonce_prefix, u.display_name AS created_by_name FROM file_versions v JOIN blobs b ON b.id = v.blob_id LEFT JOIN users u ON u.id = v.created_by";

pub async fn versions(db: &Db, g: &ProjectGrant<Read>, file: NodeId) -> Result<Vec<Version>> {
    let n = load(&db.read, g.project_id(), file, true).await?;
    if !n.is_file() {
        return Err(StoreError::Invalid("not a file".into()));
    }
    let rows = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE v.node_id = $1 AND v.project_id = $2 ORDER BY v.number DESC"
    ))
    .bind(file.to_string())
    .bind(g.project_id().to_string())
    .fetch_all(&db.read)
    .await?;
    rows.iter().map(version_from_row).collect()
}

/// One version of a live file (`None`: the current one).
pub async fn version<P: ProjectPermission>(
    db: &Db,
    g: &ProjectGrant<P>,
    file: NodeId,
    version: Option<VersionId>,
) -> Result<(Node, Version)> {
    // One query for the file, the version and its blob: this is every download's path.
    let row = sqlx::query(
        "SELECT n.id AS n_id, n.parent_id AS n_parent_id, n.name AS n_name, n.size AS n_size, n.current_version_id AS n_cur, \
         n.created_at AS n_created_at, n.created_by AS n_created_by, n.modified_at AS n_modified_at, n.modified_by AS n_modified_by, \
         v.id, v.node_id, v.number, v.size, v.created_at, v.created_by, v.blob_id, b.size AS blob_size, b.sha256, b.wrapped_key, b.nonce_prefix, \
         u.display_name AS created_by_name \
         FROM nodes n JOIN file_versions v ON v.node_id = n.id AND v.id = COALESCE($3, n.current_version_id) \
         JOIN blobs b ON b.id = v.blob_id LEFT JOIN users u ON u.id = v.created_by \
         WHERE n.id = $1 AND n.project_id = $2 AND n.trashed_at IS NULL AND n.is_file = 1",
    )
    .bind(file.to_string())
    .bind(g.project_id().to_string())
    .bind(version.map(|v| v.to_string()))
    .fetch_optional(&db.read)
    .await?
    .ok_or(StoreError::NotFound)?;
    let node = Node {
        id: row.id("n_id")?,
        project_id: g.project_id(),
        parent_id: row.opt_id("n_parent_id")?,
        kind: "file",
        name: row.str("n_name")?,
        size: row.int("n_size")?,
        current_version_id: row.opt_id("n_cur")?,
        created_at: row.int("n_created_at")?,
        created_by: row.id("n_created_by")?,
        modified_at: row.int("n_modified_at")?,
        modified_by: row.id("n_modified_by")?,
        modified_by_name: None,
        trashed_at: None,
    };
    Ok((node, version_from_row(&row)?))
}

/// Make an old version current again, as a new version with the same content.
pub async fn restore_version(
    db: &Db,
    g: &ProjectGrant<Write>,
    ctx: &AuditCtx,
    file: NodeId,
    from: VersionId,
) -> Result<Node> {
    let (n, v) = version(db, g, file, Some(from)).await?;
    let mut tx = db.write.begin().await?;
    charge_quota(&mut tx, g.org_id(), v.size).await?;
    let (vid, number) = insert_version(
        &mut tx,
        g.project_id(),
        g.org_id(),
        file,
        v.blob.id,
        v.size,
        g.user_id(),
    )
    .await?;
    let ev = AuditEvent::new("file.restore_version", Outcome::Success)
        .project(g.org_id(), g.project_id())
        .node(file)
        .version(vid)
        .name(n.name)
        .detail(
            serde_json::json!({"from_version": from, "from_number": v.number, "number": number}),
        );
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    load(&db.read, g.project_id(), file, true).await
}
