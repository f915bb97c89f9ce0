//! A policy that misbehaves on purpose, for the host's fault tests. Its
//! `mode` setting picks the fault; it strikes in `evaluate`, except
//! `reject`, which fails `configure`.

use repoint_policy::prelude::*;
use repoint_policy::{LogLevel, PatchOp, PatchOpKind, SetImage, WitImageRef};
use serde::Deserialize;

/// Which fault to produce.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Spin forever.
    Loop,
    /// Allocate until memory runs out.
    Oom,
    /// Panic (a trap).
    Panic,
    /// Return an action naming no image site.
    Garbage,
    /// Return an image reference that does not parse.
    BadImage,
    /// Return an error.
    Fail,
    /// Log everything received, then do nothing.
    LogEverything,
    /// Try to reach outside the sandbox (files, environment, network,
    /// clock) and warn with what each attempt gave.
    Escape,
    /// Behave: rewrite every image to `busybox` (for convergence tests:
    /// with `alternate` it flips between two images and never converges).
    Rewrite,
    /// Warn with how many times this instance has evaluated: 1 whenever
    /// the host gives every evaluation a fresh instance.
    Count,
    /// Warn with every part of the resource it was shown (the object's
    /// JSON by its length).
    Show,
    /// Set the object's labels to `pinned: "yes"` with a raw JSON Patch
    /// step, whatever it reads: the change depends on labels it may not
    /// have been shown.
    Relabel,
}

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The fault.
    pub mode: Mode,
    /// `rewrite` mode: flip between two images so the chain never settles.
    #[serde(default)]
    pub alternate: bool,
    /// Reject these settings with this message.
    #[serde(default)]
    pub reject: Option<String>,
    /// Log a line each time `configure` runs, so a test can count how
    /// often the host configures an instance.
    #[serde(default)]
    pub announce: bool,
    /// The parts of a resource to declare as read (WIT names); every part
    /// when absent.
    #[serde(default)]
    pub reads: Option<Vec<String>>,
}

/// `names` as resource parts; an unknown name is an error.
fn parts(names: &[String]) -> Result<ResourceParts, String> {
    names
        .iter()
        .try_fold(ResourceParts::empty(), |parts, name| {
            let part = match name.as_str() {
                "namespace" => ResourceParts::NAMESPACE,
                "name" => ResourceParts::NAME,
                "labels" => ResourceParts::LABELS,
                "annotations" => ResourceParts::ANNOTATIONS,
                "pull-secrets" => ResourceParts::PULL_SECRETS,
                "service-account" => ResourceParts::SERVICE_ACCOUNT,
                "origin" => ResourceParts::ORIGIN,
                "object-json" => ResourceParts::OBJECT_JSON,
                "object-metadata" => ResourceParts::OBJECT_METADATA,
                other => return Err(format!("reads: no part {other:?}")),
            };
            Ok(parts | part)
        })
}

/// The policy.
#[derive(Debug)]
pub struct Misbehave;

impl Policy for Misbehave {
    type Settings = Settings;

    fn info() -> Info {
        Info::mutating("misbehave", "Misbehaves on purpose for fault tests")
    }

    fn validate(settings: &Settings) -> Result<(), String> {
        if settings.announce {
            log(LogLevel::Info, "configure ran");
        }
        if let Some(names) = &settings.reads {
            parts(names)?;
        }
        match &settings.reject {
            Some(msg) => Err(msg.clone()),
            None => Ok(()),
        }
    }

    fn reads(settings: &Settings) -> ResourceParts {
        match &settings.reads {
            Some(names) => parts(names).unwrap_or_else(|_| ResourceParts::all()),
            None => ResourceParts::all(),
        }
    }

    fn evaluate(settings: &Settings, resource: &Resource) -> Result<Vec<Action>, String> {
        match settings.mode {
            Mode::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Oom => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Panic => panic!("misbehave: panicking on purpose"),
            Mode::Garbage => Ok(vec![Action::SetImage(SetImage {
                pointer: "/no/such/site".into(),
                image: WitImageRef {
                    registry: "x.io".into(),
                    repository: "y".into(),
                    tag: None,
                    digest: None,
                },
            })]),
            Mode::BadImage => Ok(resource
                .images
                .iter()
                .map(|site| {
                    Action::SetImage(SetImage {
                        pointer: site.pointer.clone(),
                        image: WitImageRef {
                            registry: "Not A Registry".into(),
                            repository: "UPPER/case".into(),
                            tag: Some("bad tag".into()),
                            digest: None,
                        },
                    })
                })
                .collect()),
            Mode::Fail => Err("misbehave: failing on purpose".into()),
            Mode::Escape => Ok(vec![
                Action::Warn(format!(
                    "file: {:?}",
                    std::fs::read_to_string("/etc/passwd").map(|s| s.len())
                )),
                Action::Warn(format!(
                    "dir: {:?}",
                    std::fs::read_dir("/").map(|d| d.count())
                )),
                Action::Warn(format!("env: {:?}", std::env::vars().collect::<Vec<_>>())),
                Action::Warn(format!(
                    "tcp: {:?}",
                    std::net::TcpStream::connect("127.0.0.1:9").map(|_| ())
                )),
                Action::Warn(format!(
                    "clock: {:?}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                )),
            ]),
            Mode::Count => {
                static EVALUATIONS: std::sync::atomic::AtomicU32 =
                    std::sync::atomic::AtomicU32::new(0);
                let n = EVALUATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                Ok(vec![Action::Warn(format!(
                    "evaluation {n} of this instance"
                ))])
            }
            Mode::Show => Ok(vec![Action::Warn(format!(
                "namespace={:?} name={:?} labels={:?} annotations={:?} pull-secrets={:?} \
                 service-account={:?} origin={:?} object-json={} bytes images={}",
                resource.namespace,
                resource.name,
                resource.labels,
                resource.annotations,
                resource.pull_secrets,
                resource.service_account,
                resource.origin,
                resource.object_json.len(),
                resource.images.len(),
            ))]),
            Mode::LogEverything => {
                log(LogLevel::Info, &format!("{resource:?}"));
                Ok(vec![])
            }
            Mode::Relabel => Ok(vec![Action::JsonPatch(vec![PatchOp {
                op: PatchOpKind::Add,
                path: "/metadata/labels".into(),
                from: None,
                value_json: Some(r#"{"pinned":"yes"}"#.into()),
            }])]),
            Mode::Rewrite => Ok(resource
                .image_refs()
                .into_iter()
                .map(|(site, image)| {
                    let target = if settings.alternate && image.repository == "library/busybox" {
                        "alpine"
                    } else {
                        "busybox"
                    };
                    let new = parse_image(target).unwrap_or(image);
                    set_image(site, &new)
                })
                .collect()),
        }
    }
}

export_policy!(Misbehave);
