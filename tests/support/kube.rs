//! A real Kubernetes control plane for the cluster tests: etcd,
//! kube-apiserver and kube-controller-manager, started once per test binary
//! on loopback, on free ports, in a temporary directory.
//!
//! The server binaries are built from Debian's `kubernetes` source package
//! by `.ci/kube-apiserver` (which `.ci/setup` runs) into a cache outside the
//! clone; `etcd` is Debian's `etcd-server`. When they are missing the
//! cluster tests skip, unless `REPOINT_REQUIRE_APISERVER` is set (CI sets
//! it), and then they fail.
//!
//! The API server serves TLS with a test CA, authenticates bearer tokens
//! (a static token file: an admin in `system:masters`, and unprivileged
//! users `tester-0` .. `tester-15` for RBAC tests) and client certificates
//! (the controller manager's), and authorizes with RBAC. The controller
//! manager finalises namespaces, creates `default` ServiceAccounts and
//! their tokens, and runs Deployments and ReplicaSets (there is no
//! scheduler or kubelet: pods stay pending).
//!
//! The processes belong to the test binary: each runs under a small shell
//! that reads a pipe from the test process and stops its server when the
//! pipe closes, that is, when the test binary exits however it exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

use crate::registry::free_port;

/// The upstream version `.ci/kube-apiserver` builds.
pub const VERSION: &str = "v1.20.2";

/// Number of unprivileged token users (`tester-N`).
pub const TESTERS: usize = 16;

/// The directory holding `kube-apiserver` and `kube-controller-manager`:
/// `$REPOINT_KUBE_CACHE/VERSION/bin`, by default under
/// `~/.cache/repoint/kubernetes`, as `.ci/kube-apiserver` writes it.
pub fn binary_dir() -> PathBuf {
    let cache = match std::env::var_os("REPOINT_KUBE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/repoint/kubernetes"),
    };
    cache.join(VERSION).join("bin")
}

/// Whether a real control plane can be started here; a note when not, or
/// a failure when `REPOINT_REQUIRE_APISERVER` is set.
pub fn available() -> bool {
    let dir = binary_dir();
    let missing: Vec<String> = ["kube-apiserver", "kube-controller-manager"]
        .iter()
        .map(|b| dir.join(b))
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .chain(
            crate::find_program("etcd")
                .is_none()
                .then(|| "etcd (apt-get install etcd-server)".to_string()),
        )
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("REPOINT_REQUIRE_APISERVER").is_none(),
        "REPOINT_REQUIRE_APISERVER is set but the control plane is missing: {} (bash .ci/kube-apiserver builds it)",
        missing.join(", ")
    );
    eprintln!(
        "no real API server here ({} missing; bash .ci/kube-apiserver builds it): skipping",
        missing.join(", ")
    );
    false
}

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    url: String,
    ca_pem: String,
    /// The test CA, which signs client certificates too.
    ca: (Certificate, KeyPair),
    admin_kubeconfig: PathBuf,
    /// The shells the processes run under: closing their stdin stops them.
    processes: Vec<Child>,
}

impl Drop for ControlPlane {
    /// Stop everything and wait for it (the shared plane is never dropped:
    /// its pipes close when the test binary exits).
    fn drop(&mut self) {
        for process in &mut self.processes {
            drop(process.stdin.take());
        }
        for process in &mut self.processes {
            let _ = process.wait();
        }
    }
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The control plane of this test binary, started on first use; `None`
/// when there is none to start here (see [`available`]).
pub fn shared() -> Option<&'static ControlPlane> {
    static SHARED: OnceLock<Option<ControlPlane>> = OnceLock::new();
    SHARED
        .get_or_init(|| available().then(|| ControlPlane::start(&[])))
        .as_ref()
}

/// The administrator handed to repoint (in `system:masters`).
const ADMIN_TOKEN: &str = "repoint-test-admin-token";
/// The user name of [`ADMIN_TOKEN`], as the audit log names it.
pub const ADMIN: &str = "repoint-test-admin";
/// The administrator the tests seed and read the cluster with: a second
/// identity, so that the audit log tells repoint's requests from theirs.
const SEEDER_TOKEN: &str = "repoint-test-seeder-token";

/// The bearer token of unprivileged user `tester-N`.
pub fn tester_token(n: usize) -> String {
    format!("tester-{n}-token-{}", std::process::id())
}

/// A certificate signed by the test CA: (certificate PEM, key PEM).
fn issue(
    (ca, ca_key): (&Certificate, &KeyPair),
    common_name: &str,
    organization: Option<&str>,
    names: &[&str],
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("certificate params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    let cert = params.signed_by(&key, ca, ca_key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

/// Start `program args` under a shell that stops it when the shell's stdin
/// (a pipe from this process) closes; its output goes to `log`.
fn spawn_owned(program: &Path, args: &[String], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new("sh")
        .arg("-c")
        // The server runs in the background (stdin /dev/null); `cat` waits
        // for the pipe to close, and then the server is stopped.
        .arg(r#""$@" </dev/null & pid=$!; cat >/dev/null; kill "$pid" 2>/dev/null; wait "$pid""#)
        .arg("control-plane")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.display()))
}

/// Remove `dir` when the shell's stdin closes (the servers, stopped at the
/// same moment, write nothing that matters any more).
fn remove_when_closed(dir: &Path) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(r#"cat >/dev/null; sleep 1; rm -rf "$1""#)
        .arg("cleanup")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the cleanup shell")
}

/// A kubeconfig for `server` with CA `ca_pem` and `user` (a kubeconfig
/// `user:` mapping body, indented four spaces).
fn kubeconfig_text(server: &str, ca_pem: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\ncurrent-context: test\nusers:\n- name: test\n  user:\n{user}",
        repoint_credentials::base64(ca_pem)
    )
}

impl ControlPlane {
    /// Start one, with `extra` flags for the API server (see [`shared`]
    /// for the one of a test binary).
    pub fn start(extra: &[&str]) -> Self {
        // Ports are picked free, then released for the servers to bind:
        // another process of the test run can take one in between. A
        // server that says so is started again on other ports.
        for attempt in 1.. {
            match Self::start_once(extra) {
                Ok(plane) => return plane,
                Err(taken) if attempt < 4 => {
                    eprintln!("control plane, attempt {attempt}: {taken}; starting again")
                }
                Err(taken) => panic!("control plane: {taken}, four times"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn start_once(extra: &[&str]) -> Result<Self, String> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let started = Instant::now();
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = crate::temp_dir(&format!("control-plane-{n}"));
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write control-plane file");
            path.display().to_string()
        };

        // The CA, the server's certificate and the service-account keys.
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "repoint-test-ca");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let ca_pem = ca.pem();
        let ca_file = write("ca.crt", &ca_pem);
        let (serving, serving_key) = issue(
            (&ca, &ca_key),
            "kube-apiserver",
            None,
            &["localhost", "127.0.0.1", "kubernetes.default.svc"],
        );
        let serving_file = write("apiserver.crt", &serving);
        let serving_key_file = write("apiserver.key", &serving_key);
        let sa_key = KeyPair::generate().expect("key");
        let sa_key_file = write("sa.key", &sa_key.serialize_pem());
        let sa_pub_file = write("sa.pub", &sa_key.public_key_pem());
        let mut tokens = format!(
            "{ADMIN_TOKEN},{ADMIN},admin,\"system:masters\"\n{SEEDER_TOKEN},repoint-test-seeder,seeder,\"system:masters\"\n"
        );
        for n in 0..TESTERS {
            tokens.push_str(&format!("{},tester-{n},tester-{n}\n", tester_token(n)));
        }
        let tokens_file = write("tokens.csv", &tokens);
        // Every request but the control plane's own, at Metadata level: the
        // tests read what repoint sent from here.
        let audit_policy = write(
            "audit-policy.yaml",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: None\n  users: [system:kube-controller-manager, system:apiserver, repoint-test-seeder]\n- level: None\n  userGroups: [system:serviceaccounts:kube-system, system:nodes]\n- level: Metadata\n",
        );

        let mut processes = vec![remove_when_closed(&dir)];
        let etcd_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let etcd = crate::find_program("etcd").expect("etcd");
        processes.push(spawn_owned(
            &etcd,
            &[
                "--name=test".into(),
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=test={peer_url}"),
                "--log-level=warn".into(),
            ],
            &dir.join("etcd.log"),
        ));

        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let bin = binary_dir();
        processes.push(spawn_owned(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                "--insecure-port=0".into(),
                format!("--tls-cert-file={serving_file}"),
                format!("--tls-private-key-file={serving_key_file}"),
                format!("--client-ca-file={ca_file}"),
                format!("--token-auth-file={tokens_file}"),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-key-file={sa_pub_file}"),
                format!("--service-account-signing-key-file={sa_key_file}"),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                "--service-cluster-ip-range=10.96.0.0/24".into(),
                "--allow-privileged=true".into(),
                // kubectl debug adds ephemeral containers: alpha in v1.20.
                "--feature-gates=EphemeralContainers=true".into(),
                format!("--cert-dir={}", dir.join("certs").display()),
                "--profiling=false".into(),
                format!("--audit-policy-file={audit_policy}"),
                format!("--audit-log-path={}", dir.join("audit.log").display()),
                "--audit-log-format=json".into(),
                "--v=1".into(),
            ]
            .into_iter()
            .chain(extra.iter().map(|f| f.to_string()))
            .collect::<Vec<_>>(),
            &dir.join("kube-apiserver.log"),
        ));

        let admin_kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &admin_kubeconfig,
            kubeconfig_text(&url, &ca_pem, &format!("    token: {ADMIN_TOKEN}\n")),
        )
        .expect("kubeconfig");
        std::fs::write(
            dir.join("seeder.kubeconfig"),
            kubeconfig_text(&url, &ca_pem, &format!("    token: {SEEDER_TOKEN}\n")),
        )
        .expect("kubeconfig");

        let plane = Self {
            dir: dir.clone(),
            url,
            ca_pem: ca_pem.clone(),
            ca: (ca, ca_key),
            admin_kubeconfig,
            processes,
        };
        plane.wait_until("the API server is ready", "kube-apiserver", |agent| {
            plane
                .get(agent, "/readyz")
                .is_some_and(|(status, _)| status == 200)
        })?;

        // The controller manager authenticates with a client certificate.
        let cm_kubeconfig = plane.kubeconfig_with_certificate(
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
        );
        let mut plane = plane;
        plane.processes.push(spawn_owned(
            &bin.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", cm_kubeconfig.display()),
                format!("--authentication-kubeconfig={}", cm_kubeconfig.display()),
                format!("--authorization-kubeconfig={}", cm_kubeconfig.display()),
                "--leader-elect=false".into(),
                "--port=0".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()),
                format!("--cert-dir={}", dir.join("cm-certs").display()),
                format!("--service-account-private-key-file={sa_key_file}"),
                format!("--root-ca-file={ca_file}"),
                "--use-service-account-credentials=true".into(),
                "--controllers=*".into(),
                "--v=1".into(),
            ],
            &dir.join("kube-controller-manager.log"),
        ));
        // Each controller runs as its own kube-system ServiceAccount, bound
        // to its own system:controller:* role, as kubeadm sets it up.
        // Ready when it has made the `default` namespace's account.
        plane.wait_until(
            "the controller manager made default/default",
            "kube-controller-manager",
            |agent| {
                plane
                    .get(agent, "/api/v1/namespaces/default/serviceaccounts/default")
                    .is_some_and(|(status, _)| status == 200)
            },
        )?;
        eprintln!(
            "control plane {VERSION} ready at {} in {:.1} s",
            plane.url,
            started.elapsed().as_secs_f64()
        );
        Ok(plane)
    }

    /// Poll `ready` (GETs with the admin token) for up to 120 s; `Err`
    /// when a server of the plane could not bind its port.
    fn wait_until(
        &self,
        what: &str,
        log: &str,
        mut ready: impl FnMut(&ureq::Agent) -> bool,
    ) -> Result<(), String> {
        let agent = self.agent();
        crate::wait_for(
            what,
            Duration::from_secs(120),
            || {
                if ready(&agent) {
                    return Some(Ok(()));
                }
                ["etcd", "kube-apiserver", "kube-controller-manager"]
                    .into_iter()
                    .find(|c| self.log(c).contains("address already in use"))
                    .map(|c| Err(format!("{c} found its port taken")))
            },
            || format!("{log} log:\n{}", self.log(log)),
        )
    }

    fn agent(&self) -> ureq::Agent {
        let ca = ureq::tls::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA");
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
                    .build(),
            )
            .build()
            .into()
    }

    /// `GET path` as the admin: (status, body), or `None` when the server
    /// does not answer.
    fn get(&self, agent: &ureq::Agent, path: &str) -> Option<(u16, String)> {
        let mut response = agent
            .get(format!("{}{path}", self.url))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .ok()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Some((status, body))
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA (PEM) that signed the API server's certificate and that it
    /// trusts for client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig of a cluster administrator (bearer token, in
    /// `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The kubeconfig the tests themselves seed and read with (another
    /// administrator, left out of the audit log).
    pub fn seeder_kubeconfig(&self) -> PathBuf {
        self.dir.join("seeder.kubeconfig")
    }

    /// The requests the API server has audited so far (everyone's but the
    /// control plane's and the seeder's), oldest first, as its JSON
    /// `audit.k8s.io/v1` events.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A kubeconfig of unprivileged user `tester-N` (bearer token).
    pub fn kubeconfig_of_tester(&self, n: usize) -> PathBuf {
        assert!(n < TESTERS, "only tester-0 .. tester-{}", TESTERS - 1);
        self.kubeconfig_with_token(&format!("tester-{n}"), &tester_token(n))
    }

    /// A kubeconfig authenticating with bearer token `token` (a
    /// ServiceAccount's, say), written as `NAME.kubeconfig`.
    pub fn kubeconfig_with_token(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig_text(&self.url, &self.ca_pem, &format!("    token: {token}\n")),
        )
        .expect("kubeconfig");
        path
    }

    /// A kubeconfig authenticating with a client certificate for user
    /// `user` in group `group`, written as `NAME.kubeconfig`.
    pub fn kubeconfig_with_certificate(
        &self,
        name: &str,
        user: &str,
        group: Option<&str>,
    ) -> PathBuf {
        let (cert, key) = issue((&self.ca.0, &self.ca.1), user, group, &[]);
        let path = self.dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &path,
            kubeconfig_text(
                &self.url,
                &self.ca_pem,
                &format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    repoint_credentials::base64(&cert),
                    repoint_credentials::base64(&key)
                ),
            ),
        )
        .expect("kubeconfig");
        path
    }

    /// What a component (`etcd`, `kube-apiserver`,
    /// `kube-controller-manager`) has logged so far.
    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{component}.log"))).unwrap_or_default()
    }
}
