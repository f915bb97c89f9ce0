//! The ConfigMap and DaemonSet that install the containerd files on every
//! node, as the cloud guides do: an init container copies them from the
//! ConfigMap into the node's hosts directory (a `hostPath`), and a pause
//! container keeps the pod, so a changed ConfigMap rolls out again (the
//! pod template carries the files' hash).
//!
//! Hardened: every container has a read-only root filesystem, no
//! privilege escalation and no capabilities; the pod has no service
//! account token and tolerates every taint. The installer runs as root,
//! because the hosts directory is root's on the node; dropping every
//! capability leaves it root's own files and nothing else. The idle
//! container runs as nobody.

use repoint_core::ImageRef;
use repoint_core::document::emit::IndentStyle;
use repoint_core::mirror::Outcome;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Error, NodeFile, Plan, Request, Result};

/// The file, below the output directory.
pub const FILE: &str = "daemonset.yaml";
/// The ConfigMap's and DaemonSet's name.
pub const NAME: &str = "repoint-node-mirrors";

/// Where the installer sees the ConfigMap's files and the node's hosts
/// directory.
const FILES_MOUNT: &str = "/repoint/files";
const HOSTS_MOUNT: &str = "/host/certs.d";

/// The installer, run as `sh -c SCRIPT install FROM TO`. Each file is
/// copied beside its place and renamed there, so containerd never reads
/// half a file; files an earlier version installed and this one does not
/// are removed (the list of installed files is kept in the hosts
/// directory), and nothing else there is touched.
pub const INSTALL_SCRIPT: &str = r#"set -eu
from=$1
to=$2
list=$(mktemp "$to/.repoint-installed.XXXXXX")
cd "$from"
for file in */*; do
  [ -f "$file" ] || continue
  mkdir -p "$to/${file%/*}"
  cp "$file" "$to/$file.repoint-new"
  mv "$to/$file.repoint-new" "$to/$file"
  echo "$file" >> "$list"
done
if [ -f "$to/.repoint-installed" ]; then
  while read -r file; do
    if ! grep -qxF "$file" "$list"; then
      rm -f "$to/$file"
      rmdir "$to/${file%/*}" 2>/dev/null || true
    fi
  done < "$to/.repoint-installed"
fi
mv "$list" "$to/.repoint-installed"
echo "repoint: $(wc -l < "$to/.repoint-installed") files installed in $to"
"#;

/// An image as the config's rules would write it: the DaemonSet is what
/// puts the mirrors on the nodes, so its own pulls cannot rely on them.
fn through_rules(plan: &Plan, image: &str) -> Result<String> {
    let mut reference = ImageRef::parse(image).map_err(|e| Error::Image {
        image: image.to_string(),
        why: e.to_string(),
    })?;
    for settings in &plan.chain {
        // Checked when the plan was made.
        let Ok(mirrors) = settings.mirrors() else {
            continue;
        };
        if let Outcome::Rewritten { image, .. } = mirrors.apply(&reference) {
            reference = image;
        }
    }
    Ok(reference.to_string())
}

/// A ConfigMap key for a file: keys allow `[-._a-zA-Z0-9]` only.
fn key_of(path: &str, taken: &[String]) -> String {
    let base: String = path
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => c,
            _ => '_',
        })
        .collect();
    let mut key = base.clone();
    let mut n = 1;
    while taken.contains(&key) {
        n += 1;
        key = format!("{base}-{n}");
    }
    key
}

/// The manifest: the ConfigMap holding `files` (paths relative to the
/// hosts directory) and the DaemonSet installing them.
pub(crate) fn manifest(request: &Request<'_>, plan: &Plan, files: &[NodeFile]) -> Result<String> {
    let labels = json!({
        "app.kubernetes.io/name": NAME,
        repoint_core::MANAGED_BY.0: repoint_core::MANAGED_BY.1,
    });
    let mut keys: Vec<String> = Vec::new();
    let mut data = serde_json::Map::new();
    let mut items = Vec::new();
    let mut hash = Sha256::new();
    for file in files {
        let key = key_of(&file.path, &keys);
        keys.push(key.clone());
        hash.update(file.path.as_bytes());
        hash.update([0]);
        hash.update(file.text.as_bytes());
        hash.update([0]);
        data.insert(key.clone(), Value::String(file.text.clone()));
        items.push(json!({"key": key, "path": file.path}));
    }
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": request.namespace, "labels": labels},
        "data": data,
    });
    let locked_down = |user: u32| {
        json!({
            "runAsUser": user,
            "runAsGroup": user,
            "runAsNonRoot": user != 0,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        })
    };
    let daemon_set = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": request.namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"repoint.dev/files-sha256": format!("{:x}", hash.finalize())},
                },
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": [{
                        "name": "install",
                        "image": through_rules(plan, request.installer_image)?,
                        "command": ["sh", "-c", INSTALL_SCRIPT, "install", FILES_MOUNT, HOSTS_MOUNT],
                        "securityContext": locked_down(0),
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                        "volumeMounts": [
                            {"name": "files", "mountPath": FILES_MOUNT, "readOnly": true},
                            {"name": "hosts-dir", "mountPath": HOSTS_MOUNT},
                        ],
                    }],
                    "containers": [{
                        "name": "pause",
                        "image": through_rules(plan, request.pause_image)?,
                        "securityContext": locked_down(65535),
                        "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}, "limits": {"memory": "8Mi"}},
                    }],
                    "volumes": [
                        {"name": "files", "configMap": {"name": NAME, "items": items}},
                        {"name": "hosts-dir", "hostPath": {"path": request.hosts_dir, "type": "DirectoryOrCreate"}},
                    ],
                },
            },
        },
    });
    let mut out = crate::header("#", request.config);
    out.push_str(&format!(
        "# containerd reads these files when its CRI registry config_path is {} (the default from containerd 2.0).\n",
        request.hosts_dir
    ));
    for doc in [config_map, daemon_set] {
        out.push_str("---\n");
        out.push_str(
            &repoint_core::document::new_document(&doc, IndentStyle::default())
                .map_err(Error::Emit)?,
        );
    }
    Ok(out)
}
