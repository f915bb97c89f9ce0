//! `repoint node-config` against the real consumers of its files:
//! containerd's own resolver (`ctr content fetch --hosts-dir`, against a
//! containerd started here) reading `hosts.toml` files that the
//! DaemonSet's own install script put in place from a ConfigMap volume laid
//! out as the kubelet lays one out; skopeo reading `registries.conf`
//! (containers-image, the library of CRI-O and podman); and a real API
//! server accepting the DaemonSet. The registries are Debian's
//! docker-registry: an upstream over plain http and a mirror over TLS with
//! a private CA, whose access logs show who served what.

use std::path::{Path, PathBuf};

use repoint_tests::cluster::TestCluster;
use repoint_tests::containerd::Containerd;
use repoint_tests::registry::Registry;
use repoint_tests::{Output, documents, program_or_skip, run_command, temp_dir};
use serde_json::Value;

fn repoint(args: &[&str]) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, "")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Write the config and run `repoint node-config` into `out`.
fn node_config(dir: &Path, config: &str, out: &Path, hosts: &Path) -> Output {
    let file = dir.join("repoint.yaml");
    std::fs::write(&file, config).expect("config");
    let run = repoint(&[
        "node-config",
        "-c",
        path_str(&file),
        "-o",
        path_str(out),
        "--hosts-dir",
        path_str(hosts),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// Do what the kubelet and the DaemonSet's init container do on a node:
/// lay the ConfigMap out as a volume (files under a timestamped directory,
/// `..data` and the top-level names as symbolic links into it), then run
/// the init container's own command with the volume and `hosts` as its
/// mounts.
fn install(daemonset_yaml: &Path, volume: &Path, hosts: &Path) {
    let text = std::fs::read_to_string(daemonset_yaml).expect("daemonset.yaml");
    let docs = documents(&text);
    let config_map = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("ConfigMap");
    let daemon_set = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("DaemonSet");
    let spec = &daemon_set["spec"]["template"]["spec"];
    let _ = std::fs::remove_dir_all(volume);
    let data = volume.join("..2026_12_02_00_00_00.000000001");
    let items = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find_map(|v| v["configMap"]["items"].as_array())
        .expect("the ConfigMap volume's items");
    let mut tops = Vec::new();
    for item in items {
        let (key, path) = (
            item["key"].as_str().expect("key"),
            item["path"].as_str().expect("path"),
        );
        let file = data.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("volume dir");
        std::fs::write(&file, config_map["data"][key].as_str().expect("data"))
            .expect("volume file");
        let top = path.split('/').next().expect("top").to_string();
        if !tops.contains(&top) {
            tops.push(top);
        }
    }
    std::os::unix::fs::symlink(data.file_name().expect("name"), volume.join("..data"))
        .expect("..data");
    for top in &tops {
        std::os::unix::fs::symlink(Path::new("..data").join(top), volume.join(top)).expect("link");
    }
    let install = &spec["initContainers"][0];
    let command: Vec<&str> = install["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|a| a.as_str().expect("argument"))
        .collect();
    let [program, flag, script, name, _from, _to] = command[..] else {
        panic!("sh -c SCRIPT NAME FROM TO: {command:?}");
    };
    std::fs::create_dir_all(hosts).expect("hosts dir");
    let sh = PathBuf::from(format!("/bin/{program}"));
    let out = run_command(
        &sh,
        &[flag, script, name, path_str(volume), path_str(hosts)],
        "",
    );
    assert_eq!(out.code, 0, "install: {}{}", out.stdout, out.stderr);
}

#[test]
fn node_mirrors_serve_images_under_their_names_through_containerd_and_skopeo() {
    let repoint_tests::Issued { ca, cert, key } = repoint_tests::issue(&["127.0.0.1"]);
    let Some(upstream) = Registry::start("node-upstream", None) else {
        return;
    };
    let Some(mirror) = Registry::start_tls("node-mirror", &cert, &key) else {
        return;
    };
    let Some(containerd) = Containerd::start("node-config") else {
        return;
    };
    let Some(skopeo) = program_or_skip("skopeo", "REPOINT_REQUIRE_SKOPEO") else {
        return;
    };
    // The image is on the mirror only, under the path the rewrite writes;
    // another is on the upstream only.
    mirror.push("hub/team/app", "1");
    upstream.push("team/fallback", "1");
    let dir = temp_dir("node-config");
    std::fs::write(dir.join("ca.pem"), &ca).expect("CA");
    let (up, mir) = (&upstream.addr, &mirror.addr);
    let config = format!(
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {{match: '{up}', replace: '{mir}/hub'}}\nregistries:\n  '{mir}': {{endpoint: 'https://{mir}', ca: ca.pem}}\n"
    );
    let (out, hosts, volume) = (dir.join("out"), dir.join("certs.d"), dir.join("volume"));
    node_config(&dir, &config, &out, &hosts);
    install(&out.join("daemonset.yaml"), &volume, &hosts);
    assert!(hosts.join(up).join("hosts.toml").is_file());

    // containerd: the name as written, served by the mirror over TLS
    // trusted through the CA file beside hosts.toml.
    let image = format!("{up}/team/app:1");
    if let Err(e) = containerd.fetch(&hosts, &image) {
        panic!("ctr fetch {image}: {e}\nmirror: {}", mirror.log());
    }
    assert!(
        mirror.requests_from("containerd/", "/v2/hub/team/app/manifests/1") > 0,
        "{}",
        mirror.log()
    );
    assert_eq!(
        upstream.requests_from("containerd/", "/v2/team/app/manifests/1"),
        0
    );
    // What the mirror does not have comes from upstream, as node mirrors
    // fall back.
    let fallback = format!("{up}/team/fallback:1");
    if let Err(e) = containerd.fetch(&hosts, &fallback) {
        panic!("ctr fetch {fallback}: {e}");
    }
    assert!(upstream.requests_from("containerd/", "/v2/team/fallback/manifests/1") > 0);

    // skopeo with the registries.conf and the CA where containers-image
    // looks for it.
    let inspected = run_command(
        &skopeo,
        &[
            "--registries-conf",
            path_str(&out.join("crio/registries.conf")),
            "inspect",
            "--raw",
            "--cert-dir",
            path_str(&out.join("crio/certs.d").join(mir)),
            &format!("docker://{image}"),
        ],
        "",
    );
    assert_eq!(inspected.code, 0, "skopeo: {}", inspected.stderr);
    assert!(
        inspected
            .stdout
            .contains("application/vnd.oci.image.manifest.v1+json")
    );
    assert!(
        mirror.requests_from("skopeo/", "/v2/hub/team/app/manifests/1") > 0,
        "{}",
        mirror.log()
    );

    // A new version: another registry mirrored, this one no more. The
    // install replaces what it put there and leaves other files alone.
    let foreign = hosts.join("registry.vendor.example");
    std::fs::create_dir_all(&foreign).expect("foreign dir");
    std::fs::write(
        foreign.join("hosts.toml"),
        "server = \"https://registry.vendor.example\"\n",
    )
    .expect("foreign file");
    let config = format!(
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {{match: quay.io, replace: '{mir}/quay'}}\nregistries:\n  '{mir}': {{endpoint: 'https://{mir}', ca: ca.pem}}\n"
    );
    node_config(&dir, &config, &out, &hosts);
    assert!(
        !out.join("containerd").join(up).exists(),
        "the output directory is replaced whole"
    );
    install(&out.join("daemonset.yaml"), &volume, &hosts);
    assert!(
        !hosts.join(up).exists(),
        "the old registry's files are gone"
    );
    assert!(hosts.join("quay.io/hosts.toml").is_file());
    assert!(
        foreign.join("hosts.toml").is_file(),
        "files repoint did not install stay"
    );
}

#[test]
fn an_output_directory_repoint_did_not_write_is_refused() {
    let dir = temp_dir("node-config-refused");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("out");
    std::fs::write(out.join("notes.txt"), "mine").expect("file");
    let config = dir.join("repoint.yaml");
    std::fs::write(
        &config,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: m\n  module: builtin:registry-mirror\n  settings: {rules: [{match: docker.io, replace: mirror.example/hub}]}\n",
    )
    .expect("config");
    let run = repoint(&["node-config", "-c", path_str(&config), "-o", path_str(&out)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("exists and was not written by repoint; choose another directory"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).expect("kept"),
        "mine"
    );
}

/// The example's DaemonSet, as a real API server takes it (server-side
/// dry run: admission, defaulting and validation, nothing stored).
#[test]
fn the_example_daemonset_is_accepted_by_a_real_api_server() {
    let Some(kubectl) = program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL") else {
        return;
    };
    let Some(cluster) = TestCluster::start("node-config") else {
        return;
    };
    let namespace = cluster.namespace("nodes", &[]);
    let dir = temp_dir("node-config-example");
    let out = dir.join("out");
    let example = repoint_tests::repo_root().join("examples/node-mirrors/repoint.yaml");
    let run = repoint(&[
        "node-config",
        "-c",
        path_str(&example),
        "-o",
        path_str(&out),
        "-n",
        &namespace,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let applied = run_command(
        &kubectl,
        &[
            "--kubeconfig",
            path_str(cluster.kubeconfig()),
            "apply",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            path_str(&out.join("daemonset.yaml")),
        ],
        "",
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let list: Value = serde_json::from_str(&applied.stdout).expect("json");
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["ConfigMap", "DaemonSet"]);
}
