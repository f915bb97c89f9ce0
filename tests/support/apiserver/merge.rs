//! The merge flavours of PATCH: RFC 7386 merge patch, and strategic merge
//! patch for built-in kinds.
//!
//! Strategic merge patch is keyed by the Go struct tags of the built-in
//! types (`patchMergeKey`); for the fields repoint's resources use, the key
//! depends only on the field's name, so a table by name is faithful here.

use serde_json::{Map, Value};

/// RFC 7386: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge key of a list field in the built-in types, if it is merged
/// rather than replaced.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" => "name",
        "imagePullSecrets" | "env" | "volumes" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars merged as sets (`patchStrategy: merge` without a key).
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// A strategic merge patch applied to `target`: the directives
/// `$patch` (`replace`, `delete`), `$setElementOrder/FIELD`,
/// `$deleteFromPrimitiveList/FIELD` and `$retainKeys` are understood.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = without_directives(&Value::Object(patch.clone()));
        return Ok(());
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(object) = target else {
        return Ok(());
    };
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        object.retain(|k, _| keep.contains(&k.as_str()) || patch.contains_key(k));
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (object.get_mut(field), value) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            object.remove(key);
            continue;
        }
        let current = object.entry(key.clone()).or_insert(Value::Null);
        match (current, value) {
            (Value::Array(list), Value::Array(items)) if merge_key(key).is_some() => {
                let name = merge_key(key).unwrap_or("name");
                merge_list(list, items, name)?;
                if let Some(Value::Array(order)) = patch.get(&format!("$setElementOrder/{key}")) {
                    reorder(list, order, name);
                }
            }
            (Value::Array(list), Value::Array(items)) if is_set_list(key) => {
                for item in items {
                    if !list.contains(item) {
                        list.push(item.clone());
                    }
                }
            }
            (current @ Value::Object(_), Value::Object(_)) => strategic_merge(current, value)?,
            (current, value) => *current = without_directives(value),
        }
    }
    Ok(())
}

fn merge_list(list: &mut Vec<Value>, items: &[Value], key: &str) -> Result<(), String> {
    for item in items {
        let Some(wanted) = item.get(key) else {
            return Err(format!(
                "map: {item} does not contain declared merge key: {key}"
            ));
        };
        let at = list.iter().position(|e| e.get(key) == Some(wanted));
        match (item.get("$patch").and_then(Value::as_str), at) {
            (Some("delete"), Some(i)) => {
                list.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => strategic_merge(&mut list[i], item)?,
            (_, None) => list.push(without_directives(item)),
        }
    }
    Ok(())
}

/// `$setElementOrder`: the listed elements in the listed order, then the
/// rest as they were.
fn reorder(list: &mut Vec<Value>, order: &[Value], key: &str) {
    let mut ordered = Vec::with_capacity(list.len());
    for wanted in order.iter().filter_map(|o| o.get(key)) {
        if let Some(i) = list.iter().position(|e| e.get(key) == Some(wanted)) {
            ordered.push(list.remove(i));
        }
    }
    ordered.append(list);
    *list = ordered;
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_keys_containers_by_name() {
        let mut deployment = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "a:2"}, {"name": "side", "$patch": "delete"}],
            "imagePullSecrets": [{"name": "regcred"}]
        }}}});
        strategic_merge(&mut deployment, &patch).expect("merge");
        assert_eq!(
            deployment,
            json!({"spec": {"template": {"spec": {
                "containers": [{"name": "app", "image": "a:2", "env": [{"name": "X", "value": "1"}]}],
                "imagePullSecrets": [{"name": "regcred"}]
            }}}})
        );
    }

    #[test]
    fn merge_patch_replaces_lists_and_removes_nulls() {
        let mut o = json!({"a": [1, 2], "b": {"c": 1, "d": 2}});
        merge_patch(&mut o, &json!({"a": [3], "b": {"c": null}}));
        assert_eq!(o, json!({"a": [3], "b": {"d": 2}}));
    }
}
