//! A Kubernetes object as policies see it: the fields of the WIT `resource`
//! record, computed once here so the host and the guest SDK (each with its
//! own generated WIT types) build it the same way.

use serde_json::Value;

use crate::sites::{ImageSite, Sites};

/// The WIT `resource` record, in core types. Image sites whose reference
/// does not parse are not included: the host reports them as errors before
/// any policy runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceView {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: Option<String>,
    /// `metadata.labels` in written order.
    pub labels: Vec<(String, String)>,
    /// `metadata.annotations` in written order.
    pub annotations: Vec<(String, String)>,
    /// Image sites with pointers relative to the object.
    pub images: Vec<ImageSite>,
    /// Pull secrets already listed.
    pub pull_secrets: Vec<String>,
    /// Where pull secrets live, relative to the object.
    pub pull_secrets_pointer: Option<String>,
    /// `serviceAccountName`.
    pub service_account: Option<String>,
    /// The object as JSON text.
    pub object_json: String,
    /// The object as JSON text without its `metadata` member.
    pub object_json_without_metadata: String,
}

/// The forms of the object's JSON text a view carries: serializing the
/// object is most of a view's cost, so only those some policy reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonForms {
    /// The whole object.
    pub whole: bool,
    /// The object without its `metadata` member.
    pub without_metadata: bool,
}

fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// An object's members other than `metadata`, serialized as a map in
/// their order.
/// An object's members but its `metadata`, serialized as JSON: what a
/// policy reading `object-json` without `object-metadata` is shown, and
/// what a chain's outcome is remembered by.
#[derive(Debug, Clone, Copy)]
pub struct WithoutMetadata<'a>(pub &'a serde_json::Map<String, Value>);

impl serde::Serialize for WithoutMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(key, _)| *key != "metadata"))
    }
}

fn string_map(v: Option<&Value>) -> Vec<(String, String)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strip<'a>(pointer: &'a str, prefix: &str) -> &'a str {
    pointer.strip_prefix(prefix).unwrap_or(pointer)
}

impl ResourceView {
    /// Build the view of `object`, whose `sites` pointers start with
    /// `prefix` (the object's place in its document); pointers in the view
    /// are relative to the object itself.
    pub fn new(object: &Value, prefix: &str, sites: &Sites) -> Self {
        let whole = JsonForms {
            whole: true,
            without_metadata: false,
        };
        Self::with_json(object, prefix, sites, whole)
    }

    /// [`ResourceView::new`] carrying the JSON `forms` asked for (the
    /// others are empty).
    pub fn with_json(object: &Value, prefix: &str, sites: &Sites, forms: JsonForms) -> Self {
        let object_json = if forms.whole {
            json_text(object)
        } else {
            String::new()
        };
        let object_json_without_metadata = match object.as_object() {
            Some(map) if forms.without_metadata => json_text(&WithoutMetadata(map)),
            _ if forms.without_metadata => json_text(object),
            _ => String::new(),
        };
        Self {
            object_json,
            object_json_without_metadata,
            ..Self::without_json(object, prefix, sites)
        }
    }

    fn without_json(object: &Value, prefix: &str, sites: &Sites) -> Self {
        let meta = |k: &str| {
            object
                .get("metadata")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Self {
            api_version: object
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            kind: object
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            namespace: meta("namespace"),
            name: meta("name"),
            labels: string_map(crate::pointer::get(object, "/metadata/labels")),
            annotations: string_map(crate::pointer::get(object, "/metadata/annotations")),
            images: sites
                .images
                .iter()
                .filter(|s| s.image.is_ok())
                .map(|s| ImageSite {
                    pointer: strip(&s.pointer, prefix).to_string(),
                    ..s.clone()
                })
                .collect(),
            pull_secrets: sites.pull_secrets.clone(),
            pull_secrets_pointer: sites
                .pull_secrets_pointer
                .as_deref()
                .map(|p| strip(p, prefix).to_string()),
            service_account: sites.service_account.clone(),
            object_json: String::new(),
            object_json_without_metadata: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_json_forms_asked_for_are_carried_in_written_order() {
        let object = json!({"kind": "Pod", "metadata": {"name": "p", "uid": "u"},
                            "apiVersion": "v1", "spec": {"b": 1, "a": [2]}});
        let sites = Sites::default();
        let both = JsonForms {
            whole: true,
            without_metadata: true,
        };
        let view = ResourceView::with_json(&object, "", &sites, both);
        assert_eq!(view.object_json, object.to_string());
        assert_eq!(
            view.object_json_without_metadata,
            r#"{"kind":"Pod","apiVersion":"v1","spec":{"b":1,"a":[2]}}"#
        );
        let none = ResourceView::with_json(&object, "", &sites, JsonForms::default());
        assert_eq!(
            (none.object_json, none.object_json_without_metadata),
            (String::new(), String::new())
        );
        assert_eq!(
            ResourceView::new(&object, "", &sites).object_json,
            object.to_string()
        );
    }
}
