//! The files and environment variables a config reads at run time
//! (credentials, the Secret `secretFrom.file` copies, registries' CA
//! files, the public keys `verify:` checks pulled policies with), carried
//! into the cluster. A path in the config means nothing in
//! the server's pod, and a password must never sit in a ConfigMap: each is
//! read now, stored in the Secret `repoint-files`, mounted at
//! [`MOUNT`], and the ConfigMap's copy of the config names it there. A
//! password from an environment variable goes into the same Secret and
//! reaches the server in the same variable.

use std::collections::BTreeMap;

use repoint_config::Config;
use repoint_core::patch::PatchOp;
use serde_json::{Value, json};

use crate::{Error, Result};

/// The Secret's name.
pub const SECRET: &str = "repoint-files";
/// Where the server's pod mounts it.
pub const MOUNT: &str = "/etc/repoint/files";
/// Largest file carried (a Secret holds at most 1 MiB in all).
const MAX_FILE: u64 = 512 << 10;

/// What the config needs in the pod.
#[derive(Debug, Default)]
pub struct Carried {
    /// The Secret's data, by key, not yet encoded.
    pub data: BTreeMap<String, String>,
    /// Edits of the config naming each file at its mounted path.
    pub edits: Vec<PatchOp>,
    /// The server container's `env` entries taking passwords from the
    /// Secret.
    pub env: Vec<Value>,
    /// Things to know (credential helpers that do not exist in the pod).
    pub notes: Vec<String>,
}

impl Carried {
    /// Read what `config` names. A file that cannot be read, or a variable
    /// that is not set, is an error naming the config key; no error shows
    /// a value.
    pub fn of(config: &Config) -> Result<Self> {
        let mut carried = Self::default();
        for (i, c) in config.file.credentials.iter().enumerate() {
            let key = |what: &str| format!("credentials-{i}-{what}");
            if let Some(file) = &c.password_file {
                carried.file(
                    config,
                    &format!("credentials[{i}].passwordFile"),
                    file,
                    key("password"),
                    &format!("/credentials/{i}/passwordFile"),
                )?;
            }
            if let Some(file) = &c.secret_file {
                carried.file(
                    config,
                    &format!("credentials[{i}].secretFile"),
                    file,
                    key("secret.yaml"),
                    &format!("/credentials/{i}/secretFile"),
                )?;
            }
            if let Some(file) = &c.docker_config {
                let path = match file.as_str() {
                    "default" => repoint_credentials::default_docker_config().ok_or_else(|| Error::Carried {
                        key: format!("credentials[{i}].dockerConfig"),
                        why: "`default` names the docker config of this machine's user, and there is none (no HOME or DOCKER_CONFIG)".into(),
                    })?,
                    _ => config.path(file),
                };
                let text = read(&format!("credentials[{i}].dockerConfig"), &path)?;
                if text.contains("\"credsStore\"") || text.contains("\"credHelpers\"") {
                    carried.notes.push(format!(
                        "credentials[{i}].dockerConfig ({}) uses credential helpers, which the server's image does not have: only its `auths` entries work in the cluster",
                        path.display()
                    ));
                }
                carried.add(
                    key("docker-config.json"),
                    text,
                    &format!("/credentials/{i}/dockerConfig"),
                );
            }
            if let Some(variable) = &c.password_env {
                let value = std::env::var(variable).map_err(|_| Error::Carried {
                    key: format!("credentials[{i}].passwordEnv"),
                    why: format!("{variable} is not set here; its value goes into the Secret {SECRET} that the server reads it from"),
                })?;
                let key = key("password-env");
                carried.env.push(json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}));
                carried.data.insert(key, value);
            }
        }
        if let Some(file) = config
            .file
            .secret_from
            .as_ref()
            .and_then(|s| s.file.as_ref())
        {
            carried.file(
                config,
                "secretFrom.file",
                file,
                "secret-from.yaml".into(),
                "/secretFrom/file",
            )?;
        }
        for (n, (name, registry)) in config.file.registries.iter().enumerate() {
            if let Some(file) = &registry.ca {
                let pointer = repoint_core::pointer::join(["registries", name.as_str(), "ca"]);
                carried.file(
                    config,
                    &format!("registries.{name}.ca"),
                    file,
                    format!("registry-{n}-ca.pem"),
                    &pointer,
                )?;
            }
        }
        if let Some(verify) = &config.file.verify {
            for (k, file) in verify.keys.iter().enumerate() {
                carried.file(
                    config,
                    &format!("verify.keys[{k}]"),
                    file,
                    format!("verify-key-{k}.pub"),
                    &format!("/verify/keys/{k}"),
                )?;
            }
        }
        for (i, policy) in config.file.policies.iter().enumerate() {
            for (k, file) in policy.verify.iter().flat_map(|v| &v.keys).enumerate() {
                carried.file(
                    config,
                    &format!("policies[{i}].verify.keys[{k}]"),
                    file,
                    format!("policy-{i}-verify-key-{k}.pub"),
                    &format!("/policies/{i}/verify/keys/{k}"),
                )?;
            }
        }
        Ok(carried)
    }

    fn file(
        &mut self,
        config: &Config,
        what: &str,
        file: &str,
        key: String,
        pointer: &str,
    ) -> Result<()> {
        let text = read(what, &config.path(file))?;
        self.add(key, text, pointer);
        Ok(())
    }

    fn add(&mut self, key: String, text: String, pointer: &str) {
        self.edits.push(PatchOp::replace(
            pointer,
            Value::String(format!("{MOUNT}/{key}")),
        ));
        self.data.insert(key, text);
    }

    /// The config text with every carried file named at its mounted path.
    pub fn config_text(&self, text: &str) -> Result<String> {
        if self.edits.is_empty() {
            return Ok(text.to_string());
        }
        let stream = repoint_core::Stream::parse(
            "repoint.yaml",
            text.to_string(),
            repoint_core::Limits::default(),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let rendered = stream
            .render(&[(0, self.edits.clone())])
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(rendered.into_owned())
    }
}

fn read(what: &str, path: &std::path::Path) -> Result<String> {
    let bytes = repoint_core::bounded::read_file(path, MAX_FILE).map_err(|e| Error::Carried {
        key: what.to_string(),
        why: format!("cannot read {}: {e}", path.display()),
    })?;
    String::from_utf8(bytes).map_err(|_| Error::Carried {
        key: what.to_string(),
        why: format!("{} is not UTF-8 text", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public keys of `verify:` reach the pod like the other files:
    /// into the Secret, and the config names them at the mount.
    #[test]
    fn verify_keys_are_carried() {
        const TEXT: &str = "apiVersion: repoint.dev/v1alpha1\nkind: Config\nverify: {keys: [team.pub]}\npolicies:\n- name: m\n  module: oci://registry.corp.example/p/m:1\n  verify: {keys: [vendor.pub]}\n";
        let dir = std::env::temp_dir().join(format!("repoint-carried-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("team.pub"), "TEAM KEY").expect("key");
        std::fs::write(dir.join("vendor.pub"), "VENDOR KEY").expect("key");
        let config = Config::parse("repoint.yaml", TEXT.into(), dir.clone()).expect("config");
        let carried = Carried::of(&config).expect("carried");
        assert_eq!(carried.data["verify-key-0.pub"], "TEAM KEY");
        assert_eq!(carried.data["policy-0-verify-key-0.pub"], "VENDOR KEY");
        let text = carried.config_text(TEXT).expect("rendered");
        assert!(
            text.contains(&format!("{MOUNT}/verify-key-0.pub")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{MOUNT}/policy-0-verify-key-0.pub")),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
