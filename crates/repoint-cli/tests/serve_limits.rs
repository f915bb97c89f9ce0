//! `repoint serve` against clients that misbehave, over real TLS on
//! loopback: a header sent a byte at a time, an idle keep-alive
//! connection, more connections than allowed, bodies that would go over
//! the budget or never finish, accept errors out of file descriptors, and
//! every rejected request counted in `/metrics`. Each test waits for the
//! server's answer (a close, a status), with a read timeout only as a
//! bound on a broken server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use repoint_tests::registry::free_port;
use repoint_tests::{temp_dir, wait_for};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const CONFIG: &str = "apiVersion: repoint.dev/v1alpha1
kind: Config
policies:
  - name: mirror
    module: builtin:registry-mirror
    settings: {rules: [{match: docker.io, replace: mirror.corp.example/hub}]}
";

struct Server {
    child: Child,
    addr: String,
    metrics: String,
    log: PathBuf,
    ca: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `repoint serve` with `extra` flags, ready (its `/readyz` says so);
    /// `wrapper` runs it under another program (`prlimit`).
    fn start(tag: &str, extra: &[&str], wrapper: &[&str]) -> Self {
        let dir = temp_dir(tag);
        let issued = repoint_tests::issue(&["127.0.0.1"]);
        std::fs::write(dir.join("repoint.yaml"), CONFIG).expect("config");
        std::fs::write(dir.join("tls.crt"), &issued.cert).expect("cert");
        std::fs::write(dir.join("tls.key"), &issued.key).expect("key");
        let addr = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let log = dir.join("serve.log");
        let (program, before) = match wrapper.split_first() {
            Some((program, rest)) => (PathBuf::from(program), rest.to_vec()),
            None => (PathBuf::from(env!("CARGO_BIN_EXE_repoint")), Vec::new()),
        };
        let mut command = Command::new(program);
        command.args(before);
        if !wrapper.is_empty() {
            command.arg(env!("CARGO_BIN_EXE_repoint"));
        }
        command
            .args(["--log-level", "info", "serve", "--no-cache", "-c"])
            .arg(dir.join("repoint.yaml"))
            .args(["--addr", &addr, "--metrics-addr", &metrics])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        let server = Server {
            child: command.spawn().expect("start repoint serve"),
            addr,
            metrics,
            log,
            ca: issued.ca.clone(),
        };
        wait_for(
            "the server to be ready",
            Duration::from_secs(120),
            || {
                let mut tls = server.connect().ok()?;
                tls.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut answer = String::new();
                let _ = tls.read_to_string(&mut answer);
                answer.starts_with("HTTP/1.1 200").then_some(())
            },
            || server.log(),
        );
        server
    }

    /// A TLS connection, handshake done, reads bounded by 30 s.
    fn connect(&self) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.as_bytes()).expect("CA"))
            .expect("root");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").expect("name").to_owned();
        let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = TcpStream::connect(&self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    fn metrics(&self) -> String {
        let mut tcp = TcpStream::connect(&self.metrics).expect("metrics");
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("ask");
        let mut text = String::new();
        tcp.read_to_string(&mut text).expect("read");
        text
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some` when a new connection's health check is answered 200.
    fn healthy(&self) -> Option<()> {
        let mut tls = self.connect().ok()?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        until_closed(&mut tls)
            .ok()?
            .starts_with("HTTP/1.1 200")
            .then_some(())
    }
}

/// Wait for the server to close `tls`: what it sent first, if anything.
/// The read timeout (30 s) bounds a server that never closes.
fn until_closed(tls: &mut impl Read) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
            Err(e) => return Err(e),
        }
    }
}

/// A review of a small Pod, as the API server posts it.
fn review() -> String {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "operation": "CREATE", "namespace": "team",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    })
    .to_string()
}

fn post(body: &str) -> String {
    format!(
        "POST /mutate/default HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_header_sent_slowly_and_an_idle_connection_are_closed() {
    let server = Server::start("limits-header", &["--header-timeout", "1s"], &[]);
    // Part of a header, then nothing more: closed, not held.
    let mut slow = server.connect().expect("connect");
    slow.write_all(b"POST /mutate/default HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let started = Instant::now();
    until_closed(&mut slow).expect("closed by the server");
    assert!(started.elapsed() < Duration::from_secs(20));
    // One request answered, then idle: closed too.
    let mut idle = server.connect().expect("connect");
    idle.write_all(post(&review()).as_bytes()).expect("write");
    let answer = until_closed(&mut idle).expect("closed by the server");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"uid\":\"u1\""), "{answer}");
    wait_for(
        "the closes to be counted",
        Duration::from_secs(10),
        || {
            server
                .metrics()
                .contains(r#"repoint_connections_closed_total{reason="header-timeout"} 2"#)
                .then_some(())
        },
        || server.metrics(),
    );
}

#[test]
fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let server = Server::start("limits-connections", &["--max-connections", "2"], &[]);
    // Hold connections until one is refused: never more than two are
    // served (the readiness probe's may still be held for a moment).
    let mut held = Vec::new();
    let refused = (0..10).find_map(|_| match server.connect() {
        Ok(tls) => {
            held.push(tls);
            None
        }
        Err(e) => Some(e),
    });
    assert!(
        refused.is_some(),
        "{} connections were all served",
        held.len()
    );
    assert!(held.len() <= 2, "{} connections served at once", held.len());
    let metrics = server.metrics();
    assert!(
        metrics.contains(r#"repoint_connections_closed_total{reason="over-limit"}"#),
        "{metrics}"
    );
    // Once they are let go, the server serves again.
    drop(held);
    wait_for(
        "a connection to be served again",
        Duration::from_secs(10),
        || server.healthy(),
        || server.log(),
    );
}

#[test]
fn bodies_over_the_budget_or_too_slow_get_a_fast_counted_answer() {
    let server = Server::start(
        "limits-body",
        &["--body-budget", "1Mi", "--body-timeout", "1s"],
        &[],
    );
    // One request announces 900 KiB and sends part of it: it holds most of
    // the budget while it is read.
    let mut holding = server.connect().expect("connect");
    let length = 900 << 10;
    holding
        .write_all(
            format!(
                "POST /mutate/default HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .expect("write");
    holding.flush().expect("flush");
    // Another of the same size does not fit beside it: 503 at once.
    let mut second = server.connect().expect("connect");
    second
        .write_all(format!("POST /mutate/default HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("write");
    let answer = until_closed(&mut second).expect("answered");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The first never finishes its body: 408 after the body timeout.
    let answer = until_closed(&mut holding).expect("answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Too large, not JSON, and no such route are counted as well.
    for (request, status) in [
        (
            format!(
                "POST /mutate/default HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                4 << 20
            ),
            "413",
        ),
        (
            "POST /mutate/default HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnot"
                .to_string(),
            "400",
        ),
        (
            "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
            "404",
        ),
    ] {
        let mut tls = server.connect().expect("connect");
        tls.write_all(request.as_bytes()).expect("write");
        let answer = until_closed(&mut tls).expect("answered");
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
    let metrics = server.metrics();
    for status in ["503", "408", "413", "400"] {
        assert!(
            metrics.contains(&format!(
                r#"repoint_http_responses_total{{route="mutate",status="{status}"}} 1"#
            )),
            "{status}: {metrics}"
        );
    }
    assert!(
        metrics.contains(r#"repoint_http_responses_total{route="other",status="404"} 1"#),
        "{metrics}"
    );
}

#[test]
fn out_of_file_descriptors_the_server_backs_off_and_says_so_once_a_second() {
    let Some(prlimit) = repoint_tests::find_program("prlimit") else {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    };
    let prlimit = prlimit.display().to_string();
    // Few descriptors, more connections allowed than there are: accept
    // fails with EMFILE while they are held.
    let server = Server::start(
        "limits-emfile",
        &["--max-connections", "1000"],
        &[&prlimit, "--nofile=64:64", "--"],
    );
    let mut held = Vec::new();
    let lines = wait_for(
        "accept errors to be reported twice",
        Duration::from_secs(30),
        || {
            if let Ok(tcp) = TcpStream::connect(&server.addr) {
                held.push(tcp);
            }
            let log = server.log();
            let lines = log.lines().filter(|l| l.contains("accept failed")).count();
            (lines >= 2).then_some(log)
        },
        || server.log(),
    );
    // A report a second, each counting the failures since the last: not a
    // line per failure.
    let reports: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("accept failed"))
        .collect();
    assert!(reports.len() < 10, "{}", reports.join("\n"));
    assert!(reports[0].contains("waiting"), "{}", reports[0]);
    drop(held);
    // Descriptors back, it serves again.
    wait_for(
        "the server to serve again",
        Duration::from_secs(30),
        || server.healthy(),
        || server.log(),
    );
}
