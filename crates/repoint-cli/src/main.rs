//! `repoint`: point container images at the registries you choose.
//!
//! This binary is glue: argument parsing (`args`, also the crate's
//! library), dispatch, and what belongs to a terminal: standard output and
//! error, exit codes, progress, signals. The work is the library crates':
//! the file commands (`run`, `check`, `fn`, `images`) are
//! `repoint-pipeline`'s, `test` is `repoint-suite`'s, `serve` is
//! `repoint-webhook`'s, `webhook manifests` is `repoint-manifests`',
//! `node-config` is `repoint-nodes`', and `audit`, `apply` and the
//! reconciler's spec are `repoint-cluster`'s.
//! Exit codes: 0 ok, 1 findings (changes or denials), 2 error.
//!
//! Depends on repoint-pipeline, repoint-suite, repoint-cluster,
//! repoint-manifests, repoint-nodes, repoint-webhook, repoint-kube,
//! repoint-runtime, repoint-config and repoint-core; on clap, tokio, tracing and mimalloc.

mod cluster;
mod controller;
mod images;
mod inspect;
mod krm;
mod manifests;
mod node_config;
mod oci;
mod run;
mod scaffold;
mod serve;
mod test;

use std::process::ExitCode;

use clap::Parser;
use repoint_cli::args;

// Parsing allocates many small nodes; mimalloc is markedly faster than the
// system allocator at that, and scales across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs on stderr: text for commands, one JSON object per line for the
/// server (with each request's uid), which log collectors parse.
fn init_logging(level: &str, json: bool) {
    let filter = std::env::var("REPOINT_LOG").unwrap_or_else(|_| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colour only for a person at a terminal, and never under NO_COLOR
    // (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false);
    if json {
        // The innermost span (a request's uid, the namespace being
        // reconciled) is enough; the full list repeats it.
        logs.json().flatten_event(true).with_span_list(false).init();
    } else {
        logs.init();
    }
}

/// mimalloc asks for transparent huge pages for its arenas, and a 2 MiB
/// page is resident whole once one byte of it is touched: a run over
/// 20,000 small Pods held 17 MB more for no speed that could be measured
/// (README, *Performance*). Opting the process out applies to every later
/// page fault, the policies' memories included. Where the kernel refuses,
/// nothing changes but the memory figure.
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn main() -> ExitCode {
    without_transparent_huge_pages();
    let cli = args::Cli::parse();
    // Long-running commands log what they do, as JSON lines for log
    // collectors; the others only what went wrong, as text.
    let long_running = matches!(
        cli.command,
        args::Command::Serve(_) | args::Command::Controller(_)
    );
    // kube-runtime warns of each failed watch itself; the reconciler
    // says it once, shorter.
    let default_level = if long_running {
        "info,kube_runtime=error"
    } else {
        "warn"
    };
    init_logging(
        cli.log_level.as_deref().unwrap_or(default_level),
        long_running,
    );
    let result = match &cli.command {
        args::Command::Images(a) => images::run(a),
        args::Command::Run(a) => run::run(a),
        args::Command::Check(a) => run::check(a),
        args::Command::Audit(a) => cluster::audit(a),
        args::Command::Apply(a) => cluster::apply(a),
        args::Command::Fn(a) => krm::run(a),
        args::Command::Serve(a) => serve::run(a),
        args::Command::Controller(a) => controller::run(a),
        args::Command::Webhook(args::WebhookCommand::Manifests(a)) => manifests::run(a),
        args::Command::NodeConfig(a) => node_config::run(a),
        args::Command::Policy(args::PolicyCommand::Inspect(a)) => inspect::run(a),
        args::Command::Policy(args::PolicyCommand::Push(a)) => oci::push(a),
        args::Command::Test(a) => test::run(a),
        args::Command::New(args::NewCommand::Policy(a)) => scaffold::run(a),
        args::Command::Completions(a) => {
            use clap::CommandFactory;
            let mut command = args::Cli::command();
            clap_complete::generate(a.shell, &mut command, "repoint", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if run::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("repoint: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
