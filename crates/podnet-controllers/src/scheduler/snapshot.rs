//! The scheduler's view of the cluster: every node with the resources already
//! requested on it, maintained incrementally from pod and node watch events
//! (and from the scheduler's own bindings before the watch confirms them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::parse_quantity_milli;

/// CPU and memory a pod without requests is assumed to use when *scoring*
/// (never when filtering), as upstream does, so best-effort pods still spread.
pub const DEFAULT_NONZERO_CPU_MILLI: i128 = 100;
/// See [`DEFAULT_NONZERO_CPU_MILLI`]: 200Mi.
pub const DEFAULT_NONZERO_MEMORY_MILLI: i128 = 200 * 1024 * 1024 * 1000;

/// `namespace/name`, the identity of a pod in the scheduler's maps.
pub type PodKey = String;

/// The key of a pod.
pub fn pod_key(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A host port a pod claims: (protocol, host IP, port).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The host IP, `0.0.0.0` when unset (all addresses).
    pub host_ip: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// True when both cannot be bound at once on one node.
    pub fn conflicts_with(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip == "0.0.0.0" || ip == "::";
        self.protocol == other.protocol
            && self.port == other.port
            && (self.host_ip == other.host_ip
                || wildcard(&self.host_ip)
                || wildcard(&other.host_ip))
    }
}

/// What a pod consumes on its node, computed once per pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Effective requests in milli-units per resource name (limits stand in for
    /// missing requests; init containers and overhead included).
    pub requests: BTreeMap<String, i128>,
    /// CPU request used for scoring (defaults filled in).
    pub nonzero_cpu_milli: i128,
    /// Memory request used for scoring (defaults filled in).
    pub nonzero_memory_milli: i128,
    /// UID of the controller (ReplicaSet, StatefulSet, ...) owning the pod, for spreading.
    pub controller_uid: Option<String>,
    /// Host ports the pod claims.
    pub host_ports: Vec<HostPort>,
}

fn container_requests(resources: Option<&ResourceRequirements>) -> BTreeMap<String, i128> {
    let mut amounts = BTreeMap::new();
    let Some(resources) = resources else {
        return amounts;
    };
    let parse = |quantity: &Quantity| parse_quantity_milli(&quantity.0).unwrap_or(0);
    // A limit without a request means request = limit (the API server's defaulting).
    for (name, quantity) in resources.limits.iter().flatten() {
        amounts.insert(name.clone(), parse(quantity));
    }
    for (name, quantity) in resources.requests.iter().flatten() {
        amounts.insert(name.clone(), parse(quantity));
    }
    amounts
}

fn add_into(total: &mut BTreeMap<String, i128>, amounts: &BTreeMap<String, i128>) {
    for (name, amount) in amounts {
        *total.entry(name.clone()).or_insert(0) += amount;
    }
}

fn max_into(total: &mut BTreeMap<String, i128>, amounts: &BTreeMap<String, i128>) {
    for (name, amount) in amounts {
        let entry = total.entry(name.clone()).or_insert(0);
        *entry = (*entry).max(*amount);
    }
}

impl PodUsage {
    /// Computes a pod's usage the way upstream's resource accounting does:
    /// max(sum of app containers + sidecars, each init container + the sidecars
    /// started before it) + overhead.
    pub fn from_pod(pod: &Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else {
            return PodUsage::default();
        };
        let mut app_total = BTreeMap::new();
        let mut nonzero_cpu_milli = 0;
        let mut nonzero_memory_milli = 0;
        let mut host_ports = Vec::new();
        let mut account_running = |container: &Container, total: &mut BTreeMap<String, i128>| {
            let amounts = container_requests(container.resources.as_ref());
            add_into(total, &amounts);
            nonzero_cpu_milli += amounts
                .get("cpu")
                .copied()
                .filter(|amount| *amount > 0)
                .unwrap_or(DEFAULT_NONZERO_CPU_MILLI);
            nonzero_memory_milli += amounts
                .get("memory")
                .copied()
                .filter(|amount| *amount > 0)
                .unwrap_or(DEFAULT_NONZERO_MEMORY_MILLI);
        };
        for container in &spec.containers {
            account_running(container, &mut app_total);
        }
        let mut sidecar_total = BTreeMap::new();
        let mut init_peak = BTreeMap::new();
        for container in spec.init_containers.iter().flatten() {
            if container.restart_policy.as_deref() == Some("Always") {
                account_running(container, &mut sidecar_total);
            } else {
                let mut while_running = container_requests(container.resources.as_ref());
                add_into(&mut while_running, &sidecar_total);
                max_into(&mut init_peak, &while_running);
            }
        }
        let mut requests = app_total;
        add_into(&mut requests, &sidecar_total);
        max_into(&mut requests, &init_peak);
        for (name, quantity) in spec.overhead.iter().flatten() {
            *requests.entry(name.clone()).or_insert(0) +=
                parse_quantity_milli(&quantity.0).unwrap_or(0);
        }
        requests.retain(|_, amount| *amount != 0);
        for container in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for port in container.ports.iter().flatten() {
                let Some(host_port) = port.host_port.filter(|port| *port > 0) else {
                    continue;
                };
                host_ports.push(HostPort {
                    protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                    host_ip: port
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".to_string()),
                    port: host_port,
                });
            }
        }
        let controller_uid = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone());
        PodUsage {
            requests,
            nonzero_cpu_milli,
            nonzero_memory_milli,
            controller_uid,
            host_ports,
        }
    }
}

/// One node and what is already placed on it.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The Node object; `None` while pods bound to a node not (yet) seen are accounted.
    pub node: Option<Arc<Node>>,
    /// Sum of the requests of the pods on the node, in milli-units.
    pub requested: BTreeMap<String, i128>,
    /// Sum of scoring CPU requests.
    pub nonzero_cpu_milli: i128,
    /// Sum of scoring memory requests.
    pub nonzero_memory_milli: i128,
    /// Number of non-terminal pods on the node.
    pub pod_count: usize,
    /// Pods per controller UID, for spreading replicas.
    pub pods_per_controller: HashMap<String, usize>,
    /// Host ports in use.
    pub host_ports: Vec<HostPort>,
}

impl NodeInfo {
    fn add_pod(&mut self, usage: &PodUsage) {
        add_into(&mut self.requested, &usage.requests);
        self.nonzero_cpu_milli += usage.nonzero_cpu_milli;
        self.nonzero_memory_milli += usage.nonzero_memory_milli;
        self.pod_count += 1;
        if let Some(uid) = &usage.controller_uid {
            *self.pods_per_controller.entry(uid.clone()).or_insert(0) += 1;
        }
        self.host_ports.extend(usage.host_ports.iter().cloned());
    }

    fn remove_pod(&mut self, usage: &PodUsage) {
        for (name, amount) in &usage.requests {
            if let Some(total) = self.requested.get_mut(name) {
                *total -= amount;
                if *total == 0 {
                    self.requested.remove(name);
                }
            }
        }
        self.nonzero_cpu_milli -= usage.nonzero_cpu_milli;
        self.nonzero_memory_milli -= usage.nonzero_memory_milli;
        self.pod_count = self.pod_count.saturating_sub(1);
        if let Some(uid) = &usage.controller_uid {
            if let Some(count) = self.pods_per_controller.get_mut(uid) {
                *count -= 1;
                if *count == 0 {
                    self.pods_per_controller.remove(uid);
                }
            }
        }
        for port in &usage.host_ports {
            if let Some(position) = self.host_ports.iter().position(|used| used == port) {
                self.host_ports.swap_remove(position);
            }
        }
    }

    fn is_empty_placeholder(&self) -> bool {
        self.node.is_none() && self.pod_count == 0
    }
}

/// All nodes and the placement of every non-terminal bound pod.
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    nodes: BTreeMap<String, NodeInfo>,
    placements: HashMap<PodKey, (String, PodUsage)>,
}

impl ClusterSnapshot {
    /// Nodes by name, including placeholders for nodes only known from pods.
    pub fn nodes(&self) -> &BTreeMap<String, NodeInfo> {
        &self.nodes
    }

    /// Number of Node objects known.
    pub fn node_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|info| info.node.is_some())
            .count()
    }

    /// Where a pod is placed, if it is.
    pub fn placement(&self, key: &str) -> Option<&str> {
        self.placements
            .get(key)
            .map(|(node_name, _)| node_name.as_str())
    }

    /// Adds or replaces a Node object.
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.nodes.entry(name).or_default().node = Some(node);
    }

    /// Forgets a Node object (pods still bound to it stay accounted).
    pub fn remove_node(&mut self, node_name: &str) {
        if let Some(info) = self.nodes.get_mut(node_name) {
            info.node = None;
            if info.is_empty_placeholder() {
                self.nodes.remove(node_name);
            }
        }
    }

    /// Keeps only the Node objects named (after a re-list).
    pub fn retain_nodes(&mut self, keep: &dyn Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(name, info)| info.node.is_some() && !keep(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.remove_node(&name);
        }
    }

    /// Records that a pod occupies `node_name` (moving it if it was elsewhere).
    pub fn place_pod(&mut self, key: PodKey, node_name: &str, usage: PodUsage) {
        self.remove_pod(&key);
        self.nodes
            .entry(node_name.to_string())
            .or_default()
            .add_pod(&usage);
        self.placements.insert(key, (node_name.to_string(), usage));
    }

    /// Frees what a pod occupied; returns the node it was on.
    pub fn remove_pod(&mut self, key: &str) -> Option<String> {
        let (node_name, usage) = self.placements.remove(key)?;
        if let Some(info) = self.nodes.get_mut(&node_name) {
            info.remove_pod(&usage);
            if info.is_empty_placeholder() {
                self.nodes.remove(&node_name);
            }
        }
        Some(node_name)
    }

    /// Keys of every placed pod.
    pub fn placed_pod_keys(&self) -> Vec<PodKey> {
        self.placements.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn usage_counts_limits_init_containers_sidecars_and_overhead() {
        let usage = PodUsage::from_pod(&pod(json!({
            "metadata": {"name": "p", "namespace": "d",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]},
            "spec": {
                "overhead": {"cpu": "10m"},
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                    {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}
                ],
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "128Mi"}},
                     "ports": [{"containerPort": 80, "hostPort": 8080}]},
                    {"name": "b"}
                ]
            }
        })));
        // cpu: max(250m + 50m sidecar, 2000m init + 50m sidecar) + 10m overhead
        assert_eq!(usage.requests["cpu"], 2060);
        assert_eq!(usage.requests["memory"], 128 * 1024 * 1024 * 1000);
        // scoring: 250m + 100m default for b + 50m sidecar
        assert_eq!(usage.nonzero_cpu_milli, 400);
        assert_eq!(usage.controller_uid.as_deref(), Some("rs-uid"));
        assert_eq!(
            usage.host_ports,
            vec![HostPort {
                protocol: "TCP".into(),
                host_ip: "0.0.0.0".into(),
                port: 8080
            }]
        );
    }

    #[test]
    fn placing_moving_and_removing_pods_keeps_totals_exact() {
        let usage = PodUsage {
            requests: BTreeMap::from([("cpu".to_string(), 500)]),
            ..PodUsage::default()
        };
        let mut snapshot = ClusterSnapshot::default();
        snapshot.upsert_node(Arc::new(Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            ..Node::default()
        }));
        snapshot.place_pod("d/a".into(), "n1", usage.clone());
        snapshot.place_pod("d/b".into(), "n1", usage.clone());
        assert_eq!(snapshot.nodes()["n1"].requested["cpu"], 1000);
        // A pod bound to a node not yet seen is accounted on a placeholder.
        snapshot.place_pod("d/b".into(), "n2", usage.clone());
        assert_eq!(snapshot.nodes()["n1"].requested["cpu"], 500);
        assert_eq!(snapshot.node_count(), 1);
        assert_eq!(snapshot.remove_pod("d/b").as_deref(), Some("n2"));
        assert!(!snapshot.nodes().contains_key("n2"));
        snapshot.remove_pod("d/a");
        assert!(snapshot.nodes()["n1"].requested.is_empty());
        assert_eq!(snapshot.nodes()["n1"].pod_count, 0);
    }

    #[test]
    fn host_ports_conflict_on_wildcard_or_same_ip() {
        let port = |ip: &str| HostPort {
            protocol: "TCP".into(),
            host_ip: ip.into(),
            port: 80,
        };
        assert!(port("0.0.0.0").conflicts_with(&port("10.0.0.1")));
        assert!(port("10.0.0.1").conflicts_with(&port("10.0.0.1")));
        assert!(!port("10.0.0.2").conflicts_with(&port("10.0.0.1")));
    }
}
