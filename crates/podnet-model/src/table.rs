//! kubectl Tables (meta.k8s.io/v1) with upstream columns and cells.
//!
//! Columns and cells follow upstream's server-side printers
//! (`pkg/printers/internalversion/printers.go`), which always produce the
//! wide columns (priority 1) so that `kubectl get -o wide` needs no second
//! request. Ages use upstream's `HumanDuration`.

use crate::registry::ResourceInfo;
use crate::selector::LabelSelector;
use serde_json::{json, Value};

/// What `rows[].object` carries (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// PartialObjectMetadata (the default for kubectl: labels for --show-labels).
    #[default]
    Metadata,
    Object,
}

/// Render objects as a Table. `now` is used for the Age column.
/// `with_column_definitions` is false for all but the first event of a watch.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    now: jiff::Timestamp,
    include: IncludeObject,
    with_column_definitions: bool,
) -> Value {
    let printer = printer_for(info);
    let column_definitions: Vec<Value> = if with_column_definitions {
        printer
            .columns
            .iter()
            .map(|column| {
                json!({
                    "name": column.name,
                    "type": column.kind,
                    "format": if column.name == "Name" { "name" } else { "" },
                    "description": column.description,
                    "priority": column.priority,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = (printer.cells)(object, now);
            let mut row = json!({"cells": cells});
            if let Some(conditions) = row_conditions(info, object) {
                row["conditions"] = conditions;
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    });
                }
                IncludeObject::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// One row of [`table`] for an object the caller no longer needs: its
/// metadata (or the whole object) moves into the row instead of being
/// copied. Large lists are rendered row by row with it.
pub fn row(
    info: &ResourceInfo,
    mut object: Value,
    now: jiff::Timestamp,
    include: IncludeObject,
) -> Value {
    let printer = printer_for(info);
    let cells = (printer.cells)(&object, now);
    let mut row = json!({"cells": cells});
    if let Some(conditions) = row_conditions(info, &object) {
        row["conditions"] = conditions;
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            let metadata = object
                .get_mut("metadata")
                .map(Value::take)
                .unwrap_or_else(|| json!({}));
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            });
        }
        IncludeObject::Object => row["object"] = object,
    }
    row
}

/// Upstream's `duration.HumanDuration`: at most two units, coarser with age.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rest}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rest}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rest = hours % 24;
        return if rest == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{rest}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let rest = (hours / 24) % 365;
        return if rest == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{rest}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Upstream's `translateTimestampSince`: "<unknown>" for an absent time.
fn age_since(timestamp: Option<&Value>, now: jiff::Timestamp) -> String {
    let Some(parsed) = timestamp
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
    else {
        return "<unknown>".to_string();
    };
    human_duration(now.as_second() - parsed.as_second())
}

fn age(object: &Value, now: jiff::Timestamp) -> Value {
    Value::String(age_since(
        object.pointer("/metadata/creationTimestamp"),
        now,
    ))
}

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
}

const fn column(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        priority: 0,
        description,
    }
}

const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column {
        name,
        kind,
        priority: 1,
        description,
    }
}

const NAME: Column = column(
    "Name",
    "string",
    "Name must be unique within a namespace. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
);
const AGE: Column = column(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

type CellFunction = fn(&Value, jiff::Timestamp) -> Vec<Value>;

struct Printer {
    columns: &'static [Column],
    cells: CellFunction,
}

fn printer_for(info: &ResourceInfo) -> Printer {
    let (columns, cells): (&'static [Column], CellFunction) = match (info.group, info.kind) {
        ("", "Pod") => (POD_COLUMNS, pod_cells),
        ("", "Service") => (SERVICE_COLUMNS, service_cells),
        ("apps", "Deployment") => (DEPLOYMENT_COLUMNS, deployment_cells),
        ("apps", "ReplicaSet") => (REPLICA_SET_COLUMNS, replica_set_cells),
        ("apps", "DaemonSet") => (DAEMON_SET_COLUMNS, daemon_set_cells),
        ("apps", "StatefulSet") => (STATEFUL_SET_COLUMNS, stateful_set_cells),
        ("", "Endpoints") => (ENDPOINTS_COLUMNS, endpoints_cells),
        ("discovery.k8s.io", "EndpointSlice") => (ENDPOINT_SLICE_COLUMNS, endpoint_slice_cells),
        ("", "Node") => (NODE_COLUMNS, node_cells),
        ("", "Namespace") => (NAMESPACE_COLUMNS, namespace_cells),
        ("", "ConfigMap") => (CONFIG_MAP_COLUMNS, config_map_cells),
        ("", "Secret") => (SECRET_COLUMNS, secret_cells),
        ("", "ServiceAccount") => (SERVICE_ACCOUNT_COLUMNS, service_account_cells),
        ("", "Event") => (EVENT_COLUMNS, event_cells),
        ("", "PersistentVolume") => (PERSISTENT_VOLUME_COLUMNS, persistent_volume_cells),
        ("", "PersistentVolumeClaim") => (
            PERSISTENT_VOLUME_CLAIM_COLUMNS,
            persistent_volume_claim_cells,
        ),
        ("storage.k8s.io", "StorageClass") => (STORAGE_CLASS_COLUMNS, storage_class_cells),
        ("networking.k8s.io", "NetworkPolicy") => (NETWORK_POLICY_COLUMNS, network_policy_cells),
        ("networking.k8s.io", "Ingress") => (INGRESS_COLUMNS, ingress_cells),
        ("networking.k8s.io", "IngressClass") => (INGRESS_CLASS_COLUMNS, ingress_class_cells),
        ("coordination.k8s.io", "Lease") => (LEASE_COLUMNS, lease_cells),
        _ => (DEFAULT_COLUMNS, default_cells),
    };
    Printer { columns, cells }
}

/// Upstream marks finished pods so clients can tell them apart.
fn row_conditions(info: &ResourceInfo, object: &Value) -> Option<Value> {
    if !info.group.is_empty() || info.kind != "Pod" {
        return None;
    }
    match text(object, "/status/phase") {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "", "message": "The pod failed."}]),
        ),
        _ => None,
    }
}

fn text<'v>(object: &'v Value, pointer: &str) -> &'v str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn integer(object: &Value, pointer: &str) -> i64 {
    object
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

fn list<'v>(object: &'v Value, pointer: &str) -> &'v [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn name(object: &Value) -> Value {
    Value::String(text(object, "/metadata/name").to_string())
}

fn or_none(value: String) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value
    }
}

/// Upstream's `labels.FormatLabels`: `k=v,k2=v2` sorted by key, or `<none>`.
fn format_labels(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    or_none(pairs.join(","))
}

/// Upstream's `metav1.FormatLabelSelector`.
fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return "<none>".to_string();
    };
    match LabelSelector::from_object(selector) {
        Ok(parsed) => or_none(parsed.to_string()),
        Err(_) => "<error>".to_string(),
    }
}

const POD_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    column("Status", "string", "The aggregate status of the containers in this pod."),
    column("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", "string", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName is a request to schedule this pod onto a specific node."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness."),
];

fn is_restartable_init_container(pod: &Value, container_name: &str) -> bool {
    list(pod, "/spec/initContainers").iter().any(|container| {
        container.get("name").and_then(Value::as_str) == Some(container_name)
            && container.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    })
}

fn condition_is_true(object: &Value, condition_type: &str) -> bool {
    list(object, "/status/conditions").iter().any(|condition| {
        condition.get("type").and_then(Value::as_str) == Some(condition_type)
            && condition.get("status").and_then(Value::as_str) == Some("True")
    })
}

fn last_termination_time(status: &Value) -> Option<jiff::Timestamp> {
    status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
}

fn pod_cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let init_containers = list(pod, "/spec/initContainers");
    let mut total_containers = list(pod, "/spec/containers").len();
    total_containers += init_containers
        .iter()
        .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
        .count();
    let mut ready_containers = 0;
    let mut restarts = 0;
    let mut restartable_init_restarts = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_restartable_init_restart: Option<jiff::Timestamp> = None;
    let phase = text(pod, "/status/phase");
    let mut reason = phase.to_string();
    if !text(pod, "/status/reason").is_empty() {
        reason = text(pod, "/status/reason").to_string();
    }
    for condition in list(pod, "/status/conditions") {
        if condition.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && condition.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
        {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut initializing = false;
    for (index, status) in list(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let container_name = text(status, "/name");
        let restartable = is_restartable_init_container(pod, container_name);
        let count = integer(status, "/restartCount");
        restarts += count;
        let terminated_at = last_termination_time(status);
        if terminated_at > last_restart {
            last_restart = terminated_at;
        }
        if restartable {
            restartable_init_restarts += count;
            if terminated_at > last_restartable_init_restart {
                last_restartable_init_restart = terminated_at;
            }
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some() && integer(status, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if restartable && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready_containers += 1;
            }
            continue;
        }
        if terminated.is_some() {
            let terminated_reason = text(status, "/state/terminated/reason");
            reason = if !terminated_reason.is_empty() {
                format!("Init:{terminated_reason}")
            } else if integer(status, "/state/terminated/signal") != 0 {
                format!(
                    "Init:Signal:{}",
                    integer(status, "/state/terminated/signal")
                )
            } else {
                format!(
                    "Init:ExitCode:{}",
                    integer(status, "/state/terminated/exitCode")
                )
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{index}/{}", init_containers.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(pod, "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for status in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += integer(status, "/restartCount");
            let terminated_at = last_termination_time(status);
            if terminated_at > last_restart {
                last_restart = terminated_at;
            }
            let waiting_reason = text(status, "/state/waiting/reason");
            let terminated_reason = text(status, "/state/terminated/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if !terminated_reason.is_empty() {
                reason = terminated_reason.to_string();
            } else if status.pointer("/state/terminated").is_some() {
                reason = if integer(status, "/state/terminated/signal") != 0 {
                    format!("Signal:{}", integer(status, "/state/terminated/signal"))
                } else {
                    format!("ExitCode:{}", integer(status, "/state/terminated/exitCode"))
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
                ready_containers += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_is_true(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(at) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.as_second() - at.as_second())
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = list(pod, "/status/podIPs")
        .first()
        .map(|ip| text(ip, "/ip").to_string())
        .unwrap_or_else(|| text(pod, "/status/podIP").to_string());
    let readiness_gates = list(pod, "/spec/readinessGates");
    let readiness_gates_cell = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = readiness_gates
            .iter()
            .filter(|gate| {
                let condition_type = text(gate, "/conditionType");
                list(pod, "/status/conditions")
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(condition_type))
                    .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
            })
            .count();
        format!("{true_conditions}/{}", readiness_gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready_containers}/{total_containers}")),
        json!(reason),
        json!(restarts_cell),
        age(pod, now),
        json!(or_none(pod_ip)),
        json!(or_none(text(pod, "/spec/nodeName").to_string())),
        json!(or_none(text(pod, "/status/nominatedNodeName").to_string())),
        json!(readiness_gates_cell),
    ]
}

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    column("Type", "string", "type determines how the Service is exposed."),
    column("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    column("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    column("Port(s)", "string", "The list of ports that are exposed by this service."),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector."),
];

/// Ingress points of a load balancer status: IPs or hostnames.
fn load_balancer_addresses(object: &Value) -> Vec<String> {
    list(object, "/status/loadBalancer/ingress")
        .iter()
        .filter_map(|ingress| {
            let ip = text(ingress, "/ip");
            let hostname = text(ingress, "/hostname");
            if !ip.is_empty() {
                Some(ip.to_string())
            } else if !hostname.is_empty() {
                Some(hostname.to_string())
            } else {
                None
            }
        })
        .collect()
}

fn service_external_ip(service: &Value) -> String {
    let external_ips: Vec<String> = list(service, "/spec/externalIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    match text(service, "/spec/type") {
        "ClusterIP" | "NodePort" | "" => or_none(external_ips.join(",")),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(service);
            addresses.extend(external_ips);
            if addresses.is_empty() {
                "<pending>".to_string()
            } else {
                addresses.join(",")
            }
        }
        "ExternalName" => text(service, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service_cells(service: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let cluster_ip = list(service, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .or_else(|| service.pointer("/spec/clusterIP").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_string();
    let ports: Vec<String> = list(service, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = port
                .get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP");
            let node_port = integer(port, "/nodePort");
            if node_port > 0 {
                format!("{}:{node_port}/{protocol}", integer(port, "/port"))
            } else {
                format!("{}/{protocol}", integer(port, "/port"))
            }
        })
        .collect();
    vec![
        name(service),
        json!(text(service, "/spec/type")),
        json!(cluster_ip),
        json!(service_external_ip(service)),
        json!(or_none(ports.join(","))),
        age(service, now),
        json!(format_labels(service.pointer("/spec/selector"))),
    ]
}

fn template_containers_and_images(object: &Value) -> (String, String) {
    let containers = list(object, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = wide("Selector", "string", "Label selector for pods.");

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    column("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    column("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn desired_replicas(object: &Value) -> i64 {
    object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn deployment_cells(deployment: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = template_containers_and_images(deployment);
    vec![
        name(deployment),
        json!(format!(
            "{}/{}",
            integer(deployment, "/status/readyReplicas"),
            desired_replicas(deployment)
        )),
        json!(integer(deployment, "/status/updatedReplicas")),
        json!(integer(deployment, "/status/availableReplicas")),
        age(deployment, now),
        json!(containers),
        json!(images),
        json!(format_label_selector(deployment.pointer("/spec/selector"))),
    ]
}

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "Number of desired pods."),
    column(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    column(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn replica_set_cells(replica_set: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = template_containers_and_images(replica_set);
    vec![
        name(replica_set),
        json!(desired_replicas(replica_set)),
        json!(integer(replica_set, "/status/replicas")),
        json!(integer(replica_set, "/status/readyReplicas")),
        age(replica_set, now),
        json!(containers),
        json!(images),
        json!(format_label_selector(replica_set.pointer("/spec/selector"))),
    ]
}

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
    column("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
    column("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    column("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    column("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available."),
    column("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

fn daemon_set_cells(daemon_set: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = template_containers_and_images(daemon_set);
    vec![
        name(daemon_set),
        json!(integer(daemon_set, "/status/desiredNumberScheduled")),
        json!(integer(daemon_set, "/status/currentNumberScheduled")),
        json!(integer(daemon_set, "/status/numberReady")),
        json!(integer(daemon_set, "/status/updatedNumberScheduled")),
        json!(integer(daemon_set, "/status/numberAvailable")),
        json!(format_labels(
            daemon_set.pointer("/spec/template/spec/nodeSelector")
        )),
        age(daemon_set, now),
        json!(containers),
        json!(images),
        json!(format_label_selector(daemon_set.pointer("/spec/selector"))),
    ]
}

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

fn stateful_set_cells(stateful_set: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (containers, images) = template_containers_and_images(stateful_set);
    vec![
        name(stateful_set),
        json!(format!(
            "{}/{}",
            integer(stateful_set, "/status/readyReplicas"),
            desired_replicas(stateful_set)
        )),
        age(stateful_set, now),
        json!(containers),
        json!(images),
    ]
}

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Endpoints",
        "string",
        "Endpoints is the list of endpoints of the service.",
    ),
    AGE,
];

/// Upstream joins at most three entries and counts the rest.
fn list_with_more(entries: &[String], total: usize, empty: &str) -> String {
    const MAX: usize = 3;
    let shown = entries
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if total > MAX {
        format!("{shown} + {} more...", total - MAX)
    } else if shown.is_empty() {
        empty.to_string()
    } else {
        shown
    }
}

fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn endpoints_cells(endpoints: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let subsets = list(endpoints, "/subsets");
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut entries = Vec::new();
        for subset in subsets {
            let addresses = list(subset, "/addresses");
            let ports = list(subset, "/ports");
            if ports.is_empty() {
                entries.extend(addresses.iter().map(|a| text(a, "/ip").to_string()));
            } else {
                for port in ports {
                    entries.extend(
                        addresses
                            .iter()
                            .map(|a| join_host_port(text(a, "/ip"), integer(port, "/port"))),
                    );
                }
            }
        }
        list_with_more(&entries, entries.len(), "")
    };
    vec![name(endpoints), json!(cell), age(endpoints, now)]
}

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    column(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    column(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    column(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

fn endpoint_slice_cells(slice: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ports: Vec<String> = list(slice, "/ports")
        .iter()
        .map(|port| match port.get("port").and_then(Value::as_i64) {
            Some(number) => number.to_string(),
            None => port
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        })
        .collect();
    let addresses: Vec<String> = list(slice, "/endpoints")
        .iter()
        .flat_map(|endpoint| list(endpoint, "/addresses").iter())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    vec![
        name(slice),
        json!(text(slice, "/addressType")),
        json!(list_with_more(&ports, ports.len(), "<unset>")),
        json!(list_with_more(&addresses, addresses.len(), "<unset>")),
        age(slice, now),
    ]
}

const NODE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The status of the node"),
    column("Roles", "string", "The roles of the node"),
    AGE,
    column("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
    wide("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

fn node_address(node: &Value, address_type: &str) -> String {
    list(node, "/status/addresses")
        .iter()
        .find(|a| text(a, "/type") == address_type)
        .map(|a| text(a, "/address").to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

fn node_cells(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let mut status = Vec::new();
    if let Some(ready) = list(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| text(c, "/type") == "Ready")
    {
        status.push(if text(ready, "/status") == "True" {
            "Ready"
        } else {
            "NotReady"
        });
    }
    if status.is_empty() {
        status.push("Unknown");
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| {
                    if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                        (!role.is_empty()).then(|| role.to_string())
                    } else if key == "kubernetes.io/role" {
                        value.as_str().filter(|v| !v.is_empty()).map(str::to_string)
                    } else {
                        None
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    let unknown_if_empty = |value: &str| {
        if value.is_empty() {
            "<unknown>".to_string()
        } else {
            value.to_string()
        }
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(or_none(roles.join(","))),
        age(node, now),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(node_address(node, "InternalIP")),
        json!(node_address(node, "ExternalIP")),
        json!(unknown_if_empty(text(node, "/status/nodeInfo/osImage"))),
        json!(unknown_if_empty(text(
            node,
            "/status/nodeInfo/kernelVersion"
        ))),
        json!(unknown_if_empty(text(
            node,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "The status of the namespace"),
    AGE,
];

fn namespace_cells(namespace: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(namespace),
        json!(text(namespace, "/status/phase")),
        age(namespace, now),
    ]
}

fn map_len(object: &Value, pointer: &str) -> i64 {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| m.len() as i64)
        .unwrap_or_default()
}

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    column("Data", "integer", "Data contains the configuration data."),
    AGE,
];

fn config_map_cells(config_map: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(config_map),
        json!(map_len(config_map, "/data") + map_len(config_map, "/binaryData")),
        age(config_map, now),
    ]
}

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    column("Data", "integer", "Data contains the secret data."),
    AGE,
];

fn secret_cells(secret: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(secret),
        json!(text(secret, "/type")),
        json!(map_len(secret, "/data")),
        age(secret, now),
    ]
}

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    column("Secrets", "integer", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];

fn service_account_cells(account: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(account),
        json!(list(account, "/secrets").len()),
        age(account, now),
    ]
}

const EVENT_COLUMNS: &[Column] = &[
    column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    column("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    column("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    column("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Column {
        name: "Name",
        kind: "string",
        priority: 1,
        description: "Name must be unique within a namespace.",
    },
];

fn event_cells(event: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let first_timestamp = match event.pointer("/firstTimestamp").filter(|v| !v.is_null()) {
        Some(first) => age_since(Some(first), now),
        None => age_since(event.pointer("/eventTime"), now),
    };
    let mut last_timestamp = match event.pointer("/lastTimestamp").filter(|v| !v.is_null()) {
        Some(last) => age_since(Some(last), now),
        None => first_timestamp.clone(),
    };
    let mut count = integer(event, "/count");
    if let Some(series) = event.get("series").filter(|s| !s.is_null()) {
        last_timestamp = age_since(series.get("lastObservedTime"), now);
        count = integer(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let involved_kind = text(event, "/involvedObject/kind").to_lowercase();
    let involved_name = text(event, "/involvedObject/name");
    let target = if involved_name.is_empty() {
        involved_kind
    } else {
        format!("{involved_kind}/{involved_name}")
    };
    let first_non_empty = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            a.to_string()
        }
    };
    let component = first_non_empty(
        text(event, "/source/component"),
        text(event, "/reportingComponent"),
    );
    let instance = first_non_empty(
        text(event, "/source/host"),
        text(event, "/reportingInstance"),
    );
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_timestamp),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(target),
        json!(text(event, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(event, "/message").trim()),
        json!(first_timestamp),
        json!(count),
        name(event),
    ]
}

/// Upstream's `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order.
fn access_modes(object: &Value, pointer: &str) -> String {
    let modes: Vec<&str> = list(object, pointer)
        .iter()
        .filter_map(Value::as_str)
        .collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

fn storage_class_of(object: &Value) -> String {
    object
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| text(object, "/spec/storageClassName"))
        .to_string()
}

fn unset_if_empty(value: &str) -> String {
    if value.is_empty() {
        "<unset>".to_string()
    } else {
        value.to_string()
    }
}

fn quantity(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "0".to_string(),
    }
}

const PERSISTENT_VOLUME_COLUMNS: &[Column] = &[
    NAME,
    column("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    column("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    column("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    column("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    column("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    column("StorageClass", "string", "storageClassName is the name of StorageClass to which this persistent volume belongs."),
    column("VolumeAttributesClass", "string", "Name of VolumeAttributesClass to which this persistent volume belongs."),
    column("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

fn persistent_volume_cells(volume: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let claim = match volume.pointer("/spec/claimRef").filter(|c| !c.is_null()) {
        Some(claim) => format!("{}/{}", text(claim, "/namespace"), text(claim, "/name")),
        None => String::new(),
    };
    let phase = if volume.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        text(volume, "/status/phase")
    };
    vec![
        name(volume),
        json!(quantity(volume, "/spec/capacity/storage")),
        json!(access_modes(volume, "/spec/accessModes")),
        json!(text(volume, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(storage_class_of(volume)),
        json!(unset_if_empty(text(
            volume,
            "/spec/volumeAttributesClassName"
        ))),
        json!(text(volume, "/status/reason")),
        age(volume, now),
        json!(unset_if_empty(text(volume, "/spec/volumeMode"))),
    ]
}

const PERSISTENT_VOLUME_CLAIM_COLUMNS: &[Column] = &[
    NAME,
    column("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
    column("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
    column("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
    column("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has."),
    column("StorageClass", "string", "storageClassName is the name of the StorageClass required by the claim."),
    column("VolumeAttributesClass", "string", "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim."),
];

fn persistent_volume_claim_cells(claim: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let phase = if claim.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        text(claim, "/status/phase")
    };
    let volume_name = text(claim, "/spec/volumeName");
    let (capacity, modes) = if volume_name.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(claim, "/status/capacity/storage"),
            access_modes(claim, "/status/accessModes"),
        )
    };
    vec![
        name(claim),
        json!(phase),
        json!(volume_name),
        json!(capacity),
        json!(modes),
        json!(storage_class_of(claim)),
        json!(unset_if_empty(text(
            claim,
            "/spec/volumeAttributesClassName"
        ))),
        age(claim, now),
        json!(unset_if_empty(text(claim, "/spec/volumeMode"))),
    ]
}

const STORAGE_CLASS_COLUMNS: &[Column] = &[
    NAME,
    column("Provisioner", "string", "provisioner indicates the type of the provisioner."),
    column("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
    column("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
    column("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
    AGE,
];

fn storage_class_cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io~1is-default-class",
        "storageclass.beta.kubernetes.io~1is-default-class",
    ]
    .iter()
    .any(|key| text(class, &format!("/metadata/annotations/{key}")) == "true");
    let class_name = text(class, "/metadata/name");
    let display_name = if is_default {
        format!("{class_name} (default)")
    } else {
        class_name.to_string()
    };
    let or_default = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    vec![
        json!(display_name),
        json!(text(class, "/provisioner")),
        json!(or_default(text(class, "/reclaimPolicy"), "Delete")),
        json!(or_default(text(class, "/volumeBindingMode"), "Immediate")),
        json!(class
            .get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string()),
        age(class, now),
    ]
}

const NETWORK_POLICY_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

fn network_policy_cells(policy: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(policy),
        json!(format_label_selector(policy.pointer("/spec/podSelector"))),
        age(policy, now),
    ]
}

const INGRESS_COLUMNS: &[Column] = &[
    NAME,
    column("Class", "string", "The name of the IngressClass resource"),
    column(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    column(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    column("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

fn ingress_cells(ingress: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let rules = list(ingress, "/spec/rules");
    let hosts: Vec<String> = rules
        .iter()
        .take(3)
        .map(|rule| text(rule, "/host").to_string())
        .filter(|host| !host.is_empty())
        .collect();
    let hosts_cell = if hosts.is_empty() {
        "*".to_string()
    } else if rules.len() > 3 {
        format!("{} + {} more...", hosts.join(","), rules.len() - 3)
    } else {
        hosts.join(",")
    };
    let class = ingress
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let ports = if list(ingress, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ingress),
        json!(class),
        json!(hosts_cell),
        json!(load_balancer_addresses(ingress).join(",")),
        json!(ports),
        age(ingress, now),
    ]
}

const INGRESS_CLASS_COLUMNS: &[Column] = &[
    NAME,
    column(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    column(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

fn ingress_class_cells(class: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let parameters = match class.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        None => "<none>".to_string(),
        Some(parameters) => {
            let group = text(parameters, "/apiGroup");
            let kind = text(parameters, "/kind");
            let parameters_name = text(parameters, "/name");
            if group.is_empty() {
                format!("{kind}/{parameters_name}")
            } else {
                format!("{group}/{kind}/{parameters_name}")
            }
        }
    };
    vec![
        name(class),
        json!(text(class, "/spec/controller")),
        json!(parameters),
        age(class, now),
    ]
}

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    column("Holder", "string", "The holder of the lease."),
    AGE,
];

fn lease_cells(lease: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name(lease),
        json!(text(lease, "/spec/holderIdentity")),
        age(lease, now),
    ]
}

const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

fn default_cells(object: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![name(object), age(object, now)]
}

#[cfg(test)]
mod row_tests {
    use super::*;

    #[test]
    fn a_row_is_the_row_of_a_one_object_table() {
        let pods = crate::registry::find("", "v1", "pods").unwrap();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.244.0.5"},
        });
        let now = jiff::Timestamp::from_second(1_735_689_700).unwrap();
        for include in [
            IncludeObject::None,
            IncludeObject::Metadata,
            IncludeObject::Object,
        ] {
            let whole = table(pods, std::slice::from_ref(&pod), now, include, false);
            assert_eq!(row(pods, pod.clone(), now, include), whole["rows"][0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn info(group: &'static str, kind: &'static str) -> ResourceInfo {
        ResourceInfo {
            group,
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

    fn now() -> jiff::Timestamp {
        "2025-01-10T12:00:00Z".parse().unwrap()
    }

    /// Render as `kubectl get -o wide` would: header line, then cells.
    fn check(group: &'static str, kind: &'static str, objects: Value, expected: Expect) {
        let objects = objects.as_array().unwrap().clone();
        let rendered = table(
            &info(group, kind),
            &objects,
            now(),
            IncludeObject::None,
            true,
        );
        let mut lines = Vec::new();
        let header: Vec<String> = rendered["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let priority = if c["priority"] == 1 { "*" } else { "" };
                format!("{}{priority}", c["name"].as_str().unwrap())
            })
            .collect();
        lines.push(header.join(" | "));
        for row in rendered["rows"].as_array().unwrap() {
            let cells: Vec<String> = row["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            lines.push(cells.join(" | "));
        }
        expected.assert_eq(&lines.join("\n"));
    }

    #[test]
    fn human_durations() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (182, "3m2s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (7 * 3600, "7h"),
            (20 * 3600, "20h"),
            (51 * 3600, "2d3h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400 + 4 * 86400, "3y4d"),
            (4 * 365 * 86400, "4y"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn pods() {
        check(
            "",
            "Pod",
            json!([
                {"metadata": {"name": "web", "creationTimestamp": "2025-01-10T11:55:00Z"},
                 "spec": {"nodeName": "node1", "containers": [{"name": "a"}, {"name": "b"}]},
                 "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.4"}],
                   "containerStatuses": [
                     {"name": "a", "ready": true, "restartCount": 3, "state": {"running": {}},
                      "lastState": {"terminated": {"finishedAt": "2025-01-10T11:55:00Z"}}},
                     {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                   ]}},
                {"metadata": {"name": "init", "creationTimestamp": "2025-01-10T11:59:58Z"},
                 "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}],
                          "readinessGates": [{"conditionType": "x/ready"}]},
                 "status": {"phase": "Pending",
                   "initContainerStatuses": [
                     {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                     {"name": "i2", "state": {"running": {}}}
                   ]}},
                {"metadata": {"name": "gone", "creationTimestamp": "2025-01-08T09:00:00Z",
                              "deletionTimestamp": "2025-01-10T12:00:00Z"},
                 "spec": {"containers": [{"name": "a"}]},
                 "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}},
                {"metadata": {"name": "done", "creationTimestamp": "2025-01-10T10:00:00Z"},
                 "spec": {"containers": [{"name": "a"}]},
                 "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}}
            ]),
            expect![[r#"
                Name | Ready | Status | Restarts | Age | IP* | Node* | Nominated Node* | Readiness Gates*
                web | 1/2 | CrashLoopBackOff | 3 (5m ago) | 5m | 10.244.1.4 | node1 | <none> | <none>
                init | 0/1 | Init:1/2 | 0 | 2s | <none> | <none> | <none> | 0/1
                gone | 1/1 | Terminating | 0 | 2d3h | <none> | <none> | <none> | <none>
                done | 0/1 | Completed | 0 | 120m | <none> | <none> | <none> | <none>"#]],
        );
    }

    #[test]
    fn services() {
        check(
            "",
            "Service",
            json!([
                {"metadata": {"name": "web", "creationTimestamp": "2025-01-10T11:00:00Z"},
                 "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                          "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                          "selector": {"app": "web", "tier": "fe"}}},
                {"metadata": {"name": "lb", "creationTimestamp": "2025-01-10T11:00:00Z"},
                 "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.21"], "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}},
                {"metadata": {"name": "ext"},
                 "spec": {"type": "ExternalName", "externalName": "example.com"}}
            ]),
            expect![[r#"
                Name | Type | Cluster-IP | External-IP | Port(s) | Age | Selector*
                web | NodePort | 10.96.0.20 | <none> | 80:30080/TCP,53/UDP | 60m | app=web,tier=fe
                lb | LoadBalancer | 10.96.0.21 | <pending> | 443:31443/TCP | 60m | <none>
                ext | ExternalName | <none> | example.com | <none> | <unknown> | <none>"#]],
        );
    }

    #[test]
    fn workloads() {
        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}});
        check(
            "apps",
            "Deployment",
            json!([{"metadata": {"name": "web", "creationTimestamp": "2025-01-10T11:59:00Z"},
                    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
                    "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}]),
            expect![[r#"
                Name | Ready | Up-to-date | Available | Age | Containers* | Images* | Selector*
                web | 2/3 | 3 | 2 | 60s | web,log | nginx,busybox | app=web"#]],
        );
        check(
            "apps",
            "ReplicaSet",
            json!([{"metadata": {"name": "web-5d4"}, "spec": {"replicas": 2, "template": template,
                    "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}},
                    "status": {"replicas": 2, "readyReplicas": 1}}]),
            expect![[r#"
                Name | Desired | Current | Ready | Age | Containers* | Images* | Selector*
                web-5d4 | 2 | 2 | 1 | <unknown> | web,log | nginx,busybox | app=web,env in (a,b)"#]],
        );
        check(
            "apps",
            "DaemonSet",
            json!([{"metadata": {"name": "agent"}, "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": []}},
                    "selector": {"matchLabels": {"app": "agent"}}},
                    "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}}]),
            expect![[r#"
                Name | Desired | Current | Ready | Up-to-date | Available | Node Selector | Age | Containers* | Images* | Selector*
                agent | 2 | 2 | 1 | 2 | 1 | os=linux | <unknown> |  |  | app=agent"#]],
        );
        check(
            "apps",
            "StatefulSet",
            json!([{"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 3}}]),
            expect![[r#"
                Name | Ready | Age | Containers* | Images*
                db | 3/3 | <unknown> | web,log | nginx,busybox"#]],
        );
    }

    #[test]
    fn endpoints_and_slices() {
        check(
            "",
            "Endpoints",
            json!([
                {"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.3"}, {"ip": "10.244.2.4"}, {"ip": "10.244.3.5"}], "ports": [{"port": 80}]}]},
                {"metadata": {"name": "empty"}}
            ]),
            expect![[r#"
                Name | Endpoints | Age
                web | 10.244.1.2:80,10.244.2.3:80,10.244.2.4:80 + 1 more... | <unknown>
                empty | <none> | <unknown>"#]],
        );
        check(
            "discovery.k8s.io",
            "EndpointSlice",
            json!([{"metadata": {"name": "web-abc"}, "addressType": "IPv4", "ports": [{"port": 80, "name": "http"}],
                    "endpoints": [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.2.3"]}]},
                   {"metadata": {"name": "none"}, "addressType": "IPv4"}]),
            expect![[r#"
                Name | AddressType | Ports | Endpoints | Age
                web-abc | IPv4 | 80 | 10.244.1.2,10.244.2.3 | <unknown>
                none | IPv4 | <unset> | <unset> | <unknown>"#]],
        );
    }

    #[test]
    fn nodes() {
        check(
            "",
            "Node",
            json!([
                {"metadata": {"name": "node1", "creationTimestamp": "2025-01-09T12:00:00Z",
                              "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
                 "status": {"conditions": [{"type": "Ready", "status": "True"}],
                            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "node1"}],
                            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12", "kernelVersion": "6.1.0", "containerRuntimeVersion": "podnet://0.1.0"}}},
                {"metadata": {"name": "node2"}, "spec": {"unschedulable": true},
                 "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
                {"metadata": {"name": "node3"}}
            ]),
            expect![[r#"
                Name | Status | Roles | Age | Version | Internal-IP* | External-IP* | OS-Image* | Kernel-Version* | Container-Runtime*
                node1 | Ready | control-plane,worker | 24h | v1.33.0 | 172.18.0.2 | <none> | Debian GNU/Linux 12 | 6.1.0 | podnet://0.1.0
                node2 | NotReady,SchedulingDisabled | <none> | <unknown> |  | <none> | <none> | <unknown> | <unknown> | <unknown>
                node3 | Unknown | <none> | <unknown> |  | <none> | <none> | <unknown> | <unknown> | <unknown>"#]],
        );
    }

    #[test]
    fn config_and_accounts() {
        check(
            "",
            "Namespace",
            json!([{"metadata": {"name": "default"}, "status": {"phase": "Active"}}]),
            expect![[r#"
                Name | Status | Age
                default | Active | <unknown>"#]],
        );
        check(
            "",
            "ConfigMap",
            json!([{"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}]),
            expect![[r#"
                Name | Data | Age
                cfg | 3 | <unknown>"#]],
        );
        check(
            "",
            "Secret",
            json!([{"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}]),
            expect![[r#"
                Name | Type | Data | Age
                tls | kubernetes.io/tls | 2 | <unknown>"#]],
        );
        check(
            "",
            "ServiceAccount",
            json!([{"metadata": {"name": "default"}}]),
            expect![[r#"
                Name | Secrets | Age
                default | 0 | <unknown>"#]],
        );
    }

    #[test]
    fn events() {
        check(
            "",
            "Event",
            json!([
                {"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scheduled",
                 "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{a}"},
                 "source": {"component": "default-scheduler"}, "message": "Successfully assigned default/web to node1 ",
                 "firstTimestamp": "2025-01-10T11:50:00Z", "lastTimestamp": "2025-01-10T11:59:30Z", "count": 4},
                {"metadata": {"name": "new.2"}, "type": "Warning", "reason": "BackOff",
                 "involvedObject": {"kind": "Node"}, "reportingComponent": "kubelet", "reportingInstance": "node1",
                 "eventTime": "2025-01-10T11:59:00.000000Z", "message": "x"}
            ]),
            expect![[r#"
                Last Seen | Type | Reason | Object | Subobject* | Source* | Message | First Seen* | Count* | Name*
                30s | Normal | Scheduled | pod/web | spec.containers{a} | default-scheduler | Successfully assigned default/web to node1 | 10m | 4 | web.1
                60s | Warning | BackOff | node |  | kubelet, node1 | x | 60s | 1 | new.2"#]],
        );
    }

    #[test]
    fn storage() {
        check(
            "",
            "PersistentVolume",
            json!([{"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "standard", "volumeMode": "Filesystem",
                    "claimRef": {"namespace": "default", "name": "data"}}, "status": {"phase": "Bound"}}]),
            expect![[r#"
                Name | Capacity | Access Modes | Reclaim Policy | Status | Claim | StorageClass | VolumeAttributesClass | Reason | Age | VolumeMode*
                pv1 | 1Gi | RWO,RWX | Delete | Bound | default/data | standard | <unset> |  | <unknown> | Filesystem"#]],
        );
        check(
            "",
            "PersistentVolumeClaim",
            json!([
                {"metadata": {"name": "data"}, "spec": {"volumeName": "pv1", "storageClassName": "standard", "volumeMode": "Filesystem"},
                 "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}},
                {"metadata": {"name": "waiting"}, "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}
            ]),
            expect![[r#"
                Name | Status | Volume | Capacity | Access Modes | StorageClass | VolumeAttributesClass | Age | VolumeMode*
                data | Bound | pv1 | 1Gi | RWO | standard | <unset> | <unknown> | Filesystem
                waiting | Pending |  |  |  | standard | <unset> | <unknown> | <unset>"#]],
        );
        check(
            "storage.k8s.io",
            "StorageClass",
            json!([{"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": "podnet.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}]),
            expect![[r#"
                Name | Provisioner | ReclaimPolicy | VolumeBindingMode | AllowVolumeExpansion | Age
                standard (default) | podnet.io/local-path | Delete | WaitForFirstConsumer | false | <unknown>"#]],
        );
    }

    #[test]
    fn networking_and_others() {
        check(
            "networking.k8s.io",
            "NetworkPolicy",
            json!([{"metadata": {"name": "deny"}, "spec": {"podSelector": {}}},
                   {"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}}]),
            expect![[r#"
                Name | Pod-Selector | Age
                deny | <none> | <unknown>
                web | app=web | <unknown>"#]],
        );
        check(
            "networking.k8s.io",
            "Ingress",
            json!([{"metadata": {"name": "web"}, "spec": {"ingressClassName": "podnet", "rules": [{"host": "a.example"}, {"host": "b.example"}],
                    "tls": [{"hosts": ["a.example"]}]}, "status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.2"}]}}}]),
            expect![[r#"
                Name | Class | Hosts | Address | Ports | Age
                web | podnet | a.example,b.example | 172.18.0.2 | 80, 443 | <unknown>"#]],
        );
        check(
            "networking.k8s.io",
            "IngressClass",
            json!([{"metadata": {"name": "podnet"}, "spec": {"controller": "podnet.io/ingress"}}]),
            expect![[r#"
                Name | Controller | Parameters | Age
                podnet | podnet.io/ingress | <none> | <unknown>"#]],
        );
        check(
            "coordination.k8s.io",
            "Lease",
            json!([{"metadata": {"name": "node1"}, "spec": {"holderIdentity": "node1"}}]),
            expect![[r#"
                Name | Holder | Age
                node1 | node1 | <unknown>"#]],
        );
        check(
            "batch",
            "Job",
            json!([{"metadata": {"name": "j", "creationTimestamp": "2025-01-10T11:59:55Z"}}]),
            expect![[r#"
                Name | Age
                j | 5s"#]],
        );
    }

    #[test]
    fn row_objects_and_watch_tables() {
        let pods = info("", "Pod");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "x"}},
                         "spec": {"containers": []}, "status": {"phase": "Succeeded"}});
        let with_metadata = table(
            &pods,
            std::slice::from_ref(&pod),
            now(),
            IncludeObject::Metadata,
            false,
        );
        assert_eq!(with_metadata["columnDefinitions"], json!([]));
        assert_eq!(
            with_metadata["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "p", "labels": {"app": "x"}}})
        );
        assert_eq!(
            with_metadata["rows"][0]["conditions"][0]["type"],
            "Completed"
        );
        let with_object = table(
            &pods,
            std::slice::from_ref(&pod),
            now(),
            IncludeObject::Object,
            true,
        );
        assert_eq!(with_object["rows"][0]["object"], pod);
        assert_eq!(with_object["kind"], "Table");
        assert_eq!(with_object["columnDefinitions"][0]["format"], "name");
        let without = table(&pods, &[pod], now(), IncludeObject::None, true);
        assert!(without["rows"][0].get("object").is_none());
    }
}
