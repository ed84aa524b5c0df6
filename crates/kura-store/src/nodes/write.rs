//! Creating, uploading and organizing folders and files.

use super::*;

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

/// Take bytes from the organization's quota; no row changed: it is full.
const CHARGE_QUOTA: &str =
    "UPDATE orgs SET used_bytes = used_bytes + $1 WHERE id = $2 AND used_bytes + $1 <= quota_bytes";

const INSERT_BLOB: &str = "INSERT INTO blobs (id, org_id, size, chunk_size, wrapped_key, nonce_prefix, sha256, created_at, blake3) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(super) async fn charge_quota(
    tx: &mut Transaction<'_, Any>,
    org: kura_core::OrgId,
    bytes: i64,
) -> Result<()> {
    let n = sqlx::query(CHARGE_QUOTA)
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

pub(super) async fn release_quota(
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

pub(super) async fn insert_blob(
    tx: &mut Transaction<'_, Any>,
    org: kura_core::OrgId,
    b: &BlobMeta,
) -> Result<()> {
    sqlx::query(INSERT_BLOB)
        .bind(b.id.to_string())
        .bind(org.to_string())
        .bind(b.size as i64)
        .bind(kura_crypto::CHUNK_SIZE as i64)
        .bind(b.wrapped_key.clone())
        .bind(b.nonce_prefix.clone())
        .bind(b.sha256.clone())
        .bind(now_micros())
        .bind(b.blake3.clone())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn insert_version(
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

/// One new file's statements with their parameters, and the node and audit
/// event they make: ids and time are chosen once, so that either driver
/// (sqlx inside a transaction, or the SQLite writer's rusqlite connection
/// in `group_commit`) writes exactly the same rows.
pub(super) struct NewFileRows {
    pub statements: [(&'static str, Vec<Param>, IfNoRow); 4],
    pub node: Node,
    pub event: AuditEvent,
}

/// What a statement's refusal means to the client.
#[derive(Clone, Copy)]
pub(super) enum IfNoRow {
    Fine,
    /// No row changed: the organization's quota is full.
    QuotaExceeded,
    /// The node insert: no row means the target folder is gone (trashed or
    /// deleted meanwhile); a unique violation, that the name is taken.
    FolderGone,
}

impl IfNoRow {
    pub fn check(self, rows: u64) -> Result<()> {
        match (self, rows) {
            (IfNoRow::QuotaExceeded, 0) => Err(StoreError::QuotaExceeded),
            (IfNoRow::FolderGone, 0) => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    /// A failed statement as the client should hear of it.
    pub fn error(self, e: StoreError) -> StoreError {
        match self {
            IfNoRow::FolderGone => name_taken(e),
            _ => e,
        }
    }
}

impl NewFileRows {
    pub fn new(g: &ProjectGrant<Write>, parent: NodeId, name: &FileName, blob: &BlobMeta) -> Self {
        // Few statements on purpose: this is every upload's commit,
        // serialized on the single SQLite writer.
        let id = NodeId::new();
        let vid = VersionId::new();
        let now = now_micros();
        let user = g.user_id();
        let (org, project) = (g.org_id().to_string(), g.project_id().to_string());
        let size = blob.size as i64;
        let statements = [
            (
                CHARGE_QUOTA,
                vec![size.into(), org.clone().into()],
                IfNoRow::QuotaExceeded,
            ),
            (
                INSERT_BLOB,
                vec![
                    blob.id.to_string().into(),
                    org.clone().into(),
                    size.into(),
                    (kura_crypto::CHUNK_SIZE as i64).into(),
                    blob.wrapped_key.clone().into(),
                    blob.nonce_prefix.clone().into(),
                    blob.sha256.clone().into(),
                    now.into(),
                    blob.blake3.clone().into(),
                ],
                IfNoRow::Fine,
            ),
            (
                // Inserted only under a live folder of this project.
                "INSERT INTO nodes (id, project_id, org_id, parent_id, is_file, name, size, current_version_id, created_at, created_by, modified_at, modified_by) \
                 SELECT $1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $8, $9 WHERE EXISTS \
                 (SELECT 1 FROM nodes p WHERE p.id = $4 AND p.project_id = $2 AND p.is_file = 0 AND p.trashed_at IS NULL)",
                vec![
                    id.to_string().into(),
                    project.clone().into(),
                    org.clone().into(),
                    parent.to_string().into(),
                    name.as_str().to_string().into(),
                    size.into(),
                    vid.to_string().into(),
                    now.into(),
                    user.to_string().into(),
                ],
                IfNoRow::FolderGone,
            ),
            (
                "INSERT INTO file_versions (id, node_id, project_id, org_id, number, size, blob_id, created_at, created_by) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8)",
                vec![
                    vid.to_string().into(),
                    id.to_string().into(),
                    project.into(),
                    org.into(),
                    size.into(),
                    blob.id.to_string().into(),
                    now.into(),
                    user.to_string().into(),
                ],
                IfNoRow::Fine,
            ),
        ];
        let event = AuditEvent::new("file.upload", Outcome::Success)
            .project(g.org_id(), g.project_id())
            .node(id)
            .version(vid)
            .name(name.as_str())
            .bytes(blob.size)
            .detail(serde_json::json!({"sha256": blob.sha256}));
        let node = Node {
            id,
            project_id: g.project_id(),
            parent_id: Some(parent),
            kind: "file",
            name: name.as_str().to_string(),
            size,
            current_version_id: Some(vid),
            created_at: now,
            created_by: user,
            modified_at: now,
            modified_by: user,
            modified_by_name: None,
            trashed_at: None,
        };
        Self {
            statements,
            node,
            event,
        }
    }
}

/// The new file's rows, inside the caller's transaction. The audit event is
/// not appended here: the group commit appends all of its events at once,
/// in the same transaction.
pub(super) async fn insert_new_file(
    tx: &mut Transaction<'_, Any>,
    rows: &NewFileRows,
) -> Result<()> {
    for (sql, params, if_none) in &rows.statements {
        let done = bind_all(sqlx::query(sql), params)
            .execute(&mut **tx)
            .await
            .map_err(|e| if_none.error(e.into()))?;
        if_none.check(done.rows_affected())?;
    }
    Ok(())
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
    let r = db.fetch_point(
        "SELECT p.is_file AS parent_is_file, \
         (SELECT e.id FROM nodes e WHERE e.parent_id = p.id AND e.name = $3 AND e.trashed_at IS NULL) AS existing_id, \
         (SELECT e.is_file FROM nodes e WHERE e.parent_id = p.id AND e.name = $3 AND e.trashed_at IS NULL) AS existing_is_file, \
         (SELECT o.quota_bytes - o.used_bytes FROM orgs o WHERE o.id = $4) AS remaining \
         FROM nodes p WHERE p.id = $1 AND p.project_id = $2 AND p.trashed_at IS NULL",
        vec![
            folder.to_string().into(),
            g.project_id().to_string().into(),
            name.as_str().to_string().into(),
            g.org_id().to_string().into(),
        ],
    )
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
pub(super) async fn is_within(
    tx: &mut Transaction<'_, Any>,
    candidate: NodeId,
    id: NodeId,
) -> Result<bool> {
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
