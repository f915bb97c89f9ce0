//! The cluster an integration test runs against: the API server fixture,
//! or a real cluster when `REPOINT_TEST_KUBECONFIG` names a kubeconfig.
//! Tests seed and read objects through this interface only (kube-rs, as
//! any client would), so they run unchanged against either. On a real
//! cluster every namespace a test names gets a unique prefix, and is
//! deleted when the test ends.

use std::path::PathBuf;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

use crate::apiserver::ApiServer;

/// A cluster for one test.
pub struct TestCluster {
    kubeconfig: PathBuf,
    fixture: Option<ApiServer>,
    prefix: String,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    namespaces: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("kubeconfig", &self.kubeconfig)
            .field("fixture", &self.fixture.is_some())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// The real cluster of `REPOINT_TEST_KUBECONFIG`, or a new fixture.
    pub fn start(tag: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let (kubeconfig, fixture, prefix) = match std::env::var_os("REPOINT_TEST_KUBECONFIG") {
            Some(path) => (
                PathBuf::from(path),
                None,
                format!("rp-{tag}-{}-", std::process::id()),
            ),
            None => {
                let server = ApiServer::start();
                let path = crate::temp_dir(&format!("{tag}-kubeconfig")).join("kubeconfig");
                server.write_kubeconfig(&path);
                (path, Some(server), String::new())
            }
        };
        let client = runtime.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("kubeconfig");
            kube::Client::try_from(config).expect("client")
        });
        Self {
            kubeconfig,
            fixture,
            prefix,
            runtime,
            client,
            namespaces: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// The fixture, for what only it can do (refuse a verb, race a
    /// writer); `None` on a real cluster, where such tests skip.
    pub fn fixture(&self) -> Option<&ApiServer> {
        self.fixture.as_ref()
    }

    /// The real name of the test's namespace `name`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Create a namespace with labels.
    pub fn namespace(&self, name: &str, labels: &[(&str, &str)]) -> String {
        let ns = self.ns(name);
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        self.create(&serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels},
        }));
        self.namespaces.lock().expect("lock").push(ns.clone());
        ns
    }

    fn api(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = self.runtime.block_on(async {
            // A CRD just created takes a moment to be served.
            for _ in 0..50 {
                if let Ok(found) = kube::discovery::pinned_kind(&self.client, &gvk).await {
                    return found;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the cluster does not serve {api_version} {kind}")
        });
        match namespace {
            Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// Create an object.
    pub fn create(&self, object: &Value) {
        let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
        let api = self.api(s("/apiVersion"), s("/kind"), Some(s("/metadata/namespace")));
        let object: DynamicObject = serde_json::from_value(object.clone()).expect("object");
        self.runtime
            .block_on(api.create(&PostParams::default(), &object))
            .unwrap_or_else(|e| panic!("creating {}: {e}", s("/metadata/name")));
    }

    /// An object, if it exists.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let api = self.api(api_version, kind, namespace);
        self.runtime
            .block_on(api.get_opt(name))
            .expect("get")
            .map(|o| serde_json::to_value(o).expect("json"))
    }

    /// Replace an object with `object` (its current resourceVersion is
    /// filled in), as `kubectl replace` does.
    pub fn replace(&self, object: &Value) {
        let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
        let namespace = Some(s("/metadata/namespace")).filter(|ns| !ns.is_empty());
        let current = self
            .get(s("/apiVersion"), s("/kind"), namespace, s("/metadata/name"))
            .unwrap_or_else(|| panic!("replacing {}: it does not exist", s("/metadata/name")));
        let mut object = object.clone();
        object["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        let api = self.api(s("/apiVersion"), s("/kind"), namespace);
        let name = s("/metadata/name").to_string();
        let object: DynamicObject = serde_json::from_value(object).expect("object");
        self.runtime
            .block_on(api.replace(&name, &PostParams::default(), &object))
            .unwrap_or_else(|e| panic!("replacing {name}: {e}"));
    }

    /// Delete an object.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let api = self.api(api_version, kind, namespace);
        self.runtime
            .block_on(api.delete(name, &DeleteParams::default()))
            .expect("delete");
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.fixture.is_some() {
            return;
        }
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|p| p.into_inner()));
        for ns in namespaces {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
            let _ = self
                .runtime
                .block_on(api.delete(&ns, &DeleteParams::default()));
        }
    }
}
