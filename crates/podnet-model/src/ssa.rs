//! Server-side apply: field ownership in `metadata.managedFields` and conflicts.
//!
//! Field sets are trees encoded as upstream's FieldsV1: `f:<field>` for
//! object fields, `k:{"key":value}` for items of lists keyed by their map
//! keys, `v:<value>` for items of sets, and `.` for a node that is itself
//! owned as well as having owned children. List types come from upstream's
//! `+listType` / `+listMapKey` markers (see [`list_type`]); lists without one
//! are atomic, as in upstream's structured merge.

use crate::registry::ResourceInfo;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A field owned by another manager that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    pub manager: String,
    /// The field path as upstream prints it, e.g. `.spec.replicas`.
    pub field: String,
}

/// The 409 message upstream prints for a failed apply, e.g.
/// `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
pub fn conflict_message(conflicts: &[ApplyConflict], api_version: &str) -> String {
    let describe = |c: &ApplyConflict| {
        format!(
            "conflict with {:?} using {api_version}: {}",
            c.manager, c.field
        )
    };
    if conflicts.len() == 1 {
        return format!("Apply failed with 1 conflict: {}", describe(&conflicts[0]));
    }
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("- {}", describe(c)))
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// How a list is merged and tracked, from upstream's `+listType` markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// The whole list is one value with one owner.
    Atomic,
    /// A set of scalars; each value has its owners.
    Set,
    /// Objects identified by these key fields; each item has its owners.
    Map(&'static [&'static str]),
}

/// The list type of the list at `path` (map keys from the object root).
pub fn list_type(kind: &str, path: &[String]) -> ListType {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let last = segments.last().copied().unwrap_or_default();
    let parent = segments
        .len()
        .checked_sub(2)
        .map(|i| segments[i])
        .unwrap_or_default();
    let is_container_list = matches!(
        parent,
        "containers" | "initContainers" | "ephemeralContainers"
    );
    match last {
        "containers" | "initContainers" | "ephemeralContainers" if parent == "spec" => {
            ListType::Map(&["name"])
        }
        "ports" if is_container_list => ListType::Map(&["containerPort", "protocol"]),
        "env" if is_container_list => ListType::Map(&["name"]),
        "volumeMounts" if is_container_list => ListType::Map(&["mountPath"]),
        "volumeDevices" if is_container_list => ListType::Map(&["devicePath"]),
        "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims"
            if parent == "spec" =>
        {
            ListType::Map(&["name"])
        }
        "hostAliases" if parent == "spec" => ListType::Map(&["ip"]),
        "topologySpreadConstraints" if parent == "spec" => {
            ListType::Map(&["topologyKey", "whenUnsatisfiable"])
        }
        "finalizers" if parent == "metadata" => ListType::Set,
        "ownerReferences" if parent == "metadata" => ListType::Map(&["uid"]),
        "conditions" if parent == "status" => ListType::Map(&["type"]),
        "podIPs" if kind == "Pod" => ListType::Map(&["ip"]),
        "addresses" if kind == "Node" && parent == "status" => ListType::Map(&["type"]),
        "podCIDRs" if kind == "Node" => ListType::Set,
        "ports" if kind == "Service" && segments == ["spec", "ports"] => {
            ListType::Map(&["port", "protocol"])
        }
        "secrets" if kind == "ServiceAccount" && segments.len() == 1 => ListType::Map(&["name"]),
        "addresses" if kind == "EndpointSlice" && parent == "endpoints" => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// Object fields whose value is owned as a whole (`+structType=atomic`, e.g.
/// metav1.LabelSelector) rather than field by field.
fn is_atomic_object(kind: &str, path: &[String]) -> bool {
    let last = path.last().map(String::as_str).unwrap_or_default();
    match last {
        "selector" => kind != "Service",
        "podSelector" | "namespaceSelector" | "labelSelector" => true,
        _ => false,
    }
}

/// Maps whose keys are data rather than schema fields: a newly written one
/// is owned as a node (`.`) by update operations, as upstream records it.
fn is_free_form_map(path: &[String]) -> bool {
    matches!(
        path.last().map(String::as_str),
        Some(
            "labels"
                | "annotations"
                | "data"
                | "binaryData"
                | "stringData"
                | "nodeSelector"
                | "limits"
                | "requests"
                | "capacity"
                | "allocatable"
                | "parameters"
        )
    ) || (path.len() == 2 && path[0] == "spec" && path[1] == "selector")
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PathElement {
    /// `f:name`
    Field(String),
    /// `k:{...}`: the canonical JSON of the key fields, keys sorted.
    Key(String),
    /// `v:...`: the canonical JSON of a set member.
    Value(String),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(key) => format!("k:{key}"),
            PathElement::Value(value) => format!("v:{value}"),
        }
    }

    fn decode(text: &str) -> Option<PathElement> {
        if let Some(name) = text.strip_prefix("f:") {
            Some(PathElement::Field(name.to_string()))
        } else if let Some(key) = text.strip_prefix("k:") {
            Some(PathElement::Key(canonical_json_text(key)))
        } else {
            text.strip_prefix("v:")
                .map(|value| PathElement::Value(canonical_json_text(value)))
        }
    }
}

/// Re-serialize JSON with sorted object keys so equal keys compare equal.
fn canonical_json_text(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .map(|value| canonical_json(&value))
        .unwrap_or_else(|_| text.to_string())
}

fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A set of field paths as a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FieldSet {
    /// The node itself is in the set.
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    fn contains(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether the set holds this path or anything below it.
    fn touches(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => !self.is_empty(),
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.touches(rest)),
        }
    }

    fn remove(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = false,
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut collected = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut collected);
        collected
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_string(), json!({}));
        }
        for (element, child) in &self.children {
            if !child.is_empty() {
                map.insert(element.encode(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    fn from_fields_v1(value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(map) = value.as_object() else {
            return set;
        };
        if map.is_empty() {
            set.member = true;
        }
        for (key, child) in map {
            if key == "." {
                set.member = true;
            } else if let Some(element) = PathElement::decode(key) {
                set.children
                    .insert(element, FieldSet::from_fields_v1(child));
            }
        }
        set
    }
}

/// Upstream's printed form: `.spec.replicas`, `.spec.containers[name="web"].image`.
fn display_field_path(path: &[PathElement]) -> String {
    let mut text = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                text.push('.');
                text.push_str(name);
            }
            PathElement::Key(key) => {
                let parsed: Value = serde_json::from_str(key).unwrap_or(Value::Null);
                let parts: Vec<String> = parsed
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                text.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(value) => text.push_str(&format!("[={value}]")),
        }
    }
    text
}

/// Fields nobody owns: identity and server-maintained metadata.
fn is_unowned_top_level(path: &[String]) -> bool {
    match path {
        [only] => matches!(only.as_str(), "apiVersion" | "kind"),
        [metadata, field] if metadata == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
                | "generateName"
        ),
        _ => false,
    }
}

/// Key-field defaults applied before building item keys (upstream's schema
/// defaults for list-map keys: a port's protocol is TCP).
fn key_field_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| Value::String("TCP".to_string()))
}

fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let mut key_map = Map::new();
    for key in keys {
        match item.get(*key).cloned().or_else(|| key_field_default(key)) {
            Some(value) => {
                key_map.insert((*key).to_string(), value);
            }
            None => continue,
        }
    }
    if key_map.is_empty() {
        return None;
    }
    Some(canonical_json(&Value::Object(key_map)))
}

struct Walker<'a> {
    kind: &'a str,
    /// Record free-form maps as nodes (update operations do).
    free_form_maps_are_members: bool,
}

impl Walker<'_> {
    /// The set of fields present in `value` (an object root).
    fn field_set(&self, value: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        self.walk(value, &mut Vec::new(), &mut Vec::new(), &mut set);
        set
    }

    fn walk(
        &self,
        value: &Value,
        schema_path: &mut Vec<String>,
        path: &mut Vec<PathElement>,
        set: &mut FieldSet,
    ) {
        match value {
            Value::Object(map) => {
                if !schema_path.is_empty() && is_atomic_object(self.kind, schema_path) {
                    set.insert(path);
                    return;
                }
                if map.is_empty() && !path.is_empty() {
                    set.insert(path);
                    return;
                }
                if self.free_form_maps_are_members && is_free_form_map(schema_path) {
                    set.insert(path);
                }
                for (key, child) in map {
                    schema_path.push(key.clone());
                    if is_unowned_top_level(schema_path)
                        || (schema_path.len() == 1 && key == "status")
                    {
                        schema_path.pop();
                        continue;
                    }
                    path.push(PathElement::Field(key.clone()));
                    if child.is_null() {
                        set.insert(path);
                    } else {
                        self.walk(child, schema_path, path, set);
                    }
                    path.pop();
                    schema_path.pop();
                }
            }
            Value::Array(items) => match list_type(self.kind, schema_path) {
                ListType::Atomic => set.insert(path),
                ListType::Set => {
                    for item in items {
                        path.push(PathElement::Value(canonical_json(item)));
                        set.insert(path);
                        path.pop();
                    }
                }
                ListType::Map(keys) => {
                    for item in items {
                        let Some(key) = item_key(item, keys) else {
                            continue;
                        };
                        path.push(PathElement::Key(key));
                        set.insert(path);
                        self.walk(item, schema_path, path, set);
                        path.pop();
                    }
                }
            },
            _ => set.insert(path),
        }
    }
}

/// The value at a field path, if present.
fn value_at<'v>(kind: &str, root: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    let mut current = root;
    let mut schema_path: Vec<String> = Vec::new();
    for element in path {
        current = match element {
            PathElement::Field(name) => {
                schema_path.push(name.clone());
                current.get(name)?
            }
            PathElement::Key(key) => {
                let ListType::Map(keys) = list_type(kind, &schema_path) else {
                    return None;
                };
                current
                    .as_array()?
                    .iter()
                    .find(|item| item_key(item, keys).as_deref() == Some(key.as_str()))?
            }
            PathElement::Value(value) => current
                .as_array()?
                .iter()
                .find(|item| canonical_json(item) == *value)?,
        };
    }
    Some(current)
}

/// Remove the value at a field path; returns whether something was removed.
fn remove_at(kind: &str, root: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut schema_path: Vec<String> = Vec::new();
    let mut current = root;
    for element in parents {
        current = match element {
            PathElement::Field(name) => {
                schema_path.push(name.clone());
                match current.get_mut(name) {
                    Some(next) => next,
                    None => return false,
                }
            }
            PathElement::Key(key) => {
                let ListType::Map(keys) = list_type(kind, &schema_path) else {
                    return false;
                };
                let Some(items) = current.as_array_mut() else {
                    return false;
                };
                match items
                    .iter_mut()
                    .find(|item| item_key(item, keys).as_deref() == Some(key.as_str()))
                {
                    Some(next) => next,
                    None => return false,
                }
            }
            PathElement::Value(_) => return false,
        };
    }
    match last {
        PathElement::Field(name) => current
            .as_object_mut()
            .and_then(|map| map.shift_remove(name))
            .is_some(),
        PathElement::Key(key) => {
            let ListType::Map(keys) = list_type(kind, &schema_path) else {
                return false;
            };
            let Some(items) = current.as_array_mut() else {
                return false;
            };
            let before = items.len();
            items.retain(|item| item_key(item, keys).as_deref() != Some(key.as_str()));
            before != items.len()
        }
        PathElement::Value(value) => {
            let Some(items) = current.as_array_mut() else {
                return false;
            };
            let before = items.len();
            items.retain(|item| canonical_json(item) != *value);
            before != items.len()
        }
    }
}

/// Merge `applied` into `live` the structured way: objects field by field,
/// keyed lists item by item, sets by union, everything else replaced.
fn merge_applied(
    kind: &str,
    live: &Value,
    applied: &Value,
    schema_path: &mut Vec<String>,
) -> Value {
    match (live, applied) {
        (Value::Object(live_map), Value::Object(applied_map))
            if schema_path.is_empty() || !is_atomic_object(kind, schema_path) =>
        {
            let mut merged = live_map.clone();
            for (key, applied_value) in applied_map {
                schema_path.push(key.clone());
                let value = match merged.get(key) {
                    Some(live_value) => merge_applied(kind, live_value, applied_value, schema_path),
                    None => applied_value.clone(),
                };
                schema_path.pop();
                if value.is_null() {
                    merged.shift_remove(key);
                } else {
                    merged.insert(key.clone(), value);
                }
            }
            Value::Object(merged)
        }
        (Value::Array(live_items), Value::Array(applied_items)) => {
            match list_type(kind, schema_path) {
                ListType::Atomic => applied.clone(),
                ListType::Set => {
                    let mut merged = live_items.clone();
                    for item in applied_items {
                        if !merged.contains(item) {
                            merged.push(item.clone());
                        }
                    }
                    Value::Array(merged)
                }
                ListType::Map(keys) => {
                    let mut merged = live_items.clone();
                    for applied_item in applied_items {
                        let key = item_key(applied_item, keys);
                        let position = merged
                            .iter()
                            .position(|item| key.is_some() && item_key(item, keys) == key);
                        match position {
                            Some(index) => {
                                merged[index] =
                                    merge_applied(kind, &merged[index], applied_item, schema_path);
                            }
                            None => merged.push(applied_item.clone()),
                        }
                    }
                    Value::Array(merged)
                }
            }
        }
        _ => applied.clone(),
    }
}

#[derive(Debug, Clone)]
struct ManagedEntry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl ManagedEntry {
    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(subresource) = &self.subresource {
            entry["subresource"] = Value::String(subresource.clone());
        }
        entry
    }
}

fn read_managed_fields(object: Option<&Value>) -> Vec<ManagedEntry> {
    let Some(entries) = object
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| {
            let text = |name: &str| {
                entry
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            ManagedEntry {
                manager: text("manager"),
                operation: text("operation"),
                api_version: text("apiVersion"),
                time: text("time"),
                subresource: entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                fields: FieldSet::from_fields_v1(entry.get("fieldsV1").unwrap_or(&Value::Null)),
            }
        })
        .collect()
}

fn write_managed_fields(object: &mut Value, entries: &[ManagedEntry]) {
    let kept: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if kept.is_empty() {
            metadata.shift_remove("managedFields");
        } else {
            metadata.insert("managedFields".to_string(), Value::Array(kept));
        }
    }
}

fn object_api_version(info: &ResourceInfo, object: &Value) -> String {
    object
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| info.api_version())
}

/// Apply `applied` (the manager's full intent) onto `live` (None: create).
/// Returns the new object with managedFields updated, or the conflicts when
/// `force` is false and another manager owns a field whose value would change.
pub fn apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<ApplyConflict>> {
    let kind = info.kind;
    let apply_walker = Walker {
        kind,
        free_form_maps_are_members: false,
    };
    let live_object = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = read_managed_fields(live);
    let applied_set = apply_walker.field_set(applied);
    let api_version = object_api_version(info, applied);

    let is_own_apply =
        |entry: &ManagedEntry| entry.manager == manager && entry.operation == "Apply";
    let previously_applied = entries
        .iter()
        .find(|entry| is_own_apply(entry))
        .map(|entry| entry.fields.clone())
        .unwrap_or_default();

    // A conflict is a leaf this apply sets to a different value than the live
    // one while another manager owns it.
    let mut conflicts = Vec::new();
    let mut conflicting_paths = Vec::new();
    for path in applied_set.paths() {
        let Some(live_value) = value_at(kind, &live_object, &path) else {
            continue;
        };
        let Some(applied_value) = value_at(kind, applied, &path) else {
            continue;
        };
        if matches!(live_value, Value::Object(_)) && matches!(applied_value, Value::Object(_)) {
            continue;
        }
        if live_value == applied_value {
            continue;
        }
        for entry in entries.iter().filter(|entry| !is_own_apply(entry)) {
            if entry.fields.contains(&path) {
                conflicts.push(ApplyConflict {
                    manager: entry.manager.clone(),
                    field: display_field_path(&path),
                });
                conflicting_paths.push(path.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forcing moves ownership of the conflicting fields to this manager.
    for path in &conflicting_paths {
        for entry in entries.iter_mut().filter(|entry| !is_own_apply(entry)) {
            entry.fields.remove(path);
        }
    }

    let mut merged = merge_applied(kind, &live_object, applied, &mut Vec::new());

    // Fields this manager applied before and dropped now go away unless
    // someone else still owns them (or something beneath them).
    let mut dropped: Vec<Vec<PathElement>> = previously_applied
        .paths()
        .into_iter()
        .filter(|path| !applied_set.contains(path))
        .collect();
    // Shallowest first: removing a list item or a map takes what is under
    // it, and only happens when nobody else owns anything beneath it.
    dropped.sort_by_key(|path| path.len());
    let mut removed_prefixes: Vec<Vec<PathElement>> = Vec::new();
    for path in dropped {
        if removed_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            continue;
        }
        let owned_elsewhere = entries
            .iter()
            .filter(|entry| !is_own_apply(entry))
            .any(|entry| entry.fields.touches(&path));
        if owned_elsewhere || applied_set.touches(&path) {
            continue;
        }
        if remove_at(kind, &mut merged, &path) {
            removed_prefixes.push(path);
        }
    }

    let own_entry = ManagedEntry {
        manager: manager.to_string(),
        operation: "Apply".to_string(),
        api_version,
        time: now.to_string(),
        subresource: None,
        fields: applied_set,
    };
    match entries.iter_mut().find(|entry| is_own_apply(entry)) {
        Some(existing) => *existing = own_entry,
        None => entries.push(own_entry),
    }
    write_managed_fields(&mut merged, &entries);
    Ok(merged)
}

/// Record an ordinary write (create/update/patch) by `manager` in managedFields.
///
/// The manager takes ownership of every field it added or changed (taking it
/// from others, as upstream does for updates) and drops ownership of fields
/// the write removed. Managed fields written by the client are ignored: the
/// server's record is the old object's.
pub fn record_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    now: &str,
) {
    let kind = info.kind;
    let walker = Walker {
        kind,
        free_form_maps_are_members: true,
    };
    let Some(old_object) = old else {
        // A new object: every field it has is this manager's, and there are
        // no other entries (what the general path below computes, without
        // comparing each field with an empty object).
        let own_entry = ManagedEntry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: object_api_version(info, new),
            time: now.to_string(),
            subresource: None,
            fields: walker.field_set(new),
        };
        write_managed_fields(new, &[own_entry]);
        return;
    };
    let old_set = walker.field_set(old_object);
    let new_set = walker.field_set(new);
    let mut entries = read_managed_fields(old);

    let mut changed = FieldSet::default();
    for path in new_set.paths() {
        let new_value = value_at(kind, new, &path);
        let old_value = value_at(kind, old_object, &path);
        let is_container = matches!(new_value, Some(Value::Object(_)));
        let differs = match (old_value, new_value) {
            (None, _) => true,
            // Object nodes (list items, maps) change through their leaves.
            _ if is_container => false,
            (old_value, new_value) => old_value != new_value,
        };
        if differs {
            changed.insert(&path);
        }
    }
    let removed: Vec<Vec<PathElement>> = old_set
        .paths()
        .into_iter()
        .filter(|path| !new_set.contains(path))
        .collect();

    let api_version = object_api_version(info, new);
    for entry in entries.iter_mut() {
        for path in changed.paths().iter().chain(removed.iter()) {
            if entry.manager != manager || entry.operation != operation {
                entry.fields.remove(path);
            }
        }
    }
    let position = entries.iter().position(|entry| {
        entry.manager == manager && entry.operation == operation && entry.api_version == api_version
    });
    let mut own_fields = position
        .map(|index| entries[index].fields.clone())
        .unwrap_or_default();
    for path in changed.paths() {
        own_fields.insert(&path);
    }
    for path in &removed {
        own_fields.remove(path);
    }
    let own_entry = ManagedEntry {
        manager: manager.to_string(),
        operation: operation.to_string(),
        api_version,
        time: now.to_string(),
        subresource: None,
        fields: own_fields,
    };
    match position {
        Some(index) => entries[index] = own_entry,
        None => entries.push(own_entry),
    }
    write_managed_fields(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn deployments() -> ResourceInfo {
        ResourceInfo {
            group: "apps",
            version: "v1",
            kind: "Deployment",
            list_kind: "DeploymentList",
            plural: "deployments",
            singular: "deployment",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: &[],
            subresources: &[],
        }
    }

    fn config(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
                    ]}
                }
            }
        })
    }

    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-01T00:01:00Z";

    #[test]
    fn create_records_what_an_update_from_an_empty_object_records() {
        let info = deployments();
        let mut created = config(3, "nginx:1");
        record_update(&info, None, &mut created, "kubectl-create", "Update", T1);
        let mut from_empty = config(3, "nginx:1");
        let empty = json!({});
        record_update(
            &info,
            Some(&empty),
            &mut from_empty,
            "kubectl-create",
            "Update",
            T1,
        );
        assert_eq!(created, from_empty);
        assert!(created
            .pointer("/metadata/managedFields/0/fieldsV1/f:spec/f:template")
            .is_some());
    }

    #[test]
    fn create_via_apply_records_fields_v1() {
        let created = apply(
            &deployments(),
            None,
            &config(2, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        expect![[r#"
            [
              {
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": "2025-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                  "f:metadata": {
                    "f:labels": {
                      "f:app": {}
                    }
                  },
                  "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                      "f:metadata": {
                        "f:labels": {
                          "f:app": {}
                        }
                      },
                      "f:spec": {
                        "f:containers": {
                          "k:{\"name\":\"web\"}": {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                              "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {},
                                "f:containerPort": {}
                              }
                            }
                          }
                        }
                      }
                    }
                  }
                }
              }
            ]"#]]
        .assert_eq(&serde_json::to_string_pretty(&created["metadata"]["managedFields"]).unwrap());
        assert_eq!(created["spec"]["replicas"], 2);
    }

    #[test]
    fn reapply_is_idempotent() {
        let created = apply(
            &deployments(),
            None,
            &config(2, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        let again = apply(
            &deployments(),
            Some(&created),
            &config(2, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        assert_eq!(created, again);
    }

    #[test]
    fn second_manager_conflicts_and_force_takes_ownership() {
        let created = apply(
            &deployments(),
            None,
            &config(2, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let conflicts =
            apply(&deployments(), Some(&created), &other, "hpa", false, T2).unwrap_err();
        assert_eq!(
            conflict_message(&conflicts, "apps/v1"),
            r#"Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas"#
        );
        // Same value: shared ownership, no conflict.
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                          "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        assert!(apply(&deployments(), Some(&created), &same, "hpa", false, T2).is_ok());

        let forced = apply(&deployments(), Some(&created), &other, "hpa", true, T2).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let entries = forced["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert!(entries[1]["fieldsV1"]["f:spec"].get("f:replicas").is_some());
        // Now the first manager conflicts with hpa.
        let back = apply(
            &deployments(),
            Some(&forced),
            &config(3, "nginx"),
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        assert_eq!(back[0].manager, "hpa");
    }

    #[test]
    fn dropping_a_field_from_the_config_removes_it() {
        let created = apply(
            &deployments(),
            None,
            &config(2, "nginx"),
            "kubectl",
            false,
            T1,
        )
        .unwrap();
        let mut without_replicas = config(2, "nginx");
        without_replicas["spec"]
            .as_object_mut()
            .unwrap()
            .shift_remove("replicas");
        without_replicas["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("labels");
        let updated = apply(
            &deployments(),
            Some(&created),
            &without_replicas,
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert!(updated["spec"].get("replicas").is_none());
        assert!(updated["metadata"]
            .get("labels")
            .is_none_or(|l| l.get("app").is_none()));
        // A field also owned by someone else stays.
        let mut shared = created.clone();
        record_update(
            &deployments(),
            Some(&created),
            &mut shared,
            "kubectl-edit",
            "Update",
            T2,
        );
        let mut edited = shared.clone();
        edited["spec"]["replicas"] = json!(7);
        record_update(
            &deployments(),
            Some(&shared),
            &mut edited,
            "kubectl-edit",
            "Update",
            T2,
        );
        let kept = apply(
            &deployments(),
            Some(&edited),
            &without_replicas,
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(kept["spec"]["replicas"], 7);
    }

    #[test]
    fn removing_a_container_from_the_config_removes_it() {
        let mut two = config(2, "nginx");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "busybox"}));
        let created = apply(&deployments(), None, &two, "kubectl", false, T1).unwrap();
        let updated = apply(
            &deployments(),
            Some(&created),
            &config(2, "nginx"),
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(
            updated["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn record_update_owns_changed_fields() {
        let mut created = config(2, "nginx");
        record_update(
            &deployments(),
            None,
            &mut created,
            "kubectl-client-side-apply",
            "Update",
            T1,
        );
        let entries = created["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries[0]["manager"], "kubectl-client-side-apply");
        assert_eq!(entries[0]["operation"], "Update");
        assert_eq!(
            entries[0]["fieldsV1"]["f:metadata"]["f:labels"],
            json!({".": {}, "f:app": {}})
        );
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(4);
        record_update(
            &deployments(),
            Some(&created),
            &mut scaled,
            "kubectl",
            "Update",
            T2,
        );
        let entries = scaled["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(entries[0]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        // Applying a different replica count now conflicts with that manager.
        let conflicts = apply(
            &deployments(),
            Some(&scaled),
            &config(3, "nginx"),
            "cli",
            false,
            T2,
        )
        .unwrap_err();
        assert_eq!(
            conflicts,
            vec![ApplyConflict {
                manager: "kubectl".to_string(),
                field: ".spec.replicas".to_string()
            }]
        );
    }
}
