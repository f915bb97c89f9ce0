//! The many-small-objects half of `cargo xtask bench`: the shape of GitOps
//! repositories and cluster audits, thousands of small workloads, where
//! what a policy costs per object decides the run (the corpus half has few,
//! large documents, where parsing does).
//!
//! The streams are generated here, not committed: 20,000 and 100,000
//! one-container Pods, and a mixed stream of Deployments (an init container
//! and two containers), CronJobs and Services (no images: not shown to
//! policies). Each runs with no policies (identity: parse, check, write
//! back), each built-in alone, and the three together, in turn, round after
//! round; a policy's cost per object is its run's time over identity's in
//! the same round, divided by the objects it was shown. Peak RSS is GNU time's. `kubectl kustomize` does the same renames
//! with an `images:` list, on the same streams, within a time limit.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bench::{median, time};

/// Images the generated workloads use, as written: Docker Hub's short
/// names, other registries, and one already on the mirror.
const IMAGES: &[&str] = &[
    "nginx:1.25",
    "quay.io/prometheus/node-exporter:v1.7.0",
    "ghcr.io/acme/api:v2.3.1",
    "docker.io/library/redis:7.2",
    "registry.k8s.io/pause:3.9",
    "mirror.corp.example/hub/library/busybox:1.36",
];

/// How long `kubectl kustomize` gets on one stream (it is quadratic in
/// the number of objects: 20,000 Pods took over 15 minutes).
const KUSTOMIZE_LIMIT: Duration = Duration::from_secs(120);
/// Fewest rounds of the small-object runs (`--runs` may ask for more):
/// each is a second or two, and the ratios are what the figures are for.
const ROUNDS: usize = 7;

/// A generated input stream.
struct Input {
    label: String,
    path: PathBuf,
    /// Objects policies are shown (Services are not).
    evaluated: usize,
    bytes: u64,
}

fn pods(n: usize) -> String {
    let mut out = String::new();
    for i in 0..n {
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: team-{}\n  labels:\n    app: app-{}\nspec:\n  containers:\n  - name: app\n    image: {}\n",
            i % 50,
            i % 500,
            IMAGES[i % IMAGES.len()]
        );
    }
    out
}

/// Deployments, CronJobs and Services in turn; returns the text and how
/// many of its objects carry images.
fn mixed(n: usize) -> (String, usize) {
    let mut out = String::new();
    let mut evaluated = 0;
    for i in 0..n {
        let ns = format!("team-{}", i % 50);
        let image = |k: usize| IMAGES[(i + k) % IMAGES.len()];
        match i % 3 {
            0 => {
                evaluated += 1;
                let _ = write!(
                    out,
                    "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web-{i}\n  namespace: {ns}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web-{i}}}\n  template:\n    metadata:\n      labels: {{app: web-{i}}}\n    spec:\n      initContainers:\n      - name: migrate\n        image: {}\n      containers:\n      - name: app\n        image: {}\n        ports:\n        - containerPort: 8080\n      - name: sidecar\n        image: \"{}\"\n",
                    image(0),
                    image(1),
                    image(2)
                );
            }
            1 => {
                evaluated += 1;
                let _ = write!(
                    out,
                    "---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: job-{i}\n  namespace: {ns}\nspec:\n  schedule: \"*/5 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: job\n            image: {}\n            args: [--once]\n",
                    image(0)
                );
            }
            _ => {
                let _ = write!(
                    out,
                    "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web-{}\n  namespace: {ns}\nspec:\n  selector: {{app: web-{}}}\n  ports:\n  - port: 80\n    targetPort: 8080\n",
                    i - 2,
                    i - 2
                );
            }
        }
    }
    (out, evaluated)
}

fn inputs(dir: &Path) -> Result<Vec<Input>> {
    let mut made = Vec::new();
    let mut add = |label: String, text: String, evaluated: usize| -> Result<()> {
        let path = dir.join(format!("{}.yaml", label.replace([' ', ','], "-")));
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        made.push(Input {
            label,
            path,
            evaluated,
            bytes: text.len() as u64,
        });
        Ok(())
    };
    add("20,000 Pods".into(), pods(20_000), 20_000)?;
    add("100,000 Pods".into(), pods(100_000), 100_000)?;
    let (text, evaluated) = mixed(30_000);
    add("30,000 mixed".into(), text, evaluated)?;
    Ok(made)
}

/// The configs compared, by label: no policies, each built-in alone, and
/// the three together.
fn configs(dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    let credentials = crate::bench::CREDENTIALS;
    let mut out = Vec::new();
    let alone = crate::bench::builtin_entries();
    let runs = std::iter::once(("identity", String::new()))
        .chain(alone)
        .chain(std::iter::once((
            "three built-ins",
            crate::bench::three_builtins(),
        )));
    for (label, policies) in runs {
        let path = dir.join(format!("{}.yaml", label.replace(' ', "-")));
        let body = if policies.is_empty() {
            "policies: []\n".to_string()
        } else {
            format!("policies:\n{policies}{credentials}")
        };
        std::fs::write(
            &path,
            format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\n{body}"),
        )?;
        out.push((label, path));
    }
    Ok(out)
}

pub(crate) fn run(repoint: &Path, dir: &Path, runs: usize) -> Result<()> {
    let dir = dir.join("small");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("token"), "bench-token\n")?;
    let inputs = inputs(&dir)?;
    let configs = configs(&dir)?;
    // The constant of the memory figure: what a run of the same config
    // takes on one Pod (the engine, the compiled policies, the runtime).
    let one = dir.join("1-Pod.yaml");
    std::fs::write(&one, pods(1))?;
    let cores = repoint_core::parallel::cores();
    let mut constants = Vec::new();
    for (label, config) in &configs {
        let kb = crate::bench::peak_rss_kb(repoint, config, &one, cores)?;
        constants.push(kb);
        if let Some(kb) = kb {
            println!(
                "peak RSS of `{label}` on one Pod: {:.0} MB",
                kb as f64 / 1000.0
            );
        }
    }
    let rounds = runs.max(ROUNDS);
    println!(
        "\n## Many small objects (all cores; {rounds} rounds of the runs in turn: medians of the \
         times, and of each round's cost and ratio against that round's identity)\n"
    );
    println!(
        "| input | run | time | µs per object over identity | vs identity | peak RSS | RSS over one Pod's / input |"
    );
    println!("|---|---|---|---|---|---|---|");
    // Peak RSS in KB by (input, config), for the fit below.
    let mut peaks: Vec<(&str, &str, u64)> = Vec::new();
    for input in &inputs {
        let took = in_turn(repoint, input, &configs, rounds)?;
        // The configs' first entry is identity.
        let identity = &took[0];
        for (((label, config), constant), times) in configs.iter().zip(&constants).zip(&took) {
            let paired = |f: &dyn Fn(f64, f64) -> f64| {
                median(identity.iter().zip(times).map(|(i, t)| f(*i, *t)).collect())
            };
            let per_object = if *label == "identity" {
                String::new()
            } else {
                let per = paired(&|i, t| (t - i) * 1e6 / input.evaluated as f64);
                format!("{per:.1}")
            };
            let peak = crate::bench::peak_rss_kb(repoint, config, &input.path, cores)?;
            if let Some(kb) = peak {
                peaks.push((&input.label, label, kb));
            }
            let rss = match (peak, constant) {
                (Some(kb), Some(constant)) => format!(
                    "{:.0} MB | {:.1}x",
                    kb as f64 / 1000.0,
                    kb.saturating_sub(*constant) as f64 * 1000.0 / input.bytes as f64
                ),
                _ => "n/a | n/a".into(),
            };
            println!(
                "| {} ({:.1} MB) | {label} | {:.2} s | {per_object} | {:.2} | {rss} |",
                input.label,
                input.bytes as f64 / 1e6,
                median(times.clone()),
                paired(&|i, t| i / t),
            );
        }
    }
    memory_fit(&inputs, &configs, &peaks);
    kustomize(repoint, &dir, &inputs, &configs, runs)
}

/// Each config's wall times (seconds) on `input`, `rounds` of them, the
/// configs run one after the other in every round: a slow spell of the
/// machine (they last seconds to minutes here) then falls on a round of all
/// of them rather than on one config's runs, and each round's ratio
/// compares runs taken seconds apart.
fn in_turn(
    repoint: &Path,
    input: &Input,
    configs: &[(&'static str, PathBuf)],
    rounds: usize,
) -> Result<Vec<Vec<f64>>> {
    let mut took = vec![Vec::with_capacity(rounds); configs.len()];
    for _ in 0..rounds {
        for ((_, config), times) in configs.iter().zip(&mut took) {
            let once = time(1, || {
                let mut c = Command::new(repoint);
                c.args(["run", "-c"]).arg(config).arg(&input.path);
                c
            })?;
            times.push(once.as_secs_f64());
        }
    }
    Ok(took)
}

/// Peak RSS as a constant plus a multiple of the input, fitted through the
/// 20,000 and 100,000 Pods: the multiple is what each further input byte
/// costs, the constant what a run holds whatever its size (the engine and
/// policies, and a window of documents in flight), which the one-Pod run
/// above understates. Beside it, the constant that three times the input
/// needs to cover every stream's peak: issue 20's memory goal.
fn memory_fit(inputs: &[Input], configs: &[(&'static str, PathBuf)], peaks: &[(&str, &str, u64)]) {
    let (Some(small), Some(large)) = (
        inputs.iter().find(|i| i.label == "20,000 Pods"),
        inputs.iter().find(|i| i.label == "100,000 Pods"),
    ) else {
        return;
    };
    let peak = |input: &Input, config: &str| {
        peaks
            .iter()
            .find(|(i, c, _)| *i == input.label && *c == config)
            .map(|(_, _, kb)| *kb as f64 * 1000.0)
    };
    println!(
        "
## Peak RSS as constant + multiple x input (fitted through 20,000 and 100,000 Pods)
"
    );
    println!(
        "| run | bytes of RSS per input byte | constant | constant at 3x (largest peak - 3 x input, every stream) |"
    );
    println!("|---|---|---|---|");
    for (label, _) in configs {
        if let (Some(a), Some(b)) = (peak(small, label), peak(large, label)) {
            let multiple = (b - a) / (large.bytes - small.bytes) as f64;
            let constant = b - multiple * large.bytes as f64;
            let at_three = inputs
                .iter()
                .filter_map(|i| Some(peak(i, label)? - 3.0 * i.bytes as f64))
                .fold(f64::MIN, f64::max);
            println!(
                "| {label} | {multiple:.2} | {:.0} MB | {:.0} MB |",
                constant / 1e6,
                at_three / 1e6
            );
        }
    }
}

/// `kubectl kustomize` renaming the images with an `images:` list, on a
/// small stream and on the generated ones, each against `repoint run` with
/// the registry-mirror built-in on the same file.
fn kustomize(
    repoint: &Path,
    dir: &Path,
    inputs: &[Input],
    configs: &[(&'static str, PathBuf)],
    runs: usize,
) -> Result<()> {
    if !crate::bench::has_kubectl() {
        println!("\nkubectl is not on PATH: no kustomize comparison");
        return Ok(());
    }
    let mirror = &configs
        .iter()
        .find(|(l, _)| *l == "registry-mirror")
        .context("the registry-mirror config")?
        .1;
    let small = dir.join("2,000-Pods.yaml");
    std::fs::write(&small, pods(2_000))?;
    let mut streams = vec![("2,000 Pods".to_string(), small)];
    streams.extend(inputs.iter().map(|i| (i.label.clone(), i.path.clone())));
    println!(
        "\n`kubectl kustomize` (an `images:` list) against `repoint run` (registry-mirror), same stream; kustomize stopped after {} s:\n",
        KUSTOMIZE_LIMIT.as_secs()
    );
    println!("| input | kubectl kustomize | repoint run | repoint faster by |");
    println!("|---|---|---|---|");
    for (label, path) in streams {
        let kdir = dir.join(format!("kustomize-{}", label.replace([' ', ','], "-")));
        std::fs::create_dir_all(&kdir)?;
        std::fs::copy(&path, kdir.join("input.yaml"))?;
        crate::bench::write_kustomization(repoint, &kdir, &["input.yaml".to_string()])?;
        let k = crate::bench::time_limited(KUSTOMIZE_LIMIT, || {
            let mut c = Command::new("kubectl");
            c.arg("kustomize").arg(&kdir);
            c
        })?;
        let r = time(runs, || {
            let mut c = Command::new(repoint);
            c.args(["run", "-c"]).arg(mirror).arg(&path);
            c
        })?;
        let (k_text, ratio) = match k {
            Some(k) => (
                format!("{:.2} s", k.as_secs_f64()),
                format!("{:.0}x", k.as_secs_f64() / r.as_secs_f64()),
            ),
            None => (
                format!("> {} s (stopped)", KUSTOMIZE_LIMIT.as_secs()),
                format!("> {:.0}x", KUSTOMIZE_LIMIT.as_secs_f64() / r.as_secs_f64()),
            ),
        };
        println!(
            "| {label} | {k_text} | {:.2} s | {ratio} |",
            r.as_secs_f64()
        );
    }
    Ok(())
}
