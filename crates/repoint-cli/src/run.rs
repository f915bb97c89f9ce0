//! `repoint run` and `repoint check`: the pipeline over manifests, then the
//! patched manifests (run) or the findings (check) on standard output, and
//! everything else on standard error.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use repoint_pipeline::evaluate::{self, Evaluated, Retain};
use repoint_pipeline::kustomize;
use repoint_pipeline::render::{self, Renderer};
use repoint_pipeline::report::{self, Finding, Level, Status};

use crate::args::{CheckArgs, CheckFormat, OutputFormat, RunArgs};

/// Evaluate the files a command names; problems not about one object go
/// to stderr at once, before any output.
fn evaluate(
    options: &evaluate::Options,
    config: &std::path::Path,
    inputs: &[std::path::PathBuf],
    retain: Retain,
) -> Result<Evaluated> {
    let ev = evaluate::files(config, inputs, options, retain)?;
    print_warnings(&ev);
    Ok(ev)
}

/// The evaluation's warnings that are not about one object, on stderr.
pub(crate) fn print_warnings(ev: &Evaluated) {
    for warning in &ev.warnings {
        eprintln!("repoint: warning: {warning}");
    }
}

/// Write a command's output; a reader that stopped early (`| head`, `|
/// true`) is not an error, and the command's exit code stands, so findings
/// are never hidden behind a closed pipe.
pub(crate) fn finish(code: ExitCode, write: impl FnOnce() -> Result<()>) -> Result<ExitCode> {
    match write() {
        Err(e) if is_broken_pipe(&e) => Ok(code),
        other => other.map(|()| code),
    }
}

/// Whether an error is, or was caused by, a write to a reader that went
/// away.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| cause.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code of a status.
pub(crate) fn exit_code(status: Status) -> ExitCode {
    ExitCode::from(status.code())
}

/// Report object errors, denials and warnings on stderr; return the exit
/// code they call for.
pub(crate) fn report_stderr(findings: &[Finding]) -> ExitCode {
    let mut stderr = StderrReport::default();
    findings.iter().for_each(|f| stderr.report(f));
    exit_code(stderr.status)
}

/// Object errors, denials and warnings written to stderr as they come,
/// and the status they call for so far.
#[derive(Default)]
struct StderrReport {
    status: Status,
}

impl StderrReport {
    fn report(&mut self, finding: &Finding) {
        if finding.level != Level::Change {
            let _ = writeln!(
                std::io::stderr().lock(),
                "repoint: {}",
                report::text_line(finding)
            );
        }
        self.status = self.status.max(Status::of_one(finding, false));
    }
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    if args.in_place && (args.inputs.is_empty() || args.inputs.iter().any(|p| p.as_os_str() == "-"))
    {
        bail!("--in-place needs files to rewrite, not standard input");
    }
    if args.in_place && args.output != OutputFormat::Yaml {
        bail!(
            "--in-place writes manifests; it cannot be combined with --output {:?}",
            args.output
        );
    }
    let kustomize_dir = match &args.output {
        OutputFormat::Kustomize(dir) => Some(dir),
        _ => None,
    };
    // The manifests, as YAML, JSON or a diff, need only each document's
    // new text: trees go as soon as it is written. The overlay simulates
    // over every document; the JSON Patch listing is every result.
    let retain = match &args.output {
        OutputFormat::Kustomize(_) => Retain::Everything,
        OutputFormat::JsonPatch => Retain::Results,
        OutputFormat::Yaml | OutputFormat::Json | OutputFormat::Diff => Retain::Output,
    };
    let options = evaluate::Options {
        // An overlay refers to a kustomize base by its directory, and its
        // patches apply to the objects the base builds.
        kustomize_bases: kustomize_dir.is_some(),
        ..args.eval.options()
    };
    // Writing the manifests, object errors, denials and warnings go to
    // stderr window by window: a run that warns on most of a long stream
    // holds none of its warnings. The other outputs keep every result.
    let mut stderr = StderrReport::default();
    let ev = match retain {
        Retain::Output => {
            let ev = evaluate::files_reporting(
                &args.config,
                &args.inputs,
                &options,
                retain,
                &mut |f| stderr.report(&f),
            )?;
            print_warnings(&ev);
            ev
        }
        Retain::Everything | Retain::Results => {
            evaluate(&options, &args.config, &args.inputs, retain)?
        }
    };
    if let Some(dir) = kustomize_dir {
        ev.findings.iter().for_each(|f| stderr.report(f));
        let code = exit_code(stderr.status);
        if stderr.status == Status::Error {
            eprintln!("repoint: nothing was written because of the errors above");
            return Ok(code);
        }
        for note in kustomize::write(dir, &kustomize::overlay(&ev)?)? {
            eprintln!("repoint: note: {note}");
        }
        return Ok(code);
    }
    if args.output == OutputFormat::JsonPatch {
        let code = report_stderr(&ev.findings);
        return finish(code, || {
            Ok(render::write_json(
                &mut std::io::stdout().lock(),
                &render::json_patches(&ev),
            )?)
        });
    }
    let mut renderer = Renderer::new(&ev, args.eval.options.settings().jobs());
    if args.in_place {
        let texts: Vec<_> = std::iter::from_fn(|| renderer.next_file()).collect();
        renderer.findings().iter().for_each(|f| stderr.report(f));
        let code = exit_code(stderr.status);
        if stderr.status == Status::Error {
            eprintln!("repoint: nothing was written because of the errors above");
            return Ok(code);
        }
        let written = render::write_in_place(&ev, &texts)?;
        eprintln!("repoint: rewrote {} file(s)", written.len());
        return Ok(code);
    }
    let mut stdout = std::io::stdout().lock();
    let written = match &args.output {
        OutputFormat::Yaml => render::yaml(&mut stdout, &ev, &mut renderer),
        OutputFormat::Json => render::json(&mut stdout, &ev, &mut renderer),
        OutputFormat::Diff => render::diff(&mut stdout, &ev, &mut renderer),
        OutputFormat::Kustomize(_) | OutputFormat::JsonPatch => unreachable!("written before"),
    };
    // The documents that could not be written follow the output, once
    // every file is rendered.
    renderer.findings().iter().for_each(|f| stderr.report(f));
    let code = exit_code(stderr.status);
    let result = finish(code, || Ok(written?));
    // Freeing every parsed tree one node at a time costs a few percent of a
    // large run for nothing: the process is about to exit.
    std::mem::forget(ev);
    result
}

pub fn check(args: &CheckArgs) -> Result<ExitCode> {
    let ev = evaluate(
        &args.eval.options(),
        &args.config,
        &args.inputs,
        Retain::Results,
    )?;
    let code = exit_code(Status::of(&ev.findings, true));
    finish(code, || write_findings(args.format, &ev.findings))
}

/// Findings on standard output in a `check`-style format.
pub(crate) fn write_findings(format: CheckFormat, findings: &[Finding]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        CheckFormat::Text => report::write_text(&mut stdout, findings)?,
        CheckFormat::Json => render::write_json(&mut stdout, &findings)?,
        CheckFormat::Sarif => render::write_json(&mut stdout, &report::sarif(findings))?,
        CheckFormat::Github => report::write_github(&mut stdout, findings)?,
    }
    Ok(())
}
