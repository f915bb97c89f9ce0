use repoint_policy::parse_settings;
use repoint_policy::testing::resource;
use serde_json::json;

use super::*;

fn settings(v: serde_json::Value) -> Settings {
    parse_settings::<RegistryMirror>(&v.to_string()).expect("settings")
}

fn deployment(images: &[&str]) -> serde_json::Value {
    let containers: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "d", "namespace": "app", "labels": {"team": "a"}},
           "spec": {"template": {"spec": {"containers": containers}}}})
}

/// The new image of each set-image action.
fn rewritten(s: &Settings, images: &[&str]) -> Vec<String> {
    RegistryMirror::evaluate(s, &resource(&deployment(images)))
        .expect("evaluate")
        .into_iter()
        .filter_map(|a| match a {
            Action::SetImage(si) => Some(ImageRef::from(&si.image).to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn replace_registry_and_prefix_modes() {
    let s = settings(json!({"rules": [
        {"match": "quay.io", "replace": "mirror.corp/quay"},
        {"match": "docker.io/bitnami", "replace": "mirror.corp/bitnami"},
        {"match": "*.gcr.io", "prefix": "proxy.corp/proxy/app"},
        {"match": "ghcr.io", "prefix": "proxy.corp/proxy/app"}
    ]}));
    assert_eq!(
        rewritten(
            &s,
            &[
                "quay.io/org/api:v1",
                "bitnami/redis:7",
                "eu.gcr.io/proj/app@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
                "ghcr.io/org/x:v2@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
                "nginx"
            ]
        ),
        [
            "mirror.corp/quay/org/api:v1",
            "mirror.corp/bitnami/redis:7",
            "proxy.corp/proxy/app/eu.gcr.io/proj/app@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
            "proxy.corp/proxy/app/ghcr.io/org/x:v2@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
        ]
    );
}

#[test]
fn first_match_wins_and_targets_are_not_rewritten_again() {
    let s = settings(json!({"rules": [
        {"match": "docker.io/library", "replace": "mirror.corp/official"},
        {"match": "docker.io", "replace": "mirror.corp/hub"},
        {"match": "mirror.corp", "replace": "elsewhere.corp"}
    ]}));
    assert_eq!(
        rewritten(
            &s,
            &[
                "nginx:1",
                "grafana/grafana",
                "mirror.corp/hub/grafana/grafana",
                "mirror.corp/hubx/a"
            ]
        ),
        [
            "mirror.corp/official/nginx:1",
            "mirror.corp/hub/grafana/grafana",
            "elsewhere.corp/hubx/a"
        ]
    );
}

#[test]
fn exclusions() {
    let s = settings(json!({
        "rules": [{"match": "docker.io", "replace": "mirror.corp/hub"}],
        "excludeNamespaces": ["kube-system"],
        "excludeImages": ["docker.io/library/busybox"],
        "selector": {"matchLabels": {"team": "a"}}
    }));
    assert_eq!(
        rewritten(&s, &["busybox", "nginx"]),
        ["mirror.corp/hub/library/nginx"]
    );
    let mut other_ns = deployment(&["nginx"]);
    other_ns["metadata"]["namespace"] = json!("kube-system");
    assert!(
        RegistryMirror::evaluate(&s, &resource(&other_ns))
            .expect("ok")
            .is_empty()
    );
    let mut other_team = deployment(&["nginx"]);
    other_team["metadata"]["labels"]["team"] = json!("b");
    assert!(
        RegistryMirror::evaluate(&s, &resource(&other_team))
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn a_port_cannot_become_a_path_segment() {
    let s = settings(json!({"rules": [{"match": "registry:5000", "prefix": "proxy.corp/p"}]}));
    let actions =
        RegistryMirror::evaluate(&s, &resource(&deployment(&["registry:5000/app:1"]))).expect("ok");
    assert!(
        matches!(&actions[..], [Action::Warn(m)] if m.contains("not a valid image name")),
        "{actions:?}"
    );
}

#[test]
fn bad_settings_name_the_setting() {
    let bad = |v: serde_json::Value| {
        parse_settings::<RegistryMirror>(&v.to_string()).expect_err("rejected")
    };
    assert!(bad(json!({"rules": []})).contains("rules"));
    assert!(bad(json!({"rules": [{"match": "quay.io"}]})).contains("rules[0]"));
    assert!(
        bad(json!({"rules": [{"match": "quay.io", "replace": "a b"}]}))
            .contains("rules[0].replace")
    );
    assert!(bad(json!({"rules": [{"match": "[-x]", "replace": "m.corp"}]})).contains("glob"));
    assert!(bad(json!({"rules": [], "unknown": 1})).contains("unknown field `unknown`"));
}
