//! The cluster an integration test runs against: the real control plane
//! of [`crate::kube`], shared by the tests of one binary. Tests seed and
//! read objects through this interface (kube-rs, as any client would).
//! Every namespace a test names gets a prefix unique to the test, and is
//! deleted when the test ends.

use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

use crate::kube::ControlPlane;

/// The control plane a test runs on.
enum Plane {
    /// The test binary's, shared with its other tests.
    Shared(&'static ControlPlane),
    /// The test's own, stopped when the test ends.
    Own(Box<ControlPlane>),
}

/// A cluster for one test.
pub struct TestCluster {
    plane: Plane,
    kubeconfig: PathBuf,
    prefix: String,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    namespaces: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("kubeconfig", &self.kubeconfig)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// The real control plane, for a test tagged `tag` (the prefix of its
    /// namespaces); `None` when there is none here and the test skips.
    pub fn start(tag: &str) -> Option<Self> {
        crate::kube::shared().map(|plane| Self::on(Plane::Shared(plane), tag))
    }

    /// A control plane of the test's own, for a test that works on the
    /// whole cluster (`repoint audit` with no namespace) and must not meet
    /// the other tests' objects; `None` when there is none here.
    pub fn start_own(tag: &str) -> Option<Self> {
        Self::start_own_with(tag, &[])
    }

    /// A control plane of the test's own whose API server has `flags` too
    /// (`--runtime-config=batch/v1beta1=false`, to serve less).
    pub fn start_own_with(tag: &str, flags: &[&str]) -> Option<Self> {
        crate::kube::available()
            .then(|| Self::on(Plane::Own(Box::new(ControlPlane::start(flags))), tag))
    }

    fn on(plane: Plane, tag: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        let control_plane = match &plane {
            Plane::Shared(shared) => shared,
            Plane::Own(own) => own.as_ref(),
        };
        let kubeconfig = control_plane.kubeconfig().to_path_buf();
        let client = runtime.block_on(async {
            let kc = kube::config::Kubeconfig::read_from(control_plane.seeder_kubeconfig())
                .expect("read kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .expect("kubeconfig");
            kube::Client::try_from(config).expect("client")
        });
        Self {
            plane,
            kubeconfig,
            prefix: format!("{tag}-"),
            runtime,
            client,
            namespaces: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The control plane: its URL, CA and further kubeconfigs.
    pub fn plane(&self) -> &ControlPlane {
        match &self.plane {
            Plane::Shared(shared) => shared,
            Plane::Own(own) => own,
        }
    }

    /// A client as an administrator (the tests' own, not repoint's).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Run a future on the test's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The cluster administrator's kubeconfig.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
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
        // Pods are admitted once the namespace's `default` account and its
        // token exist (the ServiceAccount admission plugin): wait for the
        // controller manager to make them.
        crate::eventually(
            &format!("the controller manager made the default account of {ns}"),
            Duration::from_secs(60),
            || {
                self.get("v1", "ServiceAccount", Some(&ns), "default")
                    .is_some_and(|sa| sa["secrets"].as_array().is_some_and(|s| !s.is_empty()))
            },
        );
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
                tokio::time::sleep(Duration::from_millis(100)).await;
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

    /// Every object of a kind in a namespace.
    pub fn list(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<Value> {
        let api = self.api(api_version, kind, Some(namespace));
        self.runtime
            .block_on(api.list(&Default::default()))
            .expect("list")
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).expect("json"))
            .collect()
    }

    /// The `apiVersion` the server serves `kind` of `group` at, as repoint
    /// finds it (CronJob is `batch/v1beta1` on v1.20).
    pub fn served_api_version(&self, group: &str, kind: &str) -> String {
        let discovery = self
            .runtime
            .block_on(
                kube::Discovery::new(self.client.clone())
                    .filter(&[group])
                    .run(),
            )
            .expect("discovery");
        let served = discovery.get(group).expect("group served");
        let (resource, _) = repoint_kube::inventory::served_kind(served, kind)
            .unwrap_or_else(|| panic!("{kind} in group {group:?} is not served"));
        resource.api_version
    }

    /// Empty the object's `metadata.finalizers`, letting its deletion
    /// finish.
    pub fn release_finalizers(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let patch = serde_json::json!({"metadata": {"finalizers": null}});
        self.merge_patch(api_version, kind, namespace, name, &patch);
    }

    /// Apply a JSON merge patch to an object, as another writer would.
    pub fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) {
        let api = self.api(api_version, kind, Some(namespace));
        self.runtime
            .block_on(api.patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            ))
            .unwrap_or_else(|e| panic!("patching {name}: {e}"));
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
