//! Validation with field paths, as upstream's validators report it.
//!
//! Each rule produces the cause upstream's validator would (same reason, same
//! message, same field path), because kubectl prints them verbatim:
//! `The Pod "x" is invalid: spec.containers[0].image: Required value`.
//! Objects are validated after defaulting, so rules never fire on a field the
//! defaulters fill.

use crate::names;
use crate::registry::ResourceInfo;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One reason an object is invalid, shaped like a Status `details.causes[]` item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldCause {
    /// Upstream cause type: "FieldValueRequired", "FieldValueInvalid",
    /// "FieldValueNotSupported", "FieldValueDuplicate", "FieldValueForbidden", "FieldValueTooLong".
    pub reason: String,
    /// The message kubectl prints after the field, e.g. "Required value".
    pub message: String,
    /// The field path, e.g. "spec.containers[0].image".
    pub field: String,
}

/// Validate an object about to be created (after defaulting).
pub fn validate_create(info: &ResourceInfo, obj: &Value) -> Vec<FieldCause> {
    let mut causes = Causes::default();
    let empty = Map::new();
    let object = obj.as_object().unwrap_or(&empty);
    validate_object_meta(info, object, &mut causes);
    match (info.group, info.kind) {
        ("", "Pod") => {
            validate_pod_spec(field(object, "spec"), "spec", &mut causes);
        }
        ("", "Service") => validate_service_spec(field(object, "spec"), &mut causes),
        ("", "ConfigMap") => validate_config_map(object, &mut causes),
        ("", "Secret") => validate_secret(object, &mut causes),
        ("", "PersistentVolume") => validate_persistent_volume(object, &mut causes),
        ("", "PersistentVolumeClaim") => validate_persistent_volume_claim(object, &mut causes),
        ("", "Node") => validate_node(object, &mut causes),
        ("", "Event") | ("events.k8s.io", "Event") => validate_event(object, &mut causes),
        ("", "Binding") => validate_binding(object, &mut causes),
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => {
            validate_workload(info.kind, object, &mut causes)
        }
        ("networking.k8s.io", "NetworkPolicy") => validate_network_policy(object, &mut causes),
        ("networking.k8s.io", "Ingress") => validate_ingress(object, &mut causes),
        ("storage.k8s.io", "StorageClass") => validate_storage_class(object, &mut causes),
        ("coordination.k8s.io", "Lease") => validate_lease(object, &mut causes),
        ("discovery.k8s.io", "EndpointSlice") => validate_endpoint_slice(object, &mut causes),
        _ => {}
    }
    causes.0
}

/// Validate an update (immutable fields and the rules of create).
pub fn validate_update(info: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldCause> {
    let mut causes = Causes(validate_create(info, new));
    let empty = Map::new();
    let new_object = new.as_object().unwrap_or(&empty);
    let old_object = old.as_object().unwrap_or(&empty);
    for key in ["name", "namespace", "uid"] {
        let path = format!("metadata.{key}");
        let new_value = pointer(new, &format!("/metadata/{key}"));
        let old_value = pointer(old, &format!("/metadata/{key}"));
        // An update that omits uid means "whatever is stored".
        if key == "uid" && new_value.is_none() {
            continue;
        }
        causes.immutable(&path, new_value, old_value);
    }
    match (info.group, info.kind) {
        ("", "Pod") => validate_pod_update(new_object, old_object, &mut causes),
        ("", "Service") => validate_service_update(new, old, &mut causes),
        ("", "ConfigMap") | ("", "Secret") => {
            validate_immutable_data(info.kind, new_object, old_object, &mut causes)
        }
        ("", "PersistentVolumeClaim") => validate_claim_update(new, old, &mut causes),
        ("", "PersistentVolume") => {
            if let (Some(new_source), Some(old_source)) = (
                persistent_volume_source(field(new_object, "spec")),
                persistent_volume_source(field(old_object, "spec")),
            ) {
                if new_source != old_source {
                    causes.forbidden(
                        "spec.persistentvolumesource",
                        "spec.persistentvolumesource is immutable after creation",
                    );
                }
            }
        }
        ("", "Node") => {
            let old_cidr = pointer(old, "/spec/podCIDR")
                .and_then(Value::as_str)
                .unwrap_or("");
            let new_cidr = pointer(new, "/spec/podCIDR")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !old_cidr.is_empty() && old_cidr != new_cidr {
                causes.forbidden(
                    "spec.podCIDRs",
                    "node updates may not change podCIDR except from \"\" to valid",
                );
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet") => {
            causes.immutable(
                "spec.selector",
                pointer(new, "/spec/selector"),
                pointer(old, "/spec/selector"),
            );
            if info.kind == "StatefulSet" {
                validate_stateful_set_update(new_object, old_object, &mut causes);
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            for (key, message) in [
                ("parameters", "updates to parameters are forbidden."),
                ("provisioner", "updates to provisioner are forbidden."),
                ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
            ] {
                if normalized(new_object.get(key)) != normalized(old_object.get(key)) {
                    causes.forbidden(key, message);
                }
            }
            causes.immutable(
                "volumeBindingMode",
                new_object.get("volumeBindingMode"),
                old_object.get("volumeBindingMode"),
            );
        }
        ("discovery.k8s.io", "EndpointSlice") => causes.immutable(
            "addressType",
            new_object.get("addressType"),
            old_object.get("addressType"),
        ),
        _ => {}
    }
    causes.0
}

/// Causes collected so far, with constructors worded as upstream's field errors.
#[derive(Default)]
struct Causes(Vec<FieldCause>);

impl Causes {
    fn push(&mut self, reason: &str, field: &str, message: String) {
        self.0.push(FieldCause {
            reason: reason.to_string(),
            message,
            field: field.to_string(),
        });
    }

    fn required(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueRequired",
            field,
            with_detail("Required value", detail),
        );
    }

    fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        let body = format!("Invalid value: {}", render_value(value));
        self.push("FieldValueInvalid", field, with_detail(&body, detail));
    }

    fn not_supported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let body = format!("Unsupported value: {}", render_value(value));
        let detail = format!("supported values: {}", quoted.join(", "));
        self.push("FieldValueNotSupported", field, with_detail(&body, &detail));
    }

    fn duplicate(&mut self, field: &str, value: &Value) {
        let message = format!("Duplicate value: {}", render_value(value));
        self.push("FieldValueDuplicate", field, message);
    }

    fn not_found(&mut self, field: &str, value: &Value) {
        let message = format!("Not found: {}", render_value(value));
        self.push("FieldValueNotFound", field, message);
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueForbidden",
            field,
            with_detail("Forbidden", detail),
        );
    }

    fn too_long(&mut self, field: &str, max_bytes: usize) {
        let message = format!("Too long: may not be more than {max_bytes} bytes");
        self.push("FieldValueTooLong", field, message);
    }

    /// Upstream's `ValidateImmutableField`.
    fn immutable(&mut self, field: &str, new: Option<&Value>, old: Option<&Value>) {
        if normalized(new) != normalized(old) {
            self.invalid(field, new.unwrap_or(&Value::Null), "field is immutable");
        }
    }

    /// One Invalid cause per message of a syntax check.
    fn invalid_each(&mut self, field: &str, value: &Value, messages: Vec<String>) {
        for message in messages {
            self.invalid(field, value, &message);
        }
    }

    /// An enumerated field: NotSupported when set to something else.
    fn one_of(&mut self, field: &str, value: Option<&Value>, supported: &[&str]) {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            if !value.as_str().is_some_and(|text| supported.contains(&text)) {
                self.not_supported(field, value, supported);
            }
        }
    }
}

fn with_detail(body: &str, detail: &str) -> String {
    if detail.is_empty() {
        body.to_string()
    } else {
        format!("{body}: {detail}")
    }
}

/// How upstream prints a value inside a message: strings quoted, numbers and
/// booleans bare, anything structured as compact JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// Absent, null, empty string, empty list and empty object all mean "unset"
/// upstream (Go zero values), so immutability compares them as equal.
fn normalized(value: Option<&Value>) -> Option<&Value> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Object(map)) if map.is_empty() => None,
        other => other,
    }
}

fn pointer<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    value.pointer(path).filter(|v| !v.is_null())
}

fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    object.get(key).and_then(Value::as_object)
}

fn string<'a>(object: Option<&'a Map<String, Value>>, key: &str) -> &'a str {
    object
        .and_then(|o| o.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn items<'a>(object: Option<&'a Map<String, Value>>, key: &str) -> Vec<&'a Map<String, Value>> {
    object
        .and_then(|o| o.get(key))
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn is_set(object: Option<&Map<String, Value>>, key: &str) -> bool {
    normalized(object.and_then(|o| o.get(key))).is_some()
}

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// Upstream caps the sum of all annotation keys and values at 256 KiB.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// ConfigMaps and Secrets are capped at 1 MiB of data.
const MAX_DATA_SIZE: usize = 1024 * 1024;

/// Which syntax an object's name must follow.
fn name_rule(info: &ResourceInfo) -> fn(&str) -> Vec<String> {
    match (info.group, info.kind) {
        ("", "Service") => names::dns1035_label,
        ("", "Namespace") => names::dns1123_label,
        _ => names::dns1123_subdomain,
    }
}

fn validate_object_meta(info: &ResourceInfo, object: &Map<String, Value>, causes: &mut Causes) {
    let metadata = field(object, "metadata");
    let name = string(metadata, "name");
    let generate_name = string(metadata, "generateName");
    let rule = name_rule(info);
    if !name.is_empty() {
        causes.invalid_each("metadata.name", &json!(name), rule(name));
    } else if !generate_name.is_empty() {
        // A generated name gets a random suffix, so a trailing dash is fine.
        let prefix = generate_name.strip_suffix('-').unwrap_or(generate_name);
        causes.invalid_each("metadata.generateName", &json!(generate_name), rule(prefix));
    } else {
        causes.required("metadata.name", "name or generateName is required");
    }
    let namespace = string(metadata, "namespace");
    if info.namespaced {
        if namespace.is_empty() {
            causes.required("metadata.namespace", "");
        } else {
            causes.invalid_each(
                "metadata.namespace",
                &json!(namespace),
                names::dns1123_label(namespace),
            );
        }
    } else if !namespace.is_empty() {
        causes.forbidden("metadata.namespace", "not allowed on this type");
    }
    if let Some(labels) = metadata.and_then(|m| m.get("labels")) {
        validate_labels(labels, "metadata.labels", causes);
    }
    if let Some(annotations) = metadata
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total_size = 0;
        for (key, value) in annotations {
            causes.invalid_each(
                "metadata.annotations",
                &json!(key),
                names::qualified_name(&key.to_lowercase()),
            );
            total_size += key.len() + value.as_str().map_or(0, str::len);
        }
        if total_size > TOTAL_ANNOTATION_SIZE_LIMIT {
            causes.too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE_LIMIT);
        }
    }
}

/// Label maps (`metadata.labels`, selectors): keys are qualified names,
/// values label values; both report the map's own path, as upstream does.
fn validate_labels(labels: &Value, path: &str, causes: &mut Causes) {
    let Some(labels) = labels.as_object() else {
        return;
    };
    for (key, value) in labels {
        causes.invalid_each(path, &json!(key), names::qualified_name(key));
        let text = value.as_str().unwrap_or("");
        causes.invalid_each(path, value, names::label_value(text));
    }
}

fn validate_label_selector(selector: Option<&Map<String, Value>>, path: &str, causes: &mut Causes) {
    let Some(selector) = selector else {
        return;
    };
    if let Some(match_labels) = selector.get("matchLabels") {
        validate_labels(match_labels, &format!("{path}.matchLabels"), causes);
    }
    for (index, expression) in items(Some(selector), "matchExpressions")
        .into_iter()
        .enumerate()
    {
        let expression_path = format!("{path}.matchExpressions[{index}]");
        let operator = string(Some(expression), "operator");
        let has_values = is_set(Some(expression), "values");
        match operator {
            "In" | "NotIn" => {
                if !has_values {
                    causes.required(
                        &format!("{expression_path}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if has_values {
                    causes.forbidden(
                        &format!("{expression_path}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            _ => causes.not_supported(
                &format!("{expression_path}.operator"),
                &json!(operator),
                &["In", "NotIn", "Exists", "DoesNotExist"],
            ),
        }
        let key = string(Some(expression), "key");
        causes.invalid_each(
            &format!("{expression_path}.key"),
            &json!(key),
            names::qualified_name(key),
        );
    }
}

/// Whether a label selector (matchLabels and matchExpressions) selects `labels`.
fn selector_matches(selector: &Map<String, Value>, labels: Option<&Map<String, Value>>) -> bool {
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    let match_labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(key, value)| label(key) == value.as_str());
    let expressions_ok = items(Some(selector), "matchExpressions")
        .into_iter()
        .all(|expression| {
            let key = string(Some(expression), "key");
            let values: Vec<&str> = expression
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match string(Some(expression), "operator") {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        });
    match_labels_ok && expressions_ok
}

fn is_empty_selector(selector: &Map<String, Value>) -> bool {
    !is_set(Some(selector), "matchLabels") && !is_set(Some(selector), "matchExpressions")
}

/// Volume sources a pod volume may name; exactly one must be set.
const POD_VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

fn validate_pod_spec(spec: Option<&Map<String, Value>>, path: &str, causes: &mut Causes) {
    // Volumes first: mounts are checked against their names.
    let mut volume_names = BTreeSet::new();
    for (index, volume) in items(spec, "volumes").into_iter().enumerate() {
        let volume_path = format!("{path}.volumes[{index}]");
        let name = string(Some(volume), "name");
        if name.is_empty() {
            causes.required(&format!("{volume_path}.name"), "");
        } else {
            causes.invalid_each(
                &format!("{volume_path}.name"),
                &json!(name),
                names::dns1123_label(name),
            );
            if !volume_names.insert(name.to_string()) {
                causes.duplicate(&format!("{volume_path}.name"), &json!(name));
            }
        }
        let sources: Vec<&&str> = POD_VOLUME_SOURCES
            .iter()
            .filter(|source| volume.get(**source).is_some_and(|v| !v.is_null()))
            .collect();
        match sources.as_slice() {
            [] => causes.required(&volume_path, "must specify a volume type"),
            [_] => {}
            [_, extra @ ..] => {
                for source in extra {
                    causes.forbidden(
                        &format!("{volume_path}.{source}"),
                        "may not specify more than 1 volume type",
                    );
                }
            }
        }
        if let Some(host_path) = field(volume, "hostPath") {
            if string(Some(host_path), "path").is_empty() {
                causes.required(&format!("{volume_path}.hostPath.path"), "");
            }
        }
        if let Some(claim) = field(volume, "persistentVolumeClaim") {
            if string(Some(claim), "claimName").is_empty() {
                causes.required(
                    &format!("{volume_path}.persistentVolumeClaim.claimName"),
                    "",
                );
            }
        }
        if let Some(config_map) = field(volume, "configMap") {
            if string(Some(config_map), "name").is_empty() {
                causes.required(&format!("{volume_path}.configMap.name"), "");
            }
        }
        if let Some(secret) = field(volume, "secret") {
            if string(Some(secret), "secretName").is_empty() {
                causes.required(&format!("{volume_path}.secret.secretName"), "");
            }
        }
    }

    let containers = items(spec, "containers");
    if containers.is_empty() {
        causes.required(&format!("{path}.containers"), "");
    }
    // Container names and port names are unique across all the pod's containers.
    let mut container_names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (index, container) in items(spec, list).into_iter().enumerate() {
            let container_path = format!("{path}.{list}[{index}]");
            validate_container(
                container,
                &container_path,
                &volume_names,
                &mut container_names,
                &mut port_names,
                causes,
            );
        }
    }

    causes.one_of(
        &format!("{path}.restartPolicy"),
        spec.and_then(|s| s.get("restartPolicy")),
        &["Always", "OnFailure", "Never"],
    );
    causes.one_of(
        &format!("{path}.dnsPolicy"),
        spec.and_then(|s| s.get("dnsPolicy")),
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if let Some(deadline) = spec
        .and_then(|s| s.get("activeDeadlineSeconds"))
        .and_then(Value::as_i64)
    {
        if deadline < 1 {
            causes.invalid(
                &format!("{path}.activeDeadlineSeconds"),
                &json!(deadline),
                "must be between 1 and 2147483647, inclusive",
            );
        }
    }
    if let Some(grace) = spec
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_i64)
    {
        if grace < 0 {
            causes.invalid(
                &format!("{path}.terminationGracePeriodSeconds"),
                &json!(grace),
                "must be greater than or equal to 0",
            );
        }
    }
    if let Some(node_selector) = spec.and_then(|s| s.get("nodeSelector")) {
        validate_labels(node_selector, &format!("{path}.nodeSelector"), causes);
    }
    for (index, toleration) in items(spec, "tolerations").into_iter().enumerate() {
        let toleration_path = format!("{path}.tolerations[{index}]");
        let operator = string(Some(toleration), "operator");
        causes.one_of(
            &format!("{toleration_path}.operator"),
            toleration.get("operator"),
            &["Equal", "Exists"],
        );
        if operator == "Exists" && !string(Some(toleration), "value").is_empty() {
            causes.invalid(
                &format!("{toleration_path}.operator"),
                &json!(operator),
                "value must be empty when `operator` is 'Exists'",
            );
        }
        causes.one_of(
            &format!("{toleration_path}.effect"),
            toleration.get("effect"),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
}

fn validate_container(
    container: &Map<String, Value>,
    path: &str,
    volume_names: &BTreeSet<String>,
    container_names: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    causes: &mut Causes,
) {
    let name = string(Some(container), "name");
    if name.is_empty() {
        causes.required(&format!("{path}.name"), "");
    } else {
        causes.invalid_each(
            &format!("{path}.name"),
            &json!(name),
            names::dns1123_label(name),
        );
        if !container_names.insert(name.to_string()) {
            causes.duplicate(&format!("{path}.name"), &json!(name));
        }
    }
    if string(Some(container), "image").trim().is_empty() {
        causes.required(&format!("{path}.image"), "");
    }
    causes.one_of(
        &format!("{path}.imagePullPolicy"),
        container.get("imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    );
    causes.one_of(
        &format!("{path}.terminationMessagePolicy"),
        container.get("terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );
    for (index, port) in items(Some(container), "ports").into_iter().enumerate() {
        let port_path = format!("{path}.ports[{index}]");
        let port_name = string(Some(port), "name");
        if !port_name.is_empty() {
            causes.invalid_each(
                &format!("{port_path}.name"),
                &json!(port_name),
                names::port_name(port_name),
            );
            if !port_names.insert(port_name.to_string()) {
                causes.duplicate(&format!("{port_path}.name"), &json!(port_name));
            }
        }
        match port.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => causes.required(&format!("{port_path}.containerPort"), ""),
            Some(number) => causes.invalid_each(
                &format!("{port_path}.containerPort"),
                &json!(number),
                names::port_number(number),
            ),
        }
        if let Some(host_port) = port
            .get("hostPort")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0)
        {
            causes.invalid_each(
                &format!("{port_path}.hostPort"),
                &json!(host_port),
                names::port_number(host_port),
            );
        }
        match port.get("protocol") {
            None | Some(Value::Null) => causes.required(&format!("{port_path}.protocol"), ""),
            protocol => causes.one_of(&format!("{port_path}.protocol"), protocol, PROTOCOLS),
        }
    }
    for (index, variable) in items(Some(container), "env").into_iter().enumerate() {
        if string(Some(variable), "name").is_empty() {
            causes.required(&format!("{path}.env[{index}].name"), "");
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (index, mount) in items(Some(container), "volumeMounts")
        .into_iter()
        .enumerate()
    {
        let mount_path_field = format!("{path}.volumeMounts[{index}]");
        let volume = string(Some(mount), "name");
        if volume.is_empty() {
            causes.required(&format!("{mount_path_field}.name"), "");
        } else if !volume_names.contains(volume) {
            causes.not_found(&format!("{mount_path_field}.name"), &json!(volume));
        }
        let mount_path = string(Some(mount), "mountPath");
        if mount_path.is_empty() {
            causes.required(&format!("{mount_path_field}.mountPath"), "");
        } else if !mount_paths.insert(mount_path.to_string()) {
            causes.invalid(
                &format!("{mount_path_field}.mountPath"),
                &json!(mount_path),
                "must be unique",
            );
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe_object) = field(container, probe) else {
            continue;
        };
        let probe_path = format!("{path}.{probe}");
        let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
            .iter()
            .filter(|handler| {
                is_set(Some(probe_object), handler)
                    || probe_object.get(**handler).is_some_and(Value::is_object)
            })
            .count();
        if handlers == 0 {
            causes.required(&probe_path, "must specify a handler type");
        } else if handlers > 1 {
            causes.forbidden(&probe_path, "may not specify more than 1 handler type");
        }
        if probe != "readinessProbe" {
            if let Some(threshold) = probe_object.get("successThreshold").and_then(Value::as_i64) {
                if threshold != 1 {
                    causes.invalid(
                        &format!("{probe_path}.successThreshold"),
                        &json!(threshold),
                        "must be 1",
                    );
                }
            }
        }
    }
}

/// The spec fields an update of a Pod may change, listed as upstream lists them.
const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_pod_update(new: &Map<String, Value>, old: &Map<String, Value>, causes: &mut Causes) {
    let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
    let mut allowed = old.get("spec").cloned().unwrap_or(Value::Null);
    // Take the updatable fields from the new spec; whatever still differs is forbidden.
    for list in ["containers", "initContainers"] {
        let new_images: Vec<Value> = new_spec
            .get(list)
            .and_then(Value::as_array)
            .map(|containers| {
                containers
                    .iter()
                    .map(|c| c.get("image").cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(containers) = allowed.get_mut(list).and_then(Value::as_array_mut) {
            if containers.len() == new_images.len() {
                for (container, image) in containers.iter_mut().zip(new_images) {
                    if let Some(container) = container.as_object_mut() {
                        container.insert("image".into(), image);
                    }
                }
            }
        }
    }
    if let Some(allowed_spec) = allowed.as_object_mut() {
        let old_deadline = old
            .get("spec")
            .and_then(|s| s.get("activeDeadlineSeconds"))
            .and_then(Value::as_i64);
        let new_deadline = new_spec
            .get("activeDeadlineSeconds")
            .and_then(Value::as_i64);
        match (old_deadline, new_deadline) {
            (Some(_), None) => causes.invalid(
                "spec.activeDeadlineSeconds",
                &Value::Null,
                "must not update from a positive integer to nil value",
            ),
            (Some(old_value), Some(new_value)) if new_value > old_value => causes.invalid(
                "spec.activeDeadlineSeconds",
                &json!(new_value),
                "must be less than or equal to previous value",
            ),
            _ => {}
        }
        copy_field(allowed_spec, &new_spec, "activeDeadlineSeconds");
        let old_tolerations: Vec<Value> = allowed_spec
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let new_tolerations: Vec<Value> = new_spec
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let without_seconds = |toleration: &Value| {
            let mut toleration = toleration.clone();
            if let Some(object) = toleration.as_object_mut() {
                object.remove("tolerationSeconds");
            }
            toleration
        };
        let kept = old_tolerations.iter().all(|old_toleration| {
            new_tolerations.iter().any(|new_toleration| {
                without_seconds(new_toleration) == without_seconds(old_toleration)
            })
        });
        if kept {
            copy_field(allowed_spec, &new_spec, "tolerations");
        }
        // Scheduling gates may only be removed.
        let new_gates = new_spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let old_gates = allowed_spec
            .get("schedulingGates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if new_gates.iter().all(|gate| old_gates.contains(gate)) {
            copy_field(allowed_spec, &new_spec, "schedulingGates");
        }
        // Binding a pod sets spec.nodeName once; the binding subresource
        // stores through the same update path.
        if string(Some(allowed_spec), "nodeName").is_empty() {
            copy_field(allowed_spec, &new_spec, "nodeName");
        }
        let old_grace = allowed_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|grace| grace < 0)
            && new_spec
                .get("terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                == Some(1)
        {
            copy_field(allowed_spec, &new_spec, "terminationGracePeriodSeconds");
        }
    }
    let mut differences = Vec::new();
    describe_differences(&allowed, &new_spec, "spec", &mut differences);
    if !differences.is_empty() {
        causes.forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n{}",
                differences.join("\n")
            ),
        );
    }
}

fn copy_field(target: &mut Map<String, Value>, source: &Value, key: &str) {
    match source.get(key) {
        Some(value) => {
            target.insert(key.to_string(), value.clone());
        }
        None => {
            target.remove(key);
        }
    }
}

/// Lines `  path: old -> new` for every leaf that differs (upstream prints a
/// struct diff here; the paths carry the same information).
fn describe_differences(old: &Value, new: &Value, path: &str, lines: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(old_map), Value::Object(new_map)) => {
            let keys: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
            for key in keys {
                let old_child = old_map.get(key).unwrap_or(&Value::Null);
                let new_child = new_map.get(key).unwrap_or(&Value::Null);
                describe_differences(old_child, new_child, &format!("{path}.{key}"), lines);
            }
        }
        (Value::Array(old_items), Value::Array(new_items))
            if old_items.len() == new_items.len() =>
        {
            for (index, (old_item, new_item)) in old_items.iter().zip(new_items).enumerate() {
                describe_differences(old_item, new_item, &format!("{path}[{index}]"), lines);
            }
        }
        _ => {
            if normalized(Some(old)) != normalized(Some(new)) {
                lines.push(format!("  {path}: {old} -> {new}"));
            }
        }
    }
}

fn validate_service_spec(spec: Option<&Map<String, Value>>, causes: &mut Causes) {
    let service_type = string(spec, "type");
    causes.one_of(
        "spec.type",
        spec.and_then(|s| s.get("type")),
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    );
    causes.one_of(
        "spec.sessionAffinity",
        spec.and_then(|s| s.get("sessionAffinity")),
        &["ClientIP", "None"],
    );
    let headless = string(spec, "clusterIP") == "None";
    let ports = items(spec, "ports");
    if service_type == "ExternalName" {
        let external_name = string(spec, "externalName");
        if external_name.is_empty() {
            causes.required("spec.externalName", "");
        } else {
            let trimmed = external_name.strip_suffix('.').unwrap_or(external_name);
            causes.invalid_each(
                "spec.externalName",
                &json!(external_name),
                names::dns1123_subdomain(trimmed),
            );
        }
    } else if ports.is_empty() && !headless {
        causes.required("spec.ports", "");
    }
    let mut port_names = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    let require_names = ports.len() > 1;
    for (index, port) in ports.into_iter().enumerate() {
        let port_path = format!("spec.ports[{index}]");
        let name = string(Some(port), "name");
        if name.is_empty() {
            if require_names {
                causes.required(&format!("{port_path}.name"), "");
            }
        } else {
            causes.invalid_each(
                &format!("{port_path}.name"),
                &json!(name),
                names::dns1123_label(name),
            );
            if !port_names.insert(name.to_string()) {
                causes.duplicate(&format!("{port_path}.name"), &json!(name));
            }
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        causes.invalid_each(
            &format!("{port_path}.port"),
            &json!(number),
            names::port_number(number),
        );
        match port.get("protocol") {
            None | Some(Value::Null) => causes.required(&format!("{port_path}.protocol"), ""),
            protocol => causes.one_of(&format!("{port_path}.protocol"), protocol, PROTOCOLS),
        }
        let protocol = string(Some(port), "protocol");
        if !port_keys.insert((number, protocol.to_string())) {
            causes.duplicate(&port_path, &json!({"port": number, "protocol": protocol}));
        }
        match port.get("targetPort") {
            Some(Value::Number(target)) => {
                let target = target.as_i64().unwrap_or(0);
                causes.invalid_each(
                    &format!("{port_path}.targetPort"),
                    &json!(target),
                    names::port_number(target),
                );
            }
            Some(Value::String(target)) => {
                causes.invalid_each(
                    &format!("{port_path}.targetPort"),
                    &json!(target),
                    names::port_name(target),
                );
            }
            _ => {}
        }
        if let Some(node_port) = port
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0)
        {
            if service_type == "ClusterIP" || service_type == "ExternalName" {
                causes.forbidden(
                    &format!("{port_path}.nodePort"),
                    &format!("may not be used when `type` is '{service_type}'"),
                );
            } else if !(30000..=32767).contains(&node_port) {
                causes.invalid(
                    &format!("{port_path}.nodePort"),
                    &json!(node_port),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                );
            }
        }
    }
    if let Some(selector) = spec.and_then(|s| s.get("selector")) {
        validate_labels(selector, "spec.selector", causes);
    }
    let cluster_ip = string(spec, "clusterIP");
    if !cluster_ip.is_empty()
        && cluster_ip != "None"
        && cluster_ip.parse::<std::net::IpAddr>().is_err()
    {
        causes.invalid(
            "spec.clusterIPs[0]",
            &json!(cluster_ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
    if service_type == "ExternalName" || service_type == "ClusterIP" {
        if let Some(policy) = spec
            .and_then(|s| s.get("externalTrafficPolicy"))
            .filter(|v| !v.is_null())
        {
            if service_type == "ClusterIP" {
                causes.invalid(
                    "spec.externalTrafficPolicy",
                    policy,
                    "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
                );
            }
        }
    }
    causes.one_of(
        "spec.externalTrafficPolicy",
        spec.and_then(|s| s.get("externalTrafficPolicy")),
        &["Cluster", "Local"],
    );
    causes.one_of(
        "spec.internalTrafficPolicy",
        spec.and_then(|s| s.get("internalTrafficPolicy")),
        &["Cluster", "Local"],
    );
}

fn validate_service_update(new: &Value, old: &Value, causes: &mut Causes) {
    let old_type = pointer(old, "/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let new_type = pointer(new, "/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let old_ip = pointer(old, "/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    // The address stays the service's while it has one; switching to or from
    // ExternalName releases or allocates it.
    if old_type != "ExternalName" && new_type != "ExternalName" && !old_ip.is_empty() {
        causes.immutable(
            "spec.clusterIP",
            pointer(new, "/spec/clusterIP"),
            pointer(old, "/spec/clusterIP"),
        );
    }
}

fn validate_config_map(object: &Map<String, Value>, causes: &mut Causes) {
    let mut total = 0;
    let binary = field(object, "binaryData");
    for (key, value) in field(object, "data").into_iter().flatten() {
        causes.invalid_each(&format!("data[{key}]"), &json!(key), names::config_key(key));
        if binary.is_some_and(|b| b.contains_key(key)) {
            causes.invalid(
                &format!("data[{key}]"),
                &json!(key),
                "duplicate of key present in binaryData",
            );
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in binary.into_iter().flatten() {
        causes.invalid_each(
            &format!("binaryData[{key}]"),
            &json!(key),
            names::config_key(key),
        );
        // base64 carries 3 bytes in 4 characters.
        total += value.as_str().map_or(0, |text| text.len() * 3 / 4);
    }
    if total > MAX_DATA_SIZE {
        causes.too_long("", MAX_DATA_SIZE);
    }
}

fn validate_secret(object: &Map<String, Value>, causes: &mut Causes) {
    let mut keys = BTreeSet::new();
    let mut total = 0;
    for (bag, decoded_ratio) in [("data", 3), ("stringData", 4)] {
        for (key, value) in field(object, bag).into_iter().flatten() {
            causes.invalid_each(&format!("data[{key}]"), &json!(key), names::config_key(key));
            keys.insert(key.clone());
            total += value
                .as_str()
                .map_or(0, |text| text.len() * decoded_ratio / 4);
        }
    }
    if total > MAX_DATA_SIZE {
        causes.too_long("data", MAX_DATA_SIZE);
    }
    let required_keys: &[&str] = match object.get("type").and_then(Value::as_str) {
        Some("kubernetes.io/tls") => &["tls.crt", "tls.key"],
        Some("kubernetes.io/dockerconfigjson") => &[".dockerconfigjson"],
        Some("kubernetes.io/dockercfg") => &[".dockercfg"],
        Some("kubernetes.io/basic-auth") => &[],
        Some("kubernetes.io/ssh-auth") => &["ssh-privatekey"],
        _ => &[],
    };
    for key in required_keys {
        if !keys.contains(*key) {
            causes.required(&format!("data[{key}]"), "");
        }
    }
}

/// ConfigMaps and Secrets marked `immutable: true` keep their data and the flag.
fn validate_immutable_data(
    kind: &str,
    new: &Map<String, Value>,
    old: &Map<String, Value>,
    causes: &mut Causes,
) {
    if kind == "Secret" {
        causes.immutable("type", new.get("type"), old.get("type"));
    }
    if old.get("immutable") == Some(&Value::Bool(true)) {
        if new.get("immutable") != Some(&Value::Bool(true)) {
            causes.forbidden("immutable", "field is immutable when `immutable` is set");
        }
        for bag in ["data", "binaryData"] {
            if normalized(new.get(bag)) != normalized(old.get(bag)) {
                causes.forbidden(bag, "field is immutable when `immutable` is set");
            }
        }
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
/// Sources of a PersistentVolume; exactly one must be set.
const PERSISTENT_VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

fn persistent_volume_source(spec: Option<&Map<String, Value>>) -> Option<Map<String, Value>> {
    let spec = spec?;
    Some(
        PERSISTENT_VOLUME_SOURCES
            .iter()
            .filter_map(|source| {
                spec.get(*source)
                    .map(|value| (source.to_string(), value.clone()))
            })
            .collect(),
    )
}

fn validate_access_modes(
    spec: Option<&Map<String, Value>>,
    path: &str,
    required_detail: &str,
    causes: &mut Causes,
) {
    let modes = spec
        .and_then(|s| s.get("accessModes"))
        .and_then(Value::as_array);
    match modes {
        None => causes.required(path, required_detail),
        Some(modes) if modes.is_empty() => causes.required(path, required_detail),
        Some(modes) => {
            for mode in modes {
                if !mode.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
                    causes.not_supported(path, mode, ACCESS_MODES);
                }
            }
        }
    }
}

fn validate_persistent_volume(object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    validate_access_modes(spec, "spec.accessModes", "", causes);
    match field(spec.unwrap_or(&Map::new()), "capacity") {
        None => causes.required("spec.capacity", ""),
        Some(capacity) => {
            if !capacity.contains_key("storage") {
                causes.required("spec.capacity.storage", "");
            }
            for key in capacity.keys().filter(|key| *key != "storage") {
                causes.not_supported("spec.capacity", &json!(key), &["storage"]);
            }
        }
    }
    let sources: Vec<&&str> = PERSISTENT_VOLUME_SOURCES
        .iter()
        .filter(|source| spec.is_some_and(|s| s.get(**source).is_some_and(|v| !v.is_null())))
        .collect();
    match sources.as_slice() {
        [] => causes.required("spec", "must specify a volume type"),
        [_] => {}
        [_, extra @ ..] => {
            for source in extra {
                causes.forbidden(
                    &format!("spec.{source}"),
                    "may not specify more than 1 volume type",
                );
            }
        }
    }
    if let Some(host_path) = spec.and_then(|s| field(s, "hostPath")) {
        if string(Some(host_path), "path").is_empty() {
            causes.required("spec.hostPath.path", "");
        }
    }
    if let Some(local) = spec.and_then(|s| field(s, "local")) {
        if string(Some(local), "path").is_empty() {
            causes.required("spec.local.path", "");
        }
    }
    causes.one_of(
        "spec.persistentVolumeReclaimPolicy",
        spec.and_then(|s| s.get("persistentVolumeReclaimPolicy")),
        &["Delete", "Recycle", "Retain"],
    );
    causes.one_of(
        "spec.volumeMode",
        spec.and_then(|s| s.get("volumeMode")),
        &["Block", "Filesystem"],
    );
}

fn validate_persistent_volume_claim(object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    validate_access_modes(
        spec,
        "spec.accessModes",
        "at least 1 access mode is required",
        causes,
    );
    let storage = spec
        .and_then(|s| s.get("resources"))
        .and_then(|r| r.get("requests"))
        .and_then(|r| r.get("storage"));
    match storage {
        None => causes.required("spec.resources[storage]", ""),
        Some(quantity) => {
            if parse_quantity(quantity).is_none_or(|value| value <= 0.0) {
                causes.invalid(
                    "spec.resources.requests[storage]",
                    quantity,
                    "must be greater than zero",
                );
            }
        }
    }
    causes.one_of(
        "spec.volumeMode",
        spec.and_then(|s| s.get("volumeMode")),
        &["Block", "Filesystem"],
    );
    if let Some(selector) = spec.and_then(|s| field(s, "selector")) {
        validate_label_selector(Some(selector), "spec.selector", causes);
    }
}

fn validate_claim_update(new: &Value, old: &Value, causes: &mut Causes) {
    let mut allowed = old.get("spec").cloned().unwrap_or(Value::Null);
    let new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(allowed_spec) = allowed.as_object_mut() {
        // The binder fills volumeName and storageClassName once.
        for key in ["volumeName", "storageClassName"] {
            if string(Some(allowed_spec), key).is_empty() {
                copy_field(allowed_spec, &new_spec, key);
            }
        }
        copy_field(allowed_spec, &new_spec, "volumeAttributesClassName");
        if let Some(resources) = allowed_spec
            .get_mut("resources")
            .and_then(Value::as_object_mut)
        {
            if let Some(requests) = new_spec.pointer("/resources/requests") {
                resources.insert("requests".into(), requests.clone());
            }
        }
    }
    if normalized(Some(&allowed)) != normalized(Some(&new_spec)) {
        let mut differences = Vec::new();
        describe_differences(&allowed, &new_spec, "spec", &mut differences);
        causes.forbidden(
            "spec",
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                differences.join("\n")
            ),
        );
    }
    let old_storage = old
        .pointer("/spec/resources/requests/storage")
        .and_then(parse_quantity);
    let new_storage = new
        .pointer("/spec/resources/requests/storage")
        .and_then(parse_quantity);
    if let (Some(old_storage), Some(new_storage)) = (old_storage, new_storage) {
        if new_storage < old_storage {
            causes.forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            );
        }
    }
}

/// A resource quantity ("1Gi", "500m", "1e3", 2) as a number, for comparisons.
pub(crate) fn parse_quantity(value: &Value) -> Option<f64> {
    if let Some(number) = value.as_f64() {
        return Some(number);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * multiplier)
}

fn validate_node(object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    let pod_cidr = string(spec, "podCIDR");
    if !pod_cidr.is_empty() && pod_cidr.parse::<ipnet::IpNet>().is_err() {
        causes.invalid(
            "spec.podCIDRs[0]",
            &json!(pod_cidr),
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        );
    }
    for (index, taint) in items(spec, "taints").into_iter().enumerate() {
        let taint_path = format!("spec.taints[{index}]");
        let key = string(Some(taint), "key");
        causes.invalid_each(
            &format!("{taint_path}.key"),
            &json!(key),
            names::qualified_name(key),
        );
        match taint.get("effect") {
            None | Some(Value::Null) => causes.required(&format!("{taint_path}.effect"), ""),
            effect => causes.one_of(
                &format!("{taint_path}.effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
        }
    }
}

fn validate_event(object: &Map<String, Value>, causes: &mut Causes) {
    causes.one_of("type", object.get("type"), &["Normal", "Warning"]);
    let namespace = string(field(object, "metadata"), "namespace");
    let involved = field(object, "involvedObject").or_else(|| field(object, "regarding"));
    let involved_namespace = string(involved, "namespace");
    if !involved_namespace.is_empty() && !namespace.is_empty() && involved_namespace != namespace {
        let path = if object.contains_key("regarding") {
            "regarding.namespace"
        } else {
            "involvedObject.namespace"
        };
        causes.invalid(
            path,
            &json!(involved_namespace),
            "does not match event.namespace",
        );
    }
}

fn validate_binding(object: &Map<String, Value>, causes: &mut Causes) {
    let target = field(object, "target");
    if string(target, "name").is_empty() {
        causes.required("target.name", "");
    }
    let kind = string(target, "kind");
    if !kind.is_empty() && kind != "Node" {
        causes.not_supported("target.kind", &json!(kind), &["Node", "<empty>"]);
    }
}

fn validate_workload(kind: &str, object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    if let Some(replicas) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64) {
        if replicas < 0 {
            causes.invalid(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            );
        }
    }
    let template = spec.and_then(|s| field(s, "template"));
    let template_labels = template
        .and_then(|t| field(t, "metadata"))
        .and_then(|m| field(m, "labels"));
    match spec.and_then(|s| field(s, "selector")) {
        None => causes.required("spec.selector", ""),
        Some(selector) => {
            validate_label_selector(Some(selector), "spec.selector", causes);
            if is_empty_selector(selector) {
                causes.invalid(
                    "spec.selector",
                    &Value::Object(selector.clone()),
                    &format!("empty selector is invalid for {}", kind.to_lowercase()),
                );
            } else if !selector_matches(selector, template_labels) {
                causes.invalid(
                    "spec.template.metadata.labels",
                    &template_labels
                        .map(|l| Value::Object(l.clone()))
                        .unwrap_or(Value::Null),
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
    if let Some(labels) = template_labels {
        validate_labels(
            &Value::Object(labels.clone()),
            "spec.template.metadata.labels",
            causes,
        );
    }
    let pod_spec = template.and_then(|t| field(t, "spec"));
    validate_pod_spec(pod_spec, "spec.template.spec", causes);
    let restart_policy = string(pod_spec, "restartPolicy");
    if !restart_policy.is_empty() && restart_policy != "Always" {
        causes.not_supported(
            "spec.template.spec.restartPolicy",
            &json!(restart_policy),
            &["Always"],
        );
    }
    if let Some(deadline) = pod_spec
        .and_then(|s| s.get("activeDeadlineSeconds"))
        .filter(|v| !v.is_null())
    {
        causes.invalid(
            "spec.template.spec.activeDeadlineSeconds",
            deadline,
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        );
    }
    let non_negative = |causes: &mut Causes, key: &str| {
        if let Some(value) = spec.and_then(|s| s.get(key)).and_then(Value::as_i64) {
            if value < 0 {
                causes.invalid(
                    &format!("spec.{key}"),
                    &json!(value),
                    "must be greater than or equal to 0",
                );
            }
        }
    };
    non_negative(causes, "minReadySeconds");
    non_negative(causes, "revisionHistoryLimit");
    match kind {
        "Deployment" => {
            let strategy = spec.and_then(|s| field(s, "strategy"));
            let strategy_type = string(strategy, "type");
            causes.one_of(
                "spec.strategy.type",
                strategy.and_then(|s| s.get("type")),
                &["Recreate", "RollingUpdate"],
            );
            if strategy_type == "Recreate" && is_set(strategy, "rollingUpdate") {
                causes.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
            if let Some(rolling) = strategy.and_then(|s| field(s, "rollingUpdate")) {
                let is_zero = |value: Option<&Value>| match value {
                    Some(Value::Number(number)) => number.as_i64() == Some(0),
                    Some(Value::String(text)) => text == "0%" || text == "0",
                    _ => false,
                };
                if is_zero(rolling.get("maxUnavailable")) && is_zero(rolling.get("maxSurge")) {
                    causes.invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        rolling.get("maxUnavailable").unwrap_or(&Value::Null),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
            }
            if let (Some(deadline), Some(min_ready)) = (
                spec.and_then(|s| s.get("progressDeadlineSeconds"))
                    .and_then(Value::as_i64),
                spec.and_then(|s| s.get("minReadySeconds"))
                    .and_then(Value::as_i64),
            ) {
                if deadline <= min_ready {
                    causes.invalid(
                        "spec.progressDeadlineSeconds",
                        &json!(deadline),
                        "must be greater than minReadySeconds",
                    );
                }
            }
        }
        "DaemonSet" => {
            let strategy = spec.and_then(|s| field(s, "updateStrategy"));
            causes.one_of(
                "spec.updateStrategy.type",
                strategy.and_then(|s| s.get("type")),
                &["OnDelete", "RollingUpdate"],
            );
        }
        "StatefulSet" => {
            causes.one_of(
                "spec.podManagementPolicy",
                spec.and_then(|s| s.get("podManagementPolicy")),
                &["OrderedReady", "Parallel"],
            );
            let strategy = spec.and_then(|s| field(s, "updateStrategy"));
            causes.one_of(
                "spec.updateStrategy.type",
                strategy.and_then(|s| s.get("type")),
                &["OnDelete", "RollingUpdate"],
            );
            for (index, claim) in items(spec, "volumeClaimTemplates").into_iter().enumerate() {
                let name = string(field(claim, "metadata"), "name");
                let claim_path = format!("spec.volumeClaimTemplates[{index}]");
                if name.is_empty() {
                    causes.required(&format!("{claim_path}.metadata.name"), "");
                }
                validate_access_modes(
                    field(claim, "spec"),
                    &format!("{claim_path}.spec.accessModes"),
                    "at least 1 access mode is required",
                    causes,
                );
            }
        }
        _ => {}
    }
}

/// A StatefulSet's spec may change only in the fields upstream lists.
fn validate_stateful_set_update(
    new: &Map<String, Value>,
    old: &Map<String, Value>,
    causes: &mut Causes,
) {
    let updatable = [
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let strip = |object: &Map<String, Value>| -> BTreeMap<String, Value> {
        field(object, "spec")
            .into_iter()
            .flatten()
            .filter(|(key, value)| {
                !updatable.contains(&key.as_str()) && normalized(Some(value)).is_some()
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    };
    if strip(new) != strip(old) {
        causes.forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        );
    }
}

fn validate_network_policy(object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    if let Some(selector) = spec.and_then(|s| field(s, "podSelector")) {
        validate_label_selector(Some(selector), "spec.podSelector", causes);
    }
    for (direction, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (rule_index, rule) in items(spec, direction).into_iter().enumerate() {
            let rule_path = format!("spec.{direction}[{rule_index}]");
            for (index, port) in items(Some(rule), "ports").into_iter().enumerate() {
                validate_network_policy_port(port, &format!("{rule_path}.ports[{index}]"), causes);
            }
            for (index, peer) in items(Some(rule), peers_key).into_iter().enumerate() {
                validate_network_policy_peer(
                    peer,
                    &format!("{rule_path}.{peers_key}[{index}]"),
                    causes,
                );
            }
        }
    }
    let policy_types = spec
        .and_then(|s| s.get("policyTypes"))
        .and_then(Value::as_array);
    for (index, policy_type) in policy_types.into_iter().flatten().enumerate() {
        if !policy_type
            .as_str()
            .is_some_and(|t| t == "Ingress" || t == "Egress")
        {
            causes.not_supported(
                &format!("spec.policyTypes[{index}]"),
                policy_type,
                &["Ingress", "Egress"],
            );
        }
    }
    if policy_types.is_some_and(|types| types.len() > 2) {
        causes.invalid(
            "spec.policyTypes",
            &Value::Array(policy_types.cloned().unwrap_or_default()),
            "may not specify more than two policyTypes",
        );
    }
}

fn validate_network_policy_port(port: &Map<String, Value>, path: &str, causes: &mut Causes) {
    causes.one_of(&format!("{path}.protocol"), port.get("protocol"), PROTOCOLS);
    match port.get("port") {
        Some(Value::Number(number)) => {
            let number = number.as_i64().unwrap_or(0);
            causes.invalid_each(
                &format!("{path}.port"),
                &json!(number),
                names::port_number(number),
            );
        }
        Some(Value::String(name)) => {
            causes.invalid_each(
                &format!("{path}.port"),
                &json!(name),
                names::port_name(name),
            );
        }
        _ => {}
    }
    if let Some(end_port) = port.get("endPort").and_then(Value::as_i64) {
        match port.get("port") {
            None | Some(Value::Null) => causes.required(
                &format!("{path}.port"),
                "must be specified when endPort is specified",
            ),
            Some(Value::String(_)) => causes.forbidden(
                &format!("{path}.endPort"),
                "may not be specified when port is non-numeric",
            ),
            Some(start) => {
                if end_port < start.as_i64().unwrap_or(0) {
                    causes.invalid(
                        &format!("{path}.endPort"),
                        &json!(end_port),
                        "must be greater than or equal to `port`",
                    );
                }
            }
        }
    }
}

fn validate_network_policy_peer(peer: &Map<String, Value>, path: &str, causes: &mut Causes) {
    let pod_selector = field(peer, "podSelector");
    let namespace_selector = field(peer, "namespaceSelector");
    let ip_block = field(peer, "ipBlock");
    let selectors = usize::from(pod_selector.is_some()) + usize::from(namespace_selector.is_some());
    if let Some(selector) = pod_selector {
        validate_label_selector(Some(selector), &format!("{path}.podSelector"), causes);
    }
    if let Some(selector) = namespace_selector {
        validate_label_selector(Some(selector), &format!("{path}.namespaceSelector"), causes);
    }
    match (selectors, ip_block) {
        (0, None) => causes.required(path, "must specify a peer"),
        (1.., Some(_)) => causes.forbidden(path, "may not specify both ipBlock and another peer"),
        _ => {}
    }
    let Some(ip_block) = ip_block else {
        return;
    };
    let block_path = format!("{path}.ipBlock");
    let cidr_text = string(Some(ip_block), "cidr");
    if cidr_text.is_empty() {
        causes.required(&format!("{block_path}.cidr"), "");
        return;
    }
    let Ok(cidr) = cidr_text.parse::<ipnet::IpNet>() else {
        causes.invalid(
            &format!("{block_path}.cidr"),
            &json!(cidr_text),
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        );
        return;
    };
    let excepts = ip_block.get("except").and_then(Value::as_array);
    for (index, except) in excepts.into_iter().flatten().enumerate() {
        let except_path = format!("{block_path}.except[{index}]");
        let except_text = except.as_str().unwrap_or("");
        match except_text.parse::<ipnet::IpNet>() {
            Err(_) => causes.invalid(
                &except_path,
                &json!(except_text),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ),
            Ok(except_net) => {
                let strict_subset =
                    cidr.contains(&except_net) && except_net.prefix_len() > cidr.prefix_len();
                if !strict_subset {
                    causes.invalid(
                        &except_path,
                        &json!(except_text),
                        "must be a strict subset of `cidr`",
                    );
                }
            }
        }
    }
}

fn validate_ingress(object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    for (rule_index, rule) in items(spec, "rules").into_iter().enumerate() {
        let rule_path = format!("spec.rules[{rule_index}]");
        let host = string(Some(rule), "host");
        if !host.is_empty() {
            let checked = host.strip_prefix("*.").unwrap_or(host);
            causes.invalid_each(
                &format!("{rule_path}.host"),
                &json!(host),
                names::dns1123_subdomain(checked),
            );
        }
        let http = field(rule, "http");
        for (path_index, http_path) in items(http, "paths").into_iter().enumerate() {
            let path_field = format!("{rule_path}.http.paths[{path_index}]");
            match http_path.get("pathType") {
                None | Some(Value::Null) => causes.required(
                    &format!("{path_field}.pathType"),
                    "pathType must be specified",
                ),
                path_type => causes.one_of(
                    &format!("{path_field}.pathType"),
                    path_type,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                ),
            }
            let path_text = string(Some(http_path), "path");
            if !path_text.is_empty() && !path_text.starts_with('/') {
                causes.invalid(
                    &format!("{path_field}.path"),
                    &json!(path_text),
                    "must be an absolute path",
                );
            }
            if field(http_path, "backend").is_none() {
                causes.required(&format!("{path_field}.backend"), "");
            }
        }
    }
}

fn validate_storage_class(object: &Map<String, Value>, causes: &mut Causes) {
    if string(Some(object), "provisioner").is_empty() {
        causes.required("provisioner", "");
    }
    causes.one_of(
        "reclaimPolicy",
        object.get("reclaimPolicy"),
        &["Delete", "Retain"],
    );
    causes.one_of(
        "volumeBindingMode",
        object.get("volumeBindingMode"),
        &["Immediate", "WaitForFirstConsumer"],
    );
}

fn validate_lease(object: &Map<String, Value>, causes: &mut Causes) {
    let spec = field(object, "spec");
    if let Some(duration) = spec
        .and_then(|s| s.get("leaseDurationSeconds"))
        .and_then(Value::as_i64)
    {
        if duration <= 0 {
            causes.invalid(
                "spec.leaseDurationSeconds",
                &json!(duration),
                "must be greater than 0",
            );
        }
    }
    if let Some(transitions) = spec
        .and_then(|s| s.get("leaseTransitions"))
        .and_then(Value::as_i64)
    {
        if transitions < 0 {
            causes.invalid(
                "spec.leaseTransitions",
                &json!(transitions),
                "must be greater than or equal to 0",
            );
        }
    }
}

fn validate_endpoint_slice(object: &Map<String, Value>, causes: &mut Causes) {
    match object.get("addressType") {
        None | Some(Value::Null) => causes.required("addressType", ""),
        address_type => causes.one_of("addressType", address_type, &["IPv4", "IPv6", "FQDN"]),
    }
    for (index, endpoint) in items(Some(object), "endpoints").into_iter().enumerate() {
        let addresses = endpoint.get("addresses").and_then(Value::as_array);
        if addresses.is_none_or(|a| a.is_empty()) {
            causes.required(
                &format!("endpoints[{index}].addresses"),
                "must contain at least 1 address",
            );
        }
    }
    for (index, port) in items(Some(object), "ports").into_iter().enumerate() {
        causes.one_of(
            &format!("ports[{index}].protocol"),
            port.get("protocol"),
            PROTOCOLS,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::registry::find_kind;
    use expect_test::{expect, Expect};

    fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
        find_kind(api_version, kind).expect("kind is served")
    }

    /// Parse, default (as the API server does before validating), validate.
    fn create(api_version: &str, kind: &str, manifest: &str) -> Vec<FieldCause> {
        let info = info(api_version, kind);
        let mut object: Value = serde_yaml::from_str(manifest).unwrap();
        apply_defaults(info, &mut object);
        validate_create(info, &object)
    }

    fn update(
        api_version: &str,
        kind: &str,
        old: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Vec<FieldCause> {
        let info = info(api_version, kind);
        let mut old_object: Value = serde_yaml::from_str(old).unwrap();
        apply_defaults(info, &mut old_object);
        let mut new_object = old_object.clone();
        edit(&mut new_object);
        apply_defaults(info, &mut new_object);
        validate_update(info, &new_object, &old_object)
    }

    /// `field: message` lines, as kubectl prints them.
    fn render(causes: &[FieldCause]) -> String {
        causes
            .iter()
            .map(|cause| format!("{} [{}] {}\n", cause.field, cause.reason, cause.message))
            .collect()
    }

    fn check(causes: Vec<FieldCause>, expected: impl std::borrow::Borrow<Expect>) {
        expected.borrow().assert_eq(&render(&causes));
    }

    const POD: &str = r#"
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{name: http, containerPort: 80}]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#;

    const DEPLOYMENT: &str = r#"
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#;

    const SERVICE: &str = r#"
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

    #[test]
    fn valid_objects_have_no_causes() {
        for (api_version, kind, manifest) in [
            ("v1", "Pod", POD),
            ("apps/v1", "Deployment", DEPLOYMENT),
            ("v1", "Service", SERVICE),
            ("v1", "Namespace", "metadata: {name: team-a}"),
            ("v1", "ConfigMap", "metadata: {name: c, namespace: d}\ndata: {nginx.conf: x, .env: y}"),
            ("v1", "PersistentVolumeClaim", "metadata: {name: c, namespace: d}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}"),
            ("v1", "PersistentVolume", "metadata: {name: pv1}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /data}}"),
            ("storage.k8s.io/v1", "StorageClass", "metadata: {name: local}\nprovisioner: podnet.io/local"),
            ("networking.k8s.io/v1", "NetworkPolicy", "metadata: {name: p, namespace: d}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 80, endPort: 90}]}]}"),
            ("coordination.k8s.io/v1", "Lease", "metadata: {name: l, namespace: d}\nspec: {leaseDurationSeconds: 15}"),
            ("v1", "Node", "metadata: {name: node-1}\nspec: {podCIDR: 10.244.1.0/24}"),
            ("discovery.k8s.io/v1", "EndpointSlice", "metadata: {name: web-abc, namespace: d}\naddressType: IPv4\nendpoints: [{addresses: [10.244.1.5]}]"),
        ] {
            let causes = create(api_version, kind, manifest);
            assert!(causes.is_empty(), "{kind}: {}", render(&causes));
        }
    }

    #[test]
    fn metadata_rules() {
        let cases: &[(&str, &str, &str, Expect)] = &[
            ("v1", "Pod", "metadata: {namespace: default}\nspec: {containers: [{name: a, image: b}]}", expect![[r#"
                metadata.name [FieldValueRequired] Required value: name or generateName is required
            "#]]),
            ("v1", "Pod", "metadata: {name: Bad_Name, namespace: default}\nspec: {containers: [{name: a, image: b}]}", expect![[r#"
                metadata.name [FieldValueInvalid] Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')
            "#]]),
            ("v1", "Pod", "metadata: {generateName: web-, namespace: default}\nspec: {containers: [{name: a, image: b}]}", expect![""]),
            ("v1", "Pod", "metadata: {name: web}\nspec: {containers: [{name: a, image: b}]}", expect![[r#"
                metadata.namespace [FieldValueRequired] Required value
            "#]]),
            ("v1", "Service", "metadata: {name: 1web, namespace: d}\nspec: {ports: [{port: 80}]}", expect![[r#"
                metadata.name [FieldValueInvalid] Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')
            "#]]),
            ("v1", "Namespace", "metadata: {name: a.b}", expect![[r#"
                metadata.name [FieldValueInvalid] Invalid value: "a.b": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')
            "#]]),
            ("v1", "Namespace", "metadata: {name: a, namespace: b}", expect![[r#"
                metadata.namespace [FieldValueForbidden] Forbidden: not allowed on this type
            "#]]),
            ("v1", "ConfigMap", "metadata: {name: c, namespace: d, labels: {'a/b/c': x, ok: -bad}, annotations: {'/x': y}}", expect![[r#"
                metadata.labels [FieldValueInvalid] Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')
                metadata.labels [FieldValueInvalid] Invalid value: "-bad": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')
                metadata.annotations [FieldValueInvalid] Invalid value: "/x": prefix part must be non-empty
            "#]]),
        ];
        for (api_version, kind, manifest, expected) in cases {
            check(create(api_version, kind, manifest), expected);
        }
    }

    #[test]
    fn pod_rules() {
        let with_spec = |spec: &str| format!("metadata: {{name: p, namespace: d}}\nspec: {spec}");
        let cases: &[(&str, Expect)] = &[
            ("{containers: []}", expect![[r#"
                spec.containers [FieldValueRequired] Required value
            "#]]),
            ("{containers: [{name: web}]}", expect![[r#"
                spec.containers[0].image [FieldValueRequired] Required value
            "#]]),
            ("{containers: [{image: nginx}]}", expect![[r#"
                spec.containers[0].name [FieldValueRequired] Required value
            "#]]),
            ("{initContainers: [{name: a, image: x}], containers: [{name: a, image: x}]}", expect![[r#"
                spec.containers[0].name [FieldValueDuplicate] Duplicate value: "a"
            "#]]),
            ("{containers: [{name: a, image: x, ports: [{containerPort: 70000, name: Web_Port}, {containerPort: 81, protocol: ICMP, name: web-port}]}, {name: b, image: x, ports: [{containerPort: 82, name: web-port}]}]}", expect![[r#"
                spec.containers[0].ports[0].name [FieldValueInvalid] Invalid value: "Web_Port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)
                spec.containers[0].ports[0].containerPort [FieldValueInvalid] Invalid value: 70000: must be between 1 and 65535, inclusive
                spec.containers[0].ports[1].protocol [FieldValueNotSupported] Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"
                spec.containers[1].ports[0].name [FieldValueDuplicate] Duplicate value: "web-port"
            "#]]),
            ("{containers: [{name: a, image: x, ports: [{containerPort: 0}]}]}", expect![[r#"
                spec.containers[0].ports[0].containerPort [FieldValueRequired] Required value
            "#]]),
            ("{restartPolicy: Sometimes, containers: [{name: a, image: x}]}", expect![[r#"
                spec.restartPolicy [FieldValueNotSupported] Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"
            "#]]),
            ("{volumes: [{name: v, emptyDir: {}}, {name: v, hostPath: {path: /x}, emptyDir: {}}], containers: [{name: a, image: x, volumeMounts: [{name: missing, mountPath: /m}, {name: v, mountPath: /m}]}]}", expect![[r#"
                spec.volumes[1].name [FieldValueDuplicate] Duplicate value: "v"
                spec.volumes[1].hostPath [FieldValueForbidden] Forbidden: may not specify more than 1 volume type
                spec.containers[0].volumeMounts[0].name [FieldValueNotFound] Not found: "missing"
                spec.containers[0].volumeMounts[1].mountPath [FieldValueInvalid] Invalid value: "/m": must be unique
            "#]]),
            ("{containers: [{name: a, image: x, livenessProbe: {periodSeconds: 3}}]}", expect![[r#"
                spec.containers[0].livenessProbe [FieldValueRequired] Required value: must specify a handler type
            "#]]),
        ];
        for (spec, expected) in cases {
            check(create("v1", "Pod", &with_spec(spec)), expected);
        }
    }

    #[test]
    fn pod_update_rules() {
        check(
            update("v1", "Pod", POD, |pod| {
                pod["spec"]["containers"][0]["image"] = json!("nginx:1.27");
                pod["spec"]["activeDeadlineSeconds"] = json!(60);
                pod["spec"]["tolerations"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"key": "k", "operator": "Exists"}));
                pod["spec"]["nodeName"] = json!("node-1");
                pod["metadata"]["labels"]["extra"] = json!("yes");
            }),
            expect![""],
        );
        check(
            update("v1", "Pod", POD, |pod| {
                pod["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
            }),
            expect![[r#"
                spec [FieldValueForbidden] Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)
                  spec.containers[0].ports[0].containerPort: 80 -> 8080
            "#]],
        );
        check(
            update(
                "v1",
                "Pod",
                &format!(
                    "{POD}  tolerations: [{{key: dedicated, value: gpu, effect: NoSchedule}}]\n"
                ),
                |pod| {
                    pod["spec"]["tolerations"] = json!([]);
                    pod["metadata"]["name"] = json!("other");
                },
            ),
            expect![[r#"
                metadata.name [FieldValueInvalid] Invalid value: "other": field is immutable
                spec [FieldValueForbidden] Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)
                  spec.tolerations: [{"key":"dedicated","value":"gpu","effect":"NoSchedule"},{"effect":"NoExecute","key":"node.kubernetes.io/not-ready","operator":"Exists","tolerationSeconds":300},{"effect":"NoExecute","key":"node.kubernetes.io/unreachable","operator":"Exists","tolerationSeconds":300}] -> [{"effect":"NoExecute","key":"node.kubernetes.io/not-ready","operator":"Exists","tolerationSeconds":300},{"effect":"NoExecute","key":"node.kubernetes.io/unreachable","operator":"Exists","tolerationSeconds":300}]
            "#]],
        );
    }

    #[test]
    fn service_rules() {
        let with_spec = |spec: &str| format!("metadata: {{name: s, namespace: d}}\nspec: {spec}");
        let cases: &[(&str, Expect)] = &[
            (
                "{selector: {app: web}}",
                expect![[r#"
                spec.ports [FieldValueRequired] Required value
            "#]],
            ),
            ("{clusterIP: None, selector: {app: web}}", expect![""]),
            (
                "{type: ExternalName, externalName: db.example.com}",
                expect![""],
            ),
            (
                "{type: ExternalName}",
                expect![[r#"
                spec.externalName [FieldValueRequired] Required value
            "#]],
            ),
            (
                "{type: Bogus, ports: [{port: 80}]}",
                expect![[r#"
                spec.type [FieldValueNotSupported] Unsupported value: "Bogus": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"
            "#]],
            ),
            (
                "{ports: [{port: 0}, {name: b, port: 80, targetPort: '8080'}]}",
                expect![[r#"
                spec.ports[0].name [FieldValueRequired] Required value
                spec.ports[0].port [FieldValueInvalid] Invalid value: 0: must be between 1 and 65535, inclusive
                spec.ports[0].targetPort [FieldValueInvalid] Invalid value: 0: must be between 1 and 65535, inclusive
                spec.ports[1].targetPort [FieldValueInvalid] Invalid value: "8080": must contain at least one letter (a-z)
            "#]],
            ),
            (
                "{ports: [{name: a, port: 80}, {name: a, port: 81}]}",
                expect![[r#"
                spec.ports[1].name [FieldValueDuplicate] Duplicate value: "a"
            "#]],
            ),
            (
                "{ports: [{port: 80, nodePort: 30080}]}",
                expect![[r#"
                spec.ports[0].nodePort [FieldValueForbidden] Forbidden: may not be used when `type` is 'ClusterIP'
            "#]],
            ),
            (
                "{type: NodePort, ports: [{port: 80, nodePort: 8080}]}",
                expect![[r#"
                spec.ports[0].nodePort [FieldValueInvalid] Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767
            "#]],
            ),
            (
                "{selector: {'bad key!': x}, ports: [{port: 80}]}",
                expect![[r#"
                spec.selector [FieldValueInvalid] Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')
            "#]],
            ),
        ];
        for (spec, expected) in cases {
            check(create("v1", "Service", &with_spec(spec)), expected);
        }
        let allocated =
            "metadata: {name: s, namespace: d}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}";
        check(
            update("v1", "Service", allocated, |service| {
                service["spec"]["clusterIP"] = json!("10.96.0.21");
            }),
            expect![[r#"
                spec.clusterIP [FieldValueInvalid] Invalid value: "10.96.0.21": field is immutable
            "#]],
        );
        check(
            update("v1", "Service", allocated, |service| {
                service["spec"]["ports"][0]["port"] = json!(8080);
            }),
            expect![""],
        );
    }

    #[test]
    fn workload_rules() {
        let cases: &[(&str, &str, Expect)] = &[
            ("Deployment", "metadata: {name: w, namespace: d}\nspec: {template: {metadata: {labels: {app: w}}, spec: {containers: [{name: a, image: x}]}}}", expect![[r#"
                spec.selector [FieldValueRequired] Required value
            "#]]),
            ("Deployment", "metadata: {name: w, namespace: d}\nspec: {replicas: -1, selector: {matchLabels: {app: other}}, template: {metadata: {labels: {app: w}}, spec: {containers: [{name: a, image: x}]}}}", expect![[r#"
                spec.replicas [FieldValueInvalid] Invalid value: -1: must be greater than or equal to 0
                spec.template.metadata.labels [FieldValueInvalid] Invalid value: {"app":"w"}: `selector` does not match template `labels`
            "#]]),
            ("ReplicaSet", "metadata: {name: w, namespace: d}\nspec: {selector: {matchExpressions: [{key: app, operator: In, values: [w]}]}, template: {metadata: {labels: {app: w}}, spec: {restartPolicy: Never, containers: [{name: a, image: x}]}}}", expect![[r#"
                spec.template.spec.restartPolicy [FieldValueNotSupported] Unsupported value: "Never": supported values: "Always"
            "#]]),
            ("DaemonSet", "metadata: {name: w, namespace: d}\nspec: {selector: {}, template: {spec: {containers: [{name: a, image: x}]}}}", expect![[r#"
                spec.selector [FieldValueInvalid] Invalid value: {}: empty selector is invalid for daemonset
            "#]]),
            ("StatefulSet", "metadata: {name: w, namespace: d}\nspec: {serviceName: w, podManagementPolicy: Random, selector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}, template: {metadata: {labels: {app: w}}, spec: {containers: [{name: a, image: x}]}}}", expect![[r#"
                spec.selector.matchExpressions[0].values [FieldValueForbidden] Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'
                spec.podManagementPolicy [FieldValueNotSupported] Unsupported value: "Random": supported values: "OrderedReady", "Parallel"
            "#]]),
        ];
        for (kind, manifest, expected) in cases {
            check(create("apps/v1", kind, manifest), expected);
        }
        check(
            update("apps/v1", "Deployment", DEPLOYMENT, |deployment| {
                deployment["spec"]["selector"]["matchLabels"]["tier"] = json!("web");
                deployment["spec"]["template"]["metadata"]["labels"]["tier"] = json!("web");
            }),
            expect![[r#"
                spec.selector [FieldValueInvalid] Invalid value: {"matchLabels":{"app":"web","tier":"web"}}: field is immutable
            "#]],
        );
        check(
            update("apps/v1", "Deployment", DEPLOYMENT, |deployment| {
                deployment["spec"]["replicas"] = json!(5);
                deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
            }),
            expect![""],
        );
    }

    #[test]
    fn network_policy_rules() {
        let with_spec = |spec: &str| format!("metadata: {{name: p, namespace: d}}\nspec: {spec}");
        let cases: &[(&str, Expect)] = &[
            ("{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}", expect![[r#"
                spec.ingress[0].from[0].ipBlock.cidr [FieldValueInvalid] Invalid value: "10.0.0.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)
            "#]]),
            ("{podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24, 10.0.0.0/16]}}]}]}", expect![[r#"
                spec.egress[0].to[0].ipBlock.except[0] [FieldValueInvalid] Invalid value: "10.1.0.0/24": must be a strict subset of `cidr`
                spec.egress[0].to[0].ipBlock.except[1] [FieldValueInvalid] Invalid value: "10.0.0.0/16": must be a strict subset of `cidr`
            "#]]),
            ("{podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}, {port: http, endPort: 80}, {endPort: 80}, {protocol: ICMP}]}]}", expect![[r#"
                spec.ingress[0].ports[0].endPort [FieldValueInvalid] Invalid value: 80: must be greater than or equal to `port`
                spec.ingress[0].ports[1].endPort [FieldValueForbidden] Forbidden: may not be specified when port is non-numeric
                spec.ingress[0].ports[2].port [FieldValueRequired] Required value: must be specified when endPort is specified
                spec.ingress[0].ports[3].protocol [FieldValueNotSupported] Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"
            "#]]),
            ("{podSelector: {}, ingress: [{from: [{}, {podSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}]}]}", expect![[r#"
                spec.ingress[0].from[0] [FieldValueRequired] Required value: must specify a peer
                spec.ingress[0].from[1] [FieldValueForbidden] Forbidden: may not specify both ipBlock and another peer
            "#]]),
        ];
        for (spec, expected) in cases {
            check(
                create("networking.k8s.io/v1", "NetworkPolicy", &with_spec(spec)),
                expected,
            );
        }
    }

    #[test]
    fn storage_rules() {
        let cases: &[(&str, &str, &str, Expect)] = &[
            ("v1", "PersistentVolume", "metadata: {name: pv}\nspec: {}", expect![[r#"
                spec.accessModes [FieldValueRequired] Required value
                spec.capacity [FieldValueRequired] Required value
                spec [FieldValueRequired] Required value: must specify a volume type
            "#]]),
            ("v1", "PersistentVolume", "metadata: {name: pv}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteSometimes], hostPath: {path: /a}, nfs: {server: s, path: /b}}", expect![[r#"
                spec.accessModes [FieldValueNotSupported] Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"
                spec.nfs [FieldValueForbidden] Forbidden: may not specify more than 1 volume type
            "#]]),
            ("v1", "PersistentVolumeClaim", "metadata: {name: c, namespace: d}\nspec: {}", expect![[r#"
                spec.accessModes [FieldValueRequired] Required value: at least 1 access mode is required
                spec.resources[storage] [FieldValueRequired] Required value
            "#]]),
            ("storage.k8s.io/v1", "StorageClass", "metadata: {name: sc}\nreclaimPolicy: Recycle", expect![[r#"
                provisioner [FieldValueRequired] Required value
                reclaimPolicy [FieldValueNotSupported] Unsupported value: "Recycle": supported values: "Delete", "Retain"
            "#]]),
        ];
        for (api_version, kind, manifest, expected) in cases {
            check(create(api_version, kind, manifest), expected);
        }
        let claim = "metadata: {name: c, namespace: d}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}";
        check(
            update("v1", "PersistentVolumeClaim", claim, |claim| {
                claim["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
                claim["spec"]["volumeName"] = json!("pv-1");
            }),
            expect![""],
        );
        check(
            update("v1", "PersistentVolumeClaim", claim, |claim| {
                claim["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
                claim["spec"]["accessModes"] = json!(["ReadWriteMany"]);
            }),
            expect![[r#"
                spec [FieldValueForbidden] Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims
                  spec.accessModes[0]: "ReadWriteOnce" -> "ReadWriteMany"
                spec.resources.requests.storage [FieldValueForbidden] Forbidden: field can not be less than previous value
            "#]],
        );
        check(
            update(
                "storage.k8s.io/v1",
                "StorageClass",
                "metadata: {name: sc}\nprovisioner: a\nparameters: {x: y}",
                |class| {
                    class["parameters"]["x"] = json!("z");
                },
            ),
            expect![[r#"
                parameters [FieldValueForbidden] Forbidden: updates to parameters are forbidden.
            "#]],
        );
    }

    #[test]
    fn config_and_secret_rules() {
        check(
            create("v1", "ConfigMap", "metadata: {name: c, namespace: d}\ndata: {'a/b': x, '..x': y}\nbinaryData: {'a/b': eA==}"),
            expect![[r#"
                data[a/b] [FieldValueInvalid] Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')
                data[a/b] [FieldValueInvalid] Invalid value: "a/b": duplicate of key present in binaryData
                data[..x] [FieldValueInvalid] Invalid value: "..x": must not start with '..'
                binaryData[a/b] [FieldValueInvalid] Invalid value: "a/b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')
            "#]],
        );
        check(
            create(
                "v1",
                "Secret",
                "metadata: {name: s, namespace: d}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==}",
            ),
            expect![[r#"
                data[tls.key] [FieldValueRequired] Required value
            "#]],
        );
        check(
            update(
                "v1",
                "ConfigMap",
                "metadata: {name: c, namespace: d}\nimmutable: true\ndata: {a: b}",
                |config| {
                    config["data"]["a"] = json!("c");
                },
            ),
            expect![[r#"
                data [FieldValueForbidden] Forbidden: field is immutable when `immutable` is set
            "#]],
        );
    }

    #[test]
    fn other_kinds() {
        let cases: &[(&str, &str, &str, Expect)] = &[
            ("coordination.k8s.io/v1", "Lease", "metadata: {name: l, namespace: d}\nspec: {leaseDurationSeconds: 0}", expect![[r#"
                spec.leaseDurationSeconds [FieldValueInvalid] Invalid value: 0: must be greater than 0
            "#]]),
            ("v1", "Binding", "metadata: {name: p, namespace: d}\ntarget: {kind: Pod}", expect![[r#"
                target.name [FieldValueRequired] Required value
                target.kind [FieldValueNotSupported] Unsupported value: "Pod": supported values: "Node", "<empty>"
            "#]]),
            ("v1", "Event", "metadata: {name: e.1, namespace: d}\ntype: Fatal\ninvolvedObject: {kind: Pod, name: p, namespace: other}", expect![[r#"
                type [FieldValueNotSupported] Unsupported value: "Fatal": supported values: "Normal", "Warning"
                involvedObject.namespace [FieldValueInvalid] Invalid value: "other": does not match event.namespace
            "#]]),
            ("v1", "Node", "metadata: {name: n}\nspec: {podCIDR: nonsense, taints: [{key: k}]}", expect![[r#"
                spec.podCIDRs[0] [FieldValueInvalid] Invalid value: "nonsense": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)
                spec.taints[0].effect [FieldValueRequired] Required value
            "#]]),
            ("discovery.k8s.io/v1", "EndpointSlice", "metadata: {name: s, namespace: d}\nendpoints: [{addresses: []}]", expect![[r#"
                addressType [FieldValueRequired] Required value
                endpoints[0].addresses [FieldValueRequired] Required value: must contain at least 1 address
            "#]]),
            ("networking.k8s.io/v1", "Ingress", "metadata: {name: i, namespace: d}\nspec: {rules: [{host: Web.Example, http: {paths: [{path: api, backend: {service: {name: s, port: {number: 80}}}}]}}]}", expect![[r#"
                spec.rules[0].host [FieldValueInvalid] Invalid value: "Web.Example": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')
                spec.rules[0].http.paths[0].pathType [FieldValueRequired] Required value: pathType must be specified
                spec.rules[0].http.paths[0].path [FieldValueInvalid] Invalid value: "api": must be an absolute path
            "#]]),
        ];
        for (api_version, kind, manifest, expected) in cases {
            check(create(api_version, kind, manifest), expected);
        }
    }

    #[test]
    fn quantities_compare() {
        assert_eq!(parse_quantity(&json!("1Gi")), Some(1073741824.0));
        assert_eq!(parse_quantity(&json!("500m")), Some(0.5));
        assert_eq!(parse_quantity(&json!("1e3")), Some(1000.0));
        assert_eq!(parse_quantity(&json!(2)), Some(2.0));
        assert_eq!(parse_quantity(&json!("1Zi")), None);
    }
}
