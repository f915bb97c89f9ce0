//! `repoint fn`: a KRM function (the kustomize/kpt function protocol).
//!
//! Reads one `config.kubernetes.io/v1` `ResourceList` on stdin, takes its
//! `functionConfig` as the repoint config, runs the chain over `items`, and
//! writes the `ResourceList` back: items changed only where they must,
//! generated Secrets and ServiceAccounts appended, warnings and denials as
//! `results`. Exit 1 when a result is an error, as the protocol asks.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use repoint_config::Config;
use repoint_core::document::emit::{self, IndentStyle};
use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream};
use serde_json::{Map, Value, json};

use crate::args::FnArgs;
use crate::engine;
use crate::report::{Finding, Level};
use crate::run::{self, Evaluated};

const API_VERSION: &str = "config.kubernetes.io/v1";

pub fn run(args: &FnArgs) -> Result<ExitCode> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the ResourceList from standard input")?;
    let limits = Limits {
        max_document_bytes: args.eval.max_document_size.saturating_mul(1 << 20),
        ..Limits::default()
    };
    let stream =
        Stream::parse_with_threads("ResourceList", text, limits, args.eval.options.jobs())?;
    let list = match stream.documents() {
        [doc] => &doc.value,
        docs => bail!(
            "expected one ResourceList on standard input, found {} documents",
            docs.len()
        ),
    };
    let field = |k: &str| list.get(k).and_then(Value::as_str).unwrap_or("");
    if field("kind") != "ResourceList" || field("apiVersion") != API_VERSION {
        bail!(
            "expected a {API_VERSION} ResourceList on standard input, found apiVersion {:?}, kind {:?}",
            field("apiVersion"),
            field("kind")
        );
    }
    if !list.get("items").is_some_and(Value::is_array) {
        bail!("the ResourceList has no items list");
    }
    let Some(function_config) = list.get("functionConfig").filter(|c| !c.is_null()) else {
        bail!("the ResourceList has no functionConfig; it must be the repoint Config");
    };
    // Relative paths in the config (password files, secretFrom) start where
    // the function runs: kustomize runs exec functions in the
    // kustomization's directory.
    let config = Config::parse(
        "functionConfig",
        emit::document(function_config, IndentStyle::default()),
        std::env::current_dir().context("finding the working directory")?,
    )?;
    let chain = engine::build_chain(&config, &args.eval.options, false)?;
    let ev = run::evaluate_streams(&config, &chain, vec![(None, stream)], &args.eval)?;
    let code = run::report_stderr(&ev.findings);

    let mut changes = run::file_changes(&ev, 0);
    let mut ops: Vec<PatchOp> = ev
        .generated
        .documents
        .iter()
        .map(|(_, doc)| PatchOp::add("/items/-", doc.clone()))
        .collect();
    let results = results(&ev);
    if !results.is_empty() {
        match ev.files[0].stream.documents()[0].value.get("results") {
            Some(Value::Array(_)) => {
                ops.extend(results.into_iter().map(|r| PatchOp::add("/results/-", r)));
            }
            _ => ops.push(PatchOp::add("/results", Value::Array(results))),
        }
    }
    match changes.iter_mut().find(|(d, _)| *d == 0) {
        Some((_, existing)) => existing.extend(ops),
        None => changes.push((0, ops)),
    }
    let out = ev.files[0].stream.render(&changes)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(code)
}

/// KRM `results` for everything but plain changes: object errors and
/// denials are errors, policy warnings and left-out credentials warnings.
fn results(ev: &Evaluated) -> Vec<Value> {
    let mut out: Vec<Value> = ev
        .findings
        .iter()
        .filter(|f| f.level != Level::Change)
        .map(result)
        .collect();
    out.extend(
        ev.warnings
            .iter()
            .map(|w| json!({"message": w, "severity": "warning"})),
    );
    out
}

fn result(f: &Finding) -> Value {
    let severity = match f.level {
        Level::Error | Level::Denied => "error",
        Level::Warning | Level::Change => "warning",
    };
    let message = match &f.policy {
        Some(p) => format!("[{p}] {}", f.message),
        None => f.message.clone(),
    };
    let mut reference = Map::new();
    for (key, value) in [
        ("apiVersion", &f.api_version),
        ("kind", &f.kind),
        ("name", &f.name),
        ("namespace", &f.namespace),
    ] {
        if let Some(v) = value {
            reference.insert(key.into(), v.clone().into());
        }
    }
    let mut r = json!({"message": message, "severity": severity});
    if !reference.is_empty() {
        r["resourceRef"] = Value::Object(reference);
    }
    if let Some(p) = &f.policy {
        r["tags"] = json!({"policy": p});
    }
    r
}
