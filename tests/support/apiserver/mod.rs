//! An API server fixture: an HTTP server on loopback that speaks the
//! Kubernetes REST API for the resources repoint works with.
//!
//! No kube-apiserver can be installed on the test machines, so this stands
//! in for one. It serves discovery, list (with `limit`/`continue` and
//! label and field selectors), watch streams, get, create, update, delete,
//! and PATCH as JSON Patch, merge, strategic merge and server-side apply,
//! with a global `resourceVersion`, 409 conflicts, `dryRun=All`, and 403s
//! for the RBAC denials a test configures. Its faithfulness is checked by
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
        denials
            .iter()
            .any(|d| {
                d.verb == verb
                    && d.plural == resource.plural
                    && (d.namespace.is_none() || d.namespace.as_deref() == namespace)
            })
            .then(|| ApiError::forbidden(resource, verb, namespace, name))
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
