//! Organizations (tenants). Only platform administrators create, suspend and
//! set quotas; members view their own organization.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::keyring::Keyring;
use crate::time::now_micros;
use kura_core::{OrgGrant, OrgId, PlatformGrant};
use serde::Serialize;
use sqlx::any::AnyRow;

#[derive(Debug, Clone, Serialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub is_platform: bool,
    pub suspended: bool,
    pub quota_bytes: i64,
    pub used_bytes: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
}

fn from_row(r: &AnyRow) -> Result<Org> {
    Ok(Org {
        id: r.id("id")?,
        name: r.str("name")?,
        slug: r.str("slug")?,
        is_platform: r.flag("is_platform")?,
        suspended: r.flag("suspended")?,
        quota_bytes: r.int("quota_bytes")?,
        used_bytes: r.int("used_bytes")?,
        created_at: r.int("created_at")?,
    })
}

const COLS: &str = "id, name, slug, is_platform, suspended, quota_bytes, used_bytes, created_at";

pub fn validate_slug(slug: &str) -> Result<()> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "slug must be 2-63 characters of a-z, 0-9 and '-', not starting with '-'".into(),
        ))
    }
}

pub fn validate_display(field: &str, v: &str, max: usize) -> Result<String> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{field} must be 1-{max} characters without control characters"
        )));
    }
    Ok(t.to_string())
}

pub struct NewOrg<'a> {
    pub name: &'a str,
    pub slug: &'a str,
    pub quota_bytes: i64,
    pub is_platform: bool,
}

pub async fn create(
    db: &Db,
    keys: &Keyring,
    _g: &PlatformGrant,
    ctx: &AuditCtx,
    n: NewOrg<'_>,
) -> Result<Org> {
    let name = validate_display("name", n.name, 200)?;
    validate_slug(n.slug)?;
    if n.quota_bytes < 0 {
        return Err(StoreError::Invalid(
            "quota_bytes must not be negative".into(),
        ));
    }
    let id = OrgId::new();
    let (_key, wrapped) = keys.new_org_key(id);
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO orgs (id, name, slug, is_platform, suspended, quota_bytes, used_bytes, wrapped_key, master_key_id, created_at) VALUES ($1, $2, $3, $4, 0, $5, 0, $6, $7, $8)")
        .bind(id.to_string())
        .bind(&name)
        .bind(n.slug)
        .bind(i64::from(n.is_platform))
        .bind(n.quota_bytes)
        .bind(wrapped)
        .bind(keys.master_id())
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_on_unique("an organization with this slug already exists"))?;
    let ev = AuditEvent::new("org.create", Outcome::Success)
        .org(id)
        .name(name.clone());
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    get_any(db, id).await
}

/// Read an organization without a grant: for authentication and the CLI only.
pub async fn get_any(db: &Db, id: OrgId) -> Result<Org> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM orgs WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&db.read)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn get(db: &Db, g: &OrgGrant) -> Result<Org> {
    get_any(db, g.org_id()).await
}

pub async fn by_slug(db: &Db, slug: &str) -> Result<Org> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM orgs WHERE slug = $1"))
        .bind(slug)
        .fetch_optional(&db.read)
        .await?
        .ok_or(StoreError::NotFound)?;
    from_row(&row)
}

pub async fn list(db: &Db, _g: &PlatformGrant) -> Result<Vec<Org>> {
    let rows = sqlx::query(&format!("SELECT {COLS} FROM orgs ORDER BY slug"))
        .fetch_all(&db.read)
        .await?;
    rows.iter().map(from_row).collect()
}

pub struct OrgChanges {
    pub name: Option<String>,
    pub quota_bytes: Option<i64>,
    pub suspended: Option<bool>,
}

pub async fn update(
    db: &Db,
    _g: &PlatformGrant,
    ctx: &AuditCtx,
    id: OrgId,
    c: OrgChanges,
) -> Result<Org> {
    let mut tx = db.write.begin().await?;
    let exists = sqlx::query("SELECT id FROM orgs WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    if let Some(name) = &c.name {
        let name = validate_display("name", name, 200)?;
        sqlx::query("UPDATE orgs SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(q) = c.quota_bytes {
        if q < 0 {
            return Err(StoreError::Invalid(
                "quota_bytes must not be negative".into(),
            ));
        }
        sqlx::query("UPDATE orgs SET quota_bytes = $1 WHERE id = $2")
            .bind(q)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    if let Some(s) = c.suspended {
        sqlx::query("UPDATE orgs SET suspended = $1 WHERE id = $2")
            .bind(i64::from(s))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
    }
    let detail =
        serde_json::json!({"name": c.name, "quota_bytes": c.quota_bytes, "suspended": c.suspended});
    audit::append(
        &mut tx,
        ctx,
        &AuditEvent::new("org.update", Outcome::Success)
            .org(id)
            .detail(detail),
    )
    .await?;
    tx.commit().await?;
    get_any(db, id).await
}
