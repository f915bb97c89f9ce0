//! Probes against a real registry (Debian's `docker-registry`, open and
//! behind htpasswd basic auth), and against small servers for what it
//! cannot do here: the anonymous bearer-token flow and never answering.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use repoint_core::ImageRef;
use repoint_core::probe::{ProbeAnswer, Prober};
use repoint_registry::{ProbeSettings, RegistryProber, RegistrySettings};
use repoint_tests::http::{Response, Server};
use repoint_tests::registry::Registry;

fn image(s: &str) -> ImageRef {
    ImageRef::parse(s).expect("valid reference")
}

fn prober(registries: &[(&str, &str)], timeout: Duration) -> RegistryProber {
    let registries: BTreeMap<String, RegistrySettings> = registries
        .iter()
        .map(|(name, endpoint)| {
            (
                name.to_string(),
                RegistrySettings {
                    endpoint: Some(endpoint.to_string()),
                    ..Default::default()
                },
            )
        })
        .collect();
    RegistryProber::new(
        &registries,
        ProbeSettings {
            timeout,
            ..ProbeSettings::default()
        },
    )
    .expect("prober")
}

#[test]
fn answers_from_a_real_registry() {
    let Some(open) = Registry::start("probe-open", None) else {
        return;
    };
    let Some(private) = Registry::start("probe-auth", Some(("vendor", "s3cret-pass"))) else {
        return;
    };
    let digest = open.push("public/app", "1.0");
    private.push("private/app", "1.0");
    let p = prober(
        &[("public.example.test", &format!("http://{}", open.addr))],
        Duration::from_secs(3),
    );
    let cases = [
        // A registry with a port: loopback, so plain http as docker does.
        (
            format!("{}/public/app:1.0", open.addr),
            ProbeAnswer::Anonymous,
        ),
        (
            format!("{}/public/app@{digest}", open.addr),
            ProbeAnswer::Anonymous,
        ),
        // Tag and digest: the digest is what is pulled, and asked for.
        (
            format!("{}/public/app:9.9@{digest}", open.addr),
            ProbeAnswer::Anonymous,
        ),
        (
            format!("{}/public/app:missing", open.addr),
            ProbeAnswer::NotFound,
        ),
        (
            format!("{}/private/app:1.0", private.addr),
            ProbeAnswer::NeedsAuth,
        ),
        // A registry name mapped to another endpoint.
        (
            "public.example.test/public/app:1.0".into(),
            ProbeAnswer::Anonymous,
        ),
    ];
    for (reference, expected) in cases {
        assert_eq!(p.probe(&image(&reference)), expected, "{reference}");
    }
    assert!(open.manifest_requests("public/app") >= 4, "{}", open.log());
}

#[test]
fn a_loopback_endpoint_without_a_scheme_is_plain_http_as_in_docker() {
    let Some(open) = Registry::start("probe-noscheme", None) else {
        return;
    };
    open.push("public/app", "1.0");
    // `registries: {quay.io: {endpoint: "127.0.0.1:PORT"}}`, as users
    // write it: the mirror on this machine serves plain HTTP.
    let p = prober(
        &[("quay.io", &open.addr.to_string())],
        Duration::from_secs(3),
    );
    assert_eq!(
        p.probe(&image("quay.io/public/app:1.0")),
        ProbeAnswer::Anonymous,
        "{}",
        open.log()
    );
}

#[test]
fn each_unique_image_is_probed_once() {
    let Some(open) = Registry::start("probe-once", None) else {
        return;
    };
    open.push("once/a", "1");
    open.push("once/b", "1");
    let p = prober(&[], Duration::from_secs(3));
    let a = image(&format!("{}/once/a:1", open.addr));
    let b = image(&format!("{}/once/b:1", open.addr));
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..10 {
                    assert_eq!(p.probe(&a), ProbeAnswer::Anonymous);
                    assert_eq!(p.probe(&b), ProbeAnswer::Anonymous);
                }
            });
        }
    });
    // Counted by the registry itself, and by the prober: one request per
    // image, plus the https attempt that taught it this loopback registry
    // speaks plain http (docker's rule for insecure registries).
    assert_eq!(open.manifest_requests("once/a"), 1, "{}", open.log());
    assert_eq!(open.manifest_requests("once/b"), 1, "{}", open.log());
    assert_eq!(p.requests_sent(), 3);
}

#[test]
fn a_registry_that_is_down_is_unknown_within_the_timeout() {
    let timeout = Duration::from_millis(400);
    // Nothing listens: refused at once.
    let closed = repoint_tests::registry::free_port();
    let p = prober(&[], timeout);
    let started = Instant::now();
    assert_eq!(
        p.probe(&image(&format!("127.0.0.1:{closed}/a/b:1"))),
        ProbeAnswer::Unknown
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Accepts connections and never answers: the deadline ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let started = Instant::now();
    assert_eq!(
        p.probe(&image(&format!("{addr}/a/b:1"))),
        ProbeAnswer::Unknown
    );
    let took = started.elapsed();
    assert!(
        took >= timeout / 2 && took < timeout + Duration::from_secs(1),
        "took {took:?}"
    );
    // A server error is unknown too.
    let failing = Server::start(|_| Response::new(503));
    assert_eq!(
        p.probe(&image(&format!("{}/a/b:1", failing.addr))),
        ProbeAnswer::Unknown
    );
}

/// The anonymous bearer-token flow, as Docker Hub, ghcr.io and quay.io run
/// it: 401 with `WWW-Authenticate: Bearer realm,service,scope`, a token from
/// the realm, the request again with it.
#[test]
fn bearer_token_flow() {
    let tokens = Server::start(|req| {
        let q = req.target.clone();
        if !q.contains("service=fake-registry") {
            return Response::new(400);
        }
        if q.contains("scope=repository%3Aforbidden%2Fapp%3Apull")
            || q.contains("scope=repository:forbidden/app:pull")
        {
            return Response::new(401);
        }
        // Like Docker Hub: anyone gets a token, scoped to what they may do.
        let token = if q.contains("public") {
            "pull-public"
        } else {
            "no-access"
        };
        Response::new(200).body(&format!(r#"{{"token": "{token}", "expires_in": 300}}"#))
    });
    let realm = format!("http://{}/token", tokens.addr);
    let registry = Server::start(move |req| {
        let repo = req
            .target
            .strip_prefix("/v2/")
            .and_then(|t| t.split("/manifests/").next())
            .unwrap_or("")
            .to_string();
        match req.header("authorization") {
            Some("Bearer pull-public") if repo.starts_with("public/") => Response::new(200)
                .header(
                    "Content-Type",
                    "application/vnd.oci.image.manifest.v1+json",
                ),
            _ => Response::new(401).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="{realm}",service="fake-registry",scope="repository:{repo}:pull""#
                ),
            ),
        }
    });
    let p = prober(
        &[("hub.example.test", &format!("http://{}", registry.addr))],
        Duration::from_secs(3),
    );
    assert_eq!(
        p.probe(&image("hub.example.test/public/app:1")),
        ProbeAnswer::Anonymous
    );
    assert_eq!(
        p.probe(&image("hub.example.test/private/app:1")),
        ProbeAnswer::NeedsAuth
    );
    assert_eq!(
        p.probe(&image("hub.example.test/forbidden/app:1")),
        ProbeAnswer::NeedsAuth
    );
    // Each probe: manifest, token, manifest again (the last one only when a
    // token was granted); the Accept header asks for manifests and indexes.
    let seen = registry.requests();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|r| r.method == "HEAD"));
    assert!(
        seen[0]
            .header("accept")
            .is_some_and(|a| a.contains("application/vnd.oci.image.index.v1+json"))
    );
    assert_eq!(tokens.requests().len(), 3);
}

/// A registry that does not do HEAD gets a GET.
#[test]
fn get_when_head_is_not_allowed() {
    let registry = Server::start(|req| {
        if req.method == "HEAD" {
            Response::new(405)
        } else {
            Response::new(200).body("{}")
        }
    });
    let p = prober(&[], Duration::from_secs(3));
    assert_eq!(
        p.probe(&image(&format!("{}/a/b:1", registry.addr))),
        ProbeAnswer::Anonymous
    );
    let methods: Vec<String> = registry.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
}

/// TLS: a registry whose certificate comes from a private CA is trusted
/// with `ca:`, refused without it, and reached with `insecure: true`.
#[test]
fn private_ca_and_insecure_tls() {
    let issued = repoint_tests::issue(&["127.0.0.1"]);
    let Some(registry) = Registry::start_tls("probe-tls", &issued.cert, &issued.key) else {
        return;
    };
    let dir = repoint_tests::temp_dir("probe-ca");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &issued.ca).expect("write CA");
    let endpoint = format!("https://{}", registry.addr);
    let with = |settings: RegistrySettings| {
        let mut registries = BTreeMap::new();
        registries.insert("tls.example.test".to_string(), settings);
        RegistryProber::new(&registries, ProbeSettings::default()).expect("prober")
    };
    // A manifest that is not there: not-found means TLS got through.
    let missing = image("tls.example.test/a/b:1");
    let trusted = with(RegistrySettings {
        endpoint: Some(endpoint.clone()),
        ca: Some(ca_file.clone()),
        insecure: false,
    });
    assert_eq!(
        trusted.probe(&missing),
        ProbeAnswer::NotFound,
        "{}",
        registry.log()
    );
    let untrusted = with(RegistrySettings {
        endpoint: Some(endpoint.clone()),
        ..Default::default()
    });
    assert_eq!(untrusted.probe(&missing), ProbeAnswer::Unknown);
    let insecure = with(RegistrySettings {
        endpoint: Some(endpoint),
        ca: None,
        insecure: true,
    });
    assert_eq!(insecure.probe(&missing), ProbeAnswer::NotFound);
    // A CA file that is not one is a configuration error.
    std::fs::write(&ca_file, "not a certificate").expect("write");
    let mut registries = BTreeMap::new();
    registries.insert(
        "tls.example.test".to_string(),
        RegistrySettings {
            ca: Some(ca_file),
            ..Default::default()
        },
    );
    let err = RegistryProber::new(&registries, ProbeSettings::default()).expect_err("rejected");
    assert!(
        err.to_string().contains("registries.tls.example.test.ca"),
        "{err}"
    );
}

/// No more probes in flight than `concurrency`, however many threads ask.
#[test]
fn concurrency_is_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let registry = {
        let (in_flight, most) = (in_flight.clone(), most.clone());
        Server::start(move |_| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Response::new(200)
        })
    };
    let p = RegistryProber::new(
        &BTreeMap::new(),
        ProbeSettings {
            concurrency: 2,
            ..ProbeSettings::default()
        },
    )
    .expect("prober");
    // Warm up: learn that this loopback registry speaks plain http.
    assert_eq!(
        p.probe(&image(&format!("{}/warm/up:1", registry.addr))),
        ProbeAnswer::Anonymous
    );
    std::thread::scope(|s| {
        for i in 0..8 {
            let p = &p;
            let addr = registry.addr.clone();
            s.spawn(move || {
                assert_eq!(
                    p.probe(&image(&format!("{addr}/img/n{i}:1"))),
                    ProbeAnswer::Anonymous
                );
            });
        }
    });
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

/// A long-running process keeps answers for `cache_ttl`, then asks again.
#[test]
fn answers_expire_after_the_ttl() {
    let registry = Server::start(|_| Response::new(200));
    let p = RegistryProber::new(
        &BTreeMap::new(),
        ProbeSettings {
            cache_ttl: Some(Duration::from_millis(300)),
            ..ProbeSettings::default()
        },
    )
    .expect("prober");
    let img = image(&format!("{}/ttl/app:1", registry.addr));
    let manifest_requests = || {
        registry
            .requests()
            .iter()
            .filter(|r| r.target.contains("/manifests/"))
            .count()
    };
    assert_eq!(p.probe(&img), ProbeAnswer::Anonymous);
    assert_eq!(p.probe(&img), ProbeAnswer::Anonymous);
    assert_eq!(manifest_requests(), 1, "cached");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(p.probe(&img), ProbeAnswer::Anonymous);
    assert_eq!(manifest_requests(), 2, "asked again after the TTL");
}
