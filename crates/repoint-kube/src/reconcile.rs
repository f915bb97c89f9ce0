//! Keeping a pull Secret in place: in every namespace that matches a
//! selector, the Secret exists with the configured contents, and the
//! named ServiceAccounts list it, as namespaces come and go.
//!
//! A kube-runtime [`Controller`] over Namespaces does the work. Each
//! namespace is reconciled when it appears or changes, when the pull
//! Secret or one of the ServiceAccounts in it changes or is deleted, when
//! the source Secret (`secretFrom` in the cluster) changes (then every
//! namespace is), and every `resync` whatever happens. A reconcile is a
//! few reads and, only when something is missing or stale, a guarded
//! write through [`Writer`]: running two reconcilers side by side is
//! harmless, and nothing is ever deleted.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::watch;

use crate::KubeError;
use crate::write::{Writer, Written};

/// Namespaces left alone unless the config says otherwise.
pub const DEFAULT_EXCLUDED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// What to keep in place.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The pull Secret's name in each namespace.
    pub secret_name: String,
    /// Where its contents come from.
    pub source: Source,
    /// Registries the contents must have credentials for.
    pub registries: Vec<String>,
    /// When the source lacks one of `registries`: refuse to copy it
    /// (`true`), or copy it with a warning.
    pub registries_required: bool,
    /// Only namespaces whose labels match (kubectl's syntax).
    pub namespace_selector: Option<String>,
    /// Namespaces never touched.
    pub exclude_namespaces: Vec<String>,
    /// ServiceAccounts that list the Secret. `default` is created where it
    /// is missing; any other is patched where it exists.
    pub service_accounts: Vec<String>,
    /// Every namespace is checked again this often.
    pub resync: Duration,
    /// Wait after a failed reconcile before the next try.
    pub retry: Duration,
}

/// Where the pull Secret's contents come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A `.dockerconfigjson` document fixed when the reconciler starts
    /// (built from `credentials`, or read from a manifest file).
    Fixed(String),
    /// A Secret in the cluster, followed as it changes.
    Secret { namespace: String, name: String },
}

/// The source's contents as last seen.
#[derive(Debug, Clone, PartialEq)]
enum Contents {
    /// Not read yet.
    Pending,
    /// A `.dockerconfigjson` document to copy.
    Ready(Arc<str>),
    /// Nothing to copy, and why (said once, when it happens).
    Unusable(String),
}

struct Context {
    spec: Spec,
    writer: Writer,
    contents: watch::Receiver<Contents>,
}

/// Run until `shutdown` resolves. Errors reaching the API server are
/// logged and retried, as a controller must; only a bad selector (which
/// no retry can fix) ends the run early.
pub async fn run(
    client: kube::Client,
    spec: Spec,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), KubeError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut selected = watcher::Config::default();
    if let Some(selector) = &spec.namespace_selector {
        // A selector the server rejects would only be retried forever.
        let probe = kube::api::ListParams::default().labels(selector).limit(1);
        namespaces.list(&probe).await.map_err(|e| {
            match crate::error::describe(e, "list", "namespaces", None, "") {
                KubeError::Api {
                    code: 400, message, ..
                } => KubeError::Evaluation(format!(
                    "reconcile.namespaceSelector {selector:?}: {message}"
                )),
                other => other,
            }
        })?;
        selected = selected.labels(selector);
    }

    let (contents, source_task) = match &spec.source {
        Source::Fixed(json) => {
            let state = check_registries(&spec, json.clone(), "the configured credentials");
            announce(&state, &Contents::Pending);
            (watch::channel(state).1, None)
        }
        Source::Secret { namespace, name } => {
            let (tx, rx) = watch::channel(Contents::Pending);
            let api = Api::namespaced(client.clone(), namespace);
            let what = format!("secretFrom Secret {namespace}/{name}");
            let task = follow_source(api, by_name(name), what, spec.clone(), tx);
            (rx, Some(tokio::spawn(task)))
        }
    };
    // Each change of the source's contents goes over every namespace.
    let source_changed = futures::stream::unfold(contents.clone(), |mut rx| async move {
        rx.changed().await.ok().map(|()| ((), rx))
    });

    let in_its_namespace =
        |meta: kube::core::ObjectMeta| meta.namespace.map(|ns| ObjectRef::new(&ns));

    tracing::info!(
        secret = %spec.secret_name,
        selector = spec.namespace_selector.as_deref().unwrap_or("(every namespace)"),
        accounts = %spec.service_accounts.join(","),
        "reconciler: watching namespaces"
    );
    let context = Arc::new(Context {
        writer: Writer::new(client.clone(), false),
        spec: spec.clone(),
        contents,
    });
    let mut controller = Controller::new(namespaces, selected).watches(
        Api::<Secret>::all(client.clone()),
        by_name(&spec.secret_name),
        move |s| in_its_namespace(s.metadata),
    );
    for account in &spec.service_accounts {
        controller = controller.watches(
            Api::<ServiceAccount>::all(client.clone()),
            by_name(account),
            move |a| in_its_namespace(a.metadata),
        );
    }
    controller
        .reconcile_all_on(source_changed)
        .with_config(controller::Config::default().concurrency(4))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Deleted between the watch event and the write: the
                // next event says it is terminating, and it is skipped.
                Err(controller::Error::ReconcilerFailed(
                    error @ KubeError::NamespaceTerminating { .. },
                    namespace,
                )) => {
                    tracing::debug!(namespace = %namespace.name, "reconciler: {error}");
                }
                Err(controller::Error::ReconcilerFailed(error, namespace)) => {
                    tracing::warn!(namespace = %namespace.name, "reconciler: {error}");
                }
                Err(controller::Error::ObjectNotFound(namespace)) => {
                    tracing::debug!(namespace = %namespace.name, "reconciler: namespace gone");
                }
                Err(controller::Error::QueueError(e)) => {
                    tracing::warn!("reconciler: watching: {}", watch_error(&e));
                }
                Err(other) => tracing::warn!("reconciler: {other}"),
            }
        })
        .await;
    if let Some(task) = source_task {
        task.abort();
    }
    tracing::info!("reconciler stopped");
    Ok(())
}

/// A watch of the objects called `name` only. Every watch of Secrets and
/// ServiceAccounts names its object, so RBAC can grant it by
/// `resourceNames` rather than over every Secret.
fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Keep `contents` up to date with the source Secret (`what`, watched
/// through `api` with `config`); receivers see only real changes.
async fn follow_source(
    api: Api<Secret>,
    config: watcher::Config,
    what: String,
    spec: Spec,
    contents: watch::Sender<Contents>,
) {
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    // During a (re)list: whether the Secret was in it.
    let mut listed: Option<Secret> = None;
    while let Some(event) = events.next().await {
        let seen = match event {
            Err(e) => {
                // The watcher retries, backing off.
                tracing::warn!("reconciler: watching {what}: {}", watch_error(&e));
                continue;
            }
            Ok(Event::Init) => {
                listed = None;
                continue;
            }
            Ok(Event::InitApply(secret)) => {
                listed = Some(secret);
                continue;
            }
            Ok(Event::InitDone) => listed.take(),
            Ok(Event::Apply(secret)) => Some(secret),
            Ok(Event::Delete(_)) => None,
        };
        let state = match seen {
            None => Contents::Unusable(format!(
                "{what} does not exist; pull Secrets are left as they are until it does"
            )),
            Some(secret) => match serde_json::to_value(&secret)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    repoint_credentials::dockerconfigjson_of(&v).map_err(|e| e.to_string())
                }) {
                Ok(json) => check_registries(&spec, json, &what),
                Err(reason) => Contents::Unusable(format!(
                    "{what}: {reason}; pull Secrets are left as they are"
                )),
            },
        };
        contents.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            announce(&state, current);
            *current = state;
            true
        });
    }
}

/// A watch failure in a line: the API server's own message when it
/// answered (a 403 names the verb and resource), not its whole status.
fn watch_error(error: &watcher::Error) -> String {
    let api = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(status) => return status.message.clone(),
        other => return other.to_string(),
    };
    match api {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// The contents, unless they lack a required registry.
fn check_registries(spec: &Spec, json: String, what: &str) -> Contents {
    let present = repoint_credentials::registries_in(&json);
    let missing: Vec<&str> = spec
        .registries
        .iter()
        .map(|r| r.as_str())
        .filter(|r| !present.iter().any(|p| p == r))
        .collect();
    if missing.is_empty() {
        return Contents::Ready(json.into());
    }
    let message = format!("{what} has no credentials for {}", missing.join(", "));
    if spec.registries_required {
        Contents::Unusable(format!("{message}; pull Secrets are left as they are"))
    } else {
        tracing::warn!("reconciler: {message}; copying it anyway");
        Contents::Ready(json.into())
    }
}

/// Say what the source's new state means (never its contents).
fn announce(state: &Contents, before: &Contents) {
    match state {
        Contents::Unusable(why) => tracing::warn!("reconciler: {why}"),
        Contents::Ready(_) if !matches!(before, Contents::Ready(_)) => {
            tracing::info!("reconciler: pull Secret contents read")
        }
        Contents::Ready(_) => tracing::info!("reconciler: pull Secret contents changed"),
        Contents::Pending => {}
    }
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, KubeError> {
    let spec = &ctx.spec;
    let Some(ns) = namespace.metadata.name.as_deref() else {
        return Ok(Action::await_change());
    };
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating || spec.exclude_namespaces.iter().any(|e| e == ns) {
        return Ok(Action::await_change());
    }
    let mut contents = ctx.contents.clone();
    let ready = tokio::time::timeout(
        Duration::from_secs(30),
        contents.wait_for(|c| *c != Contents::Pending),
    )
    .await
    // Copied out at once: the reference holds the channel's lock.
    .map(|state| state.map(|s| s.clone()));
    let json = match ready {
        Ok(Ok(Contents::Ready(json))) => json,
        // Said when the source changed; it changing again reconciles
        // every namespace.
        Ok(Ok(Contents::Unusable(_))) => return Ok(Action::await_change()),
        _ => {
            return Err(KubeError::Evaluation(
                "the source of the pull Secret could not be read yet".into(),
            ));
        }
    };

    let is_source = matches!(&spec.source, Source::Secret { namespace, name }
        if namespace == ns && *name == spec.secret_name);
    if !is_source {
        let desired = repoint_credentials::pull_secret(ns, &spec.secret_name, &json);
        let written = ctx.writer.ensure_secret(ns, &desired).await?;
        report(ns, &format!("secret/{}", spec.secret_name), &written);
    }
    let secrets = [spec.secret_name.clone()];
    for account in &spec.service_accounts {
        // The API server's own controller makes `default` in every
        // namespace; making it first, already listing the Secret, means a
        // new namespace's first pod gets it. Other accounts are the
        // namespace owner's to create.
        let written = if account == "default" {
            ctx.writer
                .ensure_account_pull_secrets(ns, account, &secrets)
                .await?
        } else {
            match ctx
                .writer
                .patch_account_pull_secrets(ns, account, &secrets)
                .await?
            {
                Some(written) => written,
                None => continue,
            }
        };
        report(ns, &format!("serviceaccount/{account}"), &written);
    }
    Ok(Action::requeue(spec.resync))
}

fn error_policy(_: Arc<Namespace>, _: &KubeError, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.spec.retry)
}

/// One log line per change, as kubectl would word it.
fn report(namespace: &str, what: &str, written: &Written) {
    let verb = match written {
        Written::Unchanged => return,
        Written::Created => "created",
        Written::Patched(_) => "patched",
        Written::Updated => "updated",
    };
    tracing::info!(%namespace, "reconciler: {what} {verb}");
}
