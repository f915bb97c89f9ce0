//! An API server fixture: an HTTP server on loopback that speaks the
//! Kubernetes REST API for the resources repoint works with.
//!
//! No kube-apiserver can be installed on the test machines, so this stands
//! in for one. It serves discovery, list (with `limit`/`continue` and
//! label and field selectors), watch streams, get, create, update, delete,
//! and PATCH as JSON Patch, merge, strategic merge and server-side apply,
//! with a global `resourceVersion`, 409 conflicts, `dryRun=All`, and 403s
//! for the denials a test configures, or for whatever the Roles and
//! ClusterRoles a test grants do not allow (RBAC's rules, `resourceNames`
//! included). Its faithfulness is checked by
//! driving it with the real `kubectl` (`tests/apiserver.rs`).
//!
//! Simplifications, none of which repoint relies on: one served version
//! per resource; server-side apply merges like a strategic merge patch and
//! records the manager, without field ownership or manager conflicts;
//! deleting a namespace removes its contents at once.

mod http;
mod merge;
mod selector;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

pub use store::{ApiError, Resource};

/// The user every request is authenticated as.
pub const USER: &str = "repoint-test";
/// The kubeconfig's token. Clients do not send a bearer token to a plain
/// HTTP server, so the fixture authenticates nobody, as the API server's
/// old insecure port did; RBAC denials are configured per test instead.
pub const TOKEN: &str = "fixture-token";

/// A verb a test refuses, as an RBAC rule that is missing would.
#[derive(Debug, Clone)]
struct Denial {
    verb: String,
    plural: String,
    namespace: Option<String>,
}

/// An RBAC PolicyRule granted to the test's user, through a ClusterRole
/// (everywhere) or a Role (in its namespace).
#[derive(Debug, Clone)]
struct Grant {
    namespace: Option<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    resource_names: Vec<String>,
}

impl Grant {
    /// Whether this rule allows `verb` on `resource` in `namespace`, for
    /// the object `name` (collections: the name a `metadata.name` field
    /// selector pins, as RBAC requires of list and watch by name).
    fn allows(&self, verb: &str, resource: &Resource, namespace: Option<&str>, name: &str) -> bool {
        let has = |list: &[String], item: &str| list.iter().any(|x| x == "*" || x == item);
        let in_scope = match &self.namespace {
            None => true,
            Some(ns) => namespace == Some(ns.as_str()),
        };
        // A create cannot be limited by name: the name is not known when
        // RBAC decides.
        let named = self.resource_names.is_empty()
            || (verb != "create"
                && !name.is_empty()
                && self.resource_names.iter().any(|n| n == name));
        in_scope
            && has(&self.verbs, verb)
            && has(&self.api_groups, &resource.group)
            && has(&self.resources, &resource.plural)
            && named
    }
}

/// Another writer that changes an object before a client's next writes.
#[derive(Debug, Clone)]
struct Interference {
    plural: String,
    namespace: Option<String>,
    name: String,
    /// Writes left to interfere with.
    left: usize,
}

/// State shared by the request handlers and the test's handle.
#[derive(Debug)]
pub struct Shared {
    addr: String,
    store: Mutex<store::Store>,
    denials: Mutex<Vec<Denial>>,
    /// `None`: everything is allowed but the denials; `Some`: only what
    /// these rules grant.
    grants: Mutex<Option<Vec<Grant>>>,
    interference: Mutex<Vec<Interference>>,
    log: Mutex<Vec<String>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, line: String) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    fn refused(
        &self,
        verb: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<ApiError> {
        let denials = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        let denied = denials.iter().any(|d| {
            d.verb == verb
                && d.plural == resource.plural
                && (d.namespace.is_none() || d.namespace.as_deref() == namespace)
        });
        let grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        let granted = grants.as_ref().is_none_or(|rules| {
            rules
                .iter()
                .any(|g| g.allows(verb, resource, namespace, name))
        });
        (denied || !granted).then(|| ApiError::forbidden(resource, verb, namespace, name))
    }

    /// Whether another writer should change this object before the
    /// request's write (and count that down).
    fn interferes(&self, resource: &Resource, namespace: Option<&str>, name: &str) -> bool {
        let mut rules = self.interference.lock().unwrap_or_else(|p| p.into_inner());
        for rule in rules.iter_mut() {
            if rule.plural == resource.plural
                && rule.namespace.as_deref() == namespace
                && rule.name == name
                && rule.left > 0
            {
                rule.left -= 1;
                return true;
            }
        }
        false
    }
}

/// A running fixture; it stops when dropped.
#[derive(Debug)]
pub struct ApiServer {
    url: String,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ApiServer {
    /// Serve on a free loopback port, with the namespaces `default`,
    /// `kube-system` and `kube-public` (each with its `default`
    /// ServiceAccount), as a new cluster has.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("fixture runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        let shared = Arc::new(Shared {
            addr: addr.clone(),
            store: Mutex::new(store::Store::default()),
            denials: Mutex::new(Vec::new()),
            grants: Mutex::new(None),
            interference: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        runtime.spawn(async move {
            // Ends when the runtime is dropped.
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            shared,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Write a kubeconfig for this server (context `fixture`, namespace
    /// `default`), as kubectl and kube-rs read it.
    pub fn write_kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fixture\n  cluster:\n    server: {}\n\
             users:\n- name: {USER}\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: fixture\n  context:\n    cluster: fixture\n    user: {USER}\n    namespace: default\n\
             current-context: fixture\n",
            self.url
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// Refuse `verb` on `plural` (in `namespace`, or everywhere) with a 403
    /// naming the verb, resource and namespace, as RBAC does.
    pub fn deny(&self, verb: &str, plural: &str, namespace: Option<&str>) {
        self.shared
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Denial {
                verb: verb.into(),
                plural: plural.into(),
                namespace: namespace.map(String::from),
            });
    }

    /// Create `object` (of resource `plural`) as a cluster administrator
    /// would, whatever RBAC grants the test's user; watchers see it.
    pub fn seed(&self, plural: &str, object: &Value) {
        let api_version = object["apiVersion"].as_str().unwrap_or("v1");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let mut store = self.shared.store();
        let resource = store
            .resource(group, plural)
            .unwrap_or_else(|| panic!("the fixture does not serve {plural}.{group}"));
        let namespace = object["metadata"]["namespace"].as_str();
        store
            .create(&resource, namespace, object.clone(), false)
            .unwrap_or_else(|e| panic!("seeding {plural}: {}", e.status()));
    }

    /// From now on, allow only what `role` (a ClusterRole, or a Role in
    /// its namespace) grants, added to what earlier calls granted: RBAC
    /// as if the test's user were bound to each. Discovery stays open, as
    /// `system:discovery` leaves it.
    pub fn grant(&self, role: &Value) {
        let namespace = match role["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => role["metadata"]["namespace"].as_str().map(String::from),
            other => panic!("grant takes a Role or a ClusterRole, not {other:?}"),
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut grants = self.shared.grants.lock().unwrap_or_else(|p| p.into_inner());
        let grants = grants.get_or_insert_with(Vec::new);
        for rule in role["rules"].as_array().into_iter().flatten() {
            grants.push(Grant {
                namespace: namespace.clone(),
                api_groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                verbs: strings(&rule["verbs"]),
                resource_names: strings(&rule["resourceNames"]),
            });
        }
    }

    /// Before each of the next `times` writes (update or patch) of the
    /// object, another writer changes it, so a write guarded by the
    /// resourceVersion the client read conflicts.
    pub fn interfere(&self, plural: &str, namespace: Option<&str>, name: &str, times: usize) {
        self.shared
            .interference
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Interference {
                plural: plural.into(),
                namespace: namespace.map(String::from),
                name: name.into(),
                left: times,
            });
    }

    /// Every request so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current (latest) resource version.
    pub fn revision(&self) -> u64 {
        self.shared.store().revision()
    }

    /// An object as stored, by group, plural, namespace and name.
    pub fn object(
        &self,
        group: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let store = self.shared.store();
        let resource = store.resource(group, plural)?;
        store.get(&resource, namespace, name).ok()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
