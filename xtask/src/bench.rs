//! The throughput benchmark. Each figure is the median of several runs of
//! the release binary, output to /dev/null; ratios compare runs made in the
//! same invocation, since these machines are noisy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) const MIRROR_RULES: &[(&str, &str)] = &[
    ("docker.io", "mirror.corp.example/hub"),
    ("quay.io", "mirror.corp.example/quay"),
    ("ghcr.io", "mirror.corp.example/ghcr"),
    ("registry.k8s.io", "mirror.corp.example/k8s"),
];

struct Options {
    size_mb: usize,
    runs: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let (mut size_mb, mut runs) = (100, 3);
    crate::numeric_options(args, &mut [("--size", &mut size_mb), ("--runs", &mut runs)])?;
    Ok(Options {
        size_mb,
        runs: runs.max(1),
    })
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn shared() -> PathBuf {
    std::env::var_os("REPOINT_SHARED_DIR").map_or_else(|| root().join("../shared"), PathBuf::from)
}

fn corpus() -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared().join("corpus"))
        .context("reading ../shared/corpus")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Run a command `runs` times with stdout discarded; the median wall time.
pub(crate) fn time(runs: usize, mut make: impl FnMut() -> Command) -> Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut cmd = make();
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let started = Instant::now();
        let out = cmd.output().context("running the benchmark command")?;
        let took = started.elapsed();
        if !out.status.success() && out.status.code() != Some(1) {
            bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        times.push(took);
    }
    Ok(median(times))
}

/// The middle of `values` (the upper one of an even count); `values` must
/// not be empty.
pub(crate) fn median<T: PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values.swap_remove(values.len() / 2)
}

fn write_config(path: &Path, policies: &str) -> Result<()> {
    std::fs::write(
        path,
        format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n{policies}"),
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// The three built-ins' config entries, each a `- name:` block: the mirror
/// rules, the pull secret, and the allowed registries (warning only).
pub(crate) fn builtin_entries() -> [(&'static str, String); 3] {
    let rules: String = MIRROR_RULES
        .iter()
        .map(|(m, r)| format!("      - {{match: {m}, replace: {r}}}\n"))
        .collect();
    [
        (
            "registry-mirror",
            format!("- name: mirror\n  module: builtin:registry-mirror\n  settings:\n    rules:\n{rules}"),
        ),
        (
            "pull-secrets",
            "- name: secrets\n  module: builtin:pull-secrets\n  settings: {secretName: corp-registry, registries: [mirror.corp.example]}\n".into(),
        ),
        (
            "allowed-registries",
            "- name: allowed\n  module: builtin:allowed-registries\n  settings: {allow: [mirror.corp.example, public.ecr.aws], denyLatest: false, enforcement: warn}\n".into(),
        ),
    ]
}

/// The credentials of the built-ins' pull Secret, read from a `token` file
/// beside the config.
pub(crate) const CREDENTIALS: &str =
    "credentials:\n- {registry: mirror.corp.example, username: robot, passwordFile: token}\n";

/// The three built-ins as one chain, in config order.
pub(crate) fn three_builtins() -> String {
    builtin_entries()
        .into_iter()
        .map(|(_, entry)| entry)
        .collect()
}

fn count_documents(files: &[PathBuf]) -> Result<usize> {
    let mut n = 0;
    for f in files {
        let text = std::fs::read_to_string(f)?;
        let stream = repoint_core::Stream::parse(
            &f.display().to_string(),
            text,
            repoint_core::Limits::default(),
        )?;
        n += stream.documents().len();
    }
    Ok(n)
}

pub fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let repoint = crate::release_repoint()?;
    let dir = root().join("target/bench");
    let data = dir.join("data");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&data)?;

    // Replicate the corpus to about `size_mb`.
    let files = corpus()?;
    let one_copy: u64 = files
        .iter()
        .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    let copies = ((o.size_mb as u64 * 1_000_000).div_ceil(one_copy)).max(1);
    let mut total = 0u64;
    for c in 0..copies {
        for f in &files {
            let name = format!(
                "{c:03}-{}",
                f.file_name().and_then(|n| n.to_str()).unwrap_or("x.yaml")
            );
            std::fs::copy(f, data.join(name))?;
            total += f.metadata()?.len();
        }
    }
    let documents = count_documents(&files)? * copies as usize;
    let full = dir.join("full.yaml");
    let identity = dir.join("identity.yaml");
    std::fs::write(dir.join("token"), "bench-token\n")?;
    write_config(&full, &format!("{}{CREDENTIALS}", three_builtins()))?;
    std::fs::write(
        &identity,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies: []\n",
    )?;

    let cores = repoint_core::parallel::cores();
    println!("machine: {cores} cores, {}", cpu_model());
    println!(
        "input: {} copies of ../shared/corpus ({} files, {:.1} MB, {documents} documents); median of {} runs\n",
        copies,
        copies as usize * files.len(),
        total as f64 / 1e6,
        o.runs
    );
    // Warm the compiled-policy cache.
    time(1, || {
        let mut c = Command::new(&repoint);
        c.args(["run", "-c"]).arg(&full).arg(&data);
        c
    })?;
    println!("| run | threads | time | MB/s | documents/s | vs identity |");
    println!("|---|---|---|---|---|---|");
    for threads in [1, cores] {
        let run = |config: &Path| {
            time(o.runs, || {
                let mut c = Command::new(&repoint);
                c.args(["run", "-j", &threads.to_string(), "-c"])
                    .arg(config)
                    .arg(&data);
                c
            })
        };
        let id = run(&identity)?;
        let policies = run(&full)?;
        for (label, t) in [
            ("identity (parse + write back)", id),
            ("three built-ins", policies),
        ] {
            let secs = t.as_secs_f64();
            println!(
                "| {label} | {threads} | {:.2} s | {:.1} | {:.0} | {:.2} |",
                secs,
                total as f64 / 1e6 / secs,
                documents as f64 / secs,
                id.as_secs_f64() / secs
            );
        }
    }
    // Startup: load the three built-ins (from the compiled-code cache),
    // check their settings, read an empty file.
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "")?;
    let startup = time(o.runs.max(5), || {
        let mut c = Command::new(&repoint);
        c.args(["run", "-c"]).arg(&full).arg(&empty);
        c
    })?;
    println!(
        "\nstartup (three built-ins, cached, empty input): {:.0} ms",
        startup.as_secs_f64() * 1000.0
    );
    match peak_rss_kb(&repoint, &full, &data, cores)? {
        Some(kb) => println!(
            "peak RSS, three built-ins, {cores} threads: {:.0} MB for {:.1} MB of input ({:.1}x)",
            kb as f64 / 1000.0,
            total as f64 / 1e6,
            kb as f64 * 1000.0 / total as f64
        ),
        None => println!("peak RSS: /usr/bin/time is not installed (Debian package `time`)"),
    }
    kustomize(&repoint, &dir, &files, &full, o.runs)?;
    crate::scale::run(&repoint, &dir, o.runs)
}

/// Peak resident set, in kilobytes, of `repoint run -j THREADS -c CONFIG
/// INPUT`, from GNU time's `%M`; `None` without GNU time.
pub(crate) fn peak_rss_kb(
    repoint: &Path,
    config: &Path,
    input: &Path,
    threads: usize,
) -> Result<Option<u64>> {
    let Ok(out) = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(repoint)
        .args(["run", "-j", &threads.to_string(), "-c"])
        .arg(config)
        .arg(input)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    else {
        return Ok(None);
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(stderr.lines().last().and_then(|l| l.trim().parse().ok()))
}

/// `kubectl kustomize` with an `images:` list doing the mirror rewrites, on
/// one copy of the corpus (kustomize refuses the duplicate objects of the
/// replicated set), against `repoint run` on the same copy.
fn kustomize(
    repoint: &Path,
    dir: &Path,
    files: &[PathBuf],
    full: &Path,
    runs: usize,
) -> Result<()> {
    if !has_kubectl() {
        println!("\nkubectl is not on PATH: no kustomize comparison");
        return Ok(());
    }
    let kdir = dir.join("kustomize");
    std::fs::create_dir_all(&kdir)?;
    let mut resources = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .context("file name")?;
        std::fs::copy(f, kdir.join(name))?;
        resources.push(name.to_string());
    }
    write_kustomization(repoint, &kdir, &resources)?;
    let k = time(runs, || {
        let mut c = Command::new("kubectl");
        c.arg("kustomize").arg(&kdir);
        c
    })?;
    let r = time(runs, || {
        let mut c = Command::new(repoint);
        c.args(["run", "-c"]).arg(full);
        for f in files {
            c.arg(kdir.join(f.file_name().unwrap_or_default()));
        }
        c
    })?;
    println!(
        "\none copy of the corpus: kubectl kustomize (images: list) {:.3} s, repoint run (three built-ins) {:.3} s: repoint is {:.1}x faster",
        k.as_secs_f64(),
        r.as_secs_f64(),
        k.as_secs_f64() / r.as_secs_f64()
    );
    Ok(())
}

pub(crate) fn has_kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `kustomization.yaml` in `kdir` over `resources` (files in it) whose
/// `images:` list does the mirror rewrites. kustomize matches image names
/// literally, so every name is listed as written.
pub(crate) fn write_kustomization(repoint: &Path, kdir: &Path, resources: &[String]) -> Result<()> {
    let out = Command::new(repoint)
        .args(["images", "--format", "json"])
        .arg(kdir)
        .output()
        .context("listing images")?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).context("images json")?;
    let mut images = std::collections::BTreeMap::new();
    for row in rows.as_array().into_iter().flatten() {
        let (Some(written), Some(full_name)) = (row["written"].as_str(), row["image"].as_str())
        else {
            continue;
        };
        let parsed = repoint_core::ImageRef::parse(full_name)?;
        let written_name = written.split('@').next().unwrap_or(written);
        let written_name = match written_name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => n,
            _ => written_name,
        };
        if let Some((_, target)) = MIRROR_RULES.iter().find(|(m, _)| parsed.registry == *m) {
            images.insert(
                written_name.to_string(),
                format!("{target}/{}", parsed.repository),
            );
        }
    }
    let mut kustomization =
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
            .to_string();
    for r in resources {
        kustomization.push_str(&format!("- {r}\n"));
    }
    kustomization.push_str("images:\n");
    for (name, new_name) in &images {
        kustomization.push_str(&format!("- name: {name}\n  newName: {new_name}\n"));
    }
    std::fs::write(kdir.join("kustomization.yaml"), kustomization)?;
    Ok(())
}

/// One run of a command with stdout discarded, stopped (coreutils'
/// `timeout`) after `limit`: its wall time, or `None` if it was stopped.
pub(crate) fn time_limited(
    limit: Duration,
    make: impl FnOnce() -> Command,
) -> Result<Option<Duration>> {
    let inner = make();
    let mut cmd = Command::new("timeout");
    cmd.arg("--signal=KILL")
        .arg(format!("{}s", limit.as_secs()))
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd.output().context("running the benchmark command")?;
    let took = started.elapsed();
    match out.status.code() {
        Some(0) => Ok(Some(took)),
        // Killed by `timeout` (128 + SIGKILL, or no code at all).
        Some(137) | None => Ok(None),
        _ => bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// The CPU's model name, for the report.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
