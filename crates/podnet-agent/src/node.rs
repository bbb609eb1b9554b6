//! Node registration and heartbeats: the Node object (addresses, capacity,
//! node info, agent endpoint, VTEP MAC), its Ready condition, and the Lease in
//! kube-node-lease renewed every few seconds.

use crate::AgentError;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;

/// Annotation carrying where the API server reaches this agent's streaming server.
pub const AGENT_ENDPOINT_ANNOTATION: &str = "podnet.io/agent-endpoint";
/// Annotation carrying the VXLAN VTEP MAC, flannel-compatible.
pub const FLANNEL_BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const FLANNEL_PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";

/// What the agent says about its node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub internal_ip: String,
    pub agent_endpoint: String,
    pub vtep_mac: String,
    pub max_pods: u32,
}

fn quantity(text: impl Into<String>) -> Quantity {
    Quantity(text.into())
}

fn host_facts() -> (String, String, u64, u64) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".to_string());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next().and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    (kernel, os_image, cpus, memory_kib)
}

/// The runc version string for the node info (`runc://1.1.5`), asked once
/// per agent process rather than on every heartbeat.
fn runtime_version() -> String {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(ask_runtime_version).clone()
}

fn ask_runtime_version() -> String {
    std::process::Command::new("runc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .and_then(|line| line.split_whitespace().nth(2).map(str::to_string))
        })
        .map(|version| format!("runc://{version}"))
        .unwrap_or_else(|| "runc://unknown".into())
}

/// The Node object's desired labels, annotations and status (pure apart from host facts).
pub fn desired_node(
    identity: &NodeIdentity,
    ready: bool,
    now: jiff::Timestamp,
    previous: Option<&Node>,
) -> Node {
    let (kernel, os_image, cpus, memory_kib) = host_facts();
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/hostname".to_string(), identity.name.clone());
    labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert(
        "kubernetes.io/arch".to_string(),
        std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64"),
    );
    labels.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    labels.insert(
        "beta.kubernetes.io/arch".to_string(),
        labels["kubernetes.io/arch"].clone(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        AGENT_ENDPOINT_ANNOTATION.to_string(),
        identity.agent_endpoint.clone(),
    );
    annotations.insert(
        FLANNEL_BACKEND_DATA.to_string(),
        format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", identity.vtep_mac),
    );
    annotations.insert(FLANNEL_PUBLIC_IP.to_string(), identity.internal_ip.clone());
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), quantity(cpus.to_string()));
    capacity.insert("memory".to_string(), quantity(format!("{memory_kib}Ki")));
    capacity.insert("pods".to_string(), quantity(identity.max_pods.to_string()));
    capacity.insert("ephemeral-storage".to_string(), quantity("100Gi"));
    let status_text = if ready { "True" } else { "False" };
    let previous_ready = previous
        .and_then(|node| node.status.as_ref())
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
    let transition = previous_ready
        .filter(|condition| condition.status == status_text)
        .and_then(|condition| condition.last_transition_time.clone())
        .unwrap_or(Time(now));
    let pressure = |kind: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.to_string(),
        status: "False".to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(transition.clone()),
    };
    Node {
        metadata: ObjectMeta {
            name: Some(identity.name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: identity.internal_ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: identity.name.clone(),
                },
            ]),
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            conditions: Some(vec![
                pressure(
                    "MemoryPressure",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                pressure(
                    "DiskPressure",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                ),
                pressure(
                    "PIDPressure",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                ),
                NodeCondition {
                    type_: "Ready".to_string(),
                    status: status_text.to_string(),
                    reason: Some(
                        if ready {
                            "KubeletReady"
                        } else {
                            "KubeletNotReady"
                        }
                        .to_string(),
                    ),
                    message: Some(
                        if ready {
                            "kubelet is posting ready status"
                        } else {
                            "network plugin is not ready: waiting for a podCIDR"
                        }
                        .to_string(),
                    ),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(transition),
                },
            ]),
            daemon_endpoints: Some(k8s_openapi::api::core::v1::NodeDaemonEndpoints {
                kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64"),
                boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                container_runtime_version: runtime_version(),
                kernel_version: kernel,
                kube_proxy_version: String::new(),
                kubelet_version: format!("v1.33.0-podnet.{}", env!("CARGO_PKG_VERSION")),
                machine_id: identity.name.clone(),
                operating_system: "linux".into(),
                os_image,
                system_uuid: identity.name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Create the Node if missing, else update its metadata and status.
pub async fn register(
    nodes: &Api<Node>,
    identity: &NodeIdentity,
    ready: bool,
) -> Result<Node, AgentError> {
    let now = jiff::Timestamp::now();
    let existing = nodes
        .get_opt(&identity.name)
        .await
        .map_err(AgentError::api("get node"))?;
    let desired = desired_node(identity, ready, now, existing.as_ref());
    match existing {
        None => {
            let created = nodes
                .create(&PostParams::default(), &desired)
                .await
                .map_err(AgentError::api("create node"))?;
            update_status(nodes, identity, ready, Some(&created)).await
        }
        Some(existing) => {
            let metadata = serde_json::json!({
                "metadata": {"labels": desired.metadata.labels, "annotations": desired.metadata.annotations}
            });
            nodes
                .patch(
                    &identity.name,
                    &PatchParams::default(),
                    &Patch::Merge(&metadata),
                )
                .await
                .map_err(AgentError::api("patch node metadata"))?;
            update_status(nodes, identity, ready, Some(&existing)).await
        }
    }
}

/// Post the node status (heartbeat).
pub async fn update_status(
    nodes: &Api<Node>,
    identity: &NodeIdentity,
    ready: bool,
    previous: Option<&Node>,
) -> Result<Node, AgentError> {
    let desired = desired_node(identity, ready, jiff::Timestamp::now(), previous);
    let patch = serde_json::json!({ "status": desired.status });
    nodes
        .patch_status(
            &identity.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(AgentError::api("update node status"))
}

/// Renew (or create) this node's Lease in kube-node-lease.
pub async fn renew_lease(
    leases: &Api<Lease>,
    node_name: &str,
    node_uid: Option<String>,
) -> Result<(), AgentError> {
    let now = MicroTime(jiff::Timestamp::now());
    match leases
        .get_opt(node_name)
        .await
        .map_err(AgentError::api("get lease"))?
    {
        Some(_) => {
            let patch =
                serde_json::json!({"spec": {"renewTime": now, "holderIdentity": node_name}});
            leases
                .patch(node_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(AgentError::api("renew lease"))?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node_name.to_string()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: node_uid.map(|uid| {
                        vec![
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: node_name.to_string(),
                                uid,
                                ..Default::default()
                            },
                        ]
                    }),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(node_name.to_string()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map_err(AgentError::api("create lease"))?;
        }
    }
    Ok(())
}
