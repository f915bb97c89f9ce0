//! The admission webhook's load test: `repoint serve` (release build) on
//! loopback with TLS, driven by `oha` (crates.io) over keep-alive
//! connections with real `AdmissionReview` bodies: the ingress-nginx
//! controller Deployment from the corpus, and the Pod its ReplicaSet would
//! create, both with the API server's defaults filled in.
//!
//! Runs, each on a fresh server:
//! - the three built-ins in one set, at fixed concurrency and at a fixed
//!   rate, for Pods and Deployments;
//! - the same with an empty policy set (the TLS, HTTP and JSON baseline);
//! - a fault run: 10% of the requests go to a set whose policy loops, the
//!   rest to the healthy set, at the same total rate.
//!
//! The load generator shares the machine's cores with the server, so the
//! ratios (measured in the same invocation) say more than the absolutes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::bench::{root, shared, three_builtins};

struct Options {
    seconds: u64,
    concurrency: usize,
    rate: usize,
    /// Another `repoint` build to run the same steady runs with, in this
    /// invocation, for a ratio (`--baseline PATH`).
    baseline: Option<PathBuf>,
}

fn options(args: &[String]) -> Result<Options> {
    let (mut seconds, mut concurrency, mut rate) = (10, 32, 1000);
    let mut baseline = None;
    let mut numeric = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--baseline" {
            baseline = Some(PathBuf::from(
                it.next().context("--baseline: missing path")?,
            ));
        } else {
            numeric.push(arg.clone());
        }
    }
    let args = &numeric;
    crate::numeric_options(
        args,
        &mut [
            ("--seconds", &mut seconds),
            ("--concurrency", &mut concurrency),
            ("--rate", &mut rate),
        ],
    )?;
    Ok(Options {
        seconds: seconds.max(1) as u64,
        concurrency: concurrency.max(1),
        rate: rate.max(10),
        baseline,
    })
}

/// `oha` from PATH, or installed from crates.io under `target/tools`.
fn oha() -> Result<PathBuf> {
    if Command::new("oha")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return Ok("oha".into());
    }
    let tools = root().join("target/tools");
    let installed = tools.join("bin/oha");
    if !installed.exists() {
        eprintln!("installing the load generator: cargo install oha --locked (once)");
        let status = crate::cargo()
            .args(["install", "oha", "--locked", "--quiet", "--root"])
            .arg(&tools)
            .status()
            .context("running cargo install oha")?;
        if !status.success() {
            bail!("cargo install oha failed");
        }
    }
    Ok(installed)
}

/// A running `repoint serve`, stopped on drop.
struct Server {
    child: Child,
    base: String,
    metrics: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(repoint: &Path, dir: &Path, config: &Path, agent: &ureq::Agent) -> Result<Self> {
        let port = free_port()?;
        let metrics_port = free_port()?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = Command::new(repoint)
            .arg("serve")
            .arg("-c")
            .arg(config)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting repoint serve")?;
        let server = Self {
            child,
            base: format!("https://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if agent
                .get(&format!("{}/readyz", server.base))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "repoint serve never became ready; its log:\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        )
    }

    /// The largest resident set so far (`VmHWM`), in MiB.
    fn peak_rss_mib(&self) -> Result<f64> {
        self.status_mib("VmHWM:")
    }

    /// The resident set now (`VmRSS`), in MiB.
    fn rss_mib(&self) -> Result<f64> {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading the server's /proc status")?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc status"))?;
        Ok(kib / 1024.0)
    }

    /// The request and failure counters of `/metrics`, one line each.
    fn counters(&self, agent: &ureq::Agent) -> Result<Vec<String>> {
        let text = agent
            .get(&self.metrics)
            .call()
            .context("reading /metrics")?
            .body_mut()
            .read_to_string()?;
        Ok(text
            .lines()
            .filter(|l| {
                l.starts_with("repoint_admission_requests_total")
                    || l.starts_with("repoint_policy_failures_total")
            })
            .map(str::to_string)
            .collect())
    }
}

/// The slow-body attack: `clients` connections each announce a body of
/// 2.9 MiB and send all of it but the last byte, then hold. Returns the
/// server's peak RSS while they hold and its RSS once they have gone, in
/// MiB, and how many the server answered 503 at once instead of holding
/// (from its `/metrics`; `None` where it does not count them).
fn slow_bodies(
    server: &Server,
    dir: &Path,
    agent: &ureq::Agent,
    clients: usize,
) -> Result<(f64, f64, Option<u64>)> {
    use std::io::{Read as _, Write as _};
    let pem = std::fs::read(dir.join("tls.crt"))?;
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert?)?;
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let addr = server.base.trim_start_matches("https://").to_string();
    let length = 2900 << 10;
    let body = vec![b' '; length - 1];
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    let mut threads = Vec::new();
    for _ in 0..clients {
        let (config, addr, body, held_tx) =
            (config.clone(), addr.clone(), body.clone(), held_tx.clone());
        let release_rx = release_rx.clone();
        threads.push(std::thread::spawn(move || {
            let held = (|| -> Result<()> {
                use rustls::pki_types::ServerName;
                let name = ServerName::try_from("127.0.0.1")?.to_owned();
                let connection = rustls::ClientConnection::new(config, name)?;
                let tcp = std::net::TcpStream::connect(&addr)?;
                tcp.set_read_timeout(Some(Duration::from_millis(300)))?;
                let mut tls = rustls::StreamOwned::new(connection, tcp);
                write!(
                    tls,
                    "POST /mutate/default HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
                )?;
                // A refused body ends the write early: the server closed.
                let _ = tls.write_all(&body).and_then(|()| tls.flush());
                let mut answer = [0u8; 12];
                let _ = tls.read(&mut answer);
                let _ = held_tx.send(());
                // Hold the connection until told to let go.
                let _ = release_rx.lock().map(|r| r.recv());
                Ok(())
            })();
            // A connection refused early is what the server may do.
            let _ = held;
        }));
    }
    drop(held_tx);
    for _ in 0..clients {
        let _ = held_rx.recv_timeout(Duration::from_secs(60));
    }
    let during = server.peak_rss_mib()?;
    for _ in 0..clients {
        let _ = release_tx.send(());
    }
    for t in threads {
        let _ = t.join();
    }
    let metrics = agent
        .get(&server.metrics)
        .call()
        .context("reading /metrics")?
        .body_mut()
        .read_to_string()?;
    let answered = metrics
        .lines()
        .find(|l| l.starts_with(r#"repoint_http_responses_total{route="mutate",status="503"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok());
    // The server frees what it held as it sees the connections close.
    std::thread::sleep(Duration::from_secs(2));
    let after = server.rss_mib()?;
    Ok((during, after, answered))
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What one `oha` run measured.
struct Measured {
    requests: u64,
    per_second: f64,
    /// Milliseconds.
    p50: f64,
    p99: f64,
    p999: f64,
    /// Non-200 answers and connection errors.
    failed: u64,
    errors: Vec<String>,
}

impl Measured {
    fn from_oha(report: &Value) -> Result<Self> {
        let ms = |key: &str| -> Result<f64> {
            report["latencyPercentiles"][key]
                .as_f64()
                .map(|s| s * 1000.0)
                .with_context(|| format!("oha's report has no latencyPercentiles.{key}"))
        };
        let ok = report["statusCodeDistribution"]["200"]
            .as_u64()
            .unwrap_or(0);
        let other: u64 = report["statusCodeDistribution"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(code, _)| *code != "200")
            .filter_map(|(_, n)| n.as_u64())
            .sum();
        let mut errors = Vec::new();
        let mut error_count = 0;
        for (error, n) in report["errorDistribution"]
            .as_object()
            .into_iter()
            .flatten()
        {
            error_count += n.as_u64().unwrap_or(0);
            errors.push(format!("{n} x {error}"));
        }
        Ok(Self {
            requests: ok + other + error_count,
            per_second: report["summary"]["requestsPerSec"]
                .as_f64()
                .context("oha's report has no summary.requestsPerSec")?,
            p50: ms("p50")?,
            p99: ms("p99")?,
            p999: ms("p99.9")?,
            failed: other + error_count,
            errors,
        })
    }
}

/// One server under steady load: at fixed concurrency, then at a fixed rate.
struct Steady {
    busy: Measured,
    at_rate: Measured,
    /// MiB.
    peak_rss: f64,
}

/// How one `oha` run drives the server.
enum Load {
    Concurrency(usize),
    /// Requests per second (open loop, latency measured from when each
    /// request was due, so a stall is not hidden).
    Rate(usize),
}

/// `oha` posting the lines of `bodies` in turn to `url`.
fn oha_command(oha: &Path, url: &str, bodies: &Path, load: &Load, seconds: u64) -> Command {
    let mut c = Command::new(oha);
    c.args(["--no-tui", "--output-format", "json", "--insecure"])
        .args(["-z", &format!("{seconds}s")])
        // Requests in flight at the end are answered, not counted as errors.
        .arg("--wait-ongoing-requests-after-deadline")
        .args(["-m", "POST", "-T", "application/json", "-Z"])
        .arg(bodies);
    match load {
        Load::Concurrency(n) => {
            c.args(["-c", &n.to_string()]);
        }
        Load::Rate(r) => {
            c.args(["-c", "64", "-q", &r.to_string(), "--latency-correction"]);
        }
    }
    c.arg(url).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn finish(child: Child) -> Result<Measured> {
    let out = child.wait_with_output().context("waiting for oha")?;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("oha's JSON report")?;
    Measured::from_oha(&report)
}

fn drive(oha: &Path, url: &str, bodies: &Path, load: &Load, seconds: u64) -> Result<Measured> {
    let child = oha_command(oha, url, bodies, load, seconds)
        .spawn()
        .context("starting oha")?;
    finish(child)
}

/// The controller Deployment of ingress-nginx, as the API server hands it
/// to admission (defaults filled in), and the Pod its ReplicaSet creates.
fn objects(repoint: &Path, dir: &Path) -> Result<(Value, Value)> {
    let identity = dir.join("identity.yaml");
    std::fs::write(
        &identity,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies: []\n",
    )?;
    let out = Command::new(repoint)
        .args(["run", "--output", "json", "-c"])
        .arg(&identity)
        .arg(shared().join("corpus/ingress-nginx_cloud_deploy.yaml"))
        .output()
        .context("reading the corpus")?;
    if !out.status.success() {
        bail!("repoint run: {}", String::from_utf8_lossy(&out.stderr));
    }
    let list: Value = serde_json::from_slice(&out.stdout)?;
    let mut deployment = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["kind"] == "Deployment")
        .cloned()
        .context("the ingress-nginx corpus file has no Deployment")?;
    let metadata = &mut deployment["metadata"];
    metadata["uid"] = json!("9b1d4a4e-2f0c-4f5e-9a57-0c1b6f1d2e3a");
    metadata["creationTimestamp"] = Value::Null;
    metadata["generation"] = json!(1);
    let spec = &mut deployment["spec"];
    spec["progressDeadlineSeconds"] = json!(600);
    spec["revisionHistoryLimit"] = json!(10);
    default_pod_spec(&mut spec["template"]["spec"]);

    let template = &deployment["spec"]["template"];
    let name = deployment["metadata"]["name"].as_str().unwrap_or("app");
    let mut pod_metadata = template["metadata"].clone();
    pod_metadata["generateName"] = json!(format!("{name}-7d9f8b6c5-"));
    pod_metadata["namespace"] = deployment["metadata"]["namespace"].clone();
    pod_metadata["labels"]["pod-template-hash"] = json!("7d9f8b6c5");
    pod_metadata["ownerReferences"] = json!([{
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": format!("{name}-7d9f8b6c5"),
        "uid": "0f6a3c1e-8d2b-4c7a-b5e9-3a1d2c4b5e6f",
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    let mut pod_spec = template["spec"].clone();
    pod_spec["enableServiceLinks"] = json!(true);
    pod_spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    pod_spec["priority"] = json!(0);
    pod_spec["tolerations"] = json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_metadata,
        "spec": pod_spec,
        "status": {},
    });
    Ok((deployment, pod))
}

/// How many different Pods the every-review-new stream sends: more than a
/// policy keeps answers for (4,096), so that sent in turn, none is
/// answered from an earlier review.
const DISTINCT_REVIEWS: usize = 10_000;

/// `n` reviews of `pod`, one per line, each with its own name, uid and
/// image tag.
fn distinct_pod_reviews(pod: &Value, n: usize) -> Result<String> {
    let mut out = String::new();
    for i in 0..n {
        let mut pod = pod.clone();
        pod["metadata"]["name"] = json!(format!("controller-{i}"));
        for container in pod["spec"]["containers"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let image = container["image"].as_str().unwrap_or("nginx");
            let repository = image.split(['@', ':']).next().unwrap_or(image);
            container["image"] = json!(format!("{repository}:v{i}"));
        }
        let mut review = review(&pod, "pods");
        review["request"]["uid"] = json!(format!("705ab4f5-6393-11e8-b7cc-{i:012}"));
        out.push_str(&serde_json::to_string(&review)?);
        out.push('\n');
    }
    Ok(out)
}

/// The API server's defaulting for a pod spec, which runs before admission.
fn default_pod_spec(spec: &mut Value) {
    for (key, value) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("terminationGracePeriodSeconds", json!(30)),
    ] {
        if spec.get(key).is_none() {
            spec[key] = value;
        }
    }
    for containers in ["initContainers", "containers"] {
        let Some(list) = spec.get_mut(containers).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list {
            for (key, value) in [
                ("imagePullPolicy", json!("IfNotPresent")),
                ("terminationMessagePath", json!("/dev/termination-log")),
                ("terminationMessagePolicy", json!("File")),
                ("resources", json!({})),
            ] {
                if c.get(key).is_none() {
                    c[key] = value;
                }
            }
        }
    }
}

/// An `AdmissionReview` for creating `object`, as kube-apiserver sends it.
fn review(object: &Value, resource: &str) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or("v1")
        .split_once('/')
    {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), "v1".to_string()),
    };
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "1c5e6a38-2a3f-4d0b-9c8e-7f6a5b4c3d2e",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    })
}

pub(crate) fn write_certificate(dir: &Path) -> Result<()> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.self_signed(&key)?;
    std::fs::write(dir.join("tls.crt"), cert.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    Ok(())
}

/// A client trusting the server's self-signed certificate.
pub(crate) fn agent(dir: &Path) -> Result<ureq::Agent> {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let pem = std::fs::read(dir.join("tls.crt"))?;
    let cert = Certificate::from_pem(&pem)
        .context("reading the certificate")?
        .to_owned();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into())
}

fn config(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("apiVersion: repoint.dev/v1alpha1\nkind: Config\n{body}"),
    )?;
    Ok(path)
}

fn row(label: &str, load: &str, m: &Measured) {
    println!(
        "| {label} | {load} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
        m.per_second, m.p50, m.p99, m.p999, m.failed
    );
}

pub fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let repoint = crate::release_repoint()?;
    let spin = root().join("target/wasm-policies/wasm32-wasip2/release/misbehave.wasm");
    let oha = oha()?;
    let dir = root().join("target/loadtest");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    write_certificate(&dir)?;
    let agent = agent(&dir)?;

    // One review per line; oha sends them in turn.
    let (deployment, pod) = objects(&repoint, &dir)?;
    let bodies = dir.join("reviews.jsonl");
    let pod_review = serde_json::to_string(&review(&pod, "pods"))?;
    let deployment_review = serde_json::to_string(&review(&deployment, "deployments"))?;
    std::fs::write(&bodies, format!("{pod_review}\n{deployment_review}\n"))?;
    let distinct = dir.join("distinct.jsonl");
    std::fs::write(&distinct, distinct_pod_reviews(&pod, DISTINCT_REVIEWS)?)?;
    std::fs::write(dir.join("token"), "loadtest-token\n")?;
    let credentials = crate::bench::CREDENTIALS;
    let full = config(
        &dir,
        "full.yaml",
        &format!("policies:\n{}{credentials}", three_builtins()),
    )?;
    let empty = config(&dir, "empty.yaml", "policies: []\n")?;
    let fault = config(
        &dir,
        "fault.yaml",
        &format!(
            "policies:\n{}- name: spin\n  module: {}\n  settings: {{mode: loop}}\n{credentials}\
             webhook:\n  sets:\n    default: {{policies: [mirror, secrets, allowed], failurePolicy: Fail}}\n    \
             spin: {{policies: [spin], failurePolicy: Ignore}}\n",
            three_builtins(),
            spin.display()
        ),
    )?;

    let cores = repoint_core::parallel::cores();
    println!("machine: {cores} cores, {}", crate::bench::cpu_model());
    println!(
        "bodies: a Pod ({} bytes) and a Deployment ({} bytes) in turn; {} s per run, TLS 1.3 keep-alive, oha on the same machine\n",
        pod_review.len(),
        deployment_review.len(),
        o.seconds
    );
    println!("| set | load | reviews/s | p50 ms | p99 ms | p99.9 ms | failed |");
    println!("|---|---|---|---|---|---|---|");

    // One oha run against `url` with `bodies`, and its table row.
    let measure = |label: &str, url: &str, bodies: &Path, load: Load| -> Result<Measured> {
        let measured = drive(&oha, url, bodies, &load, o.seconds)?;
        let described = match load {
            Load::Concurrency(n) => format!("{n} connections"),
            Load::Rate(n) => format!("{n}/s"),
        };
        row(label, &described, &measured);
        Ok(measured)
    };
    // A server at full concurrency and at the fixed rate.
    let steady = |label: &str, build: &Path, config: &Path| -> Result<Steady> {
        let server = Server::start(build, &dir, config, &agent)?;
        let url = format!("{}/mutate/default", server.base);
        Ok(Steady {
            busy: measure(label, &url, &bodies, Load::Concurrency(o.concurrency))?,
            at_rate: measure(label, &url, &bodies, Load::Rate(o.rate))?,
            peak_rss: server.peak_rss_mib()?,
        })
    };
    // The same server with no policies, then with the three built-ins.
    let baseline = steady("empty", &repoint, &empty)?;
    let policies = steady("three built-ins", &repoint, &full)?;
    // Every review new: no policy has seen what it is shown before.
    let unseen = |label: &str, config: &Path| -> Result<Measured> {
        let server = Server::start(&repoint, &dir, config, &agent)?;
        let url = format!("{}/mutate/default", server.base);
        measure(label, &url, &distinct, Load::Concurrency(o.concurrency))
    };
    let unseen_empty = unseen("empty, every review new", &empty)?;
    let unseen_full = unseen("three built-ins, every review new", &full)?;
    let against = match &o.baseline {
        Some(other) => {
            let label = format!("three built-ins, {}", other.display());
            Some((other.clone(), steady(&label, other, &full)?))
        }
        None => None,
    };

    // The fault run: 10% of the same total rate to the looping set.
    let server = Server::start(&repoint, &dir, &fault, &agent)?;
    let faulty_rate = (o.rate / 10).max(1);
    let healthy = oha_command(
        &oha,
        &format!("{}/mutate/default", server.base),
        &bodies,
        &Load::Rate(o.rate - faulty_rate),
        o.seconds,
    )
    .spawn()
    .context("starting oha")?;
    let faulty = oha_command(
        &oha,
        &format!("{}/mutate/spin", server.base),
        &bodies,
        &Load::Rate(faulty_rate),
        o.seconds,
    )
    .spawn()
    .context("starting oha")?;
    let healthy = finish(healthy)?;
    let faulty = finish(faulty)?;
    row(
        "fault run: three built-ins",
        &format!("{}/s", o.rate - faulty_rate),
        &healthy,
    );
    row(
        "fault run: looping policy (Ignore)",
        &format!("{faulty_rate}/s"),
        &faulty,
    );
    let counters = server.counters(&agent)?;
    let fault_rss = server.peak_rss_mib()?;
    drop(server);

    // Slow bodies: 100 clients hold 2.9 MiB bodies short of their last
    // byte, on this build and on the baseline.
    let mut slow = Vec::new();
    for build in std::iter::once(&repoint).chain(o.baseline.as_ref()) {
        let server = Server::start(build, &dir, &empty, &agent)?;
        slow.push((build.clone(), slow_bodies(&server, &dir, &agent, 100)?));
    }

    println!();
    println!(
        "three built-ins serve {:.0} reviews/s, {:.0}% of the empty set's {:.0}/s",
        policies.busy.per_second,
        100.0 * policies.busy.per_second / baseline.busy.per_second,
        baseline.busy.per_second
    );
    println!(
        "every review new ({DISTINCT_REVIEWS} Pods, each image tag its own): three built-ins serve {:.0} reviews/s, {:.0}% of the empty set's {:.0}/s",
        unseen_full.per_second,
        100.0 * unseen_full.per_second / unseen_empty.per_second,
        unseen_empty.per_second
    );
    println!(
        "peak RSS: {:.1} MiB (three built-ins), {fault_rss:.1} MiB (fault run)",
        policies.peak_rss
    );
    for (build, (during, after, answered)) in &slow {
        let answered = answered.map_or_else(
            || "not counted".into(),
            |n| format!("{n} answered 503 at once"),
        );
        println!(
            "slow bodies ({}): 100 clients holding 2.9 MiB bodies: peak RSS {during:.1} MiB while held, {after:.1} MiB after; {answered}",
            build.display()
        );
    }
    if let Some((
        other,
        Steady {
            busy,
            at_rate,
            peak_rss: rss,
        },
    )) = &against
    {
        println!(
            "against {}: {:.2}x its reviews/s ({:.0} against {:.0}), p99 at {}/s {:.2} ms against {:.2} ms, peak RSS {:.1} against {rss:.1} MiB",
            other.display(),
            policies.busy.per_second / busy.per_second,
            policies.busy.per_second,
            busy.per_second,
            o.rate,
            policies.at_rate.p99,
            at_rate.p99,
            policies.peak_rss,
        );
    }
    println!(
        "fault run: healthy p99 {:.2} ms against {:.2} ms without the faulty set; HTTP failures: {} of {} healthy and {} of {} faulty requests",
        healthy.p99,
        policies.at_rate.p99,
        healthy.failed,
        healthy.requests,
        faulty.failed,
        faulty.requests
    );
    for e in healthy.errors.iter().chain(&faulty.errors) {
        println!("  connection error: {e}");
    }
    println!("fault run counters (/metrics):");
    for line in counters {
        println!("  {line}");
    }
    Ok(())
}
