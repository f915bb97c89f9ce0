//! Policies as OCI artifacts against a real registry (Debian's
//! docker-registry): `repoint policy push`, `module: oci://` by tag and by
//! digest, the cache by digest with the registry stopped and offline, a
//! digest moved behind a tag, an altered layer and an altered cache
//! refused, htpasswd credentials (never printed), TLS with a private CA,
//! reproducible pushes, and signatures checked by `run`, `serve` (which
//! exits, never ready) and `policy inspect`.
//! skopeo (containers-image) reads what `push` wrote, as another client of
//! the format would.

use std::path::{Path, PathBuf};

use repoint_tests::registry::{CosignKey, Registry};
use repoint_tests::{Output, documents, run_command_env, temp_dir};
use serde_json::Value;

/// A test's own cache (`XDG_CACHE_HOME`) and environment.
struct Env {
    dir: PathBuf,
    cache: String,
}

impl Env {
    fn new(tag: &str) -> Self {
        let dir = temp_dir(&format!("oci-{tag}"));
        let cache = dir.join("cache").display().to_string();
        Self { dir, cache }
    }

    fn repoint(&self, args: &[&str], stdin: &str) -> Output {
        self.repoint_with(args, stdin, &[])
    }

    /// `repoint` with `more` environment variables.
    fn repoint_with(&self, args: &[&str], stdin: &str, more: &[(&str, &str)]) -> Output {
        let mut env = vec![
            ("XDG_CACHE_HOME", self.cache.as_str()),
            ("REGISTRY_PASSWORD", "push-pass-7f3a"),
        ];
        env.extend_from_slice(more);
        run_command_env(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin, &env)
    }

    /// A component file of the built-in `name`.
    fn policy_file(&self, name: &str) -> String {
        let path = self.dir.join(format!("{name}.wasm"));
        std::fs::write(
            &path,
            repoint_runtime::builtins::get(name).expect("built-in"),
        )
        .expect("write policy");
        path.display().to_string()
    }

    /// A config with `head` (registries, credentials) and one policy from
    /// `module` mirroring Docker Hub.
    fn config(&self, name: &str, head: &str, module: &str) -> String {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: repoint.dev/v1alpha1\nkind: Config\n{head}policies:\n- name: mirror\n  module: {module}\n  settings: {{rules: [{{match: docker.io, replace: mirror.corp.example/hub}}]}}\n"
            ),
        )
        .expect("write config");
        path.display().to_string()
    }

    /// `repoint serve -c CONFIG` on a loopback port, to its exit (at most
    /// 120 s, then `timeout` stops it with status 124).
    fn serve(&self, config: &str) -> Output {
        let issued = repoint_tests::issue(&["localhost"]);
        let (cert, key) = (self.dir.join("tls.crt"), self.dir.join("tls.key"));
        std::fs::write(&cert, &issued.cert).expect("cert");
        std::fs::write(&key, &issued.key).expect("key");
        run_command_env(
            Path::new("timeout"),
            &[
                "120",
                env!("CARGO_BIN_EXE_repoint"),
                "--log-level",
                "info",
                "serve",
                "-c",
                config,
                "--addr",
                "127.0.0.1:0",
                "--tls-cert",
                cert.to_str().expect("utf-8"),
                "--tls-key",
                key.to_str().expect("utf-8"),
            ],
            "",
            &[("XDG_CACHE_HOME", &self.cache)],
        )
    }

    fn push(&self, file: &str, reference: &str, extra: &[&str]) -> Output {
        let mut args = vec!["policy", "push", file, reference];
        args.extend_from_slice(extra);
        self.repoint(&args, "")
    }

    /// [`Env::push`], which must work: the digest it printed.
    fn pushed(&self, file: &str, reference: &str, extra: &[&str]) -> String {
        let out = self.push(file, reference, extra);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_string()
    }

    /// `repoint run -c CONFIG` on one Pod: its image, or the failure.
    fn run(&self, config: &str, extra: &[&str]) -> Result<(String, String), Output> {
        let mut args = vec!["run", "-c", config];
        args.extend_from_slice(extra);
        args.push("-");
        let out = self.repoint(
            &args,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - {name: c, image: nginx:1.27}\n",
        );
        if out.code != 0 {
            return Err(out);
        }
        let image = documents(&out.stdout)[0]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("image")
            .to_string();
        Ok((image, out.stderr))
    }
}

const MIRRORED: &str = "mirror.corp.example/hub/library/nginx:1.27";

fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn push_pull_by_tag_and_digest_and_the_cache_without_the_registry() {
    let Some(registry) = Registry::start("oci-plain", None) else {
        return;
    };
    let env = Env::new("plain");
    let file = env.policy_file("registry-mirror");
    let tag = format!("oci://{}/policies/mirror:1.0", registry.addr);
    let digest = env.pushed(&file, &tag, &[]);
    assert!(is_digest(&digest), "{digest}");

    // With SOURCE_DATE_EPOCH the same file pushes as the same artifact.
    let reproducible = |tag: &str| {
        let reference = format!("oci://{}/policies/mirror:{tag}", registry.addr);
        let out = env.repoint_with(
            &["policy", "push", &file, &reference],
            "",
            &[("SOURCE_DATE_EPOCH", "1796286900")],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let first = reproducible("repro-1");
    assert_eq!(reproducible("repro-2"), first);
    assert_ne!(first, digest, "the creation time is in the artifact");

    // Another client of the format reads it: skopeo sees a Wasm artifact
    // whose one layer is the component, byte for byte.
    if let Some(skopeo) = repoint_tests::program_or_skip("skopeo", "REPOINT_REQUIRE_SKOPEO") {
        let source = format!("docker://{}/policies/mirror:1.0", registry.addr);
        let raw = run_command_env(
            &skopeo,
            &["inspect", "--raw", "--tls-verify=false", &source],
            "",
            &[],
        );
        assert_eq!(raw.code, 0, "{}", raw.stderr);
        let manifest: Value = serde_json::from_str(&raw.stdout).expect("manifest");
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.wasm.config.v0+json"
        );
        assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
        let copy = env.dir.join("skopeo-copy");
        let target = format!("dir:{}", copy.display());
        let copied = run_command_env(
            &skopeo,
            &["copy", "--src-tls-verify=false", &source, &target],
            "",
            &[],
        );
        assert_eq!(copied.code, 0, "{}", copied.stderr);
        let layer = manifest["layers"][0]["digest"].as_str().expect("digest");
        let blob = std::fs::read(copy.join(layer.trim_start_matches("sha256:"))).expect("blob");
        assert_eq!(blob, std::fs::read(&file).expect("file"));
        let config: Value = serde_json::from_slice(
            &std::fs::read(
                copy.join(
                    manifest["config"]["digest"]
                        .as_str()
                        .expect("config digest")
                        .trim_start_matches("sha256:"),
                ),
            )
            .expect("config blob"),
        )
        .expect("config JSON");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"][0], layer);
        assert!(
            config["component"]["exports"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{config}"
        );
    }

    // The example config, pointed at this registry's port.
    let example = std::fs::read_to_string(
        repoint_tests::repo_root().join("examples/oci-policy/repoint.yaml"),
    )
    .expect("example")
    .replace("localhost:5000", &registry.addr)
    .replace("registry-mirror:0.1.0", "mirror:1.0");
    let example_path = env.dir.join("example.yaml");
    std::fs::write(&example_path, example).expect("write");
    let (image, _) = env
        .run(example_path.to_str().expect("utf-8"), &[])
        .expect("the example runs");
    assert_eq!(image, MIRRORED);

    let inspect = env.repoint(&["policy", "inspect", &tag], "");
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    assert!(inspect.stdout.contains(&format!("digest:      {digest}")));
    assert!(inspect.stdout.contains("name:        registry-mirror"));

    let by_tag = env.config("by-tag", "", &tag);
    let pinned = format!("oci://{}/policies/mirror@{digest}", registry.addr);
    let by_digest = env.config("by-digest", "", &pinned);
    for config in [&by_tag, &by_digest] {
        let (image, _) = env.run(config, &[]).expect("runs");
        assert_eq!(image, MIRRORED);
    }
    // `repoint test`: a suite's `policy:`, and a suite's `config:`.
    let suite = env.dir.join("suites");
    std::fs::create_dir_all(&suite).expect("suites");
    let case = "cases:\n- name: moved\n  input: {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}, spec: {containers: [{name: c, image: nginx:1.27}]}}\n  expect:\n    output: {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}, spec: {containers: [{name: c, image: mirror.corp.example/hub/library/nginx:1.27}]}}\n";
    std::fs::write(
        suite.join("policy.repoint-test.yaml"),
        format!("apiVersion: repoint.dev/v1alpha1\nkind: TestSuite\npolicy: {pinned}\nsettings: {{rules: [{{match: docker.io, replace: mirror.corp.example/hub}}]}}\n{case}"),
    )
    .expect("suite");
    std::fs::write(
        suite.join("config.repoint-test.yaml"),
        format!("apiVersion: repoint.dev/v1alpha1\nkind: TestSuite\nconfig: {by_tag}\n{case}"),
    )
    .expect("suite");
    for file in ["policy.repoint-test.yaml", "config.repoint-test.yaml"] {
        let path = suite.join(file).display().to_string();
        let tested = env.repoint(&["test", &path], "");
        assert_eq!(tested.code, 0, "{file}: {}{}", tested.stdout, tested.stderr);
        assert!(tested.stdout.contains("1 passed"), "{}", tested.stdout);
    }

    // The tag resolves once per start, with the digest logged.
    let (_, logged) = env.run(&by_tag, &["--log-level", "info"]).expect("runs");
    assert!(
        logged.contains(&format!("policy mirror: {tag} is {digest}")),
        "{logged}"
    );

    // Moved behind the tag: reported, and the new build runs.
    let other = env.policy_file("allowed-registries");
    let moved_digest = env.pushed(&other, &tag, &[]);
    let out = env.repoint(&["policy", "inspect", &tag], "");
    assert!(
        out.stdout.contains("name:        allowed-registries"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(&format!(
            "now names {moved_digest}, not the {digest} it named when last pulled here"
        )),
        "{}",
        out.stderr
    );
    // Back to the mirror (a new push is a new manifest: its `created`
    // differs), for what follows.
    let digest = env.pushed(&file, &tag, &[]);
    assert_eq!(env.run(&by_tag, &[]).expect("runs").0, MIRRORED);

    // The registry stopped: the digest comes from the cache; the tag
    // from what it named when last pulled, with a warning; offline too.
    drop(registry);
    assert_eq!(env.run(&by_digest, &[]).expect("cached").0, MIRRORED);
    let (image, warned) = env.run(&by_tag, &[]).expect("cached");
    assert_eq!(image, MIRRORED);
    assert!(
        warned.contains("could not be resolved") && warned.contains(&digest),
        "{warned}"
    );
    assert_eq!(
        env.run(&by_tag, &["--offline"]).expect("offline").0,
        MIRRORED
    );

    // A cache without it, and no registry: a clear error at the module.
    let empty = Env::new("plain-empty");
    let config = empty.config("by-tag", "", &tag);
    let failed = empty.run(&config, &[]).expect_err("nothing to run");
    assert_eq!(failed.code, 2, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("policies[0].module") && failed.stderr.contains(&tag),
        "{}",
        failed.stderr
    );
    let failed = empty.run(&config, &["--offline"]).expect_err("offline");
    assert!(
        failed
            .stderr
            .contains("never pulled here, and the run is offline"),
        "{}",
        failed.stderr
    );
}

#[test]
fn an_altered_layer_or_cache_is_refused() {
    let Some(registry) = Registry::start("oci-tamper", None) else {
        return;
    };
    let env = Env::new("tamper");
    let file = env.policy_file("registry-mirror");
    let tag = format!("oci://{}/policies/mirror:2.0", registry.addr);
    env.pushed(&file, &tag, &[]);
    let config = env.config("tamper", "", &tag);
    assert_eq!(env.run(&config, &[]).expect("runs").0, MIRRORED);

    // The cached component altered: refused, not run.
    let layer = repoint_pipeline::oci::sha256(&std::fs::read(&file).expect("file"));
    let cached = Path::new(&env.cache)
        .join("repoint/oci/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&cached).expect("cached layer");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cached, &bytes).expect("alter the cache");
    let failed = env.run(&config, &[]).expect_err("refused");
    assert!(
        failed.stderr.contains("does not match its digest") && failed.stderr.contains("altered"),
        "{}",
        failed.stderr
    );

    // The registry's copy altered (same size, one byte off): a fresh pull
    // refuses it.
    std::fs::write(registry.blob_file(&layer), &bytes).expect("alter the registry's blob");
    let fresh = Env::new("tamper-fresh");
    let config = fresh.config("tamper", "", &tag);
    let failed = fresh.run(&config, &[]).expect_err("refused");
    assert_eq!(failed.code, 2);
    assert!(
        failed.stderr.contains("the artifact was altered, refused"),
        "{}",
        failed.stderr
    );

    // An image that is not a Wasm artifact is named as such.
    registry.push("apps/web", "1");
    let image = fresh.config("image", "", &format!("oci://{}/apps/web:1", registry.addr));
    let failed = fresh.run(&image, &[]).expect_err("refused");
    assert!(
        failed.stderr.contains("not a Wasm component artifact"),
        "{}",
        failed.stderr
    );
}

#[test]
fn credentials_from_the_config_and_never_in_a_message() {
    let Some(registry) = Registry::start("oci-auth", Some(("ci-robot", "push-pass-7f3a"))) else {
        return;
    };
    let env = Env::new("auth");
    let file = env.policy_file("registry-mirror");
    let tag = format!("oci://{}/policies/mirror:1.0", registry.addr);
    let refused = env.push(&file, &tag, &[]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
    let head = format!(
        "credentials:\n- {{registry: \"{}\", username: ci-robot, passwordEnv: REGISTRY_PASSWORD}}\n",
        registry.addr
    );
    let config = env.config("auth", &head, &tag);
    let pushed = env.push(&file, &tag, &["-c", &config]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    assert_eq!(env.run(&config, &[]).expect("pulls").0, MIRRORED);

    // Without them, the pull names the reason; the password is nowhere.
    let anonymous = Env::new("auth-anonymous");
    let bare = anonymous.config("bare", "", &tag);
    let failed = anonymous.run(&bare, &[]).expect_err("refused");
    assert!(
        failed.stderr.contains("credentials are needed"),
        "{}",
        failed.stderr
    );
    let wrong = anonymous.config("wrong", &head.replace("REGISTRY_PASSWORD", "HOME"), &tag);
    let failed = anonymous
        .run(&wrong, &["--log-level", "trace"])
        .expect_err("refused");
    for out in [&pushed, &refused, &failed] {
        assert!(
            !out.stderr.contains("push-pass-7f3a") && !out.stdout.contains("push-pass-7f3a"),
            "{}",
            out.stderr
        );
    }
    let logged = env
        .run(&config, &["--log-level", "trace"])
        .expect("pulls")
        .1;
    assert!(!logged.contains("push-pass-7f3a"), "{logged}");
    assert!(!logged.contains("Basic "), "{logged}");
}

#[test]
fn tls_with_a_private_ca() {
    let issued = repoint_tests::issue(&["127.0.0.1", "localhost"]);
    let Some(registry) = Registry::start_tls("oci-tls", &issued.cert, &issued.key) else {
        return;
    };
    let env = Env::new("tls");
    let ca = env.dir.join("ca.pem");
    std::fs::write(&ca, &issued.ca).expect("ca");
    // A name that is not loopback, so nothing is insecure by default; the
    // endpoint says where it is served.
    let head = format!(
        "registries:\n  policies.corp.test: {{endpoint: \"https://{}\", ca: {}}}\n",
        registry.addr,
        ca.display()
    );
    let file = env.policy_file("registry-mirror");
    let tag = "oci://policies.corp.test/policies/mirror:1.0";
    let config = env.config("tls", &head, tag);
    env.pushed(&file, tag, &["-c", &config]);
    assert_eq!(env.run(&config, &[]).expect("pulls").0, MIRRORED);

    // Without the CA the certificate is not trusted.
    let untrusting = Env::new("tls-untrusting");
    let head = format!(
        "registries:\n  policies.corp.test: {{endpoint: \"https://{}\"}}\n",
        registry.addr
    );
    let config = untrusting.config("tls", &head, tag);
    let failed = untrusting.run(&config, &[]).expect_err("untrusted");
    assert!(
        failed.stderr.to_lowercase().contains("certificate"),
        "{}",
        failed.stderr
    );
}

/// `verify:` with cosign keys. The signatures are made as `cosign sign
/// --key` makes them (there is no cosign binary here: not in Debian, not
/// on PyPI or npm): the same payload, layout, tag and algorithm, built by
/// `Registry::push_cosign_signature` with ring's ECDSA P-256 signer.
#[test]
fn signatures_are_verified_with_the_configured_keys() {
    let Some(registry) = Registry::start("oci-signed", None) else {
        return;
    };
    let env = Env::new("signed");
    let file = env.policy_file("registry-mirror");
    let tag = format!("oci://{}/policies/mirror:1.0", registry.addr);
    let digest = env.pushed(&file, &tag, &[]);
    let key = CosignKey::generate();
    let other = CosignKey::generate();
    let key_file = env.dir.join("cosign.pub");
    let other_file = env.dir.join("other.pub");
    std::fs::write(&key_file, &key.public_pem).expect("key");
    std::fs::write(&other_file, &other.public_pem).expect("key");
    let config = env.config(
        "signed",
        &format!("verify: {{keys: [{}]}}\n", key_file.display()),
        &tag,
    );
    let refused = |why: &str| {
        let failed = env.run(&config, &[]).expect_err("refused");
        assert_eq!(failed.code, 2, "{}", failed.stderr);
        assert!(
            failed.stderr.contains("policies[0].module")
                && failed.stderr.contains("policy mirror")
                && failed.stderr.contains(&tag)
                && failed.stderr.contains(why),
            "{why}: {}",
            failed.stderr
        );
    };
    refused("it is not signed");
    // `serve` listens from its start, and exits at the refusal, never ready.
    // (`timeout` only turns a regression into a failure instead of a hang.)
    let served = env.serve(&config);
    assert_eq!(served.code, 2, "{}", served.stderr);
    assert!(
        served.stderr.contains("it is not signed")
            && served.stderr.contains(&tag)
            && !served.stderr.contains("configured: ready"),
        "{}",
        served.stderr
    );
    // `policy inspect -c` verifies with the config's keys, and `webhook
    // manifests` loads the chain it describes.
    for args in [
        &["policy", "inspect", &tag, "-c", &config][..],
        &["webhook", "manifests", "-c", &config, "-n", "repoint"],
    ] {
        let out = env.repoint(args, "");
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
        assert!(out.stderr.contains("it is not signed"), "{}", out.stderr);
    }
    registry.push_cosign_signature("policies/mirror", &digest, &digest, &other);
    refused("made with none of the keys");
    let elsewhere = format!("sha256:{}", "0".repeat(64));
    registry.push_cosign_signature("policies/mirror", &digest, &elsewhere, &key);
    refused(&format!("its payload signs {elsewhere}, not this manifest"));

    registry.push_cosign_signature("policies/mirror", &digest, &digest, &key);
    let (image, logged) = env
        .run(&config, &["--log-level", "info"])
        .expect("verified");
    assert_eq!(image, MIRRORED);
    assert!(
        logged.contains(&format!("is signed with {}", key_file.display())),
        "{logged}"
    );
    let inspected = env.repoint(&["policy", "inspect", &tag, "-c", &config], "");
    assert_eq!(inspected.code, 0, "{}", inspected.stderr);
    assert!(
        inspected
            .stdout
            .contains(&format!("signed with: {}", key_file.display())),
        "{}",
        inspected.stdout
    );
    // `webhook manifests` carries the config naming the artifact, and the
    // key, into the cluster (the chain loads, so the signature is checked).
    let manifests = env.repoint(&["webhook", "manifests", "-c", &config], "");
    assert_eq!(manifests.code, 0, "{}", manifests.stderr);
    let objects = documents(&manifests.stdout);
    let named = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
            .clone()
    };
    let served_config = named("ConfigMap", "repoint")["data"]["repoint.yaml"]
        .as_str()
        .expect("config")
        .to_string();
    assert!(
        served_config.contains(&format!("module: {tag}"))
            && served_config.contains("verify: {keys: [/etc/repoint/files/verify-key-0.pub]}"),
        "{served_config}"
    );
    let carried_key = named("Secret", "repoint-files")["data"]["verify-key-0.pub"]
        .as_str()
        .map(|b| repoint_credentials::unbase64(b).expect("base64"))
        .expect("the key in the Secret");
    assert_eq!(carried_key, key.public_pem);
    // `--key` takes the place of the config's keys.
    let other_key = other_file.display().to_string();
    let inspected = env.repoint(&["policy", "inspect", &tag, "--key", &other_key], "");
    assert_eq!(inspected.code, 2, "{}", inspected.stderr);
    assert!(
        inspected.stderr.contains("made with none of the keys"),
        "{}",
        inspected.stderr
    );
    // Offline, with the registry gone: checked again, from the cache.
    drop(registry);
    assert_eq!(
        env.run(&config, &["--offline"]).expect("from the cache").0,
        MIRRORED
    );

    // Only an oci:// module has a signature to verify.
    let builtin = env.dir.join("builtin.yaml");
    std::fs::write(
        &builtin,
        format!(
            "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: m\n  module: builtin:registry-mirror\n  verify: {{keys: [{}]}}\n  settings: {{rules: [{{match: docker.io, replace: x.example}}]}}\n",
            key_file.display()
        ),
    )
    .expect("write");
    let failed = env
        .run(builtin.to_str().expect("utf-8"), &[])
        .expect_err("refused");
    assert!(
        failed
            .stderr
            .contains("policies[0].verify: only an oci:// module"),
        "{}",
        failed.stderr
    );
}
