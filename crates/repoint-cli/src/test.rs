//! `repoint test [PATH]...`: run the declarative suites (`repoint-suite`)
//! and print the report in the format asked for.

use std::process::ExitCode;

use anyhow::Result;
use repoint_suite::SuiteResult;

use crate::args::{TestArgs, TestFormat};

pub fn run(args: &TestArgs) -> Result<ExitCode> {
    let suites = repoint_suite::discover(&args.paths)?;
    let results: Vec<SuiteResult> = suites
        .iter()
        .map(|path| repoint_suite::run_suite(path, args.no_cache))
        .collect();
    let text = match args.format {
        TestFormat::Text => repoint_suite::text_report(&results),
        TestFormat::Junit => repoint_suite::junit_report(&results),
    };
    print!("{text}");
    Ok(ExitCode::from(repoint_suite::status(&results)))
}
