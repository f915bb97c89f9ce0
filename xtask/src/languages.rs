//! `cargo xtask bench-languages`: the same rule (deny images from
//! registries not in `allow`, warn on `:latest`) as `repoint new policy`
//! writes it in Rust, Python and JavaScript, built fresh, compared on
//! component size, cold load (compile) time, and evaluation time per
//! resource over the same input, in one invocation.
//!
//! Per-resource time is (policy run - identity run) / resources, where the
//! identity run parses and writes the same input with no policy, at one
//! thread: on Pods whose images repeat (answered from earlier evaluations),
//! and on Pods whose images are each new (what one evaluation costs,
//! instantiation included).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{cpu_model, root, time};

struct Options {
    objects: usize,
    runs: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let (mut objects, mut runs) = (2000, 5);
    crate::numeric_options(
        args,
        &mut [("--objects", &mut objects), ("--runs", &mut runs)],
    )?;
    Ok(Options {
        objects: objects.max(1),
        runs: runs.max(1),
    })
}

/// A language's project: where the scaffold writes it, what installs its
/// build tool (linked from the example), and where its component lands.
struct Language {
    lang: &'static str,
    /// The example's installed build tool, linked into the project.
    installed: Option<&'static str>,
    build: &'static [&'static str],
    component: &'static str,
}

const LANGUAGES: [Language; 3] = [
    Language {
        lang: "rust",
        installed: None,
        build: &[
            "cargo",
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
        component: "target/wasm32-wasip2/release/bench_rule.wasm",
    },
    Language {
        lang: "python",
        installed: Some(".venv"),
        build: &[
            ".venv/bin/componentize-py",
            "-q",
            "-d",
            "wit",
            "-w",
            "selective-policy",
            "componentize",
            "app",
            "-o",
            "policy.wasm",
        ],
        component: "policy.wasm",
    },
    Language {
        lang: "js",
        installed: Some("node_modules"),
        build: &["npm", "run", "--silent", "build"],
        component: "policy.wasm",
    },
];

fn run_ok(command: &mut Command, what: &str) -> Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Scaffold and build one language's policy; its component's path.
fn build(repoint: &Path, dir: &Path, language: &Language) -> Result<PathBuf> {
    let project = dir.join(language.lang);
    run_ok(
        Command::new(repoint)
            .args([
                "new",
                "policy",
                "bench-rule",
                "--lang",
                language.lang,
                "--dir",
            ])
            .arg(&project),
        "repoint new policy",
    )?;
    if let Some(installed) = language.installed {
        let tool = root()
            .join("examples/policies")
            .join(language.lang)
            .join(installed);
        if !tool.exists() {
            bail!("{} is missing: run `bash .ci/setup`", tool.display());
        }
        std::os::unix::fs::symlink(&tool, project.join(installed))?;
    }
    run_ok(
        Command::new(language.build[0])
            .args(&language.build[1..])
            .current_dir(&project),
        &format!("building the {} policy", language.lang),
    )?;
    Ok(project.join(language.component))
}

/// `objects` Pods, each with an allowed image and one from elsewhere; one
/// in ten is on `:latest`. With `new_images`, each Pod's other image has
/// a tag of its own, so no two Pods show a policy the same images and
/// every one is evaluated.
fn input(objects: usize, new_images: bool) -> String {
    let mut text = String::new();
    for i in 0..objects {
        let tag = if i % 10 == 0 { "latest" } else { "1.0" };
        let proxy = if new_images {
            format!("v1.31.{i}")
        } else {
            "v1.31.0".to_string()
        };
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: shop\nspec:\n  containers:\n  - name: app\n    image: mirror.corp.example/app:{tag}\n  - name: proxy\n    image: envoyproxy/envoy:{proxy}\n"
        ));
    }
    text
}

pub fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let repoint = crate::release_repoint()?;
    let dir = root().join("target/bench-languages");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("pods.yaml");
    std::fs::write(&data, input(o.objects, false))?;
    let new_data = dir.join("new-pods.yaml");
    std::fs::write(&new_data, input(o.objects, true))?;
    let identity = dir.join("identity.yaml");
    std::fs::write(
        &identity,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies: []\n",
    )?;
    let run_on = |data: &Path, config: &Path, runs: usize| {
        time(runs, || {
            let mut c = Command::new(&repoint);
            c.args(["run", "-j", "1", "-c"]).arg(config).arg(data);
            c
        })
    };
    let run_with = |config: &Path, runs: usize| run_on(&data, config, runs);

    let cores = repoint_core::parallel::cores();
    println!("machine: {cores} cores, {}", cpu_model());
    println!(
        "input: {} Pods with 2 images each (repeating: two image lists in all; new: each Pod's its own); one thread; median of {} runs\n",
        o.objects, o.runs
    );
    let mut rows = Vec::new();
    for language in &LANGUAGES {
        let component = build(&repoint, &dir, language)?;
        let bytes = std::fs::read(&component)?;
        let size = bytes.len() as u64;
        let filled = crate::tables::filled_per_instance(&bytes)?;
        let config = dir.join(format!("{}.yaml", language.lang));
        std::fs::write(
            &config,
            format!(
                "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: bench-rule\n  module: {}\n  settings: {{allow: [mirror.corp.example]}}\n",
                component.display()
            ),
        )?;
        // Compiling and loading, without the compiled-code cache.
        let cold = time(1, || {
            let mut c = Command::new(&repoint);
            c.args(["policy", "inspect", "--no-cache"]).arg(&component);
            c
        })?;
        // Warm the cache, then measure.
        run_with(&config, 1)?;
        let repeating = run_with(&config, o.runs)?;
        let new = run_on(&new_data, &config, o.runs)?;
        rows.push((language.lang, size, filled, cold, repeating, new));
    }
    let id = run_with(&identity, o.runs)?.as_secs_f64();
    let new_id = run_on(&new_data, &identity, o.runs)?.as_secs_f64();
    let per_resource =
        |t: std::time::Duration, id: f64| (t.as_secs_f64() - id).max(0.0) / o.objects as f64;
    let rust = per_resource(rows[0].5, new_id);
    println!(
        "| policy | component | table entries filled per instance | cold load (compile) | run, repeating | per resource, repeating | run, new | per resource, new | new vs Rust |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!("| identity (no policy) | | | | {id:.3} s | | {new_id:.3} s | | |");
    for (lang, size, filled, cold, repeating, new) in &rows {
        let each = per_resource(*new, new_id);
        println!(
            "| {lang} | {:.2} MB | {filled} | {:.2} s | {:.3} s | {:.1} µs | {:.3} s | {:.1} µs | {:.1}x |",
            *size as f64 / 1e6,
            cold.as_secs_f64(),
            repeating.as_secs_f64(),
            per_resource(*repeating, id) * 1e6,
            new.as_secs_f64(),
            each * 1e6,
            each / rust
        );
    }
    Ok(())
}
