//! `repoint audit` and `repoint apply`: the chain on a live cluster's
//! workloads. Listing and writing live in `repoint-kube`; this is the
//! glue: evaluate, report, and write in a safe order (pull Secrets, then
//! ServiceAccounts, then the workloads that need them).

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use repoint_config::Config;
use repoint_core::patch::PatchOp;
use repoint_kube::KubeError;
use repoint_kube::inventory::{self, LiveObject, Selection};
use repoint_kube::write::{Writer, Written};
use repoint_runtime::chain::{Chain, Origin};
use serde_json::Value;

use repoint_pipeline::materialize::{self, PullSecretSource};
use repoint_pipeline::report::{self, Finding, Level, Place, Status};
use repoint_pipeline::{ObjectMeta, ObjectResult, chain};

use crate::args::{ApplyArgs, AuditArgs, CheckFormat, ClusterArgs, DryRun, EvalOptions};

/// A connected cluster and a loaded chain.
struct Session {
    config: Config,
    chain: Chain,
    client: repoint_kube::Client,
    tokio: tokio::runtime::Runtime,
    jobs: usize,
}

/// An object as listed and what the chain made of it.
struct Evaluated {
    object: LiveObject,
    result: ObjectResult,
}

impl Evaluated {
    /// `team-a/deployment.apps/web`: where findings about it point.
    fn location(&self) -> String {
        match self.object.namespace() {
            Some(ns) => format!("{ns}/{}", self.object.display_name()),
            None => self.object.display_name(),
        }
    }
}

fn connect(
    config_path: &std::path::Path,
    cluster: &ClusterArgs,
    eval: &EvalOptions,
) -> Result<Session> {
    let config = Config::load(config_path)?;
    let settings = eval.settings();
    let chain = chain::build(&config, &settings, false)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = tokio.block_on(repoint_kube::connect(&cluster.connection.target()))?;
    Ok(Session {
        config,
        chain,
        client,
        tokio,
        jobs: settings.jobs(),
    })
}

/// A count on stderr that updates in place, when stderr is a terminal.
struct Progress {
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            shown: std::io::stderr().is_terminal(),
        }
    }

    fn update(&self, text: &str) {
        if self.shown {
            eprint!("\r\x1b[2K{text}");
            let _ = std::io::stderr().flush();
        }
    }

    fn done(&self) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
    }
}

/// List every kind, then evaluate every object with `jobs` threads.
fn inventory_and_evaluate(
    session: &Session,
    cluster: &ClusterArgs,
) -> Result<(Vec<Evaluated>, usize)> {
    let custom: Vec<(String, String)> = session
        .config
        .file
        .image_fields
        .iter()
        .map(|f| (f.group.clone(), f.kind.clone()))
        .collect();
    let selection = Selection {
        namespace: cluster.namespace.clone(),
        selector: cluster.selector.clone(),
        page_size: cluster.chunk_size,
    };
    let progress = Progress::new();
    let objects = session.tokio.block_on(async {
        let (kinds, warnings) = inventory::kinds(&session.client, &custom).await?;
        for w in warnings {
            eprintln!("repoint: warning: {w}");
        }
        let mut objects = Vec::new();
        for kind in &kinds {
            let before = objects.len();
            let listed = inventory::list(&session.client, kind, &selection, |n| {
                progress.update(&format!(
                    "listing {}: {}",
                    kind.group_resource(),
                    before + n
                ));
            })
            .await?;
            objects.extend(listed);
        }
        Ok::<_, KubeError>(objects)
    })?;
    progress.done();
    let (objects, skipped) = if cluster.include_owned {
        (objects, 0)
    } else {
        inventory::without_owned(objects)
    };
    let total = objects.len();
    let outcomes = repoint_core::parallel::map(&objects, session.jobs, |i, object| {
        if i.is_multiple_of(64) {
            progress.update(&format!("evaluating: {i}/{total}"));
        }
        session
            .chain
            .evaluate(&object.value, &Origin::Cluster)
            .transpose()
    });
    progress.done();
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

fn findings_of(evaluated: &[Evaluated]) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in evaluated {
        let location = e.location();
        let place = Place {
            file: &location,
            document: 0,
            value: &e.object.value,
            line_of: &|_| 0,
        };
        report::object_findings(&place, &e.result, &mut out);
    }
    out
}

/// Counts per namespace and per policy, printed after the findings.
fn write_summary(
    out: &mut impl std::io::Write,
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

pub fn audit(args: &AuditArgs) -> Result<ExitCode> {
    let session = connect(&args.config, &args.cluster, &args.eval)?;
    let (evaluated, skipped) = inventory_and_evaluate(&session, &args.cluster)?;
    let findings = findings_of(&evaluated);
    let mut stdout = std::io::stdout().lock();
    match args.format {
        CheckFormat::Text => {
            report::write_text(&mut stdout, &findings)?;
            write_summary(&mut stdout, &findings, evaluated.len(), skipped)?;
        }
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &findings)?;
            writeln!(stdout)?;
        }
        CheckFormat::Sarif => {
            serde_json::to_writer_pretty(&mut stdout, &report::sarif(&findings))?;
            writeln!(stdout)?;
        }
        CheckFormat::Github => report::write_github(&mut stdout, &findings)?,
    }
    if args.format != CheckFormat::Text {
        write_summary(
            &mut std::io::stderr().lock(),
            &findings,
            evaluated.len(),
            skipped,
        )?;
    }
    Ok(crate::run::exit_code(Status::of(&findings, true)))
}

/// What `apply` did so far: one line per change on stdout, errors and
/// denials on stderr, and the counts the exit code comes from.
struct Tally<'w> {
    out: std::io::StdoutLock<'w>,
    dry_run: DryRun,
    changed: usize,
    errors: usize,
    denied: usize,
}

impl Tally<'_> {
    fn error(&mut self, e: &dyn std::fmt::Display) {
        eprintln!("repoint: error: {e}");
        self.errors += 1;
    }

    /// `what` (`secret/x in ns`) was written, or would be.
    fn changed(&mut self, what: &str, verb: &str) -> std::io::Result<()> {
        self.changed += 1;
        let tail = match self.dry_run {
            DryRun::None => "",
            DryRun::Server => " (server dry run)",
            DryRun::Client => " (dry run)",
        };
        writeln!(self.out, "{what} {verb}{tail}")
    }

    /// Report one write's result; the operations of a patch come back.
    fn record(
        &mut self,
        what: &str,
        result: Result<Written, KubeError>,
    ) -> std::io::Result<Vec<PatchOp>> {
        match result {
            Ok(Written::Unchanged) => {}
            Ok(Written::Created) => self.changed(what, "created")?,
            Ok(Written::Updated) => self.changed(what, "updated")?,
            Ok(Written::Patched(ops)) => {
                self.changed(what, "patched")?;
                return Ok(ops);
            }
            Err(e) => self.error(&e),
        }
        Ok(Vec::new())
    }
}

/// `name in ns`, or `name` for a cluster-scoped object.
fn qualified(name: String, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{name} in {ns}"),
        None => name,
    }
}

pub fn apply(args: &ApplyArgs) -> Result<ExitCode> {
    if !args.cluster.cluster {
        bail!(
            "apply changes live objects; pass --cluster to say so (or run `repoint run` on files)"
        );
    }
    let session = connect(&args.config, &args.cluster, &args.eval)?;
    let (evaluated, _) = inventory_and_evaluate(&session, &args.cluster)?;
    let mut writer = Writer::new(session.client.clone(), args.dry_run == DryRun::Server);
    writer.field_manager = args.field_manager.clone();
    let client_only = args.dry_run == DryRun::Client;
    let mut tally = Tally {
        out: std::io::stdout().lock(),
        dry_run: args.dry_run,
        changed: 0,
        errors: 0,
        denied: 0,
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
        let source = secret_source(&session, &writer)?;
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
                    tally.error(&e);
                    false
                }
                Ok(Some(_)) if client_only => {
                    tally.changed(&what, "ensured")?;
                    true
                }
                Ok(Some(desired)) => {
                    let written = session.tokio.block_on(writer.ensure_secret(ns, &desired));
                    let made = written.is_ok();
                    tally.record(&what, written)?;
                    made
                }
            };
            if !made {
                unmade.insert(wanted.key.clone());
            }
        }
        for w in warnings {
            eprintln!("repoint: warning: {w}");
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
            tally.changed(&what, &format!("lists {}", secrets.join(", ")))?;
            continue;
        }
        let written = session
            .tokio
            .block_on(writer.ensure_account_pull_secrets(ns, account, &secrets));
        tally.record(&what, written)?;
    }

    // 3. The workloads themselves, each only once the pull secrets it
    // needs exist: its pods keep pulling from where they did until then.
    for e in &evaluated {
        let outcome = match &e.result.outcome {
            Ok(o) => o,
            Err(err) => {
                tally.error(&format!("{}: {err}", e.location()));
                continue;
            }
        };
        for d in &outcome.denials {
            tally.denied += 1;
            eprintln!(
                "repoint: denied: {}: [{}] {}",
                e.location(),
                d.policy,
                d.message
            );
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
            tally.changed(&what, "patched")?;
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
        for op in tally.record(&what, written)? {
            let new = op.value.as_ref().map(short).unwrap_or_default();
            match e.object.value.pointer(&op.path) {
                Some(old) => writeln!(tally.out, "  {}: {} -> {new}", op.path, short(old))?,
                None => writeln!(tally.out, "  {}: + {new}", op.path)?,
            }
        }
    }
    if tally.changed == 0 && tally.errors == 0 {
        writeln!(tally.out, "nothing to change")?;
    }
    Ok(if tally.errors > 0 {
        ExitCode::from(2)
    } else if tally.denied > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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
        .ok_or_else(|| anyhow::anyhow!("secretFrom: Secret {ns}/{name} does not exist"))?;
    let config_json = repoint_credentials::dockerconfigjson_of(&secret)
        .map_err(|reason| anyhow::anyhow!("secretFrom: Secret {ns}/{name}: {reason}"))?;
    Ok(PullSecretSource::Copied(config_json))
}
