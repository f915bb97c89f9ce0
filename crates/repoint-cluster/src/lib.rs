//! The chain on a live cluster (`repoint audit` and `repoint apply`): list
//! every kind policies are consulted about, evaluate every object in
//! parallel, report the findings, and write the changes in a safe order:
//! pull Secrets first, then the ServiceAccounts that list them, then the
//! workloads, each workload only once the Secrets it needs exist (its pods
//! keep pulling from where they did until then).
//!
//! Also what a config's `reconcile:` section asks the reconciler for
//! ([`reconcile_spec`]).
//!
//! Listing and writing are `repoint-kube`'s; findings and pull Secrets are
//! the pipeline's (`repoint-pipeline`), the same as for files. What the
//! terminal shows is the caller's: [`Session::evaluate`] reports progress
//! through a callback and [`apply`] reports each write to an [`Applied`].
//!
//! Depends on repoint-kube, repoint-pipeline, repoint-config,
//! repoint-credentials, repoint-core and repoint-runtime, and on tokio
//! (the runtime the kube client needs).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use std::time::Duration;

use repoint_config::{Config, MissingCredentials};
use repoint_core::patch::PatchOp;
use repoint_kube::KubeError;
use repoint_kube::inventory::{self, LiveObject, Selection};
use repoint_kube::reconcile::{DEFAULT_EXCLUDED, Source, Spec};
use repoint_kube::write::{Writer, Written};
use repoint_pipeline::materialize::{self, PullSecretSource};
use repoint_pipeline::report::{self, Finding, Level, Place};
use repoint_pipeline::{ObjectMeta, ObjectResult, Settings, chain};
use repoint_runtime::chain::{Chain, Origin};
use serde_json::Value;

/// Why a cluster command could not run (per-object problems are
/// findings, or [`Applied::error`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config, its policies, or a pull Secret's source.
    #[error(transparent)]
    Pipeline(#[from] repoint_pipeline::Error),
    /// The config could not be read.
    #[error(transparent)]
    Config(#[from] repoint_config::ConfigError),
    /// Connecting, discovery or listing failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The async runtime could not start.
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    /// The config has no `reconcile:` section.
    #[error("{0}: no `reconcile:` section (it names the pull Secret to keep in place)")]
    NoReconcile(String),
    /// `secretFrom` names neither a file nor a Secret.
    #[error("secretFrom: give `file`, or `namespace` and `name`")]
    SecretFromIncomplete,
    /// No configured registry has credentials.
    #[error("reconcile: no credentials could be found for any registry")]
    NoCredentials,
    /// `secretFrom` names a Secret that is not there.
    #[error("secretFrom: Secret {namespace}/{name} does not exist")]
    SecretFromMissing { namespace: String, name: String },
    /// `secretFrom` names a Secret that is not a usable pull Secret.
    #[error("secretFrom: Secret {namespace}/{name}: {reason}")]
    SecretFrom {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connected cluster and a loaded chain.
pub struct Session {
    pub config: Config,
    pub chain: Chain,
    client: repoint_kube::Client,
    tokio: tokio::runtime::Runtime,
    jobs: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("chain", &self.chain)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub selection: Selection,
    /// Also evaluate objects whose controller is evaluated too.
    pub include_owned: bool,
}

/// An object as listed and what the chain made of it.
#[derive(Debug)]
pub struct Evaluated {
    pub object: LiveObject,
    pub result: ObjectResult,
}

impl Evaluated {
    /// `team-a/deployment.apps/web`: where findings about it point.
    pub fn location(&self) -> String {
        match self.object.namespace() {
            Some(ns) => format!("{ns}/{}", self.object.display_name()),
            None => self.object.display_name(),
        }
    }
}

/// How far [`Session::evaluate`] got, for a progress line.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Listing a kind (`group/resource`), `n` objects listed in all.
    Listing(&'a str, usize),
    /// Discovery found something to say (a kind the server does not
    /// serve, say).
    Warning(&'a str),
    /// Evaluating the `done`th of `total` objects.
    Evaluating { done: usize, total: usize },
    /// Finished.
    Done,
}

impl Session {
    /// Load the config and its chain (bad settings fail before any
    /// connection), then connect as kubectl would.
    pub fn connect(
        config_path: &Path,
        target: &repoint_kube::Target,
        settings: &Settings,
    ) -> Result<Self> {
        let config = Config::load(config_path)?;
        let chain = chain::build(&config, settings, false)?;
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let client = tokio.block_on(repoint_kube::connect(target))?;
        Ok(Self {
            config,
            chain,
            client,
            tokio,
            jobs: settings.jobs(),
        })
    }

    /// List every kind, then evaluate every object in parallel; returns
    /// the evaluated objects and how many owned objects were skipped.
    pub fn evaluate(
        &self,
        scope: &Scope,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<(Vec<Evaluated>, usize)> {
        let custom: Vec<(String, String)> = self
            .config
            .file
            .image_fields
            .iter()
            // Built-in workload kinds are listed anyway; an entry for one
            // only adds image fields.
            .filter(|f| repoint_core::sites::pod_spec_path_in_group(&f.group, &f.kind).is_none())
            .map(|f| (f.group.clone(), f.kind.clone()))
            .collect();
        let objects = self.tokio.block_on(async {
            let (kinds, warnings) = inventory::kinds(&self.client, &custom).await?;
            for w in &warnings {
                progress(Progress::Warning(w));
            }
            let mut objects = Vec::new();
            for kind in &kinds {
                let before = objects.len();
                let resource = kind.group_resource();
                let listed = inventory::list(&self.client, kind, &scope.selection, |n| {
                    progress(Progress::Listing(&resource, before + n));
                })
                .await?;
                objects.extend(listed);
            }
            Ok::<_, KubeError>(objects)
        })?;
        progress(Progress::Done);
        let (objects, skipped) = if scope.include_owned {
            (objects, 0)
        } else {
            inventory::without_owned(objects)
        };
        let total = objects.len();
        let outcomes = repoint_core::parallel::map(&objects, self.jobs, |i, object| {
            if i.is_multiple_of(64) {
                progress(Progress::Evaluating { done: i, total });
            }
            self.chain
                .evaluate(&object.value, &Origin::Cluster)
                .transpose()
        });
        progress(Progress::Done);
        let evaluated = objects
            .into_iter()
            .zip(outcomes)
            .filter_map(|(object, outcome)| {
                let outcome = outcome?;
                let result = ObjectResult {
                    prefix: String::new(),
                    meta: ObjectMeta::of(&object.value),
                    line: 0,
                    outcome,
                };
                Some(Evaluated { object, result })
            })
            .collect();
        Ok((evaluated, skipped))
    }
}

/// The findings about evaluated objects, located by object.
pub fn findings(evaluated: &[Evaluated]) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in evaluated {
        let location = e.location();
        let place = Place {
            file: &location,
            document: 0,
            value: &e.object.value,
            line_of: &|_| 0,
        };
        report::object_findings(&place, &e.result, true, &mut out);
    }
    out
}

/// Counts per namespace and per policy, printed after the findings.
pub fn write_summary(
    out: &mut dyn std::io::Write,
    findings: &[Finding],
    objects: usize,
    skipped: usize,
) -> std::io::Result<()> {
    #[derive(Default)]
    struct Counts([usize; 4]);
    let column = |l: Level| match l {
        Level::Change => 0,
        Level::Denied => 1,
        Level::Warning => 2,
        Level::Error => 3,
    };
    let mut by_namespace: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_policy: BTreeMap<String, Counts> = BTreeMap::new();
    // Changes count once per object, however many fields change.
    let mut seen = HashSet::new();
    for f in findings {
        if f.level == Level::Change && !seen.insert(f.file.clone()) {
            continue;
        }
        let ns = f.namespace.clone().unwrap_or_else(|| "(cluster)".into());
        by_namespace.entry(ns).or_default().0[column(f.level)] += 1;
        for policy in f.policy.iter().flat_map(|p| p.split(", ")) {
            by_policy.entry(policy.to_string()).or_default().0[column(f.level)] += 1;
        }
    }
    writeln!(
        out,
        "{objects} objects evaluated ({skipped} owned by an evaluated controller skipped)"
    )?;
    for (title, table) in [("NAMESPACE", &by_namespace), ("POLICY", &by_policy)] {
        if table.is_empty() {
            continue;
        }
        let width = table
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(title.len());
        writeln!(out, "{title:width$}  CHANGE  DENIED  WARNING  ERROR")?;
        for (name, Counts(c)) in table {
            writeln!(
                out,
                "{name:width$}  {:>6}  {:>6}  {:>7}  {:>5}",
                c[0], c[1], c[2], c[3]
            )?;
        }
    }
    Ok(())
}

/// How [`apply`] writes.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Send every write with `dryRun=All`.
    pub server_dry_run: bool,
    /// Send nothing; say what would be written.
    pub client_dry_run: bool,
    /// The field manager writes are recorded under.
    pub field_manager: String,
}

/// What [`apply`] tells its caller as it goes.
pub trait Applied {
    /// `what` (`secret/x in ns`) was written, or would be, as `verb`
    /// (`created`, `patched`, `lists a, b`).
    fn changed(&mut self, what: &str, verb: &str);
    /// One operation of a patch just sent: the old value, if any, and
    /// the new.
    fn operation(&mut self, path: &str, old: Option<&Value>, new: Option<&Value>);
    /// Something could not be written (the run fails).
    fn error(&mut self, message: &str);
    /// A policy denied an object (the run has findings).
    fn denied(&mut self, location: &str, policy: &str, message: &str);
    /// A problem that is not an error (a left-out credential).
    fn warning(&mut self, message: &str);
}

/// What an apply came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub changed: usize,
    pub errors: usize,
    pub denied: usize,
}

impl Tally {
    /// The status this calls for: errors, else denials, else clean.
    pub fn status(&self) -> repoint_pipeline::Status {
        use repoint_pipeline::Status;
        if self.errors > 0 {
            Status::Error
        } else if self.denied > 0 {
            Status::Findings
        } else {
            Status::Clean
        }
    }
}

/// Counts what it passes on.
struct Counting<'a> {
    inner: &'a mut dyn Applied,
    tally: Tally,
}

impl Counting<'_> {
    fn changed(&mut self, what: &str, verb: &str) {
        self.tally.changed += 1;
        self.inner.changed(what, verb);
    }

    fn error(&mut self, message: &str) {
        self.tally.errors += 1;
        self.inner.error(message);
    }

    /// Report one write's result; the operations of a patch come back.
    fn record(&mut self, what: &str, result: Result<Written, KubeError>) -> Vec<PatchOp> {
        match result {
            Ok(Written::Unchanged) => {}
            Ok(Written::Created) => self.changed(what, "created"),
            Ok(Written::Updated) => self.changed(what, "updated"),
            Ok(Written::Patched(ops)) => {
                self.changed(what, "patched");
                return ops;
            }
            Err(e) => self.error(&e.to_string()),
        }
        Vec::new()
    }
}

/// `name in ns`, or `name` for a cluster-scoped object.
fn qualified(name: String, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{name} in {ns}"),
        None => name,
    }
}

/// Write what the chain decided about `evaluated`, in the safe order (see
/// the crate doc), telling `applied` of each step.
pub fn apply(
    session: &Session,
    evaluated: &[Evaluated],
    options: &ApplyOptions,
    applied: &mut dyn Applied,
) -> Result<Tally> {
    let mut writer = Writer::new(session.client.clone(), options.server_dry_run);
    writer.field_manager = options.field_manager.clone();
    let client_only = options.client_dry_run;
    let mut tally = Counting {
        inner: applied,
        tally: Tally::default(),
    };
    let outcomes = || {
        evaluated.iter().filter_map(|e| {
            let outcome = e.result.outcome.as_ref().ok()?;
            Some((0, e.object.namespace(), outcome))
        })
    };

    // 1. The pull Secrets objects asked for, once per namespace and name.
    // Those that could not be made hold back what needs them, below.
    let mut unmade: HashSet<(String, String)> = HashSet::new();
    let secrets = materialize::gather(outcomes(), "default", materialize::secret_requests);
    if !secrets.is_empty() {
        let source = secret_source(session, &writer)?;
        let mut warnings = Vec::new();
        for wanted in &secrets {
            let (ns, name) = &wanted.key;
            let what = qualified(format!("secret/{name}"), Some(ns));
            let built = materialize::pull_secret(
                &session.config,
                &source,
                ns,
                name,
                &wanted.items,
                &mut warnings,
            );
            let made = match built {
                Ok(None) => true,
                Err(e) => {
                    tally.error(&repoint_core::error_chain(&e));
                    false
                }
                Ok(Some(_)) if client_only => {
                    tally.changed(&what, "ensured");
                    true
                }
                Ok(Some(desired)) => {
                    let written = session.tokio.block_on(writer.ensure_secret(ns, &desired));
                    let made = written.is_ok();
                    tally.record(&what, written);
                    made
                }
            };
            if !made {
                unmade.insert(wanted.key.clone());
            }
        }
        for w in warnings {
            tally.inner.warning(&w);
        }
    }
    // The pull secrets of `outcome` in `namespace` that could not be made.
    let missing_secrets = |namespace: Option<&str>, outcome| -> Vec<String> {
        materialize::gather(
            [(0, namespace, outcome)],
            "default",
            materialize::secret_requests,
        )
        .into_iter()
        .filter(|w| unmade.contains(&w.key))
        .map(|w| qualified(format!("secret/{}", w.key.1), Some(&w.key.0)))
        .collect()
    };

    // 2. ServiceAccounts that must list a pull secret (one that exists).
    for wanted in materialize::gather(outcomes(), "default", materialize::account_requests) {
        let (ns, account) = &wanted.key;
        let what = qualified(format!("serviceaccount/{account}"), Some(ns));
        let (secrets, held): (Vec<String>, Vec<String>) = wanted
            .items
            .iter()
            .cloned()
            .partition(|secret| !unmade.contains(&(ns.clone(), secret.clone())));
        if !held.is_empty() {
            tally.error(&format!(
                "{what}: not made to list {}: the Secret could not be made (above)",
                held.join(", ")
            ));
        }
        if secrets.is_empty() {
            continue;
        }
        if client_only {
            tally.changed(&what, &format!("lists {}", secrets.join(", ")));
            continue;
        }
        let written = session
            .tokio
            .block_on(writer.ensure_account_pull_secrets(ns, account, &secrets));
        tally.record(&what, written);
    }

    // 3. The workloads themselves, each only once the pull secrets it
    // needs exist: its pods keep pulling from where they did until then.
    for e in evaluated {
        let outcome = match &e.result.outcome {
            Ok(o) => o,
            Err(err) => {
                tally.error(&format!("{}: {err}", e.location()));
                continue;
            }
        };
        for d in &outcome.denials {
            tally.tally.denied += 1;
            tally.inner.denied(&e.location(), &d.policy, &d.message);
        }
        if outcome.patch.is_empty() {
            continue;
        }
        if e.object.kind.resource.kind == "Pod" && !only_images(&outcome.patch) {
            tally.error(&format!(
                "{}: a running Pod may change only its images; recreate it (or fix the controller that owns it) to apply the rest",
                e.location()
            ));
            continue;
        }
        let missing = missing_secrets(e.object.namespace(), outcome);
        if !missing.is_empty() {
            tally.error(&format!(
                "{}: not patched: it needs {}, which repoint could not make or bring up to date (above); until then the workload keeps its images",
                e.location(),
                missing.join(", ")
            ));
            continue;
        }
        let namespace = e.object.namespace();
        let what = qualified(e.object.display_name(), namespace);
        if client_only {
            tally.changed(&what, "patched");
            continue;
        }
        let mut first = Some(outcome.patch.clone());
        let written = session.tokio.block_on(writer.patch_guarded(
            &e.object.kind,
            namespace,
            e.object.name(),
            Some(e.object.value.clone()),
            |current| {
                match first.take() {
                    Some(ops) => Ok(ops),
                    // The object changed since it was listed: evaluate again.
                    None => session
                        .chain
                        .evaluate(current, &Origin::Cluster)
                        .map(|o| o.map(|o| o.patch).unwrap_or_default())
                        .map_err(|err| KubeError::Evaluation(err.to_string())),
                }
            },
        ));
        for op in tally.record(&what, written) {
            tally.inner.operation(
                &op.path,
                repoint_core::pointer::get(&e.object.value, &op.path),
                op.value.as_ref(),
            );
        }
    }
    Ok(tally.tally)
}

/// Whether every operation changes a container image: all a running Pod
/// allows.
fn only_images(ops: &[PatchOp]) -> bool {
    ops.iter().all(|op| {
        let parts: Vec<&str> = op.path.split('/').collect();
        matches!(
            parts.as_slice(),
            [
                "",
                "spec",
                "containers" | "initContainers" | "ephemeralContainers",
                _,
                "image"
            ]
        )
    })
}

/// Where pull Secrets' contents come from: `secretFrom` (a file, or a
/// Secret in the cluster) or the configured credentials.
fn secret_source(session: &Session, writer: &Writer) -> Result<PullSecretSource> {
    let Some(from) = &session.config.file.secret_from else {
        return Ok(PullSecretSource::Credentials(
            session.config.credential_sources()?,
        ));
    };
    if let Some(file) = &from.file {
        return Ok(PullSecretSource::Copied(materialize::secret_from_file(
            &session.config,
            file,
        )?));
    }
    let (ns, name) = (
        from.namespace.as_deref().unwrap_or_default(),
        from.name.as_deref().unwrap_or_default(),
    );
    let kind = inventory::builtin("", "Secret", "secrets");
    let secret = session
        .tokio
        .block_on(writer.get(&kind, Some(ns), name))?
        .ok_or_else(|| Error::SecretFromMissing {
            namespace: ns.to_string(),
            name: name.to_string(),
        })?;
    let config_json =
        repoint_credentials::dockerconfigjson_of(&secret).map_err(|e| Error::SecretFrom {
            namespace: ns.to_string(),
            name: name.to_string(),
            reason: e.to_string(),
        })?;
    Ok(PullSecretSource::Copied(config_json))
}

/// What the config's `reconcile:` section asks for (`repoint controller`,
/// `repoint serve --reconcile`), its contents read now unless they come
/// from a Secret in the cluster (followed live); with the warnings of
/// credentials left out under `missingCredentials: warn`.
pub fn reconcile_spec(config: &Config) -> Result<(Spec, Vec<String>)> {
    let entry = config
        .file
        .reconcile
        .as_ref()
        .ok_or_else(|| Error::NoReconcile(config.name().to_string()))?;
    let registries: Vec<String> = entry
        .registries
        .iter()
        .map(|r| repoint_credentials::registry_key(r))
        .collect();
    let mut warnings = Vec::new();
    let (source, registries) = match &config.file.secret_from {
        Some(from) => match (&from.file, &from.namespace, &from.name) {
            (Some(file), _, _) => (
                Source::Fixed(materialize::secret_from_file(config, file)?),
                registries,
            ),
            (None, Some(namespace), Some(name)) => (
                Source::Secret {
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                registries,
            ),
            _ => return Err(Error::SecretFromIncomplete),
        },
        None => {
            let sources = config.credential_sources()?;
            let mut wanted = registries;
            if wanted.is_empty() {
                for (registry, _) in &sources {
                    if !wanted.contains(registry) {
                        wanted.push(registry.clone());
                    }
                }
            }
            let contents = materialize::pull_secret_contents(
                config,
                &PullSecretSource::Credentials(sources),
                "(each namespace)",
                &entry.secret_name,
                &wanted,
                &mut warnings,
            )?;
            let contents = contents.ok_or(Error::NoCredentials)?;
            // Checked against `credentials` just now.
            (Source::Fixed(contents), Vec::new())
        }
    };
    let spec = Spec {
        secret_name: entry.secret_name.clone(),
        source,
        registries,
        registries_required: config.file.missing_credentials == MissingCredentials::Error,
        namespace_selector: entry.namespace_selector.clone(),
        exclude_namespaces: entry
            .exclude_namespaces
            .clone()
            .unwrap_or_else(|| DEFAULT_EXCLUDED.map(String::from).to_vec()),
        service_accounts: entry.accounts(),
        resync: entry.resync.unwrap_or(Duration::from_secs(600)),
        retry: Duration::from_secs(10),
    };
    Ok((spec, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use repoint_core::patch::PatchOp;
    use serde_json::json;

    #[test]
    fn a_running_pod_may_change_only_its_images() {
        let image = |path: &str| PatchOp::replace(path, json!("x"));
        assert!(only_images(&[
            image("/spec/containers/0/image"),
            image("/spec/initContainers/1/image"),
            image("/spec/ephemeralContainers/0/image"),
        ]));
        assert!(!only_images(&[image("/spec/imagePullSecrets")]));
        assert!(!only_images(&[image("/spec/containers/0/env")]));
    }

    #[test]
    fn the_status_of_a_tally() {
        use repoint_pipeline::Status;
        let t = |changed, errors, denied| Tally {
            changed,
            errors,
            denied,
        };
        assert_eq!(t(3, 0, 0).status(), Status::Clean);
        assert_eq!(t(0, 0, 1).status(), Status::Findings);
        assert_eq!(t(0, 1, 1).status(), Status::Error);
    }
}
