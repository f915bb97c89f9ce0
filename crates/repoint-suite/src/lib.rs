//! `repoint test [PATH]...`: declarative test suites for policies and
//! configs, as `kyverno test` and `gator verify` have them.
//!
//! A suite is a `repoint-test.yaml` file. It names what is tested (one
//! policy with settings, or a config's whole chain), pins registry probe
//! answers so nothing touches the network, and lists cases: input
//! manifests and what the chain must make of them. A case states
//! everything the chain does: its patched output (absent: the input,
//! unchanged), its denials, warnings, pull Secrets and ServiceAccount
//! entries (absent: none). What it leaves out must not happen.
//!
//! ```yaml
//! apiVersion: repoint.dev/v1alpha1
//! kind: TestSuite
//! policy: builtin:registry-mirror      # or a .wasm path, or oci://...; or `config: repoint.yaml`
//! settings: {rules: [{match: docker.io, replace: mirror.corp.example/hub}]}
//! probes: {"quay.io/org/api": needs-auth}
//! cases:
//!   - name: Docker Hub images move to the mirror
//!     input: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: nginx}]}}
//!     expect:
//!       output: {apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c, image: mirror.corp.example/hub/library/nginx}]}}
//!   - name: an empty rule list is refused
//!     settings: {rules: []}
//!     expect: {settingsError: "rules"}
//! ```
//!
//! This crate finds suites ([`discover`]), runs them ([`run_suite`]) and
//! reports on them ([`text_report`], [`junit_report`], [`status`]); the
//! `repoint test` command is its glue. It runs each case through the same
//! pipeline as `repoint run` (`repoint_pipeline::evaluate`), on a runtime
//! whose registry probes answer what the suite pins.
//!
//! Depends on repoint-pipeline, repoint-config, repoint-core and
//! repoint-runtime, and on `serde_path_to_error` to locate a bad key in a
//! suite.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use repoint_config::LimitsEntry;
use repoint_core::probe::{ProbeAnswer, Prober};
use repoint_core::sites::ImageFields;
use repoint_core::{ImageRef, Limits, Stream, patch, pointer};
use repoint_pipeline::oci::LoadError;
use repoint_runtime::chain::{Chain, Outcome};
use repoint_runtime::{FailureKind, PolicySource, Runtime, RuntimeError, RuntimeOptions};
use serde::Deserialize;
use serde_json::Value;

/// The file name suites are found by.
pub const SUITE_FILE: &str = "repoint-test.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SuiteFile {
    api_version: String,
    kind: String,
    /// Shown in reports (default: the suite's directory).
    #[serde(default)]
    name: Option<String>,
    /// One policy: `builtin:NAME` or a `.wasm` path relative to the suite.
    #[serde(default)]
    policy: Option<String>,
    /// Or a config (relative to the suite): its whole chain.
    #[serde(default)]
    config: Option<String>,
    /// The policy's settings (default `{}`); a case may give its own.
    #[serde(default)]
    settings: Option<Value>,
    /// Custom-resource image fields, for a policy suite.
    #[serde(default)]
    image_fields: Vec<ImageFields>,
    /// Evaluation limits, for a policy suite (a config has its own).
    #[serde(default)]
    limits: Option<LimitsEntry>,
    /// Registry probe answers by image (`registry/repository`, any tag; or
    /// with a tag or digest, that one only); any other probe is `unknown`.
    #[serde(default)]
    probes: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    /// Settings for this case instead of the suite's (policy suites).
    #[serde(default)]
    settings: Option<Value>,
    /// Manifests: YAML text, an object, or a list of objects.
    #[serde(default)]
    input: Option<Value>,
    /// Or a manifest file, relative to the suite.
    #[serde(default)]
    input_file: Option<String>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    /// The patched manifests, in the input's forms.
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    output_file: Option<String>,
    /// Each denial's message contains the string at its place.
    #[serde(default)]
    denials: Vec<String>,
    #[serde(default)]
    warnings: Vec<String>,
    /// `ensure-pull-secret` requests.
    #[serde(default)]
    pull_secrets: Vec<ExpectedSecret>,
    /// `patch-service-account` requests.
    #[serde(default)]
    service_accounts: Vec<ExpectedAccount>,
    /// The evaluation fails with a message containing this.
    #[serde(default)]
    error: Option<String>,
    /// The settings are refused with a message containing this.
    #[serde(default)]
    settings_error: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct ExpectedSecret {
    name: String,
    /// Default: the evaluated object's.
    #[serde(default)]
    namespace: Option<String>,
    registries: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct ExpectedAccount {
    /// Default: `default`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    secret: String,
}

/// Probe answers a suite pins.
#[derive(Debug)]
struct PinnedProbes(Vec<(ImageRef, ProbeAnswer)>);

impl Prober for PinnedProbes {
    fn probe(&self, image: &ImageRef) -> ProbeAnswer {
        let exact = |pin: &ImageRef| pin.tag.is_some() || pin.digest.is_some();
        let same_repo =
            |pin: &ImageRef| pin.registry == image.registry && pin.repository == image.repository;
        // A pin with a tag or digest wins over one for the whole repository.
        self.0
            .iter()
            .find(|(pin, _)| exact(pin) && pin == image)
            .or_else(|| self.0.iter().find(|(pin, _)| !exact(pin) && same_repo(pin)))
            .map_or(ProbeAnswer::Unknown, |(_, answer)| *answer)
    }
}

fn probe_answer(name: &str) -> Option<ProbeAnswer> {
    Some(match name {
        "anonymous" => ProbeAnswer::Anonymous,
        "needs-auth" => ProbeAnswer::NeedsAuth,
        "not-found" => ProbeAnswer::NotFound,
        "unknown" => ProbeAnswer::Unknown,
        _ => return None,
    })
}

/// One case's result.
#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
    pub time: Duration,
}

/// One suite's results, or why it could not run.
#[derive(Debug)]
pub struct SuiteResult {
    pub path: PathBuf,
    pub name: String,
    /// The cases' results, or why the suite could not run.
    pub outcome: Result<Vec<CaseResult>, Unrunnable>,
}

/// Why a suite could not run at all (unreadable, invalid, a policy that
/// does not load), as one readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unrunnable(pub String);

/// Why suites could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// A path holds no suite file.
    #[error("no {SUITE_FILE} under {}", .0.display())]
    NoSuites(PathBuf),
    /// A directory could not be walked, or a path does not exist.
    #[error(transparent)]
    Walk(#[from] repoint_pipeline::Error),
}

/// Every suite the paths name: a suite file itself, or every suite under a
/// directory in path order (see `repoint_pipeline::input::walk` for what
/// is skipped); no paths means the current directory.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoverError> {
    let roots = match paths {
        [] => vec![PathBuf::from(".")],
        given => given.to_vec(),
    };
    let mut suites = Vec::new();
    for root in &roots {
        let found = if root.is_file() {
            vec![root.clone()]
        } else {
            repoint_pipeline::input::walk(root, |p| p.file_name().is_some_and(|n| n == SUITE_FILE))?
        };
        if found.is_empty() {
            return Err(DiscoverError::NoSuites(root.clone()));
        }
        suites.extend(found);
    }
    Ok(suites)
}

/// What a run's results call for: 2 when a suite could not run, 1 when a
/// case failed, else 0.
pub fn status(results: &[SuiteResult]) -> u8 {
    let broken = results.iter().any(|s| s.outcome.is_err());
    let failed = results
        .iter()
        .filter_map(|s| s.outcome.as_ref().ok())
        .flatten()
        .any(|c| c.failure.is_some());
    match (broken, failed) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 0,
    }
}

/// Run one suite file; `no_cache` skips the on-disk cache of compiled
/// policies.
pub fn run_suite(path: &Path, no_cache: bool) -> SuiteResult {
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    // `.` has no name; the directory it stands for has.
    let default_name = dir.canonicalize().unwrap_or_else(|_| dir.clone());
    let default_name = default_name.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let loaded = load_suite(path);
    let name = match &loaded {
        Ok(s) => s.name.clone().unwrap_or(default_name),
        Err(_) => default_name,
    };
    let outcome = loaded
        .and_then(|suite| Subject::new(&suite, &dir, no_cache).map(|subject| (suite, subject)))
        .map(|(suite, subject)| {
            suite
                .cases
                .iter()
                .enumerate()
                .map(|(i, case)| {
                    let start = Instant::now();
                    let failure = run_case(&suite, &subject, &dir, i, case).err();
                    CaseResult {
                        name: case.name.clone(),
                        failure,
                        time: start.elapsed(),
                    }
                })
                .collect()
        })
        .map_err(|e| Unrunnable(format!("{e:#}")));
    SuiteResult {
        path: path.to_path_buf(),
        name,
        outcome,
    }
}

fn load_suite(path: &Path) -> Result<SuiteFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
    let stream = Stream::parse(&name, text, Limits::default()).map_err(|e| anyhow!("{e}"))?;
    let [doc] = stream.documents() else {
        bail!("{name}: expected one YAML document");
    };
    let suite: SuiteFile = serde_path_to_error::deserialize(&doc.value).map_err(|e| {
        let (dotted, pointer) = repoint_config::key_path(e.path());
        let line = stream.line_of(doc, &pointer);
        anyhow!("{name}:{line}: {dotted}: {}", e.inner())
    })?;
    if suite.api_version != repoint_config::API_VERSION || suite.kind != "TestSuite" {
        bail!(
            "{name}: expected apiVersion {} and kind TestSuite",
            repoint_config::API_VERSION
        );
    }
    if suite.policy.is_some() == suite.config.is_some() {
        bail!("{name}: name either `policy` (a module) or `config` (a repoint config)");
    }
    Ok(suite)
}

/// What a suite tests: a runtime answering its pinned probes, and either a
/// config's chain or one loaded policy to configure per case.
struct Subject {
    runtime: Arc<Runtime>,
    what: What,
}

enum What {
    Chain(Chain),
    Policy {
        loaded: Arc<repoint_runtime::LoadedPolicy>,
        image_fields: Vec<ImageFields>,
    },
}

impl Subject {
    fn new(suite: &SuiteFile, dir: &Path, no_cache: bool) -> Result<Self> {
        let mut pins = Vec::new();
        for (image, answer) in &suite.probes {
            let parsed = ImageRef::parse(image)
                .map_err(|e| anyhow!("probes: {image:?} is not an image reference: {e}"))?;
            let answer = probe_answer(answer).ok_or_else(|| {
                anyhow!(
                    "probes: {image}: {answer:?} is not anonymous, needs-auth, not-found or unknown"
                )
            })?;
            pins.push((parsed, answer));
        }
        let prober = Arc::new(PinnedProbes(pins));
        if let Some(config) = &suite.config {
            let config = repoint_config::Config::load(&dir.join(config))?;
            let settings = repoint_pipeline::Settings {
                no_cache,
                ..Default::default()
            };
            let runtime = Arc::new(Runtime::new(settings.runtime_options(&config), prober)?);
            let chain = repoint_pipeline::chain::load(&config, &runtime, config.file.offline)?;
            return Ok(Self {
                runtime,
                what: What::Chain(chain),
            });
        }
        let limits = suite.limits.as_ref();
        let defaults = RuntimeOptions::default();
        let options = RuntimeOptions {
            timeout: limits.and_then(|l| l.timeout).unwrap_or(defaults.timeout),
            memory: limits.and_then(|l| l.memory).unwrap_or(defaults.memory),
            cache_dir: defaults.cache_dir.filter(|_| !no_cache),
            ..defaults
        };
        let runtime = Arc::new(Runtime::new(options, prober)?);
        let module = suite.policy.as_deref().unwrap_or_default();
        let source = PolicySource::parse(module, dir);
        // Pulled as a config's policy is, with no registry settings or
        // credentials (a suite that needs them names a `config:`).
        let empty = repoint_config::Config::empty(dir.to_path_buf());
        let loaded = repoint_pipeline::oci::load(&runtime, &empty, "(suite)", &source, &[], false)
            .map_err(|e| match e {
                LoadError::Pull { reference, why } => anyhow!("policy: {reference}: {why}"),
                LoadError::Load(e) => e.into(),
            })?
            .loaded;
        Ok(Self {
            runtime,
            what: What::Policy {
                loaded: Arc::new(loaded),
                image_fields: suite.image_fields.clone(),
            },
        })
    }

    /// The chain for a case: the config's, or the policy with the case's
    /// settings. `Ok(Err(message))`: the policy refused the settings.
    fn chain(&self, settings: &Value) -> Result<Result<Chain, String>> {
        let (loaded, image_fields) = match &self.what {
            What::Chain(chain) => return Ok(Ok(chain.clone())),
            What::Policy {
                loaded,
                image_fields,
            } => (loaded, image_fields),
        };
        let json = serde_json::to_string(settings)?;
        let name = loaded.info.name.clone();
        match self.runtime.configure(&name, loaded.clone(), &json) {
            Ok(configured) => Ok(Ok(self
                .runtime
                .chain(vec![configured], image_fields.clone())?)),
            // The policy's own words, as `repoint run` reports them.
            Err(RuntimeError::Configure {
                failure: FailureKind::Error(message),
                ..
            }) => Ok(Err(message)),
            Err(RuntimeError::Configure { failure, .. }) => Ok(Err(failure.to_string())),
            Err(other) => Err(other.into()),
        }
    }
}

/// Run one case; `Err` says why it failed, readably.
fn run_case(
    suite: &SuiteFile,
    subject: &Subject,
    dir: &Path,
    index: usize,
    case: &Case,
) -> Result<(), String> {
    let expect = &case.expect;
    if case.settings.is_some() && suite.config.is_some() {
        return Err("`settings` is for policy suites; a config has its own".into());
    }
    let settings = case
        .settings
        .as_ref()
        .or(suite.settings.as_ref())
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let chain = subject.chain(&settings).map_err(|e| format!("{e:#}"))?;
    let chain = match (chain, &expect.settings_error) {
        (Err(message), Some(wanted)) if message.contains(wanted.as_str()) => return Ok(()),
        (Err(message), Some(wanted)) => {
            return Err(format!(
                "settings refused with {message:?}, which does not contain {wanted:?}"
            ));
        }
        (Err(message), None) => return Err(format!("settings refused: {message}")),
        (Ok(_), Some(wanted)) => {
            return Err(format!(
                "settings accepted; expected them refused with {wanted:?}"
            ));
        }
        (Ok(chain), None) => chain,
    };

    let label = format!("case {index} ({})", case.name);
    let input = manifests(
        &label,
        "input",
        case.input.as_ref(),
        case.input_file.as_deref(),
        dir,
    )?
    .ok_or("give `input` or `inputFile`")?;
    let stream = Stream::parse(&label, input, Limits::default()).map_err(|e| e.to_string())?;
    let results = repoint_pipeline::evaluate::documents(&chain, vec![(None, stream)], 1);
    let file = &results[0];

    let mut outcomes: Vec<(&Outcome, Option<&str>)> = Vec::new();
    let mut errors = Vec::new();
    for object in file.documents.iter().flatten() {
        match &object.outcome {
            Ok(outcome) => outcomes.push((outcome, object.meta.namespace.as_deref())),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some(wanted) = &expect.error {
        return match errors.iter().find(|e| e.contains(wanted.as_str())) {
            Some(_) => Ok(()),
            None if errors.is_empty() => Err(format!(
                "evaluated without error; expected one containing {wanted:?}"
            )),
            None => Err(format!(
                "failed with {errors:?}, none containing {wanted:?}"
            )),
        };
    }
    if !errors.is_empty() {
        return Err(format!("evaluation failed: {}", errors.join("; ")));
    }

    let mut problems = Vec::new();
    let findings = |pick: fn(&Outcome) -> &Vec<repoint_runtime::chain::Finding>| {
        outcomes
            .iter()
            .flat_map(|(o, _)| pick(o).iter().map(|f| f.message.clone()))
            .collect::<Vec<_>>()
    };
    compare_messages(
        "denials",
        &expect.denials,
        &findings(|o| &o.denials),
        &mut problems,
    );
    compare_messages(
        "warnings",
        &expect.warnings,
        &findings(|o| &o.warnings),
        &mut problems,
    );

    let mut secrets: Vec<ExpectedSecret> = Vec::new();
    let mut accounts: Vec<ExpectedAccount> = Vec::new();
    for (outcome, own_ns) in &outcomes {
        for r in &outcome.ensure {
            secrets.push(ExpectedSecret {
                name: r.item.name.clone(),
                namespace: r.item.namespace.clone().or(own_ns.map(String::from)),
                registries: r.item.registries.clone(),
            });
        }
        for r in &outcome.service_accounts {
            accounts.push(ExpectedAccount {
                name: Some(
                    r.item
                        .service_account
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                ),
                namespace: r.item.namespace.clone().or(own_ns.map(String::from)),
                secret: r.item.secret.clone(),
            });
        }
    }
    compare_requests("pull secrets", &expect.pull_secrets, secrets, &mut problems);
    compare_requests(
        "service accounts",
        &expect.service_accounts,
        accounts,
        &mut problems,
    );

    // The output: the input documents with the chain's changes.
    let mut actual: Vec<Value> = file
        .stream
        .documents()
        .iter()
        .map(|d| d.value.clone())
        .collect();
    for (doc, ops) in file.changes() {
        patch::apply(&mut actual[doc], &ops).map_err(|e| format!("applying the change: {e}"))?;
    }
    let expected: Vec<Value> = match manifests(
        &label,
        "output",
        expect.output.as_ref(),
        expect.output_file.as_deref(),
        dir,
    )? {
        Some(text) => Stream::parse(&format!("{label} output"), text, Limits::default())
            .map_err(|e| e.to_string())?
            .documents()
            .iter()
            .map(|d| d.value.clone())
            .collect(),
        None => file
            .stream
            .documents()
            .iter()
            .map(|d| d.value.clone())
            .collect(),
    };
    output_differences(&expected, &actual, &mut problems);

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Manifests given inline (YAML text, an object, or a list of objects) or
/// as a file relative to the suite; `None` when neither is given.
fn manifests(
    label: &str,
    field: &str,
    inline: Option<&Value>,
    file: Option<&str>,
    dir: &Path,
) -> Result<Option<String>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "{label}: give `{field}` or `{field}File`, not both"
        )),
        (Some(Value::String(text)), None) => Ok(Some(text.clone())),
        (Some(Value::Array(items)), None) => Ok(Some(
            items.iter().map(|item| format!("---\n{item}\n")).collect(),
        )),
        (Some(object), None) => Ok(Some(object.to_string())),
        (None, Some(path)) => std::fs::read_to_string(dir.join(path))
            .map(Some)
            .map_err(|e| format!("{label}: reading {path}: {e}")),
        (None, None) => Ok(None),
    }
}

/// Expected message fragments against what the policies said, in order.
fn compare_messages(what: &str, wanted: &[String], got: &[String], problems: &mut Vec<String>) {
    let matches =
        wanted.len() == got.len() && wanted.iter().zip(got).all(|(w, g)| g.contains(w.as_str()));
    if !matches {
        problems.push(format!(
            "{what}: expected {} containing {wanted:?}, got {got:?}",
            wanted.len()
        ));
    }
}

/// Requests beyond the object, in any order; a wanted one without a
/// namespace matches any.
fn compare_requests<T: Ord + std::fmt::Debug + Expected>(
    what: &str,
    wanted: &[T],
    mut got: Vec<T>,
    problems: &mut Vec<String>,
) {
    got.sort();
    let mut unmatched: Vec<&T> = got.iter().collect();
    let mut missing = Vec::new();
    for w in wanted {
        match unmatched.iter().position(|g| w.matches(g)) {
            Some(i) => {
                unmatched.remove(i);
            }
            None => missing.push(w),
        }
    }
    if !missing.is_empty() || !unmatched.is_empty() {
        problems.push(format!("{what}: expected {wanted:?}, got {got:?}"));
    }
}

trait Expected {
    fn matches(&self, got: &Self) -> bool;
}

impl Expected for ExpectedSecret {
    fn matches(&self, got: &Self) -> bool {
        self.name == got.name
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| Some(ns) == got.namespace.as_ref())
            && self.registries == got.registries
    }
}

impl Expected for ExpectedAccount {
    fn matches(&self, got: &Self) -> bool {
        // An account left unnamed is `default`, as for a pod.
        self.name.as_deref().unwrap_or("default") == got.name.as_deref().unwrap_or("default")
            && self.secret == got.secret
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| Some(ns) == got.namespace.as_ref())
    }
}

/// Where the output differs from the expected, one line per field:
/// `document 0 /spec/containers/0/image: expected "a", got "b"`.
fn output_differences(expected: &[Value], actual: &[Value], problems: &mut Vec<String>) {
    if expected.len() != actual.len() {
        problems.push(format!(
            "output: expected {} documents, got {}",
            expected.len(),
            actual.len()
        ));
        return;
    }
    let show = |v: Option<&Value>| v.map_or_else(|| "nothing".to_string(), Value::to_string);
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        for op in patch::diff(a, e) {
            problems.push(format!(
                "output: document {i} {}: expected {}, got {}",
                if op.path.is_empty() { "/" } else { &op.path },
                show(pointer::get(e, &op.path)),
                show(pointer::get(a, &op.path)),
            ));
        }
    }
}

/// The results as people read them: a line per case, then the totals.
pub fn text_report(results: &[SuiteResult]) -> String {
    let mut out = String::new();
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for suite in results {
        let _ = writeln!(out, "{} ({})", suite.name, suite.path.display());
        match &suite.outcome {
            Err(e) => {
                broken += 1;
                let _ = writeln!(out, "  ERROR {e}");
            }
            Ok(cases) => {
                for case in cases {
                    match &case.failure {
                        None => {
                            passed += 1;
                            let _ = writeln!(out, "  PASS  {}", case.name);
                        }
                        Some(why) => {
                            failed += 1;
                            let _ = writeln!(out, "  FAIL  {}", case.name);
                            for line in why.lines() {
                                let _ = writeln!(out, "        {line}");
                            }
                        }
                    }
                }
            }
        }
    }
    let _ = write!(out, "{passed} passed, {failed} failed");
    if broken > 0 {
        let verb = if broken == 1 {
            "suite could"
        } else {
            "suites could"
        };
        let _ = write!(out, ", {broken} {verb} not run");
    }
    let plural = if results.len() == 1 { "" } else { "s" };
    let _ = writeln!(out, " ({} suite{plural})", results.len());
    out
}

/// JUnit XML, as CI systems read it: a `testsuite` per suite file, a
/// `testcase` per case, `failure` with the reasons, `error` for a suite
/// that could not run.
pub fn junit_report(results: &[SuiteResult]) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut body = String::new();
    let (mut tests, mut failures, mut errors) = (0, 0, 0);
    for suite in results {
        let name = esc(&suite.name);
        let file = esc(&suite.path.display().to_string());
        match &suite.outcome {
            Err(e) => {
                tests += 1;
                errors += 1;
                let _ = writeln!(
                    body,
                    "  <testsuite name=\"{name}\" file=\"{file}\" tests=\"1\" failures=\"0\" errors=\"1\">\n    <testcase classname=\"{name}\" name=\"(suite)\"><error message=\"{}\"/></testcase>\n  </testsuite>",
                    esc(&e.0)
                );
            }
            Ok(cases) => {
                let failed = cases.iter().filter(|c| c.failure.is_some()).count();
                let time: f64 = cases.iter().map(|c| c.time.as_secs_f64()).sum();
                tests += cases.len();
                failures += failed;
                let _ = writeln!(
                    body,
                    "  <testsuite name=\"{name}\" file=\"{file}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{time:.3}\">",
                    cases.len()
                );
                for case in cases {
                    let head = format!(
                        "    <testcase classname=\"{name}\" name=\"{}\" time=\"{:.3}\"",
                        esc(&case.name),
                        case.time.as_secs_f64()
                    );
                    match &case.failure {
                        None => {
                            let _ = writeln!(body, "{head}/>");
                        }
                        Some(why) => {
                            let first = why.lines().next().unwrap_or_default();
                            let _ = writeln!(
                                body,
                                "{head}>\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                                esc(first),
                                esc(why)
                            );
                        }
                    }
                }
                let _ = writeln!(body, "  </testsuite>");
            }
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"repoint\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">\n{body}</testsuites>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> ImageRef {
        ImageRef::parse(s).expect("image")
    }

    #[test]
    fn pinned_probes_prefer_the_exact_pin_and_answer_unknown_otherwise() {
        let probes = PinnedProbes(vec![
            (image("quay.io/org/api"), ProbeAnswer::NeedsAuth),
            (image("quay.io/org/api:public"), ProbeAnswer::Anonymous),
        ]);
        assert_eq!(
            probes.probe(&image("quay.io/org/api:1.0")),
            ProbeAnswer::NeedsAuth
        );
        assert_eq!(
            probes.probe(&image("quay.io/org/api:public")),
            ProbeAnswer::Anonymous
        );
        assert_eq!(
            probes.probe(&image("quay.io/org/web")),
            ProbeAnswer::Unknown
        );
    }

    #[test]
    fn junit_escapes_and_counts() {
        let results = vec![SuiteResult {
            path: "p/repoint-test.yaml".into(),
            name: "p".into(),
            outcome: Ok(vec![
                CaseResult {
                    name: "a <b>".into(),
                    failure: None,
                    time: Duration::from_millis(1),
                },
                CaseResult {
                    name: "c".into(),
                    failure: Some("expected \"x\" & got y".into()),
                    time: Duration::from_millis(2),
                },
            ]),
        }];
        let xml = junit_report(&results);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("name=\"a &lt;b&gt;\""), "{xml}");
        assert!(xml.contains("expected &quot;x&quot; &amp; got y"), "{xml}");
    }
}
