//! The NetworkPolicy oracle: a direct, deliberately naive evaluator of
//! networking.k8s.io/v1 semantics. Given the cluster's namespaces, pods and
//! policies in their wire form (`serde_json::Value`, exactly what kubectl
//! sends) it answers one question: may this connection be opened?
//!
//! It exists to judge the enforcement, so it shares no code with the compiler
//! in `netpol`: it reads the JSON itself, matches selectors itself and walks
//! every policy for every question. Tests compare the kernel's behaviour (a
//! probe of every pod from every pod) with the truth table it produces.
//!
//! Semantics (see the NetworkPolicy reference):
//! - a pod is isolated for a direction when some policy of its namespace
//!   selects it and has that policy type; `policyTypes` unset means Ingress,
//!   plus Egress when `egress` has at least one rule;
//! - an isolated pod allows the union of the rules of every policy selecting
//!   it; a connection between pods needs the source's egress and the
//!   destination's ingress;
//! - inside a rule, a peer and a port must both match; a missing or empty
//!   `from`/`to`/`ports` matches everything;
//! - named ports resolve against the destination pod's container ports;
//! - traffic from a pod's own node to it is always allowed, and so is a pod
//!   talking to itself (it never leaves the pod's network namespace);
//! - replies of an allowed connection are allowed (not modelled: the oracle
//!   answers for the opening packet).

use serde_json::Value;
use std::net::Ipv4Addr;

/// The transport protocols NetworkPolicy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OracleProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl OracleProtocol {
    pub fn name(self) -> &'static str {
        match self {
            OracleProtocol::Tcp => "TCP",
            OracleProtocol::Udp => "UDP",
            OracleProtocol::Sctp => "SCTP",
        }
    }
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OracleEndpoint {
    /// A pod, by namespace and name (its IP and node come from its object).
    Pod { namespace: String, name: String },
    /// An address that is no pod: a node (named) or anything outside.
    Host { ip: Ipv4Addr, node: Option<String> },
}

impl OracleEndpoint {
    pub fn pod(namespace: &str, name: &str) -> OracleEndpoint {
        OracleEndpoint::Pod {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// The objects the oracle judges by, in wire form.
#[derive(Debug, Clone, Default)]
pub struct OracleCluster {
    pub namespaces: Vec<Value>,
    pub pods: Vec<Value>,
    pub policies: Vec<Value>,
}

impl OracleCluster {
    /// May `source` open a connection to `destination` on `protocol`/`port`?
    pub fn allows(
        &self,
        source: &OracleEndpoint,
        destination: &OracleEndpoint,
        protocol: OracleProtocol,
        port: u16,
    ) -> bool {
        if source == destination && matches!(source, OracleEndpoint::Pod { .. }) {
            return true;
        }
        let egress_allowed = match source {
            OracleEndpoint::Pod { namespace, name } => match self.find_pod(namespace, name) {
                Some(pod) => {
                    self.direction_allows(pod, Direction::Egress, destination, protocol, port)
                }
                None => false,
            },
            OracleEndpoint::Host { .. } => true,
        };
        let ingress_allowed = match destination {
            OracleEndpoint::Pod { namespace, name } => match self.find_pod(namespace, name) {
                Some(pod) => {
                    let from_own_node = matches!(source, OracleEndpoint::Host { node: Some(node), .. }
                        if Some(node.as_str()) == pod["spec"]["nodeName"].as_str());
                    from_own_node
                        || self.direction_allows(pod, Direction::Ingress, source, protocol, port)
                }
                None => false,
            },
            OracleEndpoint::Host { .. } => true,
        };
        egress_allowed && ingress_allowed
    }

    fn find_pod(&self, namespace: &str, name: &str) -> Option<&Value> {
        self.pods.iter().find(|pod| {
            pod["metadata"]["namespace"].as_str() == Some(namespace)
                && pod["metadata"]["name"].as_str() == Some(name)
        })
    }

    fn namespace_labels(&self, namespace: &str) -> Vec<(String, String)> {
        let mut labels = vec![(
            "kubernetes.io/metadata.name".to_string(),
            namespace.to_string(),
        )];
        if let Some(object) = self
            .namespaces
            .iter()
            .find(|ns| ns["metadata"]["name"].as_str() == Some(namespace))
        {
            for (key, value) in object["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if key != "kubernetes.io/metadata.name" {
                    labels.push((key.clone(), value.as_str().unwrap_or("").to_string()));
                }
            }
        }
        labels
    }

    /// Is `pod` (the local end) allowed to talk with `remote` in `direction`?
    fn direction_allows(
        &self,
        pod: &Value,
        direction: Direction,
        remote: &OracleEndpoint,
        protocol: OracleProtocol,
        port: u16,
    ) -> bool {
        let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let pod_labels = labels_of(&pod["metadata"]["labels"]);
        let mut isolated = false;
        for policy in &self.policies {
            if policy["metadata"]["namespace"].as_str() != Some(namespace) {
                continue;
            }
            let spec = &policy["spec"];
            if !selector_matches(&spec["podSelector"], &pod_labels) {
                continue;
            }
            if !policy_has_type(spec, direction) {
                continue;
            }
            isolated = true;
            let rules = match direction {
                Direction::Ingress => &spec["ingress"],
                Direction::Egress => &spec["egress"],
            };
            for rule in rules.as_array().into_iter().flatten() {
                let peers = match direction {
                    Direction::Ingress => &rule["from"],
                    Direction::Egress => &rule["to"],
                };
                let peer_ok = match peers.as_array() {
                    None => true,
                    Some(list) if list.is_empty() => true,
                    Some(list) => list
                        .iter()
                        .any(|peer| self.peer_matches(peer, namespace, remote)),
                };
                if !peer_ok {
                    continue;
                }
                // The pod the port is on: the destination of the connection.
                let port_owner = match direction {
                    Direction::Ingress => Some(pod),
                    Direction::Egress => match remote {
                        OracleEndpoint::Pod { namespace, name } => self.find_pod(namespace, name),
                        OracleEndpoint::Host { .. } => None,
                    },
                };
                let ports_ok = match rule["ports"].as_array() {
                    None => true,
                    Some(list) if list.is_empty() => true,
                    Some(list) => list
                        .iter()
                        .any(|entry| port_matches(entry, port_owner, protocol, port)),
                };
                if ports_ok {
                    return true;
                }
            }
        }
        !isolated
    }

    fn endpoint_ip(&self, endpoint: &OracleEndpoint) -> Option<Ipv4Addr> {
        match endpoint {
            OracleEndpoint::Host { ip, .. } => Some(*ip),
            OracleEndpoint::Pod { namespace, name } => self
                .find_pod(namespace, name)?
                .pointer("/status/podIP")?
                .as_str()?
                .parse()
                .ok(),
        }
    }

    fn peer_matches(&self, peer: &Value, policy_namespace: &str, remote: &OracleEndpoint) -> bool {
        if let Some(block) = peer.get("ipBlock").filter(|b| !b.is_null()) {
            let Some(ip) = self.endpoint_ip(remote) else {
                return false;
            };
            let inside = |cidr: &Value| cidr.as_str().is_some_and(|text| cidr_contains(text, ip));
            return inside(&block["cidr"])
                && !block["except"].as_array().into_iter().flatten().any(inside);
        }
        let pod_selector = peer.get("podSelector").filter(|s| !s.is_null());
        let namespace_selector = peer.get("namespaceSelector").filter(|s| !s.is_null());
        if pod_selector.is_none() && namespace_selector.is_none() {
            return false;
        }
        let OracleEndpoint::Pod { namespace, name } = remote else {
            return false;
        };
        let Some(remote_pod) = self.find_pod(namespace, name) else {
            return false;
        };
        let namespace_ok = match namespace_selector {
            Some(selector) => selector_matches(selector, &self.namespace_labels(namespace)),
            None => namespace == policy_namespace,
        };
        let pod_ok = match pod_selector {
            Some(selector) => {
                selector_matches(selector, &labels_of(&remote_pod["metadata"]["labels"]))
            }
            None => true,
        };
        namespace_ok && pod_ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

fn policy_has_type(spec: &Value, direction: Direction) -> bool {
    let wanted = match direction {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    };
    match spec["policyTypes"].as_array() {
        Some(types) if !types.is_empty() => types.iter().any(|t| t.as_str() == Some(wanted)),
        _ => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec["egress"]
                .as_array()
                .is_some_and(|rules| !rules.is_empty()),
        },
    }
}

fn labels_of(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// metav1.LabelSelector: every matchLabels pair and every expression must hold.
fn selector_matches(selector: &Value, labels: &[(String, String)]) -> bool {
    for (key, value) in selector["matchLabels"].as_object().into_iter().flatten() {
        if label(labels, key) != value.as_str() {
            return false;
        }
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expression["key"].as_str().unwrap_or("");
        let values: Vec<&str> = expression["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let current = label(labels, key);
        let holds = match expression["operator"].as_str().unwrap_or("") {
            "In" => current.is_some_and(|v| values.contains(&v)),
            "NotIn" => current.is_none_or(|v| !values.contains(&v)),
            "Exists" => current.is_some(),
            "DoesNotExist" => current.is_none(),
            _ => false,
        };
        if !holds {
            return false;
        }
    }
    true
}

fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    let Some((network, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(network), Ok(bits)) = (network.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(network) & mask
}

fn port_matches(entry: &Value, owner: Option<&Value>, protocol: OracleProtocol, port: u16) -> bool {
    let entry_protocol = entry["protocol"].as_str().unwrap_or("TCP");
    if entry_protocol != protocol.name() {
        return false;
    }
    match &entry["port"] {
        Value::Null => true,
        Value::Number(number) => {
            let start = number.as_u64().unwrap_or(0);
            let end = entry["endPort"].as_u64().unwrap_or(start);
            (start..=end).contains(&u64::from(port))
        }
        Value::String(name) => {
            let Some(owner) = owner else {
                return false;
            };
            let containers = owner["spec"]["containers"].as_array().into_iter().flatten();
            let init = owner["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten();
            containers.chain(init).any(|container| {
                container["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| {
                        p["name"].as_str() == Some(name.as_str())
                            && p["protocol"].as_str().unwrap_or("TCP") == protocol.name()
                            && p["containerPort"].as_u64() == Some(u64::from(port))
                    })
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use OracleProtocol::{Sctp, Tcp, Udp};

    fn pod(namespace: &str, name: &str, ip: &str, node: &str, labels: Value) -> Value {
        json!({
            "metadata": {"namespace": namespace, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "serve-80", "containerPort": 80},
                {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
            ]}]},
            "status": {"podIP": ip},
        })
    }

    fn namespace(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}})
    }

    fn policy(namespace: &str, name: &str, spec: Value) -> Value {
        json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec})
    }

    /// x/a x/b y/a y/b, namespaces labelled ns=<name>.
    fn cluster(policies: Vec<Value>) -> OracleCluster {
        OracleCluster {
            namespaces: vec![
                namespace("x", json!({"ns": "x"})),
                namespace("y", json!({"ns": "y", "team": "blue"})),
            ],
            pods: vec![
                pod("x", "a", "10.244.0.2", "n1", json!({"pod": "a"})),
                pod("x", "b", "10.244.1.2", "n2", json!({"pod": "b"})),
                pod("y", "a", "10.244.0.3", "n1", json!({"pod": "a"})),
                pod(
                    "y",
                    "b",
                    "10.244.1.3",
                    "n2",
                    json!({"pod": "b", "tier": "db"}),
                ),
            ],
            policies,
        }
    }

    fn p(ns: &str, name: &str) -> OracleEndpoint {
        OracleEndpoint::pod(ns, name)
    }

    #[test]
    fn no_policy_allows_everything() {
        let c = cluster(vec![]);
        assert!(c.allows(&p("x", "a"), &p("y", "b"), Tcp, 80));
        assert!(c.allows(&p("x", "a"), &p("y", "b"), Sctp, 9));
    }

    #[test]
    fn default_deny_ingress_isolates_only_its_namespace() {
        let c = cluster(vec![policy("x", "deny", json!({"podSelector": {}}))]);
        assert!(!c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(!c.allows(&p("x", "b"), &p("x", "a"), Udp, 81));
        assert!(
            c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80),
            "egress untouched"
        );
        assert!(
            c.allows(&p("x", "a"), &p("x", "a"), Tcp, 80),
            "a pod reaches itself"
        );
    }

    #[test]
    fn policy_types_default_from_egress_presence() {
        // egress present: Egress added to the default Ingress.
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}),
        )]);
        assert!(!c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80));
        assert!(c.allows(&p("x", "a"), &p("y", "a"), Udp, 53));
        assert!(
            !c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80),
            "ingress isolated too"
        );
        // policyTypes Egress only: ingress is open.
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        )]);
        assert!(c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(!c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80));
        // `egress: []` does not imply Egress.
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "egress": []}),
        )]);
        assert!(c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80));
    }

    #[test]
    fn empty_rule_allows_all_and_empty_list_allows_nothing() {
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{}]}),
        )]);
        assert!(c.allows(&p("y", "b"), &p("x", "a"), Udp, 5000));
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": []}),
        )]);
        assert!(!c.allows(&p("y", "b"), &p("x", "a"), Udp, 5000));
    }

    #[test]
    fn pod_selector_alone_means_same_namespace() {
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        )]);
        assert!(c.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
        assert!(!c.allows(&p("y", "b"), &p("x", "a"), Tcp, 80));
        assert!(
            c.allows(&p("y", "b"), &p("x", "b"), Tcp, 80),
            "x/b not selected"
        );
    }

    #[test]
    fn namespace_selector_alone_and_anded_and_ored() {
        let alone = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        )]);
        assert!(alone.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(alone.allows(&p("y", "b"), &p("x", "a"), Tcp, 80));
        assert!(!alone.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
        let empty = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        )]);
        assert!(empty.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(empty.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
        assert!(!empty.allows(
            &OracleEndpoint::Host {
                ip: "192.0.2.1".parse().unwrap(),
                node: None
            },
            &p("x", "a"),
            Tcp,
            80
        ));
        let anded = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"ns": "y"}},
                "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        )]);
        assert!(anded.allows(&p("y", "b"), &p("x", "a"), Tcp, 80));
        assert!(!anded.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(!anded.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
        let ored = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        )]);
        assert!(ored.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(ored.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
    }

    #[test]
    fn match_expressions_and_metadata_name() {
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [{
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["y"]}]},
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}}]}]}),
        )]);
        assert!(c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(!c.allows(&p("y", "b"), &p("x", "a"), Tcp, 80));
        let exists = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"from": [{
                "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}]}]}),
        )]);
        assert!(exists.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(!exists.allows(&p("y", "b"), &p("x", "a"), Tcp, 80));
        assert!(!exists.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
    }

    #[test]
    fn ports_protocols_ranges_and_names() {
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "ingress": [{"ports": [
                {"port": 81, "protocol": "UDP"},
                {"port": 1000, "endPort": 1010},
                {"port": "serve-80"},
                {"protocol": "SCTP"}]}]}),
        )]);
        let from = p("y", "a");
        let to = p("x", "a");
        assert!(c.allows(&from, &to, Udp, 81));
        assert!(
            !c.allows(&from, &to, Tcp, 81),
            "UDP-only must not allow TCP"
        );
        assert!(c.allows(&from, &to, Tcp, 1000) && c.allows(&from, &to, Tcp, 1010));
        assert!(!c.allows(&from, &to, Tcp, 1011) && !c.allows(&from, &to, Tcp, 999));
        assert!(
            c.allows(&from, &to, Tcp, 80),
            "named port resolved on the destination"
        );
        assert!(!c.allows(&from, &to, Udp, 80));
        assert!(c.allows(&from, &to, Sctp, 7), "protocol without port");
    }

    #[test]
    fn named_port_resolves_per_destination_pod() {
        let mut c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                   "ingress": [{"ports": [{"port": "web"}]}],
                   "egress": [{"ports": [{"port": "web"}]}]}),
        )]);
        c.pods[0]["spec"]["containers"][0]["ports"] = json!([{"name": "web", "containerPort": 80}]);
        c.pods[1]["spec"]["containers"][0]["ports"] =
            json!([{"name": "web", "containerPort": 8080}]);
        c.pods[2]["spec"]["containers"][0]["ports"] =
            json!([{"name": "web", "containerPort": 8080}]);
        assert!(c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(!c.allows(&p("y", "a"), &p("x", "a"), Tcp, 8080));
        assert!(c.allows(&p("y", "a"), &p("x", "b"), Tcp, 8080));
        assert!(!c.allows(&p("y", "a"), &p("x", "b"), Tcp, 80));
        // Egress resolves on the remote destination, not on the source.
        assert!(c.allows(&p("x", "a"), &p("y", "a"), Tcp, 8080));
        assert!(!c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80));
        assert!(
            !c.allows(&p("x", "a"), &p("y", "b"), Tcp, 80),
            "y/b has no port named web"
        );
    }

    #[test]
    fn ip_block_with_except() {
        let c = cluster(vec![policy(
            "x",
            "p",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}}]}]}),
        )]);
        assert!(
            c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80),
            "10.244.0.3 inside"
        );
        assert!(
            !c.allows(&p("y", "b"), &p("x", "a"), Tcp, 80),
            "10.244.1.3 excepted"
        );
        assert!(!c.allows(&p("x", "b"), &p("x", "a"), Tcp, 80));
        let outside = OracleEndpoint::Host {
            ip: "192.0.2.7".parse().unwrap(),
            node: None,
        };
        assert!(!c.allows(&outside, &p("x", "a"), Tcp, 80));
        // except does not deny anything on its own: another rule still allows.
        let c = cluster(vec![
            c.policies[0].clone(),
            policy(
                "x",
                "q",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
            ),
        ]);
        assert!(c.allows(&p("y", "b"), &p("x", "a"), Tcp, 80));
    }

    #[test]
    fn egress_needs_both_ends() {
        let c = cluster(vec![
            policy(
                "x",
                "deny-egress",
                json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            ),
            policy("y", "deny-ingress", json!({"podSelector": {}})),
            policy(
                "x",
                "allow-to-y",
                json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
            ),
        ]);
        assert!(
            !c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80),
            "y's ingress denies"
        );
        let c = cluster(vec![c.policies[0].clone(), c.policies[2].clone()]);
        assert!(c.allows(&p("x", "a"), &p("y", "a"), Tcp, 80));
        assert!(!c.allows(&p("x", "b"), &p("y", "a"), Tcp, 80));
        assert!(
            !c.allows(&p("x", "a"), &p("x", "b"), Tcp, 80),
            "x is not labelled ns=y"
        );
    }

    #[test]
    fn own_node_always_reaches_its_pods() {
        let c = cluster(vec![policy("x", "deny", json!({"podSelector": {}}))]);
        let n1 = OracleEndpoint::Host {
            ip: "172.18.0.2".parse().unwrap(),
            node: Some("n1".into()),
        };
        let n2 = OracleEndpoint::Host {
            ip: "172.18.0.3".parse().unwrap(),
            node: Some("n2".into()),
        };
        assert!(c.allows(&n1, &p("x", "a"), Tcp, 80));
        assert!(!c.allows(&n2, &p("x", "a"), Tcp, 80));
    }

    #[test]
    fn stacked_policies_union() {
        let c = cluster(vec![
            policy(
                "x",
                "one",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
            ),
            policy(
                "x",
                "two",
                json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81}]}]}),
            ),
        ]);
        assert!(c.allows(&p("y", "a"), &p("x", "a"), Tcp, 80));
        assert!(c.allows(&p("y", "a"), &p("x", "a"), Tcp, 81));
        assert!(!c.allows(&p("y", "a"), &p("x", "b"), Tcp, 81));
    }
}
