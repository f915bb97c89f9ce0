use super::*;

const HEAD: &str = "apiVersion: repoint.dev/v1alpha1\nkind: Config\n";

fn config(body: &str, dir: &std::path::Path) -> Config {
    Config::parse("repoint.yaml", format!("{HEAD}{body}"), dir.to_path_buf()).expect("config")
}

fn built(body: &str) -> NodeConfig {
    let dir = tempfile::tempdir().expect("temp dir");
    build_in(body, dir.path())
}

fn build_in(body: &str, dir: &std::path::Path) -> NodeConfig {
    build_with_defaults(&config(body, dir)).expect("node config")
}

fn build_with_defaults(config: &Config) -> Result<NodeConfig> {
    build(&Request {
        config,
        hosts_dir: DEFAULT_HOSTS_DIR,
        namespace: "kube-system",
        installer_image: DEFAULT_INSTALLER_IMAGE,
        pause_image: DEFAULT_PAUSE_IMAGE,
    })
}

fn file<'a>(out: &'a NodeConfig, path: &str) -> &'a str {
    &out.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| {
            panic!(
                "{path} among {:?}",
                out.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
        .text
}

fn toml_of(text: &str) -> toml::Value {
    toml::from_str(text).expect("valid TOML")
}

fn paths(out: &NodeConfig) -> Vec<&str> {
    out.files.iter().map(|f| f.path.as_str()).collect()
}

#[test]
fn registry_rules_become_hosts_files_and_registries_conf_entries() {
    let out = built(
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {match: docker.io, replace: mirror.corp.example/hub}\n    - {match: quay.io, prefix: proxy.corp.example/cache}\n    - {match: ghcr.io, replace: ghcr-mirror.corp.example}\n",
    );
    assert_eq!(out.notes, Vec::<String>::new());
    assert_eq!(
        paths(&out),
        [
            "containerd/docker.io/hosts.toml",
            "containerd/quay.io/hosts.toml",
            "containerd/ghcr.io/hosts.toml",
            "crio/registries.conf",
            "daemonset.yaml"
        ]
    );
    let docker = file(&out, "containerd/docker.io/hosts.toml");
    assert!(docker.starts_with("# Written by `repoint node-config` from repoint.yaml"));
    assert_eq!(
        toml_of(docker),
        toml_of(
            r#"server = "https://registry-1.docker.io"
               [host."https://mirror.corp.example/v2/hub"]
               capabilities = ["pull", "resolve"]
               override_path = true"#
        )
    );
    // prefix: the registry's name is part of the path on the mirror.
    assert_eq!(
        toml_of(file(&out, "containerd/quay.io/hosts.toml")),
        toml_of(
            r#"server = "https://quay.io"
               [host."https://proxy.corp.example/v2/cache/quay.io"]
               capabilities = ["pull", "resolve"]
               override_path = true"#
        )
    );
    // A mirror at the root of a registry needs no path of its own.
    assert_eq!(
        toml_of(file(&out, "containerd/ghcr.io/hosts.toml")),
        toml_of(
            r#"server = "https://ghcr.io"
               [host."https://ghcr-mirror.corp.example"]
               capabilities = ["pull", "resolve"]"#
        )
    );
    assert_eq!(
        toml_of(file(&out, "crio/registries.conf")),
        toml_of(
            r#"[[registry]]
               prefix = "docker.io"
               location = "docker.io"
               [[registry.mirror]]
               location = "mirror.corp.example/hub"
               [[registry]]
               prefix = "quay.io"
               location = "quay.io"
               [[registry.mirror]]
               location = "proxy.corp.example/cache/quay.io"
               [[registry]]
               prefix = "ghcr.io"
               location = "ghcr.io"
               [[registry.mirror]]
               location = "ghcr-mirror.corp.example""#
        )
    );
}

#[test]
fn what_a_node_cannot_express_is_a_note_naming_the_rule() {
    let out = built(
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    excludeNamespaces: [kube-system]\n    selector: {matchLabels: {team: a}}\n    excludeImages: [docker.io/acme/private, '*.icr.io', 'docker.io/*/internal-*']\n    rules:\n    - {match: docker.io/bitnami, replace: mirror.corp.example/bitnami}\n    - {match: docker.io, replace: mirror.corp.example/hub}\n    - {match: docker.io/library, replace: elsewhere.example}\n    - {match: '*.gcr.io', replace: mirror.corp.example/gcr}\n    - {match: eu.gcr.io, replace: mirror.corp.example/eu}\n    - {match: 'localhost:5000', prefix: proxy.corp.example}\n- name: proxy\n  module: builtin:private-proxy\n  settings: {proxy: proxy.vendor.example/proxy/app, secretName: vendor}\n",
    );
    let expected = [
        "policy mirror: excludeNamespaces does not apply on nodes: a node mirror serves every pod, kube-system and static pods included",
        "policy mirror: selector does not apply on nodes: a node mirror serves every pod",
        "policy mirror rules[2] (docker.io/library): never applies, policy mirror rules[1] (docker.io) matches its images first; left out",
        "policy mirror rules[3] (*.gcr.io): a glob is not node configuration: containerd and CRI-O name registries one by one; add a rule per registry it is meant for",
        "policy mirror rules[4] (eu.gcr.io): never applies, policy mirror rules[3] (*.gcr.io) matches its images first; left out",
        "policy mirror rules[5] (localhost:5000): proxy.corp.example/localhost:5000 is not a valid repository path; left out",
        "policy proxy (builtin:private-proxy): its rewrites are not node configuration; node-config writes the rules of builtin:registry-mirror policies",
        "policy mirror rules[0] (docker.io/bitnami): containerd mirrors whole registries, so it is not in hosts.toml (registries.conf has it); containerd nodes pull its images through policy mirror rules[1] (docker.io)'s mirror",
        "policy mirror excludeImages docker.io/acme/private: containerd cannot leave images of a mirrored registry out; containerd nodes pull them through policy mirror rules[1] (docker.io)'s mirror (falling back to docker.io)",
        "policy mirror excludeImages docker.io/*/internal-*: containerd cannot leave images of a mirrored registry out; containerd nodes pull them through policy mirror rules[1] (docker.io)'s mirror (falling back to docker.io)",
        "policy mirror excludeImages docker.io/*/internal-*: registries.conf cannot leave images out by glob; CRI-O nodes pull those on mirrored registries through the mirrors",
    ];
    assert_eq!(out.notes, expected);
    assert_eq!(
        paths(&out),
        [
            "containerd/docker.io/hosts.toml",
            "crio/registries.conf",
            "daemonset.yaml"
        ]
    );
    // CRI-O takes the path-scoped rule and the exclusion below a mirrored
    // registry: the longest prefix wins there.
    assert_eq!(
        toml_of(file(&out, "crio/registries.conf")),
        toml_of(
            r#"[[registry]]
               prefix = "docker.io/bitnami"
               location = "docker.io/bitnami"
               [[registry.mirror]]
               location = "mirror.corp.example/bitnami"
               [[registry]]
               prefix = "docker.io"
               location = "docker.io"
               [[registry.mirror]]
               location = "mirror.corp.example/hub"
               [[registry]]
               prefix = "docker.io/acme/private"
               location = "docker.io/acme/private""#
        )
    );
}

#[test]
fn registries_settings_decide_scheme_verification_and_trust() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("corp-ca.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("ca");
    let out = build_in(
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {match: quay.io, replace: mirror.corp.example/quay}\n    - {match: 'upstream.test:5001', replace: 'localhost:5002/hub'}\n    - {match: ghcr.io, replace: lab.example/ghcr}\nregistries:\n  mirror.corp.example: {endpoint: 'https://10.0.0.5:8443', ca: corp-ca.pem}\n  upstream.test:5001: {endpoint: 'http://upstream.test:5001'}\n  lab.example: {insecure: true}\n",
        dir.path(),
    );
    assert_eq!(out.notes, Vec::<String>::new());
    assert_eq!(
        toml_of(file(&out, "containerd/quay.io/hosts.toml")),
        toml_of(
            r#"server = "https://quay.io"
               [host."https://10.0.0.5:8443/v2/quay"]
               capabilities = ["pull", "resolve"]
               override_path = true
               ca = "/etc/containerd/certs.d/quay.io/10.0.0.5_8443.crt""#
        )
    );
    assert!(file(&out, "containerd/quay.io/10.0.0.5_8443.crt").contains("MIIB"));
    assert!(file(&out, "crio/certs.d/10.0.0.5:8443/ca.crt").contains("MIIB"));
    // A loopback mirror is plain http, as docker has it.
    assert_eq!(
        toml_of(file(&out, "containerd/upstream.test:5001/hosts.toml")),
        toml_of(
            r#"server = "http://upstream.test:5001"
               [host."http://localhost:5002/v2/hub"]
               capabilities = ["pull", "resolve"]
               override_path = true"#
        )
    );
    assert_eq!(
        toml_of(file(&out, "containerd/ghcr.io/hosts.toml")),
        toml_of(
            r#"server = "https://ghcr.io"
               [host."https://lab.example/v2/ghcr"]
               capabilities = ["pull", "resolve"]
               override_path = true
               skip_verify = true"#
        )
    );
    let crio = toml_of(file(&out, "crio/registries.conf"));
    let registries = crio["registry"].as_array().expect("registries");
    let entry = |prefix: &str| {
        registries
            .iter()
            .find(|r| r["prefix"].as_str() == Some(prefix))
            .unwrap_or_else(|| panic!("{prefix}"))
            .clone()
    };
    assert_eq!(
        entry("quay.io")["mirror"][0]["location"].as_str(),
        Some("10.0.0.5:8443/quay")
    );
    assert_eq!(entry("quay.io")["mirror"][0].get("insecure"), None);
    let upstream = entry("upstream.test:5001");
    assert_eq!(upstream["insecure"].as_bool(), Some(true));
    assert_eq!(upstream["mirror"][0]["insecure"].as_bool(), Some(true));
    assert_eq!(
        entry("ghcr.io")["mirror"][0]["insecure"].as_bool(),
        Some(true)
    );
}

#[test]
fn the_daemonset_installs_the_containerd_files_and_pulls_through_the_rules() {
    let out = built(
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {match: docker.io, replace: mirror.corp.example/hub}\n    - {match: registry.k8s.io, replace: mirror.corp.example/k8s}\n",
    );
    let text = file(&out, "daemonset.yaml");
    let stream = repoint_core::Stream::parse(
        "daemonset.yaml",
        text.to_string(),
        repoint_core::Limits::default(),
    )
    .expect("yaml");
    let docs: Vec<&serde_json::Value> = stream.documents().iter().map(|d| &d.value).collect();
    let [config_map, daemon_set] = docs[..] else {
        panic!("two documents: {text}");
    };
    assert_eq!(config_map["kind"], "ConfigMap");
    assert_eq!(
        config_map["data"]["docker.io_hosts.toml"].as_str(),
        Some(file(&out, "containerd/docker.io/hosts.toml"))
    );
    let spec = &daemon_set["spec"]["template"]["spec"];
    assert_eq!(
        spec["volumes"][0]["configMap"]["items"][0],
        serde_json::json!({"key": "docker.io_hosts.toml", "path": "docker.io/hosts.toml"})
    );
    assert_eq!(spec["volumes"][1]["hostPath"]["path"], DEFAULT_HOSTS_DIR);
    assert_eq!(
        spec["initContainers"][0]["image"],
        "mirror.corp.example/hub/library/busybox:1.37.0"
    );
    assert_eq!(
        spec["containers"][0]["image"],
        "mirror.corp.example/k8s/pause:3.10"
    );
    assert_eq!(
        spec["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    for container in [&spec["initContainers"][0], &spec["containers"][0]] {
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    }
    assert_eq!(
        spec["containers"][0]["securityContext"]["runAsNonRoot"],
        true
    );
    // A change of the files changes the pod template, so it rolls out.
    let other = built(
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {match: docker.io, replace: mirror.corp.example/other}\n",
    );
    let hash = |text: &str| {
        text.lines()
            .find(|l| l.contains("repoint.dev/files-sha256"))
            .map(str::to_string)
    };
    assert_ne!(hash(text), hash(file(&other, "daemonset.yaml")));
}

#[test]
fn bad_settings_are_located_in_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(
        "policies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n    - {match: docker.io}\n",
        dir.path(),
    );
    let error = build_with_defaults(&config).expect_err("no target");
    assert_eq!(
        error.to_string(),
        "repoint.yaml:6: policies[0].settings: rules[0]: give exactly one of `replace` or `prefix`"
    );
}
