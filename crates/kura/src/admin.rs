//! Operator commands run on the server machine against the database
//! directly. They act with platform rights (`cli_platform_grant`) and every
//! change is audited with the credential "cli". They never grant project
//! membership: operators have no standing access to project contents.

use crate::config::Config;
use crate::open;
use anyhow::{bail, Context, Result};
use kura_core::cli_platform_grant;
use kura_store::orgs::{self, NewOrg};
use kura_store::users::{self, NewUser};
use kura_store::{mfa, org_policy, sessions, throttle, AuditCtx};
use std::io::Read;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum AdminCmd {
    /// Kill switch: set the platform mode (normal, read-only, suspended); suspension ends every session
    PlatformMode {
        /// normal | read-only | suspended (omit to show the current mode)
        mode: Option<String>,
    },
    /// Kill switch: suspend an organization (its users are cut off at the next request)
    SuspendOrg {
        #[arg(long)]
        org: String,
    },
    /// Reinstate a suspended organization
    ReinstateOrg {
        #[arg(long)]
        org: String,
    },
    /// Kill switch: force a password reset and MFA re-enrolment for one user (--email) or a whole organization (--org)
    ForceReset {
        #[arg(long, conflicts_with = "org")]
        email: Option<String>,
        #[arg(long)]
        org: Option<String>,
    },
    /// Create an organization
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        quota_bytes: Option<i64>,
    },
    /// Create a user; the password is read from stdin with --password-stdin, else generated and printed once
    CreateUser {
        /// Organization slug
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        org_admin: bool,
        #[arg(long)]
        platform_admin: bool,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set account roles of a user (ends their sessions)
    SetRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        org_admin: Option<bool>,
        #[arg(long)]
        platform_admin: Option<bool>,
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Set a new password (ends the user's sessions)
    ResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show an organization's sign-in policy as JSON
    ShowPolicy {
        /// Organization slug
        #[arg(long)]
        org: String,
    },
    /// Replace an organization's sign-in policy with a JSON document
    /// (fields: mfa_required, webauthn_for_admins, allowed_networks, session_idle_minutes,
    /// session_absolute_hours, allowed_email_domains, lockout_threshold, step_up_minutes,
    /// bulk_download_files, bulk_download_bytes; missing fields take the defaults)
    SetPolicy {
        #[arg(long)]
        org: String,
        #[arg(long)]
        json: String,
    },
    /// Unlock an account locked after failed sign-ins
    Unlock {
        #[arg(long)]
        email: String,
    },
    /// Lock an account pending review (ends its sessions and API tokens)
    Lock {
        #[arg(long)]
        email: String,
    },
    /// Remove a user's second factors and reopen enrolment for 7 days
    ResetMfa {
        #[arg(long)]
        email: String,
    },
    /// End every session and API token of a user (--email) or an organization (--org)
    RevokeSessions {
        #[arg(long, conflicts_with = "org")]
        email: Option<String>,
        #[arg(long)]
        org: Option<String>,
    },
    /// List organizations
    ListOrgs {
        #[arg(long)]
        json: bool,
    },
    /// List users (of one organization with --org)
    ListUsers {
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List projects
    ListProjects {
        #[arg(long)]
        json: bool,
    },
    /// Generate a new master key and re-wrap every organization key with it (blobs are not re-encrypted)
    RotateMasterKey,
}

#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// Only remove unreferenced blobs older than this (seconds)
    #[arg(long, default_value_t = 3600)]
    sweep_min_age_secs: u64,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

fn read_password(from_stdin: bool, email: &str, password_only: bool) -> Result<(String, bool)> {
    if from_stdin {
        let mut s = String::new();
        std::io::stdin().take(4096).read_to_string(&mut s)?;
        let p = s.trim_end_matches(['\r', '\n']).to_string();
        users::check_password_policy(&p, email, password_only)?;
        Ok((p, false))
    } else {
        Ok((
            kura_crypto::random_token("pw")
                .chars()
                .skip(3)
                .take(24)
                .collect(),
            true,
        ))
    }
}

async fn user_by_email(db: &kura_store::Db, email: &str) -> Result<users::User> {
    match users::by_email(db, email).await? {
        Some((u, _)) => Ok(u),
        None => bail!("no user with email {email}"),
    }
}

pub async fn run(c: Config, cmd: AdminCmd) -> Result<ExitCode> {
    let create_key = matches!(
        cmd,
        AdminCmd::CreateOrg { .. } | AdminCmd::CreateUser { .. }
    );
    let store = open::store(&c, create_key).await?;
    let db = &store.db;
    let ctx = AuditCtx::cli();
    let g = cli_platform_grant();
    match cmd {
        AdminCmd::CreateOrg {
            name,
            slug,
            quota_bytes,
        } => {
            let quota = quota_bytes.unwrap_or(c.default_quota_bytes);
            let org = orgs::create(
                db,
                &store.keys,
                &g,
                &ctx,
                NewOrg {
                    name: &name,
                    slug: &slug,
                    quota_bytes: quota,
                    is_platform: false,
                },
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&org)?);
        }
        AdminCmd::CreateUser {
            org,
            email,
            name,
            org_admin,
            platform_admin,
            password_stdin,
        } => {
            let o = orgs::by_slug(db, &org)
                .await
                .with_context(|| format!("no organization with slug '{org}'"))?;
            let only = !org_policy::get(db, o.id).await?.requires_mfa();
            let (pw, generated) = read_password(password_stdin, &email, only)?;
            let hash = kura_crypto::hash_password(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let u = users::insert(
                db,
                o.id,
                &ctx,
                NewUser {
                    email: &email,
                    display_name: &name,
                    password_hash: &hash,
                    org_admin,
                    platform_admin,
                },
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&u)?);
            if generated {
                println!("password: {pw}");
            }
        }
        AdminCmd::SetRole {
            email,
            org_admin,
            platform_admin,
            disabled,
        } => {
            let Some((u, _)) = users::by_email(db, &email).await? else {
                bail!("no user with email {email}")
            };
            let u =
                users::set_account_roles(db, &g, &ctx, u.id, org_admin, platform_admin, disabled)
                    .await?;
            println!("{}", serde_json::to_string_pretty(&u)?);
        }
        AdminCmd::ResetPassword {
            email,
            password_stdin,
        } => {
            let Some((u, _)) = users::by_email(db, &email).await? else {
                bail!("no user with email {email}")
            };
            let only = !org_policy::get(db, u.org_id).await?.requires_mfa()
                && !mfa::enrolled(db, u.id).await?.any();
            let (pw, generated) = read_password(password_stdin, &email, only)?;
            let hash = kura_crypto::hash_password(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            users::set_password_hash(db, u.org_id, &ctx, u.id, &hash, "user.password_reset")
                .await?;
            println!(
                "password reset for {}; all sessions and API tokens revoked",
                u.email
            );
            if generated {
                println!("password: {pw}");
            }
        }
        AdminCmd::ShowPolicy { org } => {
            let o = orgs::by_slug(db, &org)
                .await
                .with_context(|| format!("no organization with slug '{org}'"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&org_policy::get(db, o.id).await?)?
            );
        }
        AdminCmd::SetPolicy { org, json } => {
            let o = orgs::by_slug(db, &org)
                .await
                .with_context(|| format!("no organization with slug '{org}'"))?;
            let p: org_policy::OrgPolicy = serde_json::from_str(&json)
                .context("the policy is not valid JSON of the documented fields")?;
            org_policy::set_unchecked(db, o.id, &ctx, &p).await?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        AdminCmd::Unlock { email } => {
            let u = user_by_email(db, &email).await?;
            throttle::unlock(db, &ctx, u.id, u.org_id, &u.email).await?;
            println!("unlocked {}", u.email);
        }
        AdminCmd::PlatformMode { mode } => match mode {
            None => println!("{}", kura_store::platform::mode(db).await?.as_str()),
            Some(m) => {
                let m = kura_store::platform::Mode::from_arg(&m)?;
                let g = kura_core::cli_platform_grant();
                let old = kura_store::platform::set_mode(db, &g, &ctx, m).await?;
                println!("platform mode: {} (was {})", m.as_str(), old.as_str());
                if m == kura_store::platform::Mode::Suspended {
                    println!("every session and API token has ended; platform administrators can sign in from loopback only");
                }
            }
        },
        AdminCmd::SuspendOrg { org } => set_suspended(db, &ctx, &org, true).await?,
        AdminCmd::ReinstateOrg { org } => set_suspended(db, &ctx, &org, false).await?,
        AdminCmd::ForceReset { email, org } => {
            let (og, who, label) = match (email, org) {
                (Some(e), _) => {
                    let u = user_by_email(db, &e).await?;
                    (kura_core::cli_org_grant(u.org_id), Some(u.id), u.email)
                }
                (None, Some(slug)) => {
                    let o = orgs::by_slug(db, &slug)
                        .await
                        .with_context(|| format!("no organization with slug '{slug}'"))?;
                    (
                        kura_core::cli_org_grant(o.id),
                        None,
                        format!("every user of {slug}"),
                    )
                }
                (None, None) => anyhow::bail!("give --email or --org"),
            };
            let n = users::force_reset(db, &og, &ctx, who).await?;
            println!("{label}: {n} account(s) must reset their password (Forgot password) and enrol a second factor again; their sessions and tokens have ended");
        }
        AdminCmd::Lock { email } => {
            let u = user_by_email(db, &email).await?;
            throttle::lock(db, &ctx, u.id, u.org_id, "operator").await?;
            println!(
                "locked {}; its sessions and API tokens are revoked",
                u.email
            );
        }
        AdminCmd::ResetMfa { email } => {
            let u = user_by_email(db, &email).await?;
            let og = kura_core::cli_org_grant(u.org_id);
            users::reset_mfa(db, &og, &ctx, u.id).await?;
            println!(
                "second factors of {} removed; enrolment is open for 7 days",
                u.email
            );
        }
        AdminCmd::RevokeSessions { email, org } => {
            let n = match (email, org) {
                (Some(e), _) => {
                    let u = user_by_email(db, &e).await?;
                    sessions::revoke_user(db, &ctx, u.org_id, u.id, true).await?
                }
                (None, Some(slug)) => {
                    let o = orgs::by_slug(db, &slug)
                        .await
                        .with_context(|| format!("no organization with slug '{slug}'"))?;
                    sessions::revoke_org(db, &ctx, o.id, true).await?
                }
                (None, None) => bail!("name a user with --email or an organization with --org"),
            };
            println!("{n} sessions and API tokens revoked");
        }
        AdminCmd::ListOrgs { json } => {
            let list = orgs::list(db, &g).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for o in list {
                    println!(
                        "{}\t{}\t{}\tused {} of {} bytes{}",
                        o.id,
                        o.slug,
                        o.name,
                        o.used_bytes,
                        o.quota_bytes,
                        if o.suspended { "\tSUSPENDED" } else { "" }
                    );
                }
            }
        }
        AdminCmd::ListUsers { org, json } => {
            let mut list = users::list_all(db).await?;
            if let Some(slug) = org {
                let o = orgs::by_slug(db, &slug)
                    .await
                    .with_context(|| format!("no organization with slug '{slug}'"))?;
                list.retain(|u| u.org_id == o.id);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for u in list {
                    let roles = [
                        (u.platform_admin, "platform-admin"),
                        (u.org_admin, "org-admin"),
                        (u.disabled, "DISABLED"),
                    ]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(",");
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        u.id, u.org_id, u.email, u.display_name, roles
                    );
                }
            }
        }
        AdminCmd::ListProjects { json } => {
            let list = kura_store::projects::list_all(db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for p in list {
                    println!("{}\t{}\t{}", p.id, p.org_id, p.name);
                }
            }
        }
        AdminCmd::RotateMasterKey => rotate(&c, &store).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn rotate(c: &Config, store: &kura_store::Store) -> Result<()> {
    let path = c.master_key_path();
    let old = kura_crypto::MasterKey::load(&path)?;
    let new = kura_crypto::MasterKey::generate();
    let next = open::next_key_path(&path);
    // 1. the new key is on disk before anything is wrapped with it
    new.write_new(&next).context("writing the new master key")?;
    // 2. one transaction re-wraps every organization key
    let n = kura_store::keyring::rewrap_all(&store.db, &old, &new).await?;
    // 3. the new key replaces the old one
    std::fs::rename(&next, &path).context("installing the new master key")?;
    let ev = kura_store::AuditEvent::new(
        "platform.rotate_master_key",
        kura_store::Outcome::Success,
    )
    .detail(
        serde_json::json!({"old_key_id": old.id(), "new_key_id": new.id(), "organizations": n}),
    );
    store.audit.record(&AuditCtx::cli(), ev).await?;
    println!(
        "master key rotated: {} -> {} ({n} organization keys re-wrapped)",
        old.id(),
        new.id()
    );
    Ok(())
}

pub async fn migrate(c: Config) -> Result<ExitCode> {
    open::ensure_private_dir(&c.data_dir)?;
    let url = c.database_url();
    let db = kura_store::Db::connect(&url).await?;
    let applied = db.migrate().await?;
    println!("migrations applied: {applied:?}");
    Ok(ExitCode::SUCCESS)
}

pub async fn fsck(c: Config, a: FsckArgs) -> Result<ExitCode> {
    let store = open::store(&c, false).await?;
    let mut report = kura_store::fsck::FsckReport::default();
    kura_store::fsck::sweep(&store, a.sweep_min_age_secs, &mut report).await?;
    kura_store::fsck::verify_all(&store, &mut report).await?;
    let ev = kura_store::AuditEvent::new(
        "platform.fsck",
        if report.healthy() {
            kura_store::Outcome::Success
        } else {
            kura_store::Outcome::Failure
        },
    )
    .detail(serde_json::to_value(&report)?);
    store.audit.record(&AuditCtx::cli(), ev).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("checked {} blobs ({} bytes); {} missing, {} corrupt; swept {} orphans, {} staging files", report.blobs_checked, report.bytes_checked, report.missing.len(), report.corrupt.len(), report.orphans_removed, report.staging_removed);
        for m in &report.missing {
            println!("MISSING {m}");
        }
        for m in &report.corrupt {
            println!("CORRUPT {m}");
        }
    }
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn set_suspended(
    db: &kura_store::Db,
    ctx: &kura_store::AuditCtx,
    slug: &str,
    suspended: bool,
) -> Result<()> {
    let o = orgs::by_slug(db, slug)
        .await
        .with_context(|| format!("no organization with slug '{slug}'"))?;
    if o.is_platform {
        anyhow::bail!("the platform operators' organization cannot be suspended");
    }
    orgs::update(
        db,
        &kura_core::cli_platform_grant(),
        ctx,
        o.id,
        orgs::OrgChanges {
            name: None,
            quota_bytes: None,
            suspended: Some(suspended),
        },
    )
    .await?;
    println!(
        "{slug}: {}",
        if suspended {
            "suspended (its users are refused from the next request)"
        } else {
            "reinstated"
        }
    );
    Ok(())
}
