//! `kura`: the one binary. A thin shim over the library crates.

mod admin;
mod audit_cli;
mod config;
mod incident_cli;
mod open;
mod serve;

use clap::{Parser, Subcommand};
use config::{Config, Overrides};
use std::process::ExitCode;

// Password hashing allocates 19 MiB per hash on short-lived blocking
// threads; glibc's per-thread arenas keep that memory for good, while
// mimalloc returns it to the system, so idle memory stays small.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kura",
    version,
    about = "Kura: zero-trust project information sharing"
)]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server
    Serve(serve::ServeArgs),
    /// Operator commands that act directly on the database (audited as "cli")
    Admin {
        #[command(subcommand)]
        cmd: admin::AdminCmd,
    },
    /// The tamper-evident audit trail: verify, export, checkpoint
    Audit {
        #[command(subcommand)]
        cmd: audit_cli::AuditCmd,
    },
    /// Incident response: the scope report
    Incident {
        #[command(subcommand)]
        cmd: incident_cli::IncidentCmd,
    },
    /// Apply database migrations and exit
    Migrate,
    /// Verify every blob (existence, authentication tags, digests), sweep
    /// orphans; exits non-zero if anything is missing or corrupt
    Fsck(admin::FsckArgs),
}

/// mimalloc reads its options from the environment when the process starts.
/// A long-running server should hand memory back promptly (Argon2 takes
/// 19 MiB per sign-in) and commit arena memory only when used, so `serve`
/// re-executes itself once with those options unless the operator set them.
/// (A purge delay would keep transfer buffers warm, but mimalloc only purges
/// on later allocator calls of the same thread, so an idle server kept 20 MiB
/// more; transfers reuse their buffers through `kura_store::bufpool`.)
#[cfg(unix)]
fn apply_allocator_options() {
    use std::os::unix::process::CommandExt;
    const MARK: &str = "MIMALLOC_ARENA_EAGER_COMMIT";
    let serving = std::env::args_os().skip(1).any(|a| a == "serve");
    if std::env::var_os(MARK).is_some() || !serving {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "0")
        .env("MIMALLOC_PURGE_DELAY", "0")
        .exec();
    // Only reached if exec failed: carry on with the defaults.
    eprintln!("kura: could not apply allocator options ({err}); continuing");
}

#[cfg(not(unix))]
fn apply_allocator_options() {}

fn main() -> ExitCode {
    apply_allocator_options();
    let cli = Cli::parse();
    let config = match Config::load(&cli.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kura: configuration error: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config, matches!(cli.cmd, Cmd::Serve(_)));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kura: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Serve(args) => serve::run(config, args).await,
            Cmd::Admin { cmd } => admin::run(config, cmd).await,
            Cmd::Audit { cmd } => audit_cli::run(config, cmd).await,
            Cmd::Incident { cmd } => incident_cli::run(config, cmd).await,
            Cmd::Migrate => admin::migrate(config).await,
            Cmd::Fsck(args) => admin::fsck(config, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kura: {e:#}");
            // 1 is reserved for "fsck found missing or corrupt data".
            ExitCode::from(2)
        }
    }
}

fn init_logging(c: &Config, serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KURA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if c.log_format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
