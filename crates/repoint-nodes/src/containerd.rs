//! containerd's registry hosts directory: one `<registry>/hosts.toml` per
//! upstream registry (containerd's `config_path`, docs/hosts.md), with the
//! upstream as `server` (the fallback) and the mirror as a `[host]` that
//! may pull and resolve tags.
//!
//! A mirror below a path (`mirror.corp/hub`) is written as the host URL
//! `https://mirror.corp/v2/hub` with `override_path = true`: containerd then
//! asks `/v2/hub/<repository>/...`, the name the rewrite would have
//! written. containerd configures whole registries, so a rule scoped to a
//! path below one is a note, not a file.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{NodeFile, NodeMirror, Plan, Reach, Result};

/// The output's directory for these files.
pub const DIR: &str = "containerd";

#[derive(Serialize)]
struct HostsFile {
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip_verify: bool,
    host: BTreeMap<String, Host>,
}

#[derive(Serialize)]
struct Host {
    capabilities: [&'static str; 2],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    override_path: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip_verify: bool,
}

/// The registry as containerd's `server`: its API host (Docker Hub's is
/// registry-1.docker.io, which containerd itself uses for docker.io),
/// unless `registries:` gives an endpoint.
fn server_url(plan: &Plan, registry: &str) -> Reach {
    let mut reach = plan.reach(registry);
    if !plan.registries.contains_key(registry) {
        reach.host = repoint_core::probe::api_host(registry);
    }
    reach
}

/// A CA file copied beside `hosts.toml`, named in it by its path on the
/// node.
fn ca_entry(
    reach: &Reach,
    registry: &str,
    dir: &str,
    hosts_dir: &str,
    files: &mut Vec<NodeFile>,
) -> Result<Option<String>> {
    let Some(path) = &reach.ca else {
        return Ok(None);
    };
    let name = format!("{}.crt", reach.host.replace([':', '[', ']'], "_"));
    files.push(NodeFile {
        path: format!("{dir}/{name}"),
        text: crate::read_ca(registry, path)?,
    });
    Ok(Some(format!(
        "{}/{dir}/{name}",
        hosts_dir.trim_end_matches('/')
    )))
}

/// The `<registry>/hosts.toml` files (and CA copies), paths relative to
/// the hosts directory; what containerd cannot express goes in `notes`.
pub(crate) fn files(
    plan: &Plan,
    config: &repoint_config::Config,
    hosts_dir: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<NodeFile>> {
    let whole: Vec<&NodeMirror> = plan
        .mirrors
        .iter()
        .filter(|m| m.scope.path.is_none())
        .collect();
    for m in plan.mirrors.iter().filter(|m| m.scope.path.is_some()) {
        let instead = match whole.iter().find(|w| w.scope.registry == m.scope.registry) {
            Some(w) => format!("through {}'s mirror", w.rule),
            None => format!("from {} itself", m.scope.registry),
        };
        notes.push(format!(
            "{}: containerd mirrors whole registries, so it is not in hosts.toml (registries.conf has it); containerd nodes pull its images {instead}",
            m.rule
        ));
    }
    for x in &plan.exclusions {
        let mirrored: Vec<&&NodeMirror> = whole
            .iter()
            .filter(|w| crate::may_match_on(&x.pattern, &w.scope.registry))
            .collect();
        if let Some(w) = mirrored.first() {
            notes.push(format!(
                "{}: containerd cannot leave images of a mirrored registry out; containerd nodes pull them through {}'s mirror (falling back to {})",
                x.rule, w.rule, w.scope.registry
            ));
        }
    }

    let mut files = Vec::new();
    for m in whole {
        let dir = m.scope.registry.clone();
        let server = server_url(plan, &m.scope.registry);
        let server_ca = ca_entry(&server, &m.scope.registry, &dir, hosts_dir, &mut files)?;
        let mirror = plan.reach(&m.location.registry);
        let mirror_ca = ca_entry(&mirror, &m.location.registry, &dir, hosts_dir, &mut files)?;
        let (url, override_path) = match &m.location.path {
            Some(path) => (
                format!("{}://{}/v2/{path}", mirror.scheme, mirror.host),
                true,
            ),
            None => (format!("{}://{}", mirror.scheme, mirror.host), false),
        };
        let hosts = HostsFile {
            server: format!("{}://{}", server.scheme, server.host),
            ca: server_ca,
            skip_verify: server.skip_verify,
            host: BTreeMap::from([(
                url,
                Host {
                    capabilities: ["pull", "resolve"],
                    override_path,
                    ca: mirror_ca,
                    skip_verify: mirror.skip_verify,
                },
            )]),
        };
        let body = toml::to_string(&hosts).map_err(|e| crate::Error::Write {
            file: format!("{dir}/hosts.toml"),
            why: e.to_string(),
        })?;
        files.push(NodeFile {
            path: format!("{dir}/hosts.toml"),
            text: format!(
                "{}# {}: images keep their names; pulls go to the mirror first, then to the server.\n{body}",
                crate::header("#", config),
                m.rule
            ),
        });
    }
    Ok(files)
}
