//! A policy's settings, read from the JSON Schema it publishes: one row per
//! property (nested ones as `rules[].match`), for `policy inspect` and the
//! policy reference pages.

use serde_json::Value;

/// One setting.
#[derive(Debug)]
pub struct Setting {
    pub name: String,
    /// `string`, `array of string`, `"deny" | "warn"`, ...
    pub kind: String,
    pub required: bool,
    /// The default, as JSON.
    pub default: Option<String>,
    pub description: Option<String>,
}

impl Setting {
    /// `array of string, required: Registries ...`
    pub fn summary(&self) -> String {
        let mut text = self.kind.clone();
        if self.required {
            text.push_str(", required");
        }
        if let Some(default) = &self.default {
            text.push_str(&format!(", default {default}"));
        }
        if let Some(description) = &self.description {
            text.push_str(&format!(": {description}"));
        }
        text
    }
}

/// The settings `schema` describes, in the order written; the fields of
/// an object, or of a list's objects, follow it as `rules[].match`.
pub fn settings(schema: &Value) -> Vec<Setting> {
    let mut out = Vec::new();
    collect(schema, "", &mut out);
    out
}

fn collect(schema: &Value, prefix: &str, out: &mut Vec<Setting>) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, property) in properties {
        let name = format!("{prefix}{name}");
        out.push(Setting {
            name: name.clone(),
            kind: kind(property),
            required: required.contains(&&name[prefix.len()..]),
            default: property.get("default").map(Value::to_string),
            description: property["description"].as_str().map(String::from),
        });
        collect(property, &format!("{name}."), out);
        collect(&property["items"], &format!("{name}[]."), out);
    }
}

/// A property's type in words.
fn kind(property: &Value) -> String {
    if let Some(choices) = property["enum"].as_array() {
        return choices
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let name = match &property["type"] {
        Value::String(name) => name.clone(),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ if property.get("oneOf").is_some() || property.get("anyOf").is_some() => {
            "one of several forms".to_string()
        }
        _ => "any".to_string(),
    };
    if name == "array" && property.get("items").is_some() {
        return format!("array of {}", kind(&property["items"]));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_say_type_requirement_default_and_description() {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["allow"],
            "properties": {
                "allow": {"type": "array", "items": {"type": "string"}, "description": "Where from."},
                "enforcement": {"enum": ["deny", "warn"], "default": "deny"},
                "rules": {"type": "array", "items": {"type": "object", "required": ["match"],
                          "properties": {"match": {"type": "string"}}}},
            }
        });
        let rows: Vec<String> = settings(&schema)
            .iter()
            .map(|r| format!("{} {}", r.name, r.summary()))
            .collect();
        assert_eq!(
            rows,
            [
                "allow array of string, required: Where from.",
                "enforcement \"deny\" | \"warn\", default \"deny\"",
                "rules array of object",
                "rules[].match string, required",
            ]
        );
    }
}
