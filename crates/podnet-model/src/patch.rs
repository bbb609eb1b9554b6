//! JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.
//!
//! The strategic merge follows upstream's `apimachinery/pkg/util/strategicpatch`
//! as the API server runs it (parallel directive lists merged, unmatched nulls
//! ignored). Merge keys and strategies are the `patchStrategy` /
//! `patchMergeKey` tags of the upstream Go types, looked up here by the
//! field's path of map keys inside the object (list positions are not part of
//! the path), so a pod template's containers merge the same way in a Pod, a
//! Deployment or a CronJob.

use crate::registry::ResourceInfo;
use crate::ModelError;
use serde_json::{Map, Value};

/// Apply an RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, ModelError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
        ModelError::InvalidPatch(format!(
            "the json patch is not a list of RFC 6902 operations: {e}"
        ))
    })?;
    let mut patched = doc.clone();
    json_patch::patch(&mut patched, &operations)
        .map_err(|e| ModelError::InvalidPatch(format!("the json patch cannot be applied: {e}")))?;
    Ok(patched)
}

/// Apply an RFC 7386 merge patch.
///
/// Key order of the document is kept (removed keys don't reshuffle the rest),
/// so objects read back in the order they were written.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let Value::Object(patch_map) = patch else {
        return patch.clone();
    };
    let mut merged = match doc {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, patch_value) in patch_map {
        if patch_value.is_null() {
            merged.shift_remove(key);
        } else {
            let current = merged.get(key).cloned().unwrap_or(Value::Null);
            merged.insert(key.clone(), merge_patch(&current, patch_value));
        }
    }
    Value::Object(merged)
}

/// Apply a strategic merge patch with upstream merge keys and directives
/// (`$patch`, `$setElementOrder/<field>`, `$retainKeys`, `$deleteFromPrimitiveList/<field>`).
pub fn strategic_merge_patch(
    info: &ResourceInfo,
    doc: &Value,
    patch: &Value,
) -> Result<Value, ModelError> {
    let Value::Object(patch_map) = patch else {
        return Err(ModelError::InvalidPatch(
            "a strategic merge patch must be a JSON object".to_string(),
        ));
    };
    let original = match doc {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(ModelError::InvalidPatch(
                "a strategic merge patch applies to a JSON object".to_string(),
            ))
        }
    };
    let merger = StrategicMerger { kind: info.kind };
    let merged = merger.merge_map(original, patch_map.clone(), &mut Vec::new())?;
    Ok(Value::Object(merged))
}

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList/";

/// How a field merges, from upstream's struct tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta {
    /// `patchStrategy:"merge"`; otherwise the patch value replaces the field.
    pub merge: bool,
    /// `patchMergeKey` for lists of objects merged by key.
    pub merge_key: Option<&'static str>,
    /// `patchStrategy:"...retainKeys"`.
    pub retain_keys: bool,
}

const REPLACE: PatchMeta = PatchMeta {
    merge: false,
    merge_key: None,
    retain_keys: false,
};

const fn merge_by(key: &'static str) -> PatchMeta {
    PatchMeta {
        merge: true,
        merge_key: Some(key),
        retain_keys: false,
    }
}

const MERGE_PRIMITIVES: PatchMeta = PatchMeta {
    merge: true,
    merge_key: None,
    retain_keys: false,
};

/// The merge strategy of the field at `path` (map keys from the object root).
///
/// None means the field carries no tag: a map then merges key by key and a
/// list is replaced. `kind` keeps kind-specific paths (a Service's
/// `spec.ports`, a PodDisruptionBudget's `spec.selector`) from leaking to
/// other kinds with the same path.
pub fn patch_meta(kind: &str, path: &[String]) -> Option<PatchMeta> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let last = segments.last().copied().unwrap_or_default();
    let parent = segments
        .len()
        .checked_sub(2)
        .map(|i| segments[i])
        .unwrap_or_default();
    let grandparent = segments
        .len()
        .checked_sub(3)
        .map(|i| segments[i])
        .unwrap_or_default();
    let is_container_list = |name: &str| {
        matches!(
            name,
            "containers" | "initContainers" | "ephemeralContainers"
        )
    };
    let is_container_status_list = |name: &str| {
        matches!(
            name,
            "containerStatuses" | "initContainerStatuses" | "ephemeralContainerStatuses"
        )
    };
    // A pod spec sits at `spec` (Pod) or `...template.spec` (workloads).
    let in_pod_spec = parent == "spec"
        && (segments.len() == 2 || grandparent == "template")
        && matches!(
            kind,
            "Pod"
                | "PodTemplate"
                | "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
                | "ReplicationController"
        );
    let meta = match last {
        "ports" if is_container_list(parent) && grandparent == "spec" => merge_by("containerPort"),
        "env" if is_container_list(parent) => merge_by("name"),
        "volumeMounts" if is_container_list(parent) || is_container_status_list(parent) => {
            merge_by("mountPath")
        }
        "volumeDevices" if is_container_list(parent) => merge_by("devicePath"),
        "allocatedResourcesStatus" if is_container_status_list(parent) => merge_by("name"),
        "containers" | "initContainers" | "ephemeralContainers" if in_pod_spec => merge_by("name"),
        "volumes" | "resourceClaims" if in_pod_spec => PatchMeta {
            retain_keys: true,
            ..merge_by("name")
        },
        "imagePullSecrets" | "schedulingGates" if in_pod_spec => merge_by("name"),
        "hostAliases" if in_pod_spec => merge_by("ip"),
        "topologySpreadConstraints" if in_pod_spec => merge_by("topologyKey"),
        "finalizers" if parent == "metadata" => MERGE_PRIMITIVES,
        "ownerReferences" if parent == "metadata" => merge_by("uid"),
        "conditions" if parent == "status" && segments.len() == 2 => merge_by("type"),
        "podIPs" | "hostIPs" if kind == "Pod" && segments.len() == 2 && parent == "status" => {
            merge_by("ip")
        }
        "addresses" if kind == "Node" && segments == ["status", "addresses"] => merge_by("type"),
        "podCIDRs" if kind == "Node" && segments == ["spec", "podCIDRs"] => MERGE_PRIMITIVES,
        "ports" if kind == "Service" && segments == ["spec", "ports"] => merge_by("port"),
        "secrets" if kind == "ServiceAccount" && segments == ["secrets"] => merge_by("name"),
        "strategy" if kind == "Deployment" && segments == ["spec", "strategy"] => PatchMeta {
            merge: true,
            merge_key: None,
            retain_keys: true,
        },
        "selector" if kind == "PodDisruptionBudget" && segments == ["spec", "selector"] => REPLACE,
        _ => return None,
    };
    Some(meta)
}

struct StrategicMerger<'a> {
    kind: &'a str,
}

fn directive_error(message: String) -> ModelError {
    ModelError::InvalidPatch(message)
}

impl StrategicMerger<'_> {
    /// The field's tag, with untagged maps merged and untagged lists replaced.
    fn meta(&self, path: &[String], value_is_list: bool) -> PatchMeta {
        patch_meta(self.kind, path).unwrap_or(PatchMeta {
            merge: !value_is_list,
            merge_key: None,
            retain_keys: false,
        })
    }

    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<Map<String, Value>, ModelError> {
        if let Some(directive) = patch.get(DIRECTIVE_MARKER).cloned() {
            match directive.as_str() {
                Some("replace") => {
                    patch.shift_remove(DIRECTIVE_MARKER);
                    return Ok(strip_nulls(patch));
                }
                Some("delete") => return Ok(Map::new()),
                // Accepted as a no-op: the map merges as it would anyway.
                Some("merge") => {
                    patch.shift_remove(DIRECTIVE_MARKER);
                }
                _ => {
                    return Err(directive_error(format!(
                        "unknown patch type {directive} in map at {}",
                        display_path(path)
                    )))
                }
            }
        }

        self.apply_retain_keys(&mut original, &mut patch, path)?;
        self.merge_element_order_lists(&mut original, &mut patch, path)?;

        for (key, patch_value) in patch {
            if key.starts_with(SET_ELEMENT_ORDER_PREFIX) {
                continue;
            }
            let (field, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            {
                Some(field) => (field.to_string(), true),
                None => (key, false),
            };
            if patch_value.is_null() {
                original.shift_remove(&field);
                continue;
            }
            path.push(field.clone());
            let result = self.merge_field(original.get(&field), patch_value, path, is_delete_list);
            path.pop();
            if let Some(merged) = result? {
                original.insert(field, merged);
            }
        }
        Ok(original)
    }

    /// Merge one field's patch value into its original value (None: absent).
    /// Returns None when the field is to be left as it was.
    fn merge_field(
        &self,
        original_value: Option<&Value>,
        patch_value: Value,
        path: &mut Vec<String>,
        is_delete_list: bool,
    ) -> Result<Option<Value>, ModelError> {
        let meta = self.meta(path, patch_value.is_array());
        match (original_value, patch_value) {
            (None, _) if is_delete_list => Ok(None),
            // A new field: merging into nothing keeps the patch value minus
            // its nulls and directives (upstream discards the nulls too).
            (None, Value::Object(patch_map)) => {
                if !meta.merge {
                    return Ok(Some(Value::Object(strip_nulls(patch_map))));
                }
                Ok(Some(Value::Object(self.merge_map(
                    Map::new(),
                    patch_map,
                    path,
                )?)))
            }
            (None, Value::Array(patch_list)) => {
                if meta.merge {
                    Ok(Some(Value::Array(self.merge_list(
                        Vec::new(),
                        patch_list,
                        meta,
                        path,
                        false,
                    )?)))
                } else {
                    Ok(Some(Value::Array(patch_list)))
                }
            }
            (None, scalar) => Ok(Some(scalar)),
            (Some(Value::Object(original_map)), Value::Object(patch_map)) => {
                if !meta.merge {
                    return Ok(Some(Value::Object(strip_nulls(patch_map))));
                }
                Ok(Some(Value::Object(self.merge_map(
                    original_map.clone(),
                    patch_map,
                    path,
                )?)))
            }
            (Some(Value::Array(original_list)), Value::Array(patch_list)) => {
                if meta.merge {
                    Ok(Some(Value::Array(self.merge_list(
                        original_list.clone(),
                        patch_list,
                        meta,
                        path,
                        is_delete_list,
                    )?)))
                } else if is_delete_list {
                    Ok(None)
                } else {
                    Ok(Some(Value::Array(patch_list)))
                }
            }
            // Different types, or scalars: the patch value wins.
            (Some(_), patch_value) if !is_delete_list => Ok(Some(match patch_value {
                Value::Object(patch_map) => {
                    Value::Object(self.merge_map(Map::new(), patch_map, path)?)
                }
                other => other,
            })),
            (Some(_), _) => Ok(None),
        }
    }

    fn apply_retain_keys(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &[String],
    ) -> Result<(), ModelError> {
        let Some(retain_keys) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
            return Ok(());
        };
        let Value::Array(retain_keys) = retain_keys else {
            return Err(directive_error(format!(
                "$retainKeys at {} must be a list of field names",
                display_path(path)
            )));
        };
        let retained: Vec<&str> = retain_keys.iter().filter_map(Value::as_str).collect();
        for (key, value) in patch.iter() {
            if value.is_null()
                || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
                || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
            {
                continue;
            }
            if !retained.contains(&key.as_str()) {
                return Err(directive_error(format!(
                    "doesn't satisfy strategic merge patch format: all fields in the patch at {} must be listed in $retainKeys (missing {key:?})",
                    display_path(path)
                )));
            }
        }
        original.retain(|key, _| retained.contains(&key.as_str()));
        Ok(())
    }

    /// Merge every list that has a `$setElementOrder/<field>` directive and
    /// put its items in the directive's order (server-only items keep their
    /// place relative to the original), then drop that list from the patch.
    fn merge_element_order_lists(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<(), ModelError> {
        let order_directives: Vec<(String, Value)> = patch
            .iter()
            .filter_map(|(key, value)| {
                key.strip_prefix(SET_ELEMENT_ORDER_PREFIX)
                    .map(|field| (field.to_string(), value.clone()))
            })
            .collect();
        for (field, order) in order_directives {
            let Value::Array(order) = order else {
                return Err(directive_error(format!(
                    "$setElementOrder/{field} at {} must be a list",
                    display_path(path)
                )));
            };
            path.push(field.clone());
            let meta = self.meta(path, true);
            let original_list = match original.get(&field) {
                Some(Value::Array(list)) => Some(list.clone()),
                _ => None,
            };
            let patch_list = match patch.get(&field) {
                Some(Value::Array(list)) => Some(list.clone()),
                _ => None,
            };
            if let Some(patch_list) = &patch_list {
                validate_patch_against_order(patch_list, &order, meta.merge_key, path)?;
            }
            let merged = match (original_list.clone(), patch_list) {
                (None, None) => {
                    path.pop();
                    continue;
                }
                (None, Some(patch_list)) => {
                    if meta.merge {
                        self.merge_list(Vec::new(), patch_list, meta, path, false)?
                    } else {
                        patch_list
                    }
                }
                (Some(original_list), None) => original_list,
                (Some(original_list), Some(patch_list)) => {
                    if meta.merge {
                        self.merge_list(original_list, patch_list, meta, path, false)?
                    } else {
                        patch_list
                    }
                }
            };
            let (patch_items, server_only_items) =
                partition_by_presence(merged, &order, meta.merge_key);
            let normalized = normalize_element_order(
                patch_items,
                server_only_items,
                &order,
                original_list.as_deref().unwrap_or_default(),
                meta.merge_key,
            );
            path.pop();
            original.insert(field.clone(), Value::Array(normalized));
            patch.shift_remove(&field);
        }
        Ok(())
    }

    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        meta: PatchMeta,
        path: &mut Vec<String>,
        is_delete_list: bool,
    ) -> Result<Vec<Value>, ModelError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let elements_are_maps = list_elements_are_maps(&original, &patch, path)?;
        let (merged, order_source, server_order) = if !elements_are_maps {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|item| !patch.contains(item))
                    .collect());
            }
            let mut merged: Vec<Value> = Vec::new();
            for item in original.iter().chain(patch.iter()) {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            (merged, patch, original)
        } else {
            let Some(merge_key) = meta.merge_key else {
                return Err(directive_error(format!(
                    "cannot merge lists without merge key for {}",
                    display_path(path)
                )));
            };
            let (original, patch) = apply_special_list_elements(original, patch, merge_key)?;
            let mut merged = original.clone();
            for patch_item in &patch {
                let Value::Object(patch_item_map) = patch_item else {
                    continue;
                };
                let Some(key_value) = patch_item_map.get(merge_key) else {
                    return Err(directive_error(format!(
                        "map: {patch_item} does not contain declared merge key: {merge_key}"
                    )));
                };
                let position = merged
                    .iter()
                    .position(|item| item.get(merge_key) == Some(key_value));
                match position {
                    Some(index) => {
                        let original_item = match &merged[index] {
                            Value::Object(map) => map.clone(),
                            _ => Map::new(),
                        };
                        merged[index] = Value::Object(self.merge_map(
                            original_item,
                            patch_item_map.clone(),
                            path,
                        )?);
                    }
                    None => {
                        merged.push(Value::Object(self.merge_map(
                            Map::new(),
                            patch_item_map.clone(),
                            path,
                        )?));
                    }
                }
            }
            (merged, patch, original)
        };
        let (patch_items, server_only_items) =
            partition_by_presence(merged, &order_source, meta.merge_key);
        Ok(normalize_element_order(
            patch_items,
            server_only_items,
            &order_source,
            &server_order,
            meta.merge_key,
        ))
    }
}

fn list_elements_are_maps(
    original: &[Value],
    patch: &[Value],
    path: &[String],
) -> Result<bool, ModelError> {
    let mut saw_map = false;
    let mut saw_other = false;
    for item in original.iter().chain(patch.iter()) {
        match item {
            Value::Object(_) => saw_map = true,
            Value::Array(_) => {
                return Err(directive_error(format!(
                    "list at {} contains lists, which cannot be merged",
                    display_path(path)
                )))
            }
            _ => saw_other = true,
        }
    }
    if saw_map && saw_other {
        return Err(directive_error(format!(
            "list at {} mixes objects and values",
            display_path(path)
        )));
    }
    Ok(saw_map)
}

/// Handle `$patch: delete` / `$patch: replace` items of a keyed list.
/// Returns the original to merge into and the patch items still to merge.
fn apply_special_list_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), ModelError> {
    let mut ordinary_items = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE_MARKER) else {
            ordinary_items.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(key_value) = item.get(merge_key) else {
                    return Err(directive_error(format!(
                        "map: {item} does not contain declared merge key: {merge_key}"
                    )));
                };
                original.retain(|candidate| candidate.get(merge_key) != Some(key_value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(directive_error(
                    "merging lists cannot yet be specified in the patch".to_string(),
                ))
            }
            _ => {
                return Err(directive_error(format!(
                    "unknown patch type {directive} in list item {item}"
                )))
            }
        }
    }
    if replace {
        return Ok((ordinary_items, Vec::new()));
    }
    Ok((original, ordinary_items))
}

/// The identity of a list item for ordering: its merge key value, or itself.
fn item_identity<'a>(item: &'a Value, merge_key: Option<&str>) -> Option<&'a Value> {
    match merge_key {
        Some(key) => item.get(key),
        None => Some(item),
    }
}

fn index_in(order: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let identity = item_identity(item, merge_key)?;
    order
        .iter()
        .position(|candidate| item_identity(candidate, merge_key) == Some(identity))
}

/// Split merged items into those named by `order` and the server-only rest.
fn partition_by_presence(
    merged: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|item| index_in(order, item, merge_key).is_some())
}

/// Sort patch items by the patch (or `$setElementOrder`) order and
/// server-only items by the server order, then interleave them: a
/// server-only item goes before a patch item only when the server had it
/// before that item.
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only_items: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    patch_items.sort_by_key(|item| index_in(patch_order, item, merge_key).unwrap_or(usize::MAX));
    server_only_items
        .sort_by_key(|item| index_in(server_order, item, merge_key).unwrap_or(usize::MAX));
    let mut result = Vec::with_capacity(patch_items.len() + server_only_items.len());
    let mut server_iter = server_only_items.into_iter().peekable();
    let mut patch_iter = patch_items.into_iter().peekable();
    loop {
        match (server_iter.peek(), patch_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => result.extend(server_iter.next()),
            (None, Some(_)) => result.extend(patch_iter.next()),
            (Some(server_item), Some(patch_item)) => {
                let server_first = match (
                    index_in(server_order, server_item, merge_key),
                    index_in(server_order, patch_item, merge_key),
                ) {
                    (Some(server_index), Some(patch_index)) => server_index < patch_index,
                    _ => false,
                };
                if server_first {
                    result.extend(server_iter.next());
                } else {
                    result.extend(patch_iter.next());
                }
            }
        }
    }
    result
}

fn validate_patch_against_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
    path: &[String],
) -> Result<(), ModelError> {
    for item in patch_list {
        if item.get(DIRECTIVE_MARKER).is_some() {
            continue;
        }
        if index_in(order, item, merge_key).is_none() {
            return Err(directive_error(format!(
                "item {item} in the patch list at {} is not in its $setElementOrder list",
                display_path(path)
            )));
        }
    }
    Ok(())
}

/// Drop null values (deletions of fields that don't exist) recursively.
fn strip_nulls(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, value)| match value {
            Value::Object(inner) => (key, Value::Object(strip_nulls(inner))),
            other => (key, other),
        })
        .collect()
}

fn display_path(path: &[String]) -> String {
    if path.is_empty() {
        "the object root".to_string()
    } else {
        path.join(".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(kind: &'static str) -> ResourceInfo {
        ResourceInfo {
            group: "apps",
            version: "v1",
            kind,
            list_kind: "List",
            plural: "things",
            singular: "thing",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: &[],
            subresources: &[],
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                            },
                            {"name": "sidecar", "image": "busybox", "args": ["sleep", "1"]}
                        ]
                    }
                }
            }
        })
    }

    fn smp(doc: &Value, patch: Value) -> Value {
        strategic_merge_patch(&info("Deployment"), doc, &patch).unwrap()
    }

    #[test]
    fn client_side_apply_image_change_keeps_ports() {
        let patched = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"name": "web", "image": "nginx:1.27"}]
            }}}}),
        );
        let web = &patched["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(web["image"], "nginx:1.27");
        assert_eq!(
            web["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][1]["name"],
            "sidecar"
        );
    }

    #[test]
    fn delete_directive_removes_a_container() {
        let patched = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"$patch": "delete", "name": "sidecar"}]
            }}}}),
        );
        let names: Vec<&str> = patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn set_element_order_reorders_and_adds() {
        let patched = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "extra"}, {"name": "web"}],
                "containers": [{"name": "extra", "image": "x"}]
            }}}}),
        );
        let names: Vec<&str> = patched["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sidecar", "extra", "web"]);
        // The web container kept everything it had.
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][2]["env"][1]["value"],
            "2"
        );
    }

    #[test]
    fn env_merges_by_name_and_args_are_replaced() {
        let patched = smp(
            &deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}]},
                {"name": "sidecar", "args": ["sleep", "9"]}
            ]}}}}),
        );
        let containers = &patched["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(containers[1]["args"], json!(["sleep", "9"]));
    }

    #[test]
    fn retain_keys_on_deployment_strategy() {
        let patched = smp(
            &deployment(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        let error = strategic_merge_patch(
            &info("Deployment"),
            &deployment(),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("$retainKeys"), "{error}");
    }

    #[test]
    fn null_deletes_and_map_directives() {
        let patched = smp(
            &deployment(),
            json!({"spec": {"replicas": null, "strategy": {"$patch": "replace", "type": "Recreate"},
                   "template": {"metadata": {"$patch": "delete"}}}}),
        );
        assert!(patched["spec"].get("replicas").is_none());
        assert_eq!(patched["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(patched["spec"]["template"]["metadata"], json!({}));
    }

    #[test]
    fn list_replace_directive_and_primitive_lists() {
        let patched = smp(
            &deployment(),
            json!({"metadata": {"finalizers": ["c", "a"]},
            "spec": {"template": {"spec": {"containers": [
                {"$patch": "replace"}, {"name": "only", "image": "x"}
            ]}}}}),
        );
        // Patch items come in patch order; the server-only "b" follows "a",
        // which the server had before it.
        assert_eq!(patched["metadata"]["finalizers"], json!(["c", "a", "b"]));
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let removed = smp(
            &deployment(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(removed["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn ports_merge_by_key_and_untagged_lists_are_replaced() {
        let service = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}],
                                      "selector": {"app": "web"}}});
        let patched = strategic_merge_patch(
            &info("Service"),
            &service,
            &json!({"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": 8443}])
        );
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let patched = strategic_merge_patch(
            &info("Node"),
            &node,
            &json!({"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["taints"],
            json!([{"key": "b", "effect": "NoSchedule"}])
        );
    }

    #[test]
    fn volumes_retain_keys_within_list_items() {
        let pod = json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}});
        let patched = strategic_merge_patch(
            &info("Pod"),
            &pod,
            &json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}}),
        )
        .unwrap();
        assert_eq!(
            patched["spec"]["volumes"],
            json!([{"name": "data", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn merge_and_json_patches() {
        let doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4});
        assert_eq!(
            merge_patch(&doc, &json!({"b": {"c": null, "x": 1}, "a": null})),
            json!({"b": {"d": 3, "x": 1}, "e": 4})
        );
        let keys: Vec<String> = merge_patch(&doc, &json!({"a": null}))
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["b", "e"]);
        let patched = json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/a", "value": 5}, {"op": "remove", "path": "/e"}]),
        )
        .unwrap();
        assert_eq!(patched, json!({"a": 5, "b": {"c": 2, "d": 3}}));
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/zz"}])).is_err());
        assert!(json_patch(&doc, &json!({"op": "x"})).is_err());
    }
}
