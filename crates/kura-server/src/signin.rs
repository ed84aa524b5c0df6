//! Sign-in as a sequence of checks shared by the API and the web pages:
//! throttle gate → password → network policy → second factor (or, inside
//! the enrolment window, enrolment of the first one) → a new session.
//! A correct password alone yields a challenge, never a session, wherever
//! the user has a factor or the organization requires one.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::StatusCode;
use kura_core::UserId;
use kura_store::challenges::{self, Purpose};
use kura_store::org_policy::{self, OrgPolicy};
use kura_store::sessions::{self, Amr, NewSession};
use kura_store::throttle::{self, Gate};
use kura_store::{mfa, orgs, users, AuditCtx, AuditEvent, Outcome};
use serde_json::json;

/// What the password step leads to.
pub enum Step {
    /// Signed in (no second factor needed).
    Session(users::User, NewSession),
    /// Present one of `methods` with this challenge.
    Factor {
        challenge: String,
        methods: Vec<&'static str>,
    },
    /// Enrol one of `methods` with this challenge; that completes sign-in.
    Enrol {
        challenge: String,
        methods: Vec<&'static str>,
    },
}

fn failed_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "invalid email or password",
    )
}

pub fn locked() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "account-locked",
        "too many failed sign-ins: the account is locked; an administrator of your organization can unlock it",
    )
}

/// The methods a user may present, given their factors and the policy.
pub fn factor_methods(e: &mfa::Enrolled, webauthn_only: bool) -> Vec<&'static str> {
    let mut m = Vec::new();
    if e.webauthn > 0 {
        m.push("webauthn");
    }
    if e.totp > 0 && !webauthn_only {
        m.push("totp");
    }
    if !m.is_empty() && e.recovery_codes_left > 0 {
        m.push("recovery");
    }
    m
}

pub fn is_admin(u: &users::User) -> bool {
    u.org_admin || u.platform_admin
}

/// Verify email and password; never opens a session where a factor is due.
pub async fn password_step(
    s: &AppState,
    ctx: &AuditCtx,
    email: &str,
    password: &str,
    presented: Option<&str>,
) -> ApiResult<Step> {
    if email.len() > 254 || password.len() > 1024 {
        return Err(ApiError::bad_request("email or password too long"));
    }
    let db = &s.store.db;
    let found = users::by_email(db, email).await?;
    let policy = match &found {
        Some((u, _)) => Some(org_policy::get(db, u.org_id).await?),
        None => None,
    };
    let gate = throttle::gate(
        db,
        email,
        found.as_ref().is_some_and(|(u, _)| u.locked),
        policy.as_ref().map(|p| i64::from(p.lockout_threshold)),
    )
    .await?;
    let mut fail_ev =
        AuditEvent::new("auth.login", Outcome::Failure).name(email.trim().to_lowercase());
    if let Some((u, _)) = &found {
        fail_ev = fail_ev.org(u.org_id).detail(json!({"user_id": u.id}));
    }
    match gate {
        Gate::Open => {}
        Gate::Wait(secs) => {
            s.record(ctx, fail_ev.detail(json!({"reason": "throttled"})))
                .await?;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "signin-throttled",
                format!("too many failed sign-ins: wait {secs} seconds before trying again"),
            );
            e.retry_after = u64::try_from(secs).ok();
            return Err(e);
        }
        Gate::Locked => {
            s.record(ctx, fail_ev.detail(json!({"reason": "locked"})))
                .await?;
            return Err(locked());
        }
    }
    let (hash, user) = match &found {
        Some((u, Some(h))) => (h.clone(), Some(u.clone())),
        _ => (s.dummy_hash.to_string(), None),
    };
    // A platform-wide budget of password checks: a sign-in flood from many
    // addresses cannot spend more than its share of the CPU on Argon2, so
    // everyone else's requests keep their throughput.
    // Checks wait their turn (up to 10 s): a flood slows to the budget's
    // pace instead of being answered fast and coming straight back.
    let platform = std::net::IpAddr::from([0, 0, 0, 0]);
    if !s
        .password_budget
        .take_waiting(platform, std::time::Duration::from_secs(10))
        .await
    {
        s.metrics.rate_limited.inc();
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "signin-busy",
            "too many sign-ins right now: try again in a few seconds",
        );
        e.retry_after = Some(5);
        return Err(e);
    }
    let pw = password.to_string();
    let verified = s
        .hash_blocking(move || kura_crypto::verify_password(&pw, &hash))
        .await?;
    let active = match &user {
        Some(u) if verified && !u.disabled => !orgs::get_any(db, u.org_id).await?.suspended,
        _ => false,
    };
    let (Some(user), Some(policy)) = (user.filter(|_| active), policy.clone()) else {
        let account = found
            .as_ref()
            .zip(policy.as_ref())
            .map(|((u, _), p)| (u.id, u.org_id, i64::from(p.lockout_threshold)));
        let (_, locked_now) = throttle::failed(db, ctx, email, account).await?;
        s.record(ctx, fail_ev).await?;
        if locked_now {
            if let Some((u, _)) = &found {
                crate::notices::locked(s, u, "too many failed sign-ins");
            }
            return Err(locked());
        }
        return Err(failed_credentials());
    };
    let mut ctx = ctx.clone();
    ctx.actor_user_id = Some(user.id);
    ctx.actor_org_id = Some(user.org_id);
    let ip = ctx.ip.clone().unwrap_or_default();
    if !policy.allows_ip(&ip) {
        let ev = AuditEvent::new("auth.login", Outcome::Denied)
            .org(user.org_id)
            .detail(json!({"reason": "network_not_allowed"}));
        s.record(&ctx, ev).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "network-not-allowed",
            "your organization does not allow sign-in from this network",
        ));
    }
    // A forced reset is refused in second_step, for every way in.
    second_step(s, &ctx, user, &policy, Amr::Password, presented).await
}

fn password_reset_required() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "password-reset-required",
        "an administrator requires a new password for this account: use \"Forgot password\" to set one by email",
    )
}

/// Kill switch: a suspended platform admits only its platform
/// administrators, and only from loopback (break-glass on the host).
pub async fn platform_admits(s: &AppState, ctx: &AuditCtx, user: &users::User) -> ApiResult<()> {
    let mode = kura_store::platform::mode(&s.store.db).await?;
    if mode != kura_store::platform::Mode::Suspended {
        return Ok(());
    }
    let loopback = ctx
        .ip
        .as_deref()
        .and_then(|i| i.parse::<std::net::IpAddr>().ok())
        .is_some_and(|i| i.is_loopback());
    if user.platform_admin && loopback {
        return Ok(());
    }
    let ev = AuditEvent::new("auth.login", Outcome::Denied)
        .org(user.org_id)
        .detail(json!({"reason": "platform_suspended"}));
    s.record(ctx, ev).await?;
    Err(crate::error::ApiError::platform_suspended())
}

/// After the first factor (a password, or a provider's assertion whose MFA
/// the organization does not trust): a session where no second factor is
/// due, else a challenge for one, or for enrolling the first one.
pub async fn second_step(
    s: &AppState,
    ctx: &AuditCtx,
    user: users::User,
    policy: &OrgPolicy,
    first: Amr,
    presented: Option<&str>,
) -> ApiResult<Step> {
    let db = &s.store.db;
    let ctx = ctx.clone();
    platform_admits(s, &ctx, &user).await?;
    // A forced reset holds for every way in (single sign-on included): the
    // account gets nothing until a new password is set by the emailed link.
    if user.must_reset_password {
        let ev = AuditEvent::new("auth.login", Outcome::Denied)
            .org(user.org_id)
            .detail(json!({"reason": "password_reset_required"}));
        s.record(&ctx, ev).await?;
        return Err(password_reset_required());
    }
    let email = user.email.clone();
    let enrolled = mfa::enrolled(db, user.id).await?;
    let webauthn_only = policy.requires_webauthn(is_admin(&user));
    let needs_factor = enrolled.any() || policy.requires_mfa() || webauthn_only;
    if !needs_factor {
        let sess = finish(s, &ctx, &user, &email, first, presented).await?;
        return Ok(Step::Session(user, sess));
    }
    let methods = factor_methods(&enrolled, webauthn_only);
    if !methods.is_empty() {
        let challenge = challenges::create(db, user.id, Purpose::SignIn).await?;
        let ev = AuditEvent::new("auth.password", Outcome::Success)
            .org(user.org_id)
            .detail(json!({"next": "second_factor", "methods": methods}));
        s.record(&ctx, ev).await?;
        return Ok(Step::Factor { challenge, methods });
    }
    // Enrolment after the first factor only for an account with none: an
    // account with a factor never trades it for a new one here.
    let window_open = !enrolled.any()
        && user
            .mfa_enrol_until
            .is_some_and(|t| t > kura_store::time::now_micros());
    if window_open {
        let challenge = challenges::create(db, user.id, Purpose::Enrol).await?;
        let methods = if webauthn_only {
            vec!["webauthn"]
        } else {
            vec!["totp", "webauthn"]
        };
        let ev = AuditEvent::new("auth.password", Outcome::Success)
            .org(user.org_id)
            .detail(json!({"next": "enrolment", "methods": methods}));
        s.record(&ctx, ev).await?;
        return Ok(Step::Enrol { challenge, methods });
    }
    let ev = AuditEvent::new("auth.login", Outcome::Denied)
        .org(user.org_id)
        .detail(json!({"reason": "no_second_factor"}));
    s.record(&ctx, ev).await?;
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "mfa-enrolment-closed",
        if webauthn_only {
            "administrators must sign in with a passkey or security key, and you have none; ask an administrator to reset your second factors so you can register one"
        } else {
            "your organization requires a second factor, and you have none; ask an administrator to reopen enrolment for your account"
        },
    ))
}

/// A challenge from the password step, with its user, and the rule that
/// applies to them; a dead challenge answers 401 like a wrong code.
pub struct Pending {
    pub challenge: challenges::Challenge,
    pub user: users::User,
    pub policy: OrgPolicy,
    pub ctx: AuditCtx,
}

impl Pending {
    pub fn webauthn_only(&self) -> bool {
        self.policy.requires_webauthn(is_admin(&self.user))
    }
}

pub fn challenge_invalid() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "challenge-invalid",
        "the sign-in has expired or was already completed: start again with your password",
    )
}

pub async fn pending(
    s: &AppState,
    ctx: &AuditCtx,
    token: &str,
    purpose: Purpose,
) -> ApiResult<Pending> {
    let Some(challenge) = challenges::find(&s.store.db, token, purpose).await? else {
        return Err(challenge_invalid());
    };
    if !challenges::spend_attempt(&s.store.db, &challenge.id).await? {
        return Err(challenge_invalid());
    }
    let user = users::get_any(&s.store.db, challenge.user_id).await?;
    if user.disabled {
        return Err(challenge_invalid());
    }
    if user.locked {
        return Err(locked());
    }
    let policy = org_policy::get(&s.store.db, user.org_id).await?;
    let mut ctx = ctx.clone();
    ctx.actor_user_id = Some(user.id);
    ctx.actor_org_id = Some(user.org_id);
    if !policy.allows_ip(ctx.ip.as_deref().unwrap_or("")) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "network-not-allowed",
            "your organization does not allow sign-in from this network",
        ));
    }
    Ok(Pending {
        challenge,
        user,
        policy,
        ctx,
    })
}

/// A wrong secret from a signed-in user (current password, step-up code)
/// counts toward the account's lock; true if this failure locked it.
pub async fn count_failure(s: &AppState, ctx: &AuditCtx, user: &users::User) -> ApiResult<bool> {
    let policy = org_policy::get(&s.store.db, user.org_id).await?;
    let (_, locked_now) = throttle::failed(
        &s.store.db,
        ctx,
        &user.email,
        Some((user.id, user.org_id, i64::from(policy.lockout_threshold))),
    )
    .await?;
    if locked_now {
        crate::notices::locked(s, user, "too many wrong confirmations");
    }
    Ok(locked_now)
}

/// A wrong second factor: counted on the challenge and toward the lock.
pub async fn factor_failed(s: &AppState, p: &Pending, method: &str) -> ApiResult<ApiError> {
    let db = &s.store.db;
    let (_, locked_now) = throttle::failed(
        db,
        &p.ctx,
        &p.user.email,
        Some((
            p.user.id,
            p.user.org_id,
            i64::from(p.policy.lockout_threshold),
        )),
    )
    .await?;
    let ev = AuditEvent::new("auth.mfa", Outcome::Failure)
        .org(p.user.org_id)
        .detail(json!({"method": method}));
    s.record(&p.ctx, ev).await?;
    if locked_now {
        crate::notices::locked(s, &p.user, "too many failed sign-ins");
    }
    Ok(if locked_now {
        locked()
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid-code",
            "the code or key response is not valid (each code works once)",
        )
    })
}

/// Spend the challenge and open the session.
pub async fn complete(
    s: &AppState,
    p: &Pending,
    amr: Amr,
    presented: Option<&str>,
) -> ApiResult<NewSession> {
    if !challenges::consume(&s.store.db, &p.challenge.id).await? {
        return Err(challenge_invalid());
    }
    finish(s, &p.ctx, &p.user, &p.user.email, amr, presented).await
}

pub(crate) async fn finish(
    s: &AppState,
    ctx: &AuditCtx,
    user: &users::User,
    email: &str,
    amr: Amr,
    presented: Option<&str>,
) -> ApiResult<NewSession> {
    let db = &s.store.db;
    // A lock or disable that landed while this sign-in was in flight wins.
    let now = users::get_any(db, user.id).await?;
    if now.disabled || now.locked {
        return Err(locked());
    }
    platform_admits(s, ctx, &now).await?;
    // No fixation: whatever session the client held before is ended.
    if let Some(old) = presented {
        sessions::revoke_by_token(db, old).await?;
    }
    throttle::succeeded(db, email).await?;
    let policy = org_policy::get(db, user.org_id).await?;
    let sess = sessions::create(
        db,
        ctx,
        user.id,
        user.org_id,
        s.config.session.for_org(&policy),
        amr,
    )
    .await?;
    let ip = ctx.ip.clone().unwrap_or_default();
    let ua = ctx.user_agent.clone().unwrap_or_default();
    if sessions::is_new_device(db, user.id, &ip, &ua, sess.id).await? {
        // The detector's "new network or device" rule reads this event.
        let mut c = ctx.clone();
        c.actor_user_id = Some(user.id);
        c.actor_org_id = Some(user.org_id);
        c.credential = Some(format!("session:{}", sess.id));
        s.record(
            &c,
            AuditEvent::new("auth.new_device", Outcome::Success)
                .org(user.org_id)
                .detail(json!({"ip": ip, "user_agent": ua})),
        )
        .await?;
        let when = kura_store::time::rfc3339(kura_store::time::now_micros());
        crate::notices::new_sign_in(s, user, &ip, &ua, &when);
    }
    Ok(sess)
}

/// Whether the user may set a password that is their only factor (then
/// it needs 15 characters).
pub async fn password_only(
    s: &AppState,
    org: kura_core::OrgId,
    user: Option<UserId>,
) -> ApiResult<bool> {
    let policy = org_policy::get(&s.store.db, org).await?;
    if policy.requires_mfa() {
        return Ok(false);
    }
    Ok(match user {
        Some(u) => !mfa::enrolled(&s.store.db, u).await?.any(),
        None => true,
    })
}
