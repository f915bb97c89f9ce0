//! The REST surface: routing of Kubernetes API paths, discovery, query
//! parameters, watch streams and `Status` errors.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::Shared;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{ApiError, Filter, PatchKind, PatchRequest, Resource};

/// Where a request path points.
#[derive(Debug)]
enum Route {
    Version,
    /// The OpenAPI v3 index, with no schemas: clients fall back to their
    /// built-in knowledge of the types, and to no validation for others.
    OpenApiIndex,
    LegacyVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Collection(Resource, Option<String>),
    Item(Resource, Option<String>, String),
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = Query::parse(uri.query().unwrap_or(""));
    shared.log(format!("{method} {uri}"));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if matches!(method, Method::POST | Method::PUT) && content_type.contains("protobuf") {
        // Typed client-go clients default to protobuf; this fixture speaks
        // JSON only (kubectl's apply, create -f, replace and patch do).
        return error(&ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the fixture accepts application/json bodies, not {content_type}"),
        ));
    }
    let route = match route(&shared, uri.path()) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    match (method.clone(), route) {
        (Method::GET, Route::Version) => ok(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-repoint-fixture",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        })),
        (Method::GET, Route::OpenApiIndex) => ok(json!({"paths": {}})),
        (Method::GET, Route::LegacyVersions) => ok(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr}],
        })),
        (Method::GET, Route::Groups) => ok(groups(&shared)),
        (Method::GET, Route::Group(name)) => match groups(&shared)["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["name"] == name.as_str()))
        {
            Some(g) => {
                let mut g = g.clone();
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                ok(g)
            }
            None => error(&path_not_found()),
        },
        (Method::GET, Route::Resources(group, version)) => resources(&shared, &group, &version),
        (method, Route::Collection(resource, ns)) => {
            let verb = match (&method, query.flag("watch")) {
                (&Method::GET, true) => "watch",
                (&Method::GET, false) => "list",
                (&Method::POST, _) => "create",
                _ => return method_not_allowed(),
            };
            // RBAC grants list and watch by name only to a request whose
            // field selector pins that name.
            let pinned = query
                .get("fieldSelector")
                .unwrap_or("")
                .split(',')
                .find_map(|term| {
                    term.strip_prefix("metadata.name==")
                        .or_else(|| term.strip_prefix("metadata.name="))
                })
                .unwrap_or("");
            if let Some(e) = shared.refused(verb, &resource, ns.as_deref(), pinned) {
                return error(&e);
            }
            match verb {
                "watch" => watch(&shared, &resource, ns, &query),
                "list" => list(&shared, &resource, ns, &query),
                _ => {
                    let body: Value = match serde_json::from_slice(&body) {
                        Ok(v) => v,
                        Err(e) => {
                            return error(&ApiError::bad_request(format!(
                                "error decoding body: {e}"
                            )));
                        }
                    };
                    let dry_run = match query.dry_run() {
                        Ok(d) => d,
                        Err(e) => return error(&e),
                    };
                    let created = shared
                        .store()
                        .create(&resource, ns.as_deref(), body, dry_run);
                    respond(created.map(|o| (StatusCode::CREATED, o)))
                }
            }
        }
        (method, Route::Item(resource, ns, name)) => {
            let verb = match method {
                Method::GET => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => return method_not_allowed(),
            };
            if let Some(e) = shared.refused(verb, &resource, ns.as_deref(), &name) {
                return error(&e);
            }
            let dry_run = match query.dry_run() {
                Ok(d) => d,
                Err(e) => return error(&e),
            };
            if matches!(verb, "update" | "patch")
                && shared.interferes(&resource, ns.as_deref(), &name)
            {
                shared.store().touch(&resource, ns.as_deref(), &name);
            }
            let ns = ns.as_deref();
            let mut store = shared.store();
            let result = match verb {
                "get" => store.get(&resource, ns, &name).map(|o| (StatusCode::OK, o)),
                "update" => match serde_json::from_slice(&body) {
                    Ok(body) => store
                        .update(&resource, ns, &name, body, dry_run)
                        .map(|o| (StatusCode::OK, o)),
                    Err(e) => Err(ApiError::bad_request(format!("error decoding body: {e}"))),
                },
                "patch" => patch_kind(content_type).and_then(|kind| {
                    let existed = store.get(&resource, ns, &name).is_ok();
                    let request = |kind| PatchRequest {
                        kind,
                        body: &body,
                        field_manager: query.get("fieldManager"),
                    };
                    store
                        .patch(&resource, ns, &name, request(kind), dry_run)
                        .map(|o| match existed {
                            true => (StatusCode::OK, o),
                            false => (StatusCode::CREATED, o),
                        })
                }),
                _ => store
                    .delete(&resource, ns, &name, dry_run)
                    .map(|o| (StatusCode::OK, o)),
            };
            drop(store);
            respond(result)
        }
        _ => method_not_allowed(),
    }
}

fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    Ok(match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" => PatchKind::Apply,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            ));
        }
    })
}

fn route(shared: &Shared, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["openapi", "v3"] => return Ok(Route::OpenApiIndex),
        ["api"] => return Ok(Route::LegacyVersions),
        ["apis"] => return Ok(Route::Groups),
        ["apis", group] => return Ok(Route::Group(group.to_string())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(path_not_found()),
    };
    let store = shared.store();
    let resource = |plural: &str| {
        store
            .resolve(group, version, plural)
            .ok_or_else(path_not_found)
    };
    Ok(match rest {
        [] => Route::Resources(group.into(), version.into()),
        [plural] => Route::Collection(resource(plural)?, None),
        ["namespaces", ns, plural] => {
            let r = resource(plural)?;
            if !r.namespaced {
                return Err(path_not_found());
            }
            Route::Collection(r, Some(ns.to_string()))
        }
        [plural, name] => {
            let r = resource(plural)?;
            if r.namespaced {
                return Err(path_not_found());
            }
            Route::Item(r, None, name.to_string())
        }
        ["namespaces", ns, plural, name] => {
            let r = resource(plural)?;
            if !r.namespaced {
                return Err(path_not_found());
            }
            Route::Item(r, Some(ns.to_string()), name.to_string())
        }
        _ => return Err(path_not_found()),
    })
}

fn path_not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn method_not_allowed() -> Response {
    error(&ApiError::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    ))
}

/// The API groups besides the legacy core group, as `/apis` lists them.
fn groups(shared: &Shared) -> Value {
    let store = shared.store();
    let mut names: Vec<(String, String)> = Vec::new();
    for r in store.resources.iter().filter(|r| !r.group.is_empty()) {
        if !names.contains(&(r.group.clone(), r.version.clone())) {
            names.push((r.group.clone(), r.version.clone()));
        }
    }
    let groups: Vec<Value> = names
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// An `APIResourceList` for one group version.
fn resources(shared: &Shared, group: &str, version: &str) -> Response {
    let store = shared.store();
    let served: Vec<Value> = store
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": r.short_names,
            })
        })
        .collect();
    if served.is_empty() {
        return error(&path_not_found());
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": served,
    }))
}

fn filter(ns: Option<String>, query: &Query) -> Result<Filter, ApiError> {
    Ok(Filter {
        namespace: ns,
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?,
    })
}

/// A list, a page at a time when `limit` is given: `continue` resumes
/// after the last object returned.
fn list(shared: &Shared, resource: &Resource, ns: Option<String>, query: &Query) -> Response {
    let filter = match filter(ns, query) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => match decode_continue(token) {
            Some(key) => Some(key),
            None => {
                return error(&ApiError::bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion",
                ));
            }
        },
        None => None,
    };
    let store = shared.store();
    let mut items = store.list(resource, &filter, after.as_ref());
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut metadata = json!({"resourceVersion": store.revision().to_string()});
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some((last, _)) = items.last() {
            metadata["continue"] = json!(encode_continue(last));
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|(_, mut o)| {
            // Typed lists leave each item's apiVersion and kind out; only
            // custom resources (unstructured) keep them.
            if !resource.custom
                && let Some(m) = o.as_object_mut()
            {
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        })
        .collect();
    ok(json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    }))
}

fn encode_continue((ns, name): &(String, String)) -> String {
    format!("{ns}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (ns, name) = text.split_once('/')?;
    Some((ns.to_string(), name.to_string()))
}

/// A watch: one JSON event per line, from `resourceVersion` on (or the
/// current objects as `ADDED` first), until `timeoutSeconds`.
fn watch(shared: &Arc<Shared>, resource: &Resource, ns: Option<String>, query: &Query) -> Response {
    let filter = match filter(ns, query) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let since = query
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok());
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let (backlog, mut live) = shared.store().watch(resource, &filter, since);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let key = format!("{}/{}", resource.group, resource.plural);
    let bookmarks = query.flag("allowWatchBookmarks");
    let resource = resource.clone();
    tokio::spawn(async move {
        let line = |kind: &str, object: &Value| {
            let mut text = json!({"type": kind, "object": object}).to_string();
            text.push('\n');
            Bytes::from(text)
        };
        let mut last = since.unwrap_or(0);
        for event in backlog {
            last = last.max(event.revision);
            if tx.send(line(event.kind, &event.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        loop {
            tokio::select! {
                event = live.recv() => match event {
                    Ok(event) if event.resource == key && event.revision > last && filter.matches(&event.object) => {
                        last = event.revision;
                        let mut object = event.object.clone();
                        object["apiVersion"] = json!(resource.api_version());
                        if tx.send(line(event.kind, &object)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Fell behind or shutting down: end the watch; the
                    // client lists again, as with a real server.
                    Err(_) => return,
                },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)), if bookmarks => {
                    let bookmark = json!({
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": last.to_string()},
                    });
                    if last > 0 && tx.send(line("BOOKMARK", &bookmark)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

fn ok(value: Value) -> Response {
    json_response(StatusCode::OK, &value)
}

fn respond(result: Result<(StatusCode, Value), ApiError>) -> Response {
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(e) => error(&e),
    }
}

fn error(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.status(),
    )
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

/// Query parameters, percent-decoded.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(text: &str) -> Self {
        Self(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    /// `dryRun=All` (the only value the API knows).
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other}; valid values are All"
            ))),
        }
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
