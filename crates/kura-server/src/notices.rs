//! The emails Kura sends, in English and Japanese (one message, both
//! languages: the recipient's preference is not known for every notice).

use crate::state::AppState;
use kura_store::users::User;

fn send(s: &AppState, to: &str, subject: &str, body: String) {
    match &s.mailer {
        Some(m) => m.send(to, subject, body),
        None => tracing::info!(to, subject, "email not sent: no SMTP relay configured"),
    }
}

pub fn password_reset(s: &AppState, user: &User, token: &str) {
    let link = format!(
        "{}/reset-password?token={token}",
        s.config.public_url.trim_end_matches('/')
    );
    let body = format!(
        "Someone (hopefully you) asked to reset the password of your Kura account {email}.\n\
         Open this link within 30 minutes to choose a new password. It works once.\n\n{link}\n\n\
         If you did not ask for this, ignore this message: your password stays as it is.\n\
         Your second factor is still required at sign-in.\n\n\
         Kura アカウント {email} のパスワード再設定が依頼されました。\n\
         30分以内に上のリンクを開いて新しいパスワードを設定してください(1回のみ有効)。\n\
         心当たりがない場合はこのメールを無視してください。\n",
        email = user.email
    );
    send(
        s,
        &user.email,
        "Kura: reset your password / パスワードの再設定",
        body,
    );
}

pub fn new_sign_in(s: &AppState, user: &User, ip: &str, device: &str, when: &str) {
    let body = format!(
        "Your Kura account {email} was signed in from a new device or network.\n\n\
         Time: {when}\nAddress: {ip}\nDevice: {device}\n\n\
         If this was not you, change your password now and tell your organization's \
         administrator, who can end every session of your account.\n\n\
         Kura アカウント {email} に新しい端末またはネットワークからサインインがありました。\n\
         心当たりがない場合は、すぐにパスワードを変更し、組織の管理者に連絡してください。\n",
        email = user.email
    );
    send(
        s,
        &user.email,
        "Kura: new sign-in to your account / 新しいサインイン",
        body,
    );
}

pub fn locked(s: &AppState, user: &User, reason: &str) {
    let body = format!(
        "Your Kura account {email} has been locked ({reason}). Its sessions and API tokens have ended.\n\
         An administrator of your organization can unlock it.\n\n\
         Kura アカウント {email} はロックされました({reason})。組織の管理者がロックを解除できます。\n",
        email = user.email
    );
    send(
        s,
        &user.email,
        "Kura: your account is locked / アカウントがロックされました",
        body,
    );
}

/// A security alert, to an organization's security contacts: the subject and body of an alert notice (sent by the delivery loop,
/// `responder::deliver`, which keeps it until the relay takes it).
pub fn alert_message(s: &AppState, a: &kura_store::alerts::Alert) -> (String, String) {
    let link = format!("{}/security", s.config.public_url.trim_end_matches('/'));
    let body = format!(
        "Kura raised a {severity} security alert.\n\n\
         Rule: {rule}\nWhat: {summary}\nAccount: {actor}\nAddress: {ip}\nContainment: {contain}\nAlert id: {id}\n\n\
         Review it on the security dashboard: {link}\n\n\
         Kura がセキュリティアラート({severity})を検知しました。\n\
         ルール: {rule}\n内容: {summary}\n対処: {contain}\nセキュリティダッシュボードで確認してください: {link}\n",
        severity = a.severity,
        rule = a.rule,
        summary = a.summary,
        actor = a.actor_user_id.as_deref().unwrap_or("-"),
        ip = a.ip.as_deref().unwrap_or("-"),
        contain = a.containment,
        id = a.id,
    );
    let subject = format!(
        "Kura security alert ({}): {} / セキュリティアラート",
        a.severity, a.rule
    );
    (subject, body)
}
