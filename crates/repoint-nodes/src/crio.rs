//! CRI-O's and podman's `registries.conf` (version 2, containers-image's
//! format): one `[[registry]]` per rule, its `prefix` the rule's scope
//! and its `[[registry.mirror]]` the rule's target. containers-image picks
//! the longest matching prefix and replaces it by the mirror's location,
//! which is the rewrite's own arithmetic; rules an earlier rule shadows
//! were left out before, so longest-prefix and first-match agree.
//!
//! An `excludeImages` registry/path below a mirrored scope becomes a
//! `[[registry]]` without mirrors, which the longer prefix selects. CA
//! files go where containers-image looks for them,
//! `certs.d/<host>/ca.crt` (`/etc/containers/certs.d` on a node).

use serde::Serialize;

use crate::{NodeFile, Plan, Reach, Result};
use repoint_core::RegistryPath;
use repoint_core::matching::ImagePattern;

/// The file, below the output directory.
pub const FILE: &str = "crio/registries.conf";
/// The CA files' directory, below the output directory.
pub const CERTS_DIR: &str = "crio/certs.d";

#[derive(Serialize)]
struct RegistriesConf {
    registry: Vec<Registry>,
}

#[derive(Serialize)]
struct Registry {
    prefix: String,
    location: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mirror: Vec<Mirror>,
}

#[derive(Serialize)]
struct Mirror {
    location: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
}

/// A location as containers-image writes it: the reached host and the
/// path; `insecure` for plain http or unverified TLS.
fn location(plan: &Plan, at: &RegistryPath) -> (String, bool, Reach) {
    let reach = plan.reach(&at.registry);
    let text = match &at.path {
        Some(path) => format!("{}/{path}", reach.host),
        None => reach.host.clone(),
    };
    (text, reach.scheme == "http" || reach.skip_verify, reach)
}

fn ca_file(reach: &Reach, registry: &str, files: &mut Vec<NodeFile>) -> Result<()> {
    if let Some(path) = &reach.ca {
        let path_in_output = format!("{CERTS_DIR}/{}/ca.crt", reach.host);
        if !files.iter().any(|f| f.path == path_in_output) {
            files.push(NodeFile {
                path: path_in_output,
                text: crate::read_ca(registry, path)?,
            });
        }
    }
    Ok(())
}

/// `registries.conf` and the CA files it needs; what it cannot express
/// goes in `notes`.
pub(crate) fn files(
    plan: &Plan,
    config: &repoint_config::Config,
    notes: &mut Vec<String>,
) -> Result<Vec<NodeFile>> {
    let mut files = Vec::new();
    let mut registries = Vec::new();
    for m in &plan.mirrors {
        let (upstream, upstream_insecure, upstream_reach) = location(plan, &m.scope);
        let (mirror, mirror_insecure, mirror_reach) = location(plan, &m.location);
        ca_file(&upstream_reach, &m.scope.registry, &mut files)?;
        ca_file(&mirror_reach, &m.location.registry, &mut files)?;
        registries.push(Registry {
            prefix: m.scope.to_string(),
            location: upstream,
            insecure: upstream_insecure,
            mirror: vec![Mirror {
                location: mirror,
                insecure: mirror_insecure,
            }],
        });
    }
    for x in &plan.exclusions {
        let below_a_mirror = |p: &RegistryPath| plan.mirrors.iter().any(|m| m.scope.covers(p));
        match &x.pattern {
            ImagePattern::Prefix(p) if below_a_mirror(p) => {
                if registries.iter().any(|r| r.prefix == p.to_string()) {
                    notes.push(format!(
                        "{}: another rule mirrors exactly {p}; registries.conf keeps that rule's mirror",
                        x.rule
                    ));
                    continue;
                }
                let (upstream, insecure, _) = location(plan, p);
                registries.push(Registry {
                    prefix: p.to_string(),
                    location: upstream,
                    insecure,
                    mirror: Vec::new(),
                });
            }
            ImagePattern::Prefix(_) => {}
            ImagePattern::Glob(_)
                if plan
                    .mirrors
                    .iter()
                    .any(|m| crate::may_match_on(&x.pattern, &m.scope.registry)) =>
            {
                notes.push(format!(
                    "{}: registries.conf cannot leave images out by glob; CRI-O nodes pull those on mirrored registries through the mirrors",
                    x.rule
                ))
            }
            ImagePattern::Glob(_) => {}
        }
    }
    let body = toml::to_string(&RegistriesConf {
        registry: registries,
    })
    .map_err(|e| crate::Error::Write {
        file: FILE.into(),
        why: e.to_string(),
    })?;
    files.push(NodeFile {
        path: FILE.into(),
        text: format!(
            "{}# A drop-in for /etc/containers/registries.conf.d/ (CRI-O, podman, skopeo).\n{body}",
            crate::header("#", config)
        ),
    });
    Ok(files)
}
