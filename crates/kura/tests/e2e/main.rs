#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail by panicking
//! End-to-end tests against the real `kura` binary (one test binary for the
//! crate: linking is the slow part of builds here). The same suite runs on
//! SQLite (default) and PostgreSQL (KURA_TEST_DB=postgres).

mod accounts;
mod audit_chain;
mod authz_matrix;
mod bad_input;
mod breach;
mod factors;
mod files;
mod forwarding;
mod harness;
mod operations;
mod smtp;
mod zero_trust;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    authz_matrix::run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_download_ranges_and_encryption_at_rest() {
    files::upload_download_ranges_etag_and_ciphertext_at_rest().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_listing_sorting_pagination() {
    files::listing_sorting_and_cursor_pagination().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_organize_trash_versions_quota() {
    files::organize_trash_versions_and_quota().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_concurrent_uploads_commit_together() {
    files::concurrent_uploads_commit_together().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_big_streaming_upload() {
    files::big_file_streams_with_constant_memory().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    bad_input::each_client_mistake_gets_its_status().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_leaves_nothing() {
    bad_input::interrupted_upload_leaves_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_tokens_csrf() {
    accounts::sessions_tokens_csrf_and_revocation().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_bootstrap_health_metrics_openapi() {
    operations::bootstrap_health_metrics_openapi().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_separate_admin_listener() {
    operations::separate_admin_listener().await;
}

#[test]
fn ops_plain_http_refused_off_loopback() {
    operations::plain_http_refused_off_loopback();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_fsck_and_master_key_rotation() {
    operations::fsck_detects_corruption_and_rotation_keeps_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_digests_are_checked_on_read() {
    operations::digests_are_checked_on_read().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_cli_admin_commands() {
    operations::cli_admin_commands().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_graceful_shutdown_finishes_uploads() {
    operations::graceful_shutdown_finishes_uploads().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_tls_listener() {
    operations::tls_listener_serves_https_with_hsts().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_pinpoints_tampering() {
    audit_chain::verify_pinpoints_edit_delete_insert_swap().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_verifies_elsewhere() {
    audit_chain::export_verifies_without_the_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_forwarding_to_syslog_and_file() {
    forwarding::syslog_tcp_udp_and_file().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_trust_stolen_password_opens_nothing() {
    zero_trust::stolen_password_opens_nothing().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_trust_throttling_lockout() {
    zero_trust::throttling_lockout_and_identical_answers().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_trust_networks_step_up_revocation_passwords() {
    zero_trust::networks_step_up_revocation_and_passwords().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_trust_rate_limits() {
    zero_trust::rate_limits_per_address().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_trust_email_reset_and_notices() {
    zero_trust::email_reset_and_notices().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_alert_notices_wait_for_the_receiver_across_a_restart() {
    breach::alert_notices_wait_for_the_receiver_across_a_restart().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_detection_windows_survive_a_restart() {
    breach::detection_windows_survive_a_restart().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_detect_contain_notify_and_scope() {
    breach::detect_contain_notify_and_scope().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_kill_switches() {
    breach::kill_switches_take_effect_on_the_next_request().await;
}
