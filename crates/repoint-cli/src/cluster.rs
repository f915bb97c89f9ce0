//! `repoint audit` and `repoint apply`: `repoint-cluster` lists, evaluates
//! and writes; this is what the terminal shows (a progress line, the
//! findings and their summary, a line per write) and the exit code.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Result, bail};
use repoint_cluster::{Applied, ApplyOptions, Progress, Scope, Session};
use repoint_kube::inventory::Selection;
use repoint_pipeline::report::Status;
use serde_json::Value;

use crate::args::{ApplyArgs, AuditArgs, CheckFormat, ClusterArgs, DryRun};
use crate::run;

/// A count on stderr that updates in place, when stderr is a terminal;
/// discovery's warnings on stderr in any case.
fn progress(shown: bool) -> impl Fn(Progress<'_>) + Sync {
    move |p| {
        let text = match p {
            Progress::Warning(w) => {
                if shown {
                    eprint!("\r\x1b[2K");
                }
                eprintln!("repoint: warning: {w}");
                return;
            }
            Progress::Listing(kind, n) => format!("listing {kind}: {n}"),
            Progress::Evaluating { done, total } => format!("evaluating: {done}/{total}"),
            Progress::Done => String::new(),
        };
        if shown {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        }
    }
}

fn scope(cluster: &ClusterArgs) -> Scope {
    Scope {
        selection: Selection {
            namespace: cluster.namespace.clone(),
            selector: cluster.selector.clone(),
            page_size: cluster.chunk_size,
        },
        include_owned: cluster.include_owned,
    }
}

fn connect(
    config: &std::path::Path,
    cluster: &ClusterArgs,
    eval: &crate::args::EvalOptions,
) -> Result<Session> {
    Ok(Session::connect(
        config,
        &cluster.connection.target(),
        &eval.settings(),
    )?)
}

pub fn audit(args: &AuditArgs) -> Result<ExitCode> {
    let session = connect(&args.config, &args.cluster, &args.eval)?;
    let (evaluated, skipped) = session.evaluate(
        &scope(&args.cluster),
        &progress(std::io::stderr().is_terminal()),
    )?;
    let findings = repoint_cluster::findings(&evaluated);
    run::write_findings(args.format, &findings)?;
    // The summary follows text findings on stdout; it goes to stderr
    // after the machine-read formats.
    let summary = |out: &mut dyn std::io::Write| {
        repoint_cluster::write_summary(out, &findings, evaluated.len(), skipped)
    };
    if args.format == CheckFormat::Text {
        summary(&mut std::io::stdout().lock())?;
    } else {
        summary(&mut std::io::stderr().lock())?;
    }
    Ok(run::exit_code(Status::of(&findings, true)))
}

/// `apply`'s lines: one per change on stdout, errors and denials on
/// stderr.
struct Lines<'w> {
    out: std::io::StdoutLock<'w>,
    dry_run: DryRun,
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Applied for Lines<'_> {
    fn changed(&mut self, what: &str, verb: &str) {
        let tail = match self.dry_run {
            DryRun::None => "",
            DryRun::Server => " (server dry run)",
            DryRun::Client => " (dry run)",
        };
        let _ = writeln!(self.out, "{what} {verb}{tail}");
    }

    fn operation(&mut self, path: &str, old: Option<&Value>, new: Option<&Value>) {
        let new = new.map(short).unwrap_or_default();
        let _ = match old {
            Some(old) => writeln!(self.out, "  {path}: {} -> {new}", short(old)),
            None => writeln!(self.out, "  {path}: + {new}"),
        };
    }

    fn error(&mut self, message: &str) {
        eprintln!("repoint: error: {message}");
    }

    fn denied(&mut self, location: &str, policy: &str, message: &str) {
        eprintln!("repoint: denied: {location}: [{policy}] {message}");
    }

    fn warning(&mut self, message: &str) {
        eprintln!("repoint: warning: {message}");
    }
}

pub fn apply(args: &ApplyArgs) -> Result<ExitCode> {
    if !args.cluster.cluster {
        bail!(
            "apply changes live objects; pass --cluster to say so (or run `repoint run` on files)"
        );
    }
    let session = connect(&args.config, &args.cluster, &args.eval)?;
    let (evaluated, _) = session.evaluate(
        &scope(&args.cluster),
        &progress(std::io::stderr().is_terminal()),
    )?;
    let options = ApplyOptions {
        server_dry_run: args.dry_run == DryRun::Server,
        client_dry_run: args.dry_run == DryRun::Client,
        field_manager: args.field_manager.clone(),
    };
    let mut lines = Lines {
        out: std::io::stdout().lock(),
        dry_run: args.dry_run,
    };
    let tally = repoint_cluster::apply(&session, &evaluated, &options, &mut lines)?;
    if tally.changed == 0 && tally.errors == 0 {
        writeln!(lines.out, "nothing to change")?;
    }
    Ok(run::exit_code(tally.status()))
}
