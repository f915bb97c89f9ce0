//! `cargo xtask`: project automation that needs more than `cargo` alone.
//!
//! - `cargo xtask check-wasm`: make sure the `wasm32-wasip2` target is
//!   installed (with a message naming the fix when it is not) and that
//!   `repoint-core` builds for it, since the guest SDK reuses it.
//! - `cargo xtask bench [--size MB] [--runs N]`: `repoint run` with the three
//!   built-ins over the corpus replicated to ~100 MB, at one thread and at
//!   all cores, against an identity run (no policies) and, when `kubectl` is
//!   on PATH, against `kubectl kustomize` doing the same rewrites; then
//!   generated streams of many small objects (20,000 and 100,000 Pods, a
//!   mixed stream), each built-in alone and together: time, cost per
//!   object, peak RSS, and `kubectl kustomize` on the same streams.
//! - `cargo xtask bench-languages [--objects N] [--runs N]`: the scaffold's
//!   rule in Rust, Python and JavaScript: component size, cold load time
//!   and evaluation time per resource.
//! - `cargo xtask codegen [--root DIR] [--check]`: write the documentation
//!   generated from the sources it describes (`docs/contract.md`,
//!   `docs/cli.md`, `docs/man/`, `docs/policies/`), or with `--check` fail
//!   naming what is stale.
//! - `cargo xtask fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets in
//!   `fuzz/`, seeded from `../shared/`, N seconds each; fails on a finding.
//! - `cargo xtask loadtest [--seconds N] [--concurrency N] [--rate N]`:
//!   `repoint serve` under `oha` over TLS, against an empty policy set, and
//!   with 10% of the requests going to a looping policy.

mod bench;
mod codegen;
mod coldstart;
mod fuzz;
mod languages;
mod loadtest;
mod scale;
mod tables;

use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check-wasm") => check_wasm(),
        Some("bench") => bench::run(&args[1..]),
        Some("loadtest") => loadtest::run(&args[1..]),
        Some("coldstart") => coldstart::run(&args[1..]),
        Some("codegen") => codegen::run(&args[1..]),
        Some("bench-languages") => languages::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask check-wasm | codegen [--root DIR] [--check] | bench [--size MB] [--runs N] | bench-languages [--objects N] [--runs N] | fuzz [--seconds N] [TARGET] | loadtest [--seconds N] [--concurrency N] [--rate N] | coldstart [--runs N]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parse `--name N` pairs into the named numbers; anything else is an
/// error naming it.
pub(crate) fn numeric_options(args: &[String], options: &mut [(&str, &mut usize)]) -> Result<()> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some((_, slot)) = options.iter_mut().find(|(name, _)| name == arg) else {
            bail!("unknown option {arg}");
        };
        let value = it.next().with_context(|| format!("{arg}: missing value"))?;
        **slot = value
            .parse()
            .with_context(|| format!("{arg}: {value:?} is not a number"))?;
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Build the `repoint` binary with the release profile; its path.
pub(crate) fn release_repoint() -> Result<std::path::PathBuf> {
    let status = cargo()
        .args(["build", "--release", "--quiet", "-p", "repoint-cli"])
        .status()
        .context("building repoint")?;
    if !status.success() {
        bail!("building repoint failed");
    }
    Ok(bench::root().join("target/release/repoint"))
}

/// Whether the active toolchain has the standard library for `target`.
fn target_installed(target: &str) -> Result<bool> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    let sysroot = String::from_utf8(out.stdout).context("sysroot is not UTF-8")?;
    Ok(std::path::Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(target)
        .is_dir())
}

fn check_wasm() -> Result<()> {
    if !target_installed(WASM_TARGET)? {
        bail!(
            "the {WASM_TARGET} target is not installed for this toolchain; run `rustup target add {WASM_TARGET}` (or `rustup toolchain install` in the repository)"
        );
    }
    let status = cargo()
        .args([
            "build",
            "--quiet",
            "-p",
            "repoint-core",
            "--target",
            WASM_TARGET,
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("repoint-core does not build for {WASM_TARGET}");
    }
    println!("repoint-core builds for {WASM_TARGET}");
    Ok(())
}
