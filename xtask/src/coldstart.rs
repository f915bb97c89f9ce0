//! `cargo xtask coldstart [--runs N]`: how long `repoint serve` (release
//! build) takes from start to `/readyz` answering 200, with the three
//! built-ins and with the same three components pulled as `oci://`
//! policies (pinned by digest) from a local docker-registry. Each is
//! started with a cold cache (a fresh `XDG_CACHE_HOME`: pull, compile and
//! pre-initialise everything) and again with the cache that start left
//! (warm). Medians of N runs, one invocation, so the ratios compare runs
//! on the same machine at the same time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{CREDENTIALS, builtin_entries, median, root};
use crate::loadtest::{agent, free_port, write_certificate};

/// Stops the child on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runs(args: &[String]) -> Result<usize> {
    match args {
        [] => Ok(5),
        [flag, n] if flag == "--runs" => n.parse().context("--runs takes a number"),
        _ => bail!("usage: cargo xtask coldstart [--runs N]"),
    }
}

/// A docker-registry on a free loopback port, storing under `dir`.
fn registry(dir: &Path) -> Result<(Running, String)> {
    let binary = which("docker-registry")
        .context("docker-registry is not installed (apt-get install docker-registry)")?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("registry").display()
        ),
    )?;
    let child = Command::new(binary)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry")?;
    let running = Running(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("docker-registry did not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((running, addr))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `serve -c config` with `cache` as `XDG_CACHE_HOME`: the time until
/// `/readyz` answers 200.
fn ready_in(repoint: &Path, dir: &Path, config: &Path, cache: &Path) -> Result<Duration> {
    let agent = agent(dir)?;
    let port = free_port()?;
    let started = Instant::now();
    let child = Command::new(repoint)
        .args(["serve", "-c"])
        .arg(config)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port()?)])
        .arg("--tls-cert")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.join("tls.key"))
        .env("XDG_CACHE_HOME", cache)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .context("starting repoint serve")?;
    let _running = Running(child);
    let url = format!("https://127.0.0.1:{port}/readyz");
    while started.elapsed() < Duration::from_secs(60) {
        if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    bail!(
        "repoint serve never became ready; its log:\n{}",
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    )
}

pub fn run(args: &[String]) -> Result<()> {
    let runs = runs(args)?.max(1);
    let repoint = crate::release_repoint()?;
    let dir = root().join("target/coldstart");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    write_certificate(&dir)?;
    std::fs::write(dir.join("token"), "coldstart-token\n")?;
    let (_registry, addr) = registry(&dir)?;

    let wasm = root().join("target/wasm-policies/wasm32-wasip2/release");
    let mut builtin = String::new();
    let mut pulled = String::new();
    for (name, entry) in builtin_entries() {
        let file = wasm.join(format!("{}.wasm", name.replace('-', "_")));
        let reference = format!("oci://{addr}/policies/{name}:0.1.0");
        let out = Command::new(&repoint)
            .args(["policy", "push"])
            .arg(&file)
            .arg(&reference)
            .output()
            .context("repoint policy push")?;
        if !out.status.success() {
            bail!("pushing {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let digest = String::from_utf8(out.stdout)?.trim().to_string();
        builtin.push_str(&entry);
        pulled.push_str(&entry.replace(
            &format!("module: builtin:{name}"),
            &format!("module: oci://{addr}/policies/{name}@{digest}"),
        ));
    }
    let write = |file: &str, policies: &str| -> Result<PathBuf> {
        let path = dir.join(file);
        std::fs::write(
            &path,
            format!(
                "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n{policies}{CREDENTIALS}"
            ),
        )?;
        Ok(path)
    };
    let configs = [
        ("three built-ins", write("builtin.yaml", &builtin)?),
        (
            "the same three from oci:// (by digest)",
            write("oci.yaml", &pulled)?,
        ),
    ];

    println!(
        "machine: {} cores, {}",
        repoint_core::parallel::cores(),
        crate::bench::cpu_model()
    );
    println!("registry: docker-registry on loopback; median of {runs} runs\n");
    let mut table = Vec::new();
    for (label, config) in &configs {
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for n in 0..runs {
            let cache = dir.join(format!("cache-{}-{n}", table.len()));
            cold.push(ready_in(&repoint, &dir, config, &cache)?);
            warm.push(ready_in(&repoint, &dir, config, &cache)?);
        }
        table.push((label, median(cold), median(warm)));
    }
    println!("| policies | cache | ready in | vs built-ins, same cache |");
    println!("|---|---|---|---|");
    let (_, base_cold, base_warm) = table[0];
    for (label, cold, warm) in &table {
        for (cache, took, base) in [("cold", cold, base_cold), ("warm", warm, base_warm)] {
            println!(
                "| {label} | {cache} | {:.0} ms | {:.2} |",
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() / base.as_secs_f64()
            );
        }
    }
    Ok(())
}
