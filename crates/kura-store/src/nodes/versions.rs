//! File versions: list, read one, make an old one current.

use super::*;

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

fn version_from_row(r: &impl RowExt) -> Result<Version> {
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
            blake3: r.opt_str("blake3")?,
            wrapped_key: r.bytes("wrapped_key")?,
            nonce_prefix: r.bytes("nonce_prefix")?,
        },
    })
}

const VERSION_SELECT: &str = "SELECT v.id, v.node_id, v.number, v.size, v.created_at, v.created_by, v.blob_id, b.size AS blob_size, b.sha256, b.blake3, b.wrapped_key, b.nonce_prefix, u.display_name AS created_by_name FROM file_versions v JOIN blobs b ON b.id = v.blob_id LEFT JOIN users u ON u.id = v.created_by";

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
    let row = db.fetch_point(
        "SELECT n.id AS n_id, n.parent_id AS n_parent_id, n.name AS n_name, n.size AS n_size, n.current_version_id AS n_cur, \
         n.created_at AS n_created_at, n.created_by AS n_created_by, n.modified_at AS n_modified_at, n.modified_by AS n_modified_by, \
         v.id, v.node_id, v.number, v.size, v.created_at, v.created_by, v.blob_id, b.size AS blob_size, b.sha256, b.blake3, b.wrapped_key, b.nonce_prefix, \
         u.display_name AS created_by_name \
         FROM nodes n JOIN file_versions v ON v.node_id = n.id AND v.id = COALESCE($3, n.current_version_id) \
         JOIN blobs b ON b.id = v.blob_id LEFT JOIN users u ON u.id = v.created_by \
         WHERE n.id = $1 AND n.project_id = $2 AND n.trashed_at IS NULL AND n.is_file = 1",
        vec![
            file.to_string().into(),
            g.project_id().to_string().into(),
            version.map(|v| v.to_string()).into(),
        ],
    )
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
