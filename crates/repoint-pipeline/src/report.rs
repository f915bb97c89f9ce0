//! Findings: what `check` (and `run` on stderr) reports, the exit status
//! they call for, and their formats (text, GitHub annotations, SARIF).

use std::io::Write;

use serde::Serialize;
use serde_json::{Value, json};

use crate::evaluate::{FileResult, ObjectMeta, ObjectResult};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The object could not be evaluated.
    Error,
    /// A policy denied the object.
    Denied,
    /// The chain would change the object.
    Change,
    /// A policy warned.
    Warning,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Denied => "denied",
            Self::Change => "change",
            Self::Warning => "warning",
        }
    }
}

/// What a command's findings call for, most serious last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Nothing to report (or only changes, where they are the point).
    #[default]
    Clean,
    /// Denials, or changes where changes fail (`check`, `audit`).
    Findings,
    /// An object could not be evaluated or written.
    Error,
}

impl Status {
    /// `changes_fail`: a change is a finding (`check`), not the output.
    pub fn of(findings: &[Finding], changes_fail: bool) -> Self {
        findings
            .iter()
            .map(|f| Self::of_one(f, changes_fail))
            .max()
            .unwrap_or(Self::Clean)
    }

    /// What one finding calls for; `changes_fail` as in [`Status::of`].
    pub fn of_one(finding: &Finding, changes_fail: bool) -> Self {
        match finding.level {
            Level::Error => Self::Error,
            Level::Denied => Self::Findings,
            Level::Change if changes_fail => Self::Findings,
            Level::Change | Level::Warning => Self::Clean,
        }
    }

    /// The process exit code: 0, 1 for findings, 2 for errors.
    pub fn code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::Findings => 1,
            Self::Error => 2,
        }
    }
}

/// One thing to report, located.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub level: Level,
    pub file: String,
    pub line: usize,
    pub document: usize,
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The policy (or policies) responsible, if any.
    pub policy: Option<String>,
    pub message: String,
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// All findings of an evaluation, in input order.
pub fn findings(files: &[FileResult]) -> Vec<Finding> {
    let mut out = Vec::new();
    for file in files {
        for (d, objects) in file.documents.iter().enumerate() {
            document_findings(&file.stream, d, objects, true, &mut out);
        }
    }
    out
}

/// The findings about document `d`'s evaluated objects, located in its
/// tree; `changes`: with a finding for each change (`check`'s), not only
/// errors, denials and warnings.
pub fn document_findings(
    stream: &repoint_core::Stream,
    d: usize,
    objects: &[ObjectResult],
    changes: bool,
    out: &mut Vec<Finding>,
) {
    let doc = &stream.documents()[d];
    let place = Place {
        file: stream.name(),
        document: d,
        value: &doc.value,
        line_of: &|pointer| stream.line_of(doc, pointer),
    };
    for object in objects {
        object_findings(&place, object, changes, out);
    }
}

/// An error about a document that could not be written (its change would
/// not read back as the chain's value).
pub fn document_error(e: &repoint_core::DocumentError, meta: &ObjectMeta) -> Finding {
    Finding {
        level: Level::Error,
        file: e.file.clone(),
        line: e.line,
        document: e.document,
        api_version: meta.api_version.clone(),
        kind: meta.kind.clone(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        policy: None,
        message: e.message.clone(),
    }
}

/// Where an evaluated object lives, for locating its findings: a document
/// of a file, or an object in a cluster (`line_of` then answers 0).
pub struct Place<'a> {
    /// The file, or the object's cluster location.
    pub file: &'a str,
    pub document: usize,
    /// The document's value (old values of changes are read from it).
    pub value: &'a Value,
    /// The 1-based line of a pointer from the document root; 0 if unknown.
    pub line_of: &'a dyn Fn(&str) -> usize,
}

impl std::fmt::Debug for Place<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Place")
            .field("file", &self.file)
            .field("document", &self.document)
            .finish_non_exhaustive()
    }
}

/// The findings about one evaluated object; `changes` as in
/// [`document_findings`].
pub fn object_findings(
    place: &Place<'_>,
    object: &ObjectResult,
    changes: bool,
    out: &mut Vec<Finding>,
) {
    let base = |level, line, policy: Option<String>, message: String| Finding {
        level,
        file: place.file.to_string(),
        line,
        document: place.document,
        api_version: object.meta.api_version.clone(),
        kind: object.meta.kind.clone(),
        namespace: object.meta.namespace.clone(),
        name: object.meta.name.clone(),
        policy,
        message,
    };
    let outcome = match &object.outcome {
        Ok(o) => o,
        Err(e) => {
            let policy = match e {
                repoint_runtime::chain::ObjectError::Policy(f) => Some(f.policy.clone()),
                repoint_runtime::chain::ObjectError::NotConverging { policies, .. } => {
                    Some(policies.join(", "))
                }
                repoint_runtime::chain::ObjectError::InvalidImage { .. } => None,
            };
            let line = match e {
                repoint_runtime::chain::ObjectError::InvalidImage { pointer, .. } => {
                    (place.line_of)(&format!("{}{pointer}", object.prefix))
                }
                _ => object.line,
            };
            out.push(base(Level::Error, line, policy, e.to_string()));
            return;
        }
    };
    for f in &outcome.denials {
        out.push(base(
            Level::Denied,
            object.line,
            Some(f.policy.clone()),
            f.message.clone(),
        ));
    }
    let changed_by = (!outcome.changed_by.is_empty()).then(|| outcome.changed_by.join(", "));
    let change_ops = if changes {
        object.document_patch()
    } else {
        Vec::new()
    };
    for op in change_ops {
        let line = (place.line_of)(&op.path);
        let new = op.value.as_ref().map(describe_value).unwrap_or_default();
        let message = match repoint_core::pointer::get(place.value, &op.path) {
            Some(old) => format!(
                "would change {} from {} to {new}",
                op.path,
                describe_value(old)
            ),
            None => format!("would add {new} at {}", op.path),
        };
        out.push(base(Level::Change, line, changed_by.clone(), message));
    }
    for f in &outcome.warnings {
        out.push(base(
            Level::Warning,
            object.line,
            Some(f.policy.clone()),
            f.message.clone(),
        ));
    }
}

/// `FILE:LINE: LEVEL: Kind/name: [policy] message`
pub fn text_line(f: &Finding) -> String {
    let resource = format!(
        "{}/{}{}",
        f.kind.as_deref().unwrap_or("?"),
        f.name.as_deref().unwrap_or("?"),
        f.namespace
            .as_deref()
            .map(|n| format!(" (namespace {n})"))
            .unwrap_or_default()
    );
    let policy = f
        .policy
        .as_deref()
        .map(|p| format!("[{p}] "))
        .unwrap_or_default();
    // Objects in a cluster have a location but no line.
    let at = match f.line {
        0 => f.file.clone(),
        line => format!("{}:{line}", f.file),
    };
    format!(
        "{at}: {}: {resource}: {policy}{}",
        f.level.word(),
        f.message
    )
}

pub fn write_text(out: &mut impl Write, findings: &[Finding]) -> std::io::Result<()> {
    for f in findings {
        writeln!(out, "{}", text_line(f))?;
    }
    Ok(())
}

/// GitHub workflow commands: annotations on the file and line.
pub fn write_github(out: &mut impl Write, findings: &[Finding]) -> std::io::Result<()> {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    for f in findings {
        let command = match f.level {
            Level::Error | Level::Denied | Level::Change => "error",
            Level::Warning => "warning",
        };
        let title = match &f.policy {
            Some(p) => format!("repoint {} ({p})", f.level.word()),
            None => format!("repoint {}", f.level.word()),
        };
        let resource = format!(
            "{}/{}",
            f.kind.as_deref().unwrap_or("?"),
            f.name.as_deref().unwrap_or("?")
        );
        writeln!(
            out,
            "::{command} file={},line={},title={}::{}",
            property(&f.file),
            f.line,
            property(&title),
            data(&format!("{resource}: {}", f.message))
        )?;
    }
    Ok(())
}

/// SARIF 2.1.0, one run, one rule per level.
pub fn sarif(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = [Level::Error, Level::Denied, Level::Change, Level::Warning]
        .iter()
        .map(|l| {
            json!({
                "id": format!("repoint/{}", l.word()),
                "name": l.word(),
                "shortDescription": {"text": match l {
                    Level::Error => "The object could not be evaluated",
                    Level::Denied => "A policy denied the object",
                    Level::Change => "The policy chain would change the object",
                    Level::Warning => "A policy warned about the object",
                }},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let resource = format!("{}/{}", f.kind.as_deref().unwrap_or("?"), f.name.as_deref().unwrap_or("?"));
            json!({
                "ruleId": format!("repoint/{}", f.level.word()),
                "level": match f.level {
                    Level::Error | Level::Denied | Level::Change => "error",
                    Level::Warning => "warning",
                },
                "message": {"text": format!("{resource}: {}", f.message)},
                "locations": [{
                    "physicalLocation": if f.line == 0 {
                        json!({"artifactLocation": {"uri": f.file}})
                    } else {
                        json!({
                            "artifactLocation": {"uri": f.file},
                            "region": {"startLine": f.line},
                        })
                    }
                }],
                "properties": {"policy": f.policy, "document": f.document, "namespace": f.namespace},
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "repoint",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/repoint",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
