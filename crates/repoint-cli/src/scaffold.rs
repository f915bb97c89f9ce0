//! `repoint new policy NAME`: a policy project that builds at once, outside
//! this workspace, with an example rule, its test suite, a config that
//! uses it, and a README with the three commands (build, test, run).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::args::{NewPolicyArgs, PolicyLanguage};

/// A project to write: its files as (path, template) and the name the
/// templates use for the policy. Its README's first `sh` block holds the
/// commands to run next.
struct Project {
    files: &'static [(&'static str, &'static str)],
    /// Replaced by the policy's name wherever it appears.
    name: &'static str,
}

/// The commands of a README's first `sh` block, comments left out.
fn readme_commands(readme: &str) -> Vec<&str> {
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_default();
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The Rust project. `{{name}}` is the policy's name, `{{crate}}` its
/// crate name, `{{sdk}}` the SDK's directory.
const RUST: Project = Project {
    files: &[
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
    ],
    name: "{{name}}",
};

/// The contract, which the Python and JavaScript toolchains read to
/// generate their bindings.
const WIT: [(&str, &str); 3] = [
    ("wit/world.wit", include_str!("../../../wit/world.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/host.wit", include_str!("../../../wit/host.wit")),
];

/// The Python project is the example in `examples/policies/python`, whose
/// `wit/` links to the contract; tests build both.
const PYTHON: Project = Project {
    files: &[
        WIT[0],
        WIT[1],
        WIT[2],
        (
            "app.py",
            include_str!("../../../examples/policies/python/app.py"),
        ),
        (
            "requirements.txt",
            include_str!("../../../examples/policies/python/requirements.txt"),
        ),
        (
            "repoint-test.yaml",
            include_str!("../../../examples/policies/python/repoint-test.yaml"),
        ),
        (
            "repoint.yaml",
            include_str!("../../../examples/policies/python/repoint.yaml"),
        ),
        (
            "examples/pod.yaml",
            include_str!("../../../examples/policies/python/examples/pod.yaml"),
        ),
        (
            "README.md",
            include_str!("../../../examples/policies/python/README.md"),
        ),
        (
            ".gitignore",
            include_str!("../../../examples/policies/python/.gitignore"),
        ),
    ],
    name: "allowed-registries-py",
};

/// The JavaScript project is the example in `examples/policies/js`.
const JS: Project = Project {
    files: &[
        WIT[0],
        WIT[1],
        WIT[2],
        (
            "policy.js",
            include_str!("../../../examples/policies/js/policy.js"),
        ),
        (
            "package.json",
            include_str!("../../../examples/policies/js/package.json"),
        ),
        (
            "package-lock.json",
            include_str!("../../../examples/policies/js/package-lock.json"),
        ),
        (
            "repoint-test.yaml",
            include_str!("../../../examples/policies/js/repoint-test.yaml"),
        ),
        (
            "repoint.yaml",
            include_str!("../../../examples/policies/js/repoint.yaml"),
        ),
        (
            "examples/pod.yaml",
            include_str!("../../../examples/policies/js/examples/pod.yaml"),
        ),
        (
            "README.md",
            include_str!("../../../examples/policies/js/README.md"),
        ),
        (
            ".gitignore",
            include_str!("../../../examples/policies/js/.gitignore"),
        ),
    ],
    name: "allowed-registries-js",
};

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
    if args.sdk.is_some() && args.lang != PolicyLanguage::Rust {
        bail!("--sdk is for Rust policies only");
    }
    let (project, sdk) = match args.lang {
        PolicyLanguage::Rust => {
            let sdk = args.sdk.clone().unwrap_or_else(built_sdk);
            let sdk = sdk.canonicalize().with_context(|| {
                format!(
                    "the repoint-policy SDK is not at {} (give its directory with --sdk)",
                    sdk.display()
                )
            })?;
            (RUST, sdk.display().to_string())
        }
        PolicyLanguage::Python => (PYTHON, String::new()),
        PolicyLanguage::Js => (JS, String::new()),
    };
    let crate_name = name.replace('-', "_");
    for (path, template) in project.files {
        let text = template
            .replace(project.name, name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk);
        repoint_pipeline::files::atomic_write_creating_dirs(&dir.join(path), &text, 0o644)?;
    }
    println!(
        "created {} ({} policy {name}); next:",
        dir.display(),
        args.lang.as_str()
    );
    println!("  cd {}", dir.display());
    let readme = project
        .files
        .iter()
        .find(|(path, _)| *path == "README.md")
        .map_or("", |(_, text)| text);
    for command in readme_commands(readme) {
        println!("  {command}");
    }
    Ok(ExitCode::SUCCESS)
}
