//! `repoint fn`: a KRM function (the kustomize/kpt function protocol; the
//! work is `repoint_pipeline::krm`'s). One ResourceList on stdin, the list
//! back on stdout, problems on stderr too.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use repoint_pipeline::krm::{self, ResourceList};
use repoint_pipeline::{chain, evaluate};

use crate::args::FnArgs;
use crate::run;

pub fn run(args: &FnArgs) -> Result<ExitCode> {
    let options = args.eval.options();
    let bytes =
        repoint_core::bounded::read_to_limit(std::io::stdin(), options.limits.max_input_bytes)
            .context("reading the ResourceList from standard input")?;
    let text = String::from_utf8(bytes).context("the ResourceList is not UTF-8")?;
    let list = ResourceList::parse(
        text,
        options.limits,
        options.settings.jobs(),
        std::env::current_dir().context("finding the working directory")?,
    )?;
    let chain = chain::build(&list.config, &options.settings, false)?;
    let ev = evaluate::streams(&list.config, &chain, vec![(None, list.stream)], &options)?;
    run::print_warnings(&ev);
    let code = run::report_stderr(&ev.findings);
    let out = krm::output(&ev)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(code)
}
