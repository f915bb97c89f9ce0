//! `admission.k8s.io/v1` `AdmissionReview`: the request fields repoint
//! reads and the response it writes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

/// The envelope the API server posts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    pub api_version: String,
    pub kind: String,
    pub request: Option<AdmissionRequest>,
}

/// The fields of `request` repoint uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    #[serde(default)]
    pub kind: Option<GroupVersionKind>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// `request.operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// `request.kind`.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
}

/// Parse and check a review body; the error says what is wrong.
pub fn parse(body: &[u8]) -> Result<(AdmissionReview, AdmissionRequest), String> {
    let mut review: AdmissionReview =
        serde_json::from_slice(body).map_err(|e| format!("malformed AdmissionReview: {e}"))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(format!(
            "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {:?}, kind {:?}",
            review.api_version, review.kind
        ));
    }
    let request = review
        .request
        .take()
        .ok_or_else(|| "the AdmissionReview has no request".to_string())?;
    Ok((review, request))
}

/// What to answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// JSON Patch operations (mutating endpoint only).
    pub patch: Option<Value>,
    pub warnings: Vec<String>,
    /// HTTP-like code and message of a denial.
    pub status: Option<(u16, String)>,
}

impl Verdict {
    pub fn allow() -> Self {
        Self {
            allowed: true,
            ..Self::default()
        }
    }

    pub fn deny(code: u16, message: String) -> Self {
        Self {
            allowed: false,
            status: Some((code, message)),
            ..Self::default()
        }
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings.extend(warnings);
        self
    }
}

/// The response envelope for request `uid`.
pub fn response(uid: &str, verdict: &Verdict) -> Value {
    let mut response = json!({"uid": uid, "allowed": verdict.allowed});
    if let Some(patch) = &verdict.patch {
        response["patchType"] = "JSONPatch".into();
        response["patch"] = BASE64.encode(patch.to_string()).into();
    }
    if !verdict.warnings.is_empty() {
        // Sent whole: the API server may shorten a warning past 120
        // characters (and drops them past 4 KiB in all) as it passes them
        // on, and the server's log has each in full.
        response["warnings"] = verdict.warnings.clone().into();
    }
    if let Some((code, message)) = &verdict.status {
        response["status"] = json!({"code": code, "message": message});
    }
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
}
