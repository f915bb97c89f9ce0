//! The KRM function protocol (kustomize and kpt functions): one
//! `config.kubernetes.io/v1` `ResourceList` in, whose `functionConfig` is
//! the repoint config and whose `items` are evaluated; the same list out,
//! items changed only where they must, generated Secrets and
//! ServiceAccounts appended, warnings and denials as `results`.

use std::path::PathBuf;

use repoint_config::Config;
use repoint_core::document::emit::{self, IndentStyle};
use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream};
use serde_json::{Map, Value, json};

use crate::evaluate::Evaluated;
use crate::report::{Finding, Level};
use crate::{Error, Result};

const API_VERSION: &str = "config.kubernetes.io/v1";

/// A ResourceList read and checked, with the config it carries.
#[derive(Debug)]
pub struct ResourceList {
    /// The list as one stream of one document (its items are evaluated
    /// where they are, so the output keeps its formatting).
    pub stream: Stream,
    /// The `functionConfig`, read as a repoint config.
    pub config: Config,
}

impl ResourceList {
    /// Read a ResourceList. `base_dir` is where the config's relative paths
    /// (password files, `secretFrom.file`) start: kustomize runs exec
    /// functions in the kustomization's directory.
    pub fn parse(text: String, limits: Limits, threads: usize, base_dir: PathBuf) -> Result<Self> {
        let stream = Stream::parse_with_threads("ResourceList", text, limits, threads)?;
        let list = match stream.documents() {
            [doc] => &doc.value,
            docs => {
                return Err(Error::ResourceList(format!(
                    "expected one ResourceList on standard input, found {} documents",
                    docs.len()
                )));
            }
        };
        let field = |k: &str| list.get(k).and_then(Value::as_str).unwrap_or("");
        if field("kind") != "ResourceList" || field("apiVersion") != API_VERSION {
            return Err(Error::ResourceList(format!(
                "expected a {API_VERSION} ResourceList on standard input, found apiVersion {:?}, kind {:?}",
                field("apiVersion"),
                field("kind")
            )));
        }
        if !list.get("items").is_some_and(Value::is_array) {
            return Err(Error::ResourceList(
                "the ResourceList has no items list".into(),
            ));
        }
        let Some(function_config) = list.get("functionConfig").filter(|c| !c.is_null()) else {
            return Err(Error::ResourceList(
                "the ResourceList has no functionConfig; it must be the repoint Config".into(),
            ));
        };
        let config = Config::parse(
            "functionConfig",
            emit::document(function_config, IndentStyle::default()),
            base_dir,
        )?;
        Ok(Self { stream, config })
    }
}

/// The ResourceList to write back, from the evaluation of the one stream
/// [`ResourceList::parse`] read.
pub fn output(ev: &Evaluated) -> Result<String> {
    let mut changes = ev.file_changes(0);
    let mut ops: Vec<PatchOp> = ev
        .generated
        .documents
        .iter()
        .map(|(_, doc)| PatchOp::add("/items/-", doc.clone()))
        .collect();
    let results = results(ev);
    let list = &ev.files[0].stream.documents()[0].value;
    if !results.is_empty() {
        match list.get("results") {
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
    Ok(ev.files[0].stream.render(&changes)?.into_owned())
}

/// KRM `results` for everything but plain changes: object errors and
/// denials are errors, policy warnings and left-out credentials warnings.
pub fn results(ev: &Evaluated) -> Vec<Value> {
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
