//! `repoint new policy NAME`: a policy project that builds at once, outside
//! this workspace, with an example rule, its test suite, a config that
//! uses it, and a README with the three commands (build, test, run).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::args::{NewPolicyArgs, PolicyLanguage};

/// The Rust project, as (path, template). `{{name}}` is the policy's
/// name, `{{crate}}` its crate name, `{{sdk}}` the SDK's directory.
const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/policy-rust/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/policy-rust/src/lib.rs.tmpl"),
    ),
    (
        "repoint-test.yaml",
        include_str!("../templates/policy-rust/repoint-test.yaml.tmpl"),
    ),
    (
        "repoint.yaml",
        include_str!("../templates/policy-rust/repoint.yaml.tmpl"),
    ),
    (
        "examples/pod.yaml",
        include_str!("../templates/policy-rust/examples/pod.yaml.tmpl"),
    ),
    (
        "README.md",
        include_str!("../templates/policy-rust/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../templates/policy-rust/gitignore.tmpl"),
    ),
    // The versions this repoint was built and tested with; cargo drops
    // what the policy does not use.
    ("Cargo.lock", include_str!("../../../Cargo.lock")),
];

/// Where this build's SDK sources are (a path dependency works from
/// anywhere on this machine).
fn built_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../repoint-policy")
}

pub fn run(args: &NewPolicyArgs) -> Result<ExitCode> {
    let name = &args.name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        bail!(
            "{name:?} is not a valid policy name: lower-case letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} exists and is not empty; nothing was written",
            dir.display()
        );
    }
    let templates = match args.lang {
        PolicyLanguage::Rust => RUST,
    };
    let sdk = args.sdk.clone().unwrap_or_else(built_sdk);
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the repoint-policy SDK is not at {} (give its directory with --sdk)",
            sdk.display()
        )
    })?;
    let crate_name = name.replace('-', "_");
    for (path, template) in templates {
        let text = template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string());
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    println!(
        "created {} ({} policy {name}); next:",
        dir.display(),
        args.lang.as_str()
    );
    println!("  cd {}", dir.display());
    println!("  cargo build --release --target wasm32-wasip2");
    println!("  repoint test");
    println!("  repoint run -c repoint.yaml examples/pod.yaml");
    Ok(ExitCode::SUCCESS)
}
