//! Pure helpers on objects in wire form: store keys, metadata access,
//! timestamps, generated names, unknown-field pruning, Scale conversion.

use podnet_model::registry::ResourceInfo;
use serde_json::{json, Map, Value};

/// The store key of one object: `/<group or core>/<plural>/<namespace or ->/<name>`.
pub fn object_key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    format!(
        "{}{}",
        collection_prefix(info, namespace.or(Some("-"))),
        name
    )
}

/// The key prefix of a collection; `namespace` None means every namespace.
pub fn collection_prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    let group = if info.group.is_empty() {
        "core"
    } else {
        info.group
    };
    match namespace {
        Some(ns) => format!("/{group}/{}/{ns}/", info.plural),
        None => format!("/{group}/{}/", info.plural),
    }
}

/// The current time as upstream writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    format_timestamp(jiff::Timestamp::now())
}

pub fn format_timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A name for `generateName`: the prefix and five characters from upstream's alphabet.
pub fn generated_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// `metadata`, created if missing (and replaced if it is not an object).
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn resource_version(obj: &Value) -> Option<i64> {
    meta_str(obj, "resourceVersion").and_then(|rv| rv.parse().ok())
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The object without metadata and status: what `metadata.generation` tracks.
pub fn desired_state(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

/// The object minus the fields every write changes, to detect no-op writes.
pub fn comparable(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    copy
}

/// Remove one field named the way `schema::unknown_fields` reports it
/// (`spec.containers[0].foo`). Unknown fields are dropped before storing, as
/// upstream's typed decoding does.
pub fn remove_field_path(obj: &mut Value, path: &str) {
    let mut steps: Vec<PathStep> = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            steps.push(PathStep::Field(name.to_string()));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            match stripped[..end].parse::<usize>() {
                Ok(index) => steps.push(PathStep::Index(index)),
                Err(_) => steps.push(PathStep::Field(stripped[..end].to_string())),
            }
            rest = &stripped[end + 1..];
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut cursor = obj;
    for step in parents {
        let next = match step {
            PathStep::Field(f) => cursor.get_mut(f.as_str()),
            PathStep::Index(i) => cursor.get_mut(*i),
        };
        match next {
            Some(value) => cursor = value,
            None => return,
        }
    }
    if let (PathStep::Field(f), Some(map)) = (last, cursor.as_object_mut()) {
        map.remove(f);
    }
}

enum PathStep {
    Field(String),
    Index(usize),
}

/// The string form of a LabelSelector object, as Scale's `status.selector` carries it.
pub fn selector_string(selector: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for expr in exprs {
            let key = expr["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = expr["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match expr["operator"].as_str().unwrap_or_default() {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// The autoscaling/v1 Scale of a deployment, replicaset or statefulset.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": obj.pointer("/spec/selector").map(selector_string).unwrap_or_default(),
        },
    })
}

/// The PartialObjectMetadata form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_paths_are_removed() {
        let mut pod =
            json!({"spec": {"foo": 1, "containers": [{"name": "a", "bar": 2}]}, "top": 3});
        remove_field_path(&mut pod, "spec.foo");
        remove_field_path(&mut pod, "spec.containers[0].bar");
        remove_field_path(&mut pod, "top");
        remove_field_path(&mut pod, "spec.missing[3].x");
        assert_eq!(pod, json!({"spec": {"containers": [{"name": "a"}]}}));
    }

    #[test]
    fn scale_carries_selector_string() {
        let deployment = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2},
        });
        let scale = scale_of(&deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(scale["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn generated_names_use_the_prefix() {
        let name = generated_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
    }
}
