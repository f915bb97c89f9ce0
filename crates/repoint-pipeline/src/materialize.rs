//! Requests that reach beyond the evaluated objects: ServiceAccounts that
//! must list a pull secret. An account present in the input is patched in
//! place; one that is not is emitted as a new document after the inputs.

use std::collections::{BTreeMap, HashMap};

use repoint_core::patch::PatchOp;
use repoint_core::sites;
use serde_json::Value;

use repoint_runtime::chain::Outcome;

use crate::evaluate::{FileResult, ObjectResult};
use crate::{Error, Result};

/// Changes beyond the evaluated objects.
#[derive(Debug, Default)]
pub struct Generated {
    /// Extra operations on input documents: (file, document, ops).
    pub patches: Vec<(usize, usize, Vec<PatchOp>)>,
    /// New objects, each with the index of the file whose object asked for it.
    pub documents: Vec<(usize, Value)>,
}

impl Generated {
    /// Extra operations for one file's documents.
    pub fn patches_for(&self, file: usize) -> impl Iterator<Item = (usize, &Vec<PatchOp>)> {
        self.patches
            .iter()
            .filter(move |(f, _, _)| *f == file)
            .map(|(_, d, ops)| (*d, ops))
    }
}

/// A request for an object beyond the evaluated ones, by (namespace, name).
#[derive(Debug)]
pub struct Wanted<T> {
    /// The object's namespace and name.
    pub key: (String, String),
    /// The file whose object asked first (generated objects go after it).
    pub requester: usize,
    /// What all requests for it asked for, in order, without repeats.
    pub items: Vec<T>,
}

/// A request `pick` finds in an outcome: (namespace, name, item).
pub type Request<T> = (Option<String>, String, T);

/// Group the requests `pick` finds in each outcome by the namespace and
/// name of the object they ask for, in first-seen order. `outcomes` gives
/// (requesting file, the evaluated object's namespace, its outcome); a
/// request without a namespace gets its object's, or `default_namespace`.
pub fn gather<'o, T: PartialEq>(
    outcomes: impl IntoIterator<Item = (usize, Option<&'o str>, &'o Outcome)>,
    default_namespace: &str,
    pick: impl Fn(&Outcome) -> Vec<Request<T>>,
) -> Vec<Wanted<T>> {
    let mut gathered = Gathered::default();
    for (requester, own_namespace, outcome) in outcomes {
        gathered.add(requester, own_namespace, default_namespace, pick(outcome));
    }
    gathered.wanted
}

/// [`gather`], one outcome at a time: what the requests so far ask for.
#[derive(Debug)]
pub struct Gathered<T> {
    wanted: Vec<Wanted<T>>,
    /// Where each (namespace, name) is in `wanted`.
    at: HashMap<(String, String), usize>,
}

impl<T> Default for Gathered<T> {
    fn default() -> Self {
        Self {
            wanted: Vec::new(),
            at: HashMap::new(),
        }
    }
}

impl<T: PartialEq> Gathered<T> {
    /// Add one outcome's requests (see [`gather`]).
    pub fn add(
        &mut self,
        requester: usize,
        own_namespace: Option<&str>,
        default_namespace: &str,
        requests: Vec<Request<T>>,
    ) {
        for (ns, name, item) in requests {
            let ns = ns
                .or_else(|| own_namespace.map(String::from))
                .unwrap_or_else(|| default_namespace.to_string());
            let key = (ns, name);
            let at = match self.at.get(&key) {
                Some(&i) => i,
                None => {
                    self.at.insert(key.clone(), self.wanted.len());
                    self.wanted.push(Wanted {
                        key,
                        requester,
                        items: Vec::new(),
                    });
                    self.wanted.len() - 1
                }
            };
            if !self.wanted[at].items.contains(&item) {
                self.wanted[at].items.push(item);
            }
        }
    }
}

/// What the evaluated objects of a run ask for beyond themselves, gathered
/// as they are evaluated (their results need not be kept for it).
#[derive(Debug, Default)]
pub struct Requests {
    /// `patch-service-account`: (namespace, account) to secrets.
    pub accounts: Gathered<String>,
    /// `ensure-pull-secret`: (namespace, secret) to registries.
    pub secrets: Gathered<String>,
}

impl Requests {
    /// Add what the evaluated objects of file `requester` ask for (those
    /// without a namespace are in `default_namespace`).
    pub fn add_results(
        &mut self,
        requester: usize,
        objects: &[ObjectResult],
        default_namespace: &str,
    ) {
        for object in objects {
            let Ok(outcome) = &object.outcome else {
                continue;
            };
            let own_namespace = object.meta.namespace.as_deref();
            let (accounts, secrets) = (account_requests(outcome), secret_requests(outcome));
            self.accounts
                .add(requester, own_namespace, default_namespace, accounts);
            self.secrets
                .add(requester, own_namespace, default_namespace, secrets);
        }
    }
}

/// `patch-service-account` requests: (namespace, account, secret).
pub fn account_requests(outcome: &Outcome) -> Vec<Request<String>> {
    outcome
        .service_accounts
        .iter()
        .map(|r| {
            let name = r
                .item
                .service_account
                .clone()
                .unwrap_or_else(|| "default".into());
            (r.item.namespace.clone(), name, r.item.secret.clone())
        })
        .collect()
}

/// `ensure-pull-secret` requests: (namespace, secret, registry), one per
/// registry, registries normalized as docker names them.
pub fn secret_requests(outcome: &Outcome) -> Vec<Request<String>> {
    outcome
        .ensure
        .iter()
        .flat_map(|r| {
            r.item.registries.iter().map(|reg| {
                (
                    r.item.namespace.clone(),
                    r.item.name.clone(),
                    repoint_credentials::registry_key(reg),
                )
            })
        })
        .collect()
}

/// Turn `patch-service-account` requests into patches of existing
/// ServiceAccounts or new ones. Objects without a namespace are in
/// `default_namespace`.
pub fn service_accounts(
    files: &[FileResult],
    wanted: Gathered<String>,
    default_namespace: &str,
) -> Generated {
    let wanted = wanted.wanted;
    let mut generated = Generated::default();
    let existing = index_objects(files, "ServiceAccount", default_namespace);
    for Wanted {
        key,
        requester,
        items: secrets,
    } in &wanted
    {
        match existing.get(key) {
            Some(Found {
                file: f,
                document: d,
                prefix,
                value: existing,
            }) => {
                let ops = repoint_core::actions::pull_secret_additions(
                    existing,
                    "/imagePullSecrets",
                    secrets,
                )
                .into_iter()
                .map(|op| PatchOp {
                    path: format!("{prefix}{}", op.path),
                    ..op
                })
                .collect::<Vec<_>>();
                if ops.is_empty() {
                    continue;
                }
                generated.patches.push((*f, *d, ops));
            }
            None => generated.documents.push((
                *requester,
                repoint_core::actions::service_account(&key.0, &key.1, secrets),
            )),
        }
    }
    generated
}

/// The warning for ServiceAccounts written whole: `imagePullSecrets` is an
/// atomic list, so `kubectl apply` over a live account makes it exactly
/// this list, dropping entries the cluster added
/// (OpenShift's `default-dockercfg-*`). `repoint apply` adds to the live
/// list instead (crates/repoint-cli/tests/cluster.rs shows both).
pub fn whole_accounts_warning(generated: &Generated) -> Option<String> {
    let accounts: Vec<String> = generated
        .documents
        .iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
        .map(|doc| {
            let meta = |key: &str| {
                doc["metadata"][key]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            qualified(&meta("namespace"), &meta("name"))
        })
        .collect();
    (!accounts.is_empty()).then(|| {
        format!(
            "ServiceAccount {} written whole: `kubectl apply` over a live account replaces its imagePullSecrets with this list (the field is atomic), dropping entries the cluster added there (OpenShift's default-dockercfg-*); `repoint apply --cluster` adds to the live list instead",
            accounts.join(", ")
        )
    })
}

/// Make each Secret `ensure-pull-secret` requests ask for real: reuse one
/// of that name already in the input (it must cover the requested
/// registries), copy `secretFrom`, or build one from `credentials`. Returns
/// warnings (registries left out under `missingCredentials: warn`); any
/// error fails the run before anything is written. Credentials appear only
/// in the generated documents.
pub fn secrets(
    files: &[FileResult],
    wanted: Gathered<String>,
    config: &repoint_config::Config,
    default_namespace: &str,
    generated: &mut Generated,
) -> Result<Vec<String>> {
    use repoint_credentials as creds;

    let wanted = wanted.wanted;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let source = match &config.file.secret_from {
        Some(from) => match &from.file {
            Some(file) => PullSecretSource::Copied(secret_from_file(config, file)?),
            None => {
                return Err(Error::PullSecret(
                    "secretFrom names a Secret in the cluster; reading files needs `secretFrom.file` (the cluster form is for `repoint audit`, `apply` and `controller`)".into(),
                ));
            }
        },
        None => PullSecretSource::Credentials(config.credential_sources()?),
    };
    let mut warnings = Vec::new();
    let existing = index_objects(files, "Secret", default_namespace);
    for Wanted {
        key,
        requester,
        items: registries,
    } in &wanted
    {
        let (ns, name) = key;
        if let Some(found) = existing.get(key) {
            let file = files[found.file].stream.name();
            let present = creds::dockerconfigjson_of(found.value)
                .map(|c| creds::registries_in(&c))
                .map_err(|reason| {
                    Error::PullSecret(format!(
                        "Secret {} in {file}: {reason}",
                        qualified(ns, name)
                    ))
                })?;
            let missing: Vec<&String> =
                registries.iter().filter(|r| !present.contains(r)).collect();
            if !missing.is_empty() {
                return Err(Error::PullSecret(format!(
                    "Secret {} in {file} has no credentials for {}; repoint reuses a Secret of that name and will not replace it (rename the secret in the policy settings, or add the registry to that Secret)",
                    qualified(ns, name),
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            continue;
        }
        if let Some(secret) = pull_secret(config, &source, ns, name, registries, &mut warnings)? {
            generated.documents.push((*requester, secret));
        }
    }
    Ok(warnings)
}

/// The `.dockerconfigjson` of the Secret manifest `secretFrom.file` names.
pub fn secret_from_file(config: &repoint_config::Config, file: &str) -> Result<String> {
    repoint_credentials::read_pull_secret(&config.path(file)).map_err(Error::SecretFrom)
}

/// Where a pull Secret's contents come from.
#[derive(Debug)]
pub enum PullSecretSource {
    /// A copy of an existing Secret's `.dockerconfigjson` (its JSON text).
    Copied(String),
    /// The config's `credentials`, by registry.
    Credentials(Vec<(String, repoint_credentials::Source)>),
}

/// The Secret `ns/name` carrying credentials for `registries`, or `None`
/// when none could be found and `missingCredentials: warn` lets that pass
/// (each registry left out is a warning). Credentials appear only in the
/// returned Secret, never in a message.
pub fn pull_secret(
    config: &repoint_config::Config,
    source: &PullSecretSource,
    ns: &str,
    name: &str,
    registries: &[String],
    warnings: &mut Vec<String>,
) -> Result<Option<Value>> {
    let contents = pull_secret_contents(config, source, ns, name, registries, warnings)?;
    Ok(contents.map(|json| repoint_credentials::pull_secret(ns, name, &json)))
}

/// The `.dockerconfigjson` document of [`pull_secret`].
pub fn pull_secret_contents(
    config: &repoint_config::Config,
    source: &PullSecretSource,
    ns: &str,
    name: &str,
    registries: &[String],
    warnings: &mut Vec<String>,
) -> Result<Option<String>> {
    use repoint_config::MissingCredentials;
    use repoint_credentials as creds;

    let dockerconfigjson = match source {
        PullSecretSource::Copied(config_json) => {
            let present = creds::registries_in(config_json);
            let missing: Vec<&String> =
                registries.iter().filter(|r| !present.contains(r)).collect();
            if !missing.is_empty() {
                let list = missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                let msg = format!(
                    "secretFrom has no credentials for {list}, needed by Secret {}",
                    qualified(ns, name)
                );
                match config.file.missing_credentials {
                    MissingCredentials::Error => return Err(Error::PullSecret(msg)),
                    MissingCredentials::Warn => warnings.push(msg),
                }
            }
            config_json.clone()
        }
        PullSecretSource::Credentials(sources) => {
            let mut found = BTreeMap::new();
            for registry in registries {
                let Some((_, source)) = sources.iter().find(|(r, _)| r == registry) else {
                    let msg = format!(
                        "no credentials are configured for {registry} (needed by Secret {})",
                        qualified(ns, name)
                    );
                    match config.file.missing_credentials {
                        MissingCredentials::Error => return Err(Error::PullSecret(msg)),
                        MissingCredentials::Warn => {
                            warnings.push(msg);
                            continue;
                        }
                    }
                };
                let credential = source
                    .resolve(registry)
                    .map_err(|source| Error::Credentials {
                        registry: registry.clone(),
                        source,
                    })?;
                found.insert(registry.clone(), credential);
            }
            if found.is_empty() {
                return Ok(None);
            }
            creds::dockerconfigjson(&found)
        }
    };
    Ok(Some(dockerconfigjson))
}

/// `namespace/name` as kubectl prints it, or `name` for an object left
/// without a namespace (`--leave-namespace-unset`).
fn qualified(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// A v1 object in the input.
struct Found<'a> {
    file: usize,
    document: usize,
    /// Pointer of the object in its document (`/items/N` in a List).
    prefix: String,
    value: &'a Value,
}

/// The input's v1 objects of one kind by namespace and name (objects
/// without a namespace are in `default_namespace`), the first of each
/// name: built once, where a search per request would read every document
/// again for each namespace of a large run.
fn index_objects<'a>(
    files: &'a [FileResult],
    kind: &str,
    default_namespace: &str,
) -> HashMap<(String, String), Found<'a>> {
    let mut index = HashMap::new();
    for (file, f) in files.iter().enumerate() {
        for doc in f.stream.documents() {
            for (prefix, value) in sites::objects(&doc.value) {
                let s = |p: &str| repoint_core::pointer::get(value, p).and_then(Value::as_str);
                if s("/kind") != Some(kind) || s("/apiVersion") != Some("v1") {
                    continue;
                }
                let Some(name) = s("/metadata/name") else {
                    continue;
                };
                let namespace = s("/metadata/namespace").unwrap_or(default_namespace);
                index
                    .entry((namespace.to_string(), name.to_string()))
                    .or_insert(Found {
                        file,
                        document: doc.index,
                        prefix,
                        value,
                    });
            }
        }
    }
    index
}

/// A copy of `doc` safe to show: a Secret's data values are replaced.
pub fn redacted(doc: &Value) -> Value {
    let mut out = doc.clone();
    if doc.get("kind").and_then(Value::as_str) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = out.get_mut(field) {
                for v in map.values_mut() {
                    *v = Value::String("<redacted>".into());
                }
            }
        }
    }
    out
}
