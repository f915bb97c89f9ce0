//! Build the policy components (`policies/*` and the test policies in
//! `tests/policies/*`) for `wasm32-wasip2` with a nested cargo, as wasmtime's
//! test-programs do, and embed the built-ins in the library. A fresh clone
//! needs no extra step beyond having the wasm target installed.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));

    for dir in [
        "policies",
        "tests/policies",
        "crates/repoint-policy",
        "crates/repoint-core",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=REPOINT_POLICY_PROFILE");

    if !target_installed() {
        panic!(
            "\n\nrepoint builds its policies for {TARGET}, and that target is not installed for this toolchain.\n\
             Run:  rustup target add {TARGET}\n\
             (or `rustup toolchain install` in the repository, or `bash .ci/setup`)\n\n"
        );
    }

    let builtins = crates_in(&root.join("policies"));
    let tests = crates_in(&root.join("tests/policies"));
    let target_dir = root.join("target/wasm-policies");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _) in builtins.iter().chain(&tests) {
        cmd.args(["-p", package]);
    }
    // Keep the outer build's flags and target out of the nested one.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // Small, fast components: full LTO, no debug info.
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    let status = cmd.status().expect("run cargo for the policies");
    assert!(
        status.success(),
        "building the policies for {TARGET} failed"
    );

    let wasm = |package: &str| {
        target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", package.replace('-', "_")))
    };
    let mut generated = String::from(
        "/// Built-in policies: (name, component bytes).\npub const BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (package, _) in &builtins {
        generated.push_str(&format!(
            "    ({package:?}, include_bytes!({:?})),\n",
            wasm(package)
        ));
    }
    generated.push_str("];\n\n/// Test policies (tests/policies): (name, path of the component).\npub const TEST_POLICIES: &[(&str, &str)] = &[\n");
    for (package, _) in &tests {
        generated.push_str(&format!(
            "    ({package:?}, {:?}),\n",
            wasm(package).display().to_string()
        ));
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("builtins.rs"), generated).expect("write builtins.rs");
}

/// Whether the toolchain has the standard library for the wasm target.
fn target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir()
}

/// Package names of the crates directly under `dir`, sorted.
fn crates_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("name = \"")
                    .and_then(|r| r.strip_suffix('"'))
            })
            .expect("package name in Cargo.toml");
        found.push((name.to_string(), entry.path()));
    }
    found.sort();
    found
}
