//! The NetworkPolicy compiler: policies, pods and namespaces → the nftables
//! ruleset that enforces them for the pods of ONE node, and the incremental
//! update from one ruleset to the next. Pure; the agent's `netpol` module
//! applies the result with `nft -f -` inside the node's network namespace.
//!
//! Where filtering happens. Pod traffic leaves and enters pods through veths
//! on the `cni0` bridge. Routed traffic (other nodes over the overlay, Service
//! traffic after the proxy's DNAT, the outside) crosses the node's IPv4
//! `forward` hook. Same-node pod-to-pod traffic is bridged; this kernel has
//! bridge netfilter (`net.bridge.bridge-nf-call-iptables`, on by default and
//! per network namespace) but no bridge-family conntrack, so bridged IPv4
//! packets are passed through the same inet hooks, with conntrack. One `inet`
//! table with a `forward` chain (after DNAT: priority filter + 5, later than
//! the proxy's dstnat) therefore sees every pod-to-pod packet with the real
//! pod destination, and an `input` chain sees pods talking to their node.
//! Node-to-pod traffic is locally generated (output hook) and never filtered.
//!
//! Shape (per-packet cost does not grow with the number of policies):
//! - `ct state established,related accept` first: replies are allowed and
//!   only the first packet of a connection is judged;
//! - verdict maps `ingress-pods` / `egress-pods` keyed by the local pod IPs
//!   that some policy isolates, dispatching to one chain per pod;
//! - a pod's chain holds one rule per policy rule selecting that pod: peers
//!   are a named interval set (union of the selected pods' IPs and ipBlock
//!   ranges minus `except`) named after a digest of the rule's peers
//!   (`peers_<hash>`), so rules with the same peers share one set,
//!   ports an inline `meta l4proto . th dport` set (named ports resolved on
//!   that pod). Egress rules with named ports use a concatenated set
//!   `ipv4_addr . inet_proto . inet_service` of (destination pod, port);
//! - the chain ends in `drop`; egress chains `return` on allow so the
//!   destination's ingress is judged next.
//!
//! Changes are rendered as a diff: set elements added/removed, only changed
//! chains flushed and refilled, map elements swapped, all in one atomic
//! transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::Value;

/// The nftables table (family inet) holding the policy rules.
pub const NETPOL_TABLE: &str = "podnet-netpol";

/// A transport protocol of a policy port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A label selector (metav1.LabelSelector).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub expressions: Vec<Expression>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// An operator this compiler does not know: never matches (fail closed).
    Unknown,
}

impl Selector {
    fn from_json(value: &Value) -> Selector {
        let match_labels = value["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let expressions = value["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Expression {
                key: e["key"].as_str().unwrap_or_default().to_string(),
                operator: match e["operator"].as_str() {
                    Some("In") => Operator::In,
                    Some("NotIn") => Operator::NotIn,
                    Some("Exists") => Operator::Exists,
                    Some("DoesNotExist") => Operator::DoesNotExist,
                    _ => Operator::Unknown,
                },
                values: e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
            })
            .collect();
        Selector {
            match_labels,
            expressions,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    Operator::In => value.is_some_and(|v| e.values.contains(v)),
                    Operator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                    Operator::Unknown => false,
                }
            })
    }
}

/// A namespace and its labels (`kubernetes.io/metadata.name` always present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl NamespaceInfo {
    pub fn from_json(object: &Value) -> NamespaceInfo {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut labels: BTreeMap<String, String> = object["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        labels.insert("kubernetes.io/metadata.name".to_string(), name.clone());
        NamespaceInfo { name, labels }
    }
}

/// A container port (for named ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// What the compiler needs of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// The pod IP; pods without one are neither peers nor isolated.
    pub ip: Option<Ipv4Addr>,
    pub labels: BTreeMap<String, String>,
    /// Runs on the node the ruleset is for.
    pub local: bool,
    pub ports: Vec<NamedPort>,
}

impl PodInfo {
    /// From a Pod in wire form. Host-network pods and finished pods get no IP
    /// here: policies do not apply to them and their address is not theirs.
    pub fn from_json(object: &Value, this_node: &str) -> PodInfo {
        let spec = &object["spec"];
        let phase = object["status"]["phase"].as_str().unwrap_or_default();
        let ip = if spec["hostNetwork"].as_bool() == Some(true)
            || phase == "Succeeded"
            || phase == "Failed"
        {
            None
        } else {
            object["status"]["podIP"]
                .as_str()
                .and_then(|ip| ip.parse().ok())
        };
        let ports = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(spec["initContainers"].as_array().into_iter().flatten())
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| {
                Some(NamedPort {
                    name: p["name"].as_str()?.to_string(),
                    protocol: Protocol::parse(p["protocol"].as_str())?,
                    port: u16::try_from(p["containerPort"].as_u64()?).ok()?,
                })
            })
            .collect();
        PodInfo {
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ip,
            labels: object["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            local: spec["nodeName"].as_str() == Some(this_node),
            ports,
        }
    }
}

/// A peer of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// podSelector and/or namespaceSelector (None: not given).
    Selectors {
        pods: Option<Selector>,
        namespaces: Option<Selector>,
    },
    /// `cidr` minus `except`.
    IpBlock { cidr: Ipv4Net, except: Vec<Ipv4Net> },
    /// A peer this compiler cannot use (IPv6 block, nothing given): matches nothing.
    Nothing,
}

/// The port part of a policy port entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    Any,
    Range(u16, u16),
    Named(String),
}

/// One entry of `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPort {
    pub protocol: Protocol,
    pub port: PortSpec,
}

/// One ingress or egress rule. `peers`/`ports` empty = everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PolicyPort>,
    /// Some port entry could not be understood (unknown protocol): it
    /// matches nothing, and if it was the only one the rule matches nothing.
    pub unusable_ports: bool,
}

/// A NetworkPolicy as the compiler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    pub ingress_isolates: bool,
    pub egress_isolates: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

impl PolicyInfo {
    pub fn from_json(object: &Value) -> PolicyInfo {
        let spec = &object["spec"];
        let types: Vec<&str> = spec["policyTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .collect();
        let egress_present = spec["egress"].as_array().is_some_and(|r| !r.is_empty());
        let (ingress_isolates, egress_isolates) = if types.is_empty() {
            (true, egress_present)
        } else {
            (types.contains(&"Ingress"), types.contains(&"Egress"))
        };
        let rules = |list: &Value, peer_key: &str| -> Vec<Rule> {
            list.as_array()
                .into_iter()
                .flatten()
                .map(|rule| rule_from_json(rule, peer_key))
                .collect()
        };
        PolicyInfo {
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            name: object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod_selector: Selector::from_json(&spec["podSelector"]),
            ingress_isolates,
            egress_isolates,
            ingress: rules(&spec["ingress"], "from"),
            egress: rules(&spec["egress"], "to"),
        }
    }
}

fn rule_from_json(rule: &Value, peer_key: &str) -> Rule {
    let peers = rule[peer_key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|peer| {
            if let Some(block) = peer.get("ipBlock").filter(|b| !b.is_null()) {
                let cidr = block["cidr"]
                    .as_str()
                    .and_then(|c| c.parse::<Ipv4Net>().ok());
                let except: Option<Vec<Ipv4Net>> = block["except"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e.as_str().and_then(|c| c.parse::<Ipv4Net>().ok()))
                    .collect();
                // An unparsable (e.g. IPv6) except could only widen the
                // block if ignored: drop the whole block instead.
                return match (cidr, except) {
                    (Some(cidr), Some(except)) => Peer::IpBlock {
                        cidr: cidr.trunc(),
                        except,
                    },
                    _ => Peer::Nothing,
                };
            }
            let pods = peer
                .get("podSelector")
                .filter(|s| !s.is_null())
                .map(Selector::from_json);
            let namespaces = peer
                .get("namespaceSelector")
                .filter(|s| !s.is_null())
                .map(Selector::from_json);
            if pods.is_none() && namespaces.is_none() {
                Peer::Nothing
            } else {
                Peer::Selectors { pods, namespaces }
            }
        })
        .collect();
    let mut unusable_ports = false;
    let ports = rule["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let Some(protocol) = Protocol::parse(entry["protocol"].as_str()) else {
                unusable_ports = true;
                return None;
            };
            let port = match &entry["port"] {
                Value::Null => PortSpec::Any,
                Value::Number(n) => {
                    let start = u16::try_from(n.as_u64().unwrap_or(0)).unwrap_or(0);
                    let end = entry["endPort"]
                        .as_u64()
                        .and_then(|e| u16::try_from(e).ok())
                        .unwrap_or(start);
                    if end < start {
                        unusable_ports = true;
                        return None;
                    }
                    PortSpec::Range(start, end)
                }
                Value::String(name) => PortSpec::Named(name.clone()),
                _ => {
                    unusable_ports = true;
                    return None;
                }
            };
            Some(PolicyPort { protocol, port })
        })
        .collect();
    Rule {
        peers,
        ports,
        unusable_ports,
    }
}

/// Everything one node's ruleset depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetpolInput {
    pub namespaces: Vec<NamespaceInfo>,
    pub pods: Vec<PodInfo>,
    pub policies: Vec<PolicyInfo>,
}

/// The kind of a named set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `ipv4_addr`, interval: a rule's peers.
    Peers,
    /// `ipv4_addr . inet_proto . inet_service`: destination pods of named ports.
    PodPorts,
}

/// A named set and its elements (rendered). Elements are shared: a set
/// carried over from an earlier compile is the same allocation, so
/// assembling and diffing unchanged sets costs nothing per element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    pub kind: SetKind,
    pub elements: Arc<BTreeSet<String>>,
}

/// The desired contents of the table (besides its fixed skeleton).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetpolRuleset {
    pub sets: BTreeMap<String, NftSet>,
    /// Per-pod chains: name → rules (shared with the compiler's copy, so an
    /// unchanged chain is neither copied nor compared).
    pub chains: BTreeMap<String, Arc<Vec<String>>>,
    /// Isolated local pods: IP → chain (`goto`).
    pub ingress_pods: BTreeMap<Ipv4Addr, String>,
    /// IP → chain (`jump`, returns when allowed).
    pub egress_pods: BTreeMap<Ipv4Addr, String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// Name of the peer set of a rule: a digest of what decides its contents
/// (the peers, and the policy's namespace when a peer is relative to it), so
/// every rule with the same peers, in any policy and either direction,
/// shares one set. Fewer sets make the table cheaper to load and to read
/// back (nft reads every set's definition before adding a rule).
fn peer_set_name(policy: &PolicyInfo, rule: &Rule) -> String {
    let relative = rule.peers.iter().any(|peer| {
        matches!(
            peer,
            Peer::Selectors {
                namespaces: None,
                ..
            }
        )
    });
    let context = if relative {
        policy.namespace.as_str()
    } else {
        ""
    };
    format!("peers_{}", digest(&format!("{context:?} {:?}", rule.peers)))
}

/// Name of the (destination pod . port) set of an egress rule's named ports.
fn named_port_set_name(peer_set: &str, named: &[PolicyPort]) -> String {
    format!("ports_{}", digest(&format!("{peer_set} {named:?}")))
}

/// 128 bits of SHA-256, hex: names that different contents cannot share.
fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(text.as_bytes());
    hash[..16]
        .iter()
        .fold(String::with_capacity(32), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Inclusive u32 intervals, merged.
fn normalise(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn net_range(net: &Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

/// `cidr` minus every `except`, as merged intervals.
fn subtract(block: (u32, u32), except: &[Ipv4Net]) -> Vec<(u32, u32)> {
    let mut remaining = vec![block];
    for hole in except {
        let (hlo, hhi) = net_range(hole);
        remaining = remaining
            .into_iter()
            .flat_map(|(lo, hi)| {
                let mut parts = Vec::new();
                if hhi < lo || hlo > hi {
                    parts.push((lo, hi));
                } else {
                    if hlo > lo {
                        parts.push((lo, hlo - 1));
                    }
                    if hhi < hi {
                        parts.push((hhi + 1, hi));
                    }
                }
                parts
            })
            .collect();
    }
    remaining
}

fn render_range((lo, hi): (u32, u32)) -> String {
    if lo == hi {
        Ipv4Addr::from(lo).to_string()
    } else {
        format!("{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi))
    }
}

struct Index<'a> {
    namespaces: BTreeMap<&'a str, &'a NamespaceInfo>,
    /// Pods with an IP, by namespace.
    pods_by_namespace: BTreeMap<&'a str, Vec<&'a PodInfo>>,
}

impl<'a> Index<'a> {
    fn new(input: &'a NetpolInput) -> Index<'a> {
        let mut pods_by_namespace: BTreeMap<&str, Vec<&PodInfo>> = BTreeMap::new();
        for pod in input.pods.iter().filter(|p| p.ip.is_some()) {
            pods_by_namespace
                .entry(pod.namespace.as_str())
                .or_default()
                .push(pod);
        }
        Index {
            namespaces: input
                .namespaces
                .iter()
                .map(|ns| (ns.name.as_str(), ns))
                .collect(),
            pods_by_namespace,
        }
    }

    fn namespace_matches(&self, namespace: &str, selector: &Selector) -> bool {
        match self.namespaces.get(namespace) {
            Some(info) => selector.matches(&info.labels),
            // Not (yet) seen: only its implicit name label is known.
            None => selector.matches(&BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                namespace.to_string(),
            )])),
        }
    }

    /// Pods (with IPs) a selector peer picks, from the policy's namespace.
    fn peer_pods(
        &self,
        policy_namespace: &str,
        pods: &Option<Selector>,
        namespaces: &Option<Selector>,
    ) -> Vec<&'a PodInfo> {
        let mut picked = Vec::new();
        for (namespace, members) in &self.pods_by_namespace {
            let namespace_ok = match namespaces {
                Some(selector) => self.namespace_matches(namespace, selector),
                None => *namespace == policy_namespace,
            };
            if !namespace_ok {
                continue;
            }
            for pod in members {
                if pods.as_ref().is_none_or(|s| s.matches(&pod.labels)) {
                    picked.push(*pod);
                }
            }
        }
        picked
    }

    /// The address ranges a rule's peers cover (None: all addresses).
    fn rule_ranges(&self, policy: &PolicyInfo, rule: &Rule) -> Option<Vec<(u32, u32)>> {
        if rule.peers.is_empty() {
            return None;
        }
        let mut ranges = Vec::new();
        for peer in &rule.peers {
            match peer {
                Peer::Selectors { pods, namespaces } => {
                    for pod in self.peer_pods(&policy.namespace, pods, namespaces) {
                        let ip = u32::from(pod.ip.expect("indexed pods have IPs"));
                        ranges.push((ip, ip));
                    }
                }
                Peer::IpBlock { cidr, except } => {
                    ranges.extend(subtract(net_range(cidr), except));
                }
                Peer::Nothing => {}
            }
        }
        Some(normalise(ranges))
    }

    fn all_pods(&self) -> impl Iterator<Item = &'a PodInfo> + '_ {
        self.pods_by_namespace.values().flatten().copied()
    }
}

/// Port entries resolved for one destination pod: (protocol, lo, hi).
fn resolve_ports(ports: &[PolicyPort], destination: Option<&PodInfo>) -> Vec<(Protocol, u16, u16)> {
    let mut resolved = Vec::new();
    for entry in ports {
        match &entry.port {
            PortSpec::Any => resolved.push((entry.protocol, 0, u16::MAX)),
            PortSpec::Range(lo, hi) => resolved.push((entry.protocol, *lo, *hi)),
            PortSpec::Named(name) => {
                for port in destination.into_iter().flat_map(|pod| &pod.ports) {
                    if &port.name == name && port.protocol == entry.protocol {
                        resolved.push((entry.protocol, port.port, port.port));
                    }
                }
            }
        }
    }
    resolved.sort_unstable();
    resolved.dedup();
    // Merge overlapping ranges per protocol: nft refuses overlapping elements.
    let mut merged: Vec<(Protocol, u16, u16)> = Vec::new();
    for (protocol, lo, hi) in resolved {
        match merged.last_mut() {
            Some(last) if last.0 == protocol && u32::from(lo) <= u32::from(last.2) + 1 => {
                last.2 = last.2.max(hi)
            }
            _ => merged.push((protocol, lo, hi)),
        }
    }
    merged
}

fn render_port_set(ports: &[(Protocol, u16, u16)]) -> String {
    let items: Vec<String> = ports
        .iter()
        .map(|(protocol, lo, hi)| {
            if lo == hi {
                format!("{} . {lo}", protocol.nft())
            } else {
                format!("{} . {lo}-{hi}", protocol.nft())
            }
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// Chain names of a local pod.
pub fn ingress_chain(ip: Ipv4Addr) -> String {
    format!("ing_{ip}")
}
pub fn egress_chain(ip: Ipv4Addr) -> String {
    format!("egr_{ip}")
}

/// What one policy contributes to one node's ruleset: its peer sets and, per
/// local pod it isolates, its rules in order (an isolated pod without any
/// allowing rule has an empty list). Depends on the policy, the pods and the
/// namespaces only, so it can be kept while those stay the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyContribution {
    sets: BTreeMap<String, NftSet>,
    ingress: BTreeMap<Ipv4Addr, Vec<String>>,
    egress: BTreeMap<Ipv4Addr, Vec<String>>,
}

/// Local pods with an IP, by namespace.
fn local_pods_by_namespace(input: &NetpolInput) -> BTreeMap<&str, Vec<&PodInfo>> {
    let mut local_pods: BTreeMap<&str, Vec<&PodInfo>> = BTreeMap::new();
    for pod in input.pods.iter().filter(|p| p.local && p.ip.is_some()) {
        local_pods
            .entry(pod.namespace.as_str())
            .or_default()
            .push(pod);
    }
    local_pods
}

/// Compile one policy for the local pods.
fn compile_policy(
    index: &Index<'_>,
    local_pods: &BTreeMap<&str, Vec<&PodInfo>>,
    policy: &PolicyInfo,
) -> PolicyContribution {
    let mut contribution = PolicyContribution::default();
    let selected: Vec<&PodInfo> = local_pods
        .get(policy.namespace.as_str())
        .into_iter()
        .flatten()
        .copied()
        .filter(|pod| policy.pod_selector.matches(&pod.labels))
        .collect();
    if selected.is_empty() {
        return contribution;
    }
    for direction in [Direction::Ingress, Direction::Egress] {
        let (isolates, rules) = match direction {
            Direction::Ingress => (policy.ingress_isolates, &policy.ingress),
            Direction::Egress => (policy.egress_isolates, &policy.egress),
        };
        if !isolates {
            continue;
        }
        let targets = match direction {
            Direction::Ingress => &mut contribution.ingress,
            Direction::Egress => &mut contribution.egress,
        };
        for pod in &selected {
            targets
                .entry(pod.ip.expect("local pods have IPs"))
                .or_default();
        }
        for rule in rules {
            if rule.unusable_ports && rule.ports.is_empty() {
                continue;
            }
            let ranges = index.rule_ranges(policy, rule);
            let set_name = peer_set_name(policy, rule);
            let peer_match = match &ranges {
                None => String::new(),
                Some(ranges) => {
                    contribution.sets.insert(
                        set_name.clone(),
                        NftSet {
                            kind: SetKind::Peers,
                            elements: Arc::new(ranges.iter().copied().map(render_range).collect()),
                        },
                    );
                    match direction {
                        Direction::Ingress => format!("ip saddr @{set_name} "),
                        Direction::Egress => format!("ip daddr @{set_name} "),
                    }
                }
            };
            let verdict = match direction {
                Direction::Ingress => "accept",
                Direction::Egress => "return",
            };
            match direction {
                Direction::Ingress => {
                    for pod in &selected {
                        let line = if rule.ports.is_empty() {
                            format!("{peer_match}{verdict}")
                        } else {
                            let ports = resolve_ports(&rule.ports, Some(pod));
                            if ports.is_empty() {
                                continue;
                            }
                            format!(
                                "{peer_match}meta l4proto . th dport {} {verdict}",
                                render_port_set(&ports)
                            )
                        };
                        targets
                            .get_mut(&pod.ip.expect("local pods have IPs"))
                            .expect("entry made above")
                            .push(line);
                    }
                }
                Direction::Egress => {
                    let mut lines = Vec::new();
                    if rule.ports.is_empty() {
                        lines.push(format!("{peer_match}{verdict}"));
                    } else {
                        // Numbered ports do not depend on the destination.
                        let numbered = resolve_ports(&rule.ports, None);
                        if !numbered.is_empty() {
                            lines.push(format!(
                                "{peer_match}meta l4proto . th dport {} {verdict}",
                                render_port_set(&numbered)
                            ));
                        }
                        // Named ports: resolved on every destination pod in the peers.
                        if rule
                            .ports
                            .iter()
                            .any(|p| matches!(p.port, PortSpec::Named(_)))
                        {
                            let named: Vec<PolicyPort> = rule
                                .ports
                                .iter()
                                .filter(|p| matches!(p.port, PortSpec::Named(_)))
                                .cloned()
                                .collect();
                            let mut elements = BTreeSet::new();
                            for destination in index.all_pods() {
                                let ip = destination.ip.expect("indexed pods have IPs");
                                let inside = match &ranges {
                                    None => true,
                                    Some(ranges) => ranges
                                        .iter()
                                        .any(|(lo, hi)| (*lo..=*hi).contains(&u32::from(ip))),
                                };
                                if !inside {
                                    continue;
                                }
                                for (protocol, port, _) in resolve_ports(&named, Some(destination))
                                {
                                    elements.insert(format!("{ip} . {} . {port}", protocol.nft()));
                                }
                            }
                            let named_set = named_port_set_name(&set_name, &named);
                            contribution.sets.insert(
                                named_set.clone(),
                                NftSet {
                                    kind: SetKind::PodPorts,
                                    elements: Arc::new(elements),
                                },
                            );
                            lines.push(format!(
                                "ip daddr . meta l4proto . th dport @{named_set} {verdict}"
                            ));
                        }
                    }
                    for pod in &selected {
                        targets
                            .get_mut(&pod.ip.expect("local pods have IPs"))
                            .expect("entry made above")
                            .extend(lines.iter().cloned());
                    }
                }
            }
        }
    }
    contribution
}

/// Policies in the order their rules appear in a pod's chain.
fn sorted_policies(input: &NetpolInput) -> Vec<&PolicyInfo> {
    let mut policies: Vec<&PolicyInfo> = input.policies.iter().collect();
    policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    policies
}

/// The ruleset made of per-policy contributions, in policy order.
fn assemble<'a>(contributions: impl Iterator<Item = &'a PolicyContribution>) -> NetpolRuleset {
    let mut ruleset = NetpolRuleset::default();
    // Rules of every local pod, per direction, in policy order.
    let mut ingress_rules: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    let mut egress_rules: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for contribution in contributions {
        for (name, set) in &contribution.sets {
            ruleset.sets.insert(name.clone(), set.clone());
        }
        for (ip, rules) in &contribution.ingress {
            ingress_rules
                .entry(*ip)
                .or_default()
                .extend(rules.iter().cloned());
        }
        for (ip, rules) in &contribution.egress {
            egress_rules
                .entry(*ip)
                .or_default()
                .extend(rules.iter().cloned());
        }
    }
    for (ip, rules) in ingress_rules {
        set_pod_chain(&mut ruleset, Direction::Ingress, ip, Some(rules));
    }
    for (ip, rules) in egress_rules {
        set_pod_chain(&mut ruleset, Direction::Egress, ip, Some(rules));
    }
    ruleset
}

/// Put a local pod's chain (its policies' rules in order) and its dispatch
/// map entry into `ruleset`, or remove both when no policy isolates it.
fn set_pod_chain(
    ruleset: &mut NetpolRuleset,
    direction: Direction,
    ip: Ipv4Addr,
    rules: Option<Vec<String>>,
) {
    let (chain, pods) = match direction {
        Direction::Ingress => (ingress_chain(ip), &mut ruleset.ingress_pods),
        Direction::Egress => (egress_chain(ip), &mut ruleset.egress_pods),
    };
    match rules {
        Some(rules) => {
            let mut lines = vec!["ct state invalid drop".to_string()];
            lines.extend(dedup_keep_order(rules));
            lines.push("drop".to_string());
            ruleset.chains.insert(chain.clone(), Arc::new(lines));
            pods.insert(ip, chain);
        }
        None => {
            ruleset.chains.remove(&chain);
            pods.remove(&ip);
        }
    }
}

/// What a set of changed contributions touches: set names and local pods.
#[derive(Default)]
struct Touched {
    sets: BTreeSet<String>,
    ingress: BTreeSet<Ipv4Addr>,
    egress: BTreeSet<Ipv4Addr>,
}

impl Touched {
    fn add(&mut self, contribution: &PolicyContribution) {
        self.sets.extend(contribution.sets.keys().cloned());
        self.ingress.extend(contribution.ingress.keys());
        self.egress.extend(contribution.egress.keys());
    }
}

/// Compile the ruleset for the local pods of `input`.
pub fn plan_netpol(input: &NetpolInput) -> NetpolRuleset {
    let index = Index::new(input);
    let local_pods = local_pods_by_namespace(input);
    let contributions: Vec<PolicyContribution> = sorted_policies(input)
        .into_iter()
        .map(|policy| compile_policy(&index, &local_pods, policy))
        .collect();
    assemble(contributions.iter())
}

/// [`plan_netpol`] with memory: keeps each policy's contribution and
/// recompiles only the policies that changed while the pods and namespaces
/// stay the same (any pod or namespace change recompiles every policy, since
/// selectors anywhere may pick it up). Same result as [`plan_netpol`].
#[derive(Debug, Default)]
pub struct NetpolCompiler {
    /// Pods and namespaces the cached contributions were compiled against,
    /// sorted (the result does not depend on input order).
    pods: Vec<PodInfo>,
    namespaces: Vec<NamespaceInfo>,
    cache: BTreeMap<(String, String), (PolicyInfo, PolicyContribution)>,
    recompiled: usize,
    /// The last result, assembled from `cache` alone (None after a compile
    /// that saw two policies with one key, or when pods or namespaces
    /// changed): the next compile rebuilds only the sets and pod chains the
    /// changed policies touch.
    last: Option<NetpolRuleset>,
}

impl NetpolCompiler {
    pub fn new() -> NetpolCompiler {
        NetpolCompiler::default()
    }

    /// Number of policies compiled (not taken from the cache) by the last
    /// [`NetpolCompiler::compile`].
    pub fn last_recompiled(&self) -> usize {
        self.recompiled
    }

    pub fn compile(&mut self, input: &NetpolInput) -> NetpolRuleset {
        // Compared by reference; copied only when they changed.
        let mut pods: Vec<&PodInfo> = input.pods.iter().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name, a.ip).cmp(&(&b.namespace, &b.name, b.ip)));
        let mut namespaces: Vec<&NamespaceInfo> = input.namespaces.iter().collect();
        namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        if !pods.iter().copied().eq(self.pods.iter())
            || !namespaces.iter().copied().eq(self.namespaces.iter())
        {
            self.cache.clear();
            self.last = None;
            self.pods = pods.into_iter().cloned().collect();
            self.namespaces = namespaces.into_iter().cloned().collect();
        }
        let index = Index::new(input);
        let local_pods = local_pods_by_namespace(input);
        let mut previous = std::mem::take(&mut self.cache);
        let mut recompiled = 0;
        let mut duplicates: Vec<PolicyContribution> = Vec::new();
        let policies = sorted_policies(input);
        let mut order: Vec<Result<(String, String), usize>> = Vec::with_capacity(policies.len());
        let mut touched = Touched::default();
        for policy in policies {
            let key = (policy.namespace.clone(), policy.name.clone());
            if self.cache.contains_key(&key) {
                // The API never holds two; compile it, do not cache it.
                recompiled += 1;
                duplicates.push(compile_policy(&index, &local_pods, policy));
                order.push(Err(duplicates.len() - 1));
                continue;
            }
            let entry = match previous.remove(&key) {
                Some((cached, contribution)) if &cached == policy => (cached, contribution),
                earlier => {
                    recompiled += 1;
                    let contribution = compile_policy(&index, &local_pods, policy);
                    match earlier {
                        Some((_, old)) if old == contribution => {}
                        Some((_, old)) => {
                            touched.add(&old);
                            touched.add(&contribution);
                        }
                        None => touched.add(&contribution),
                    }
                    (policy.clone(), contribution)
                }
            };
            self.cache.insert(key.clone(), entry);
            order.push(Ok(key));
        }
        // Policies gone.
        for (_, old) in previous.values() {
            touched.add(old);
        }
        self.recompiled = recompiled;
        let cache = &self.cache;
        let ruleset = match self.last.take() {
            Some(mut ruleset) if duplicates.is_empty() => {
                for name in touched.sets {
                    match cache.values().find_map(|(_, c)| c.sets.get(&name)) {
                        Some(set) => ruleset.sets.insert(name, set.clone()),
                        None => ruleset.sets.remove(&name),
                    };
                }
                for (direction, ips) in [
                    (Direction::Ingress, touched.ingress),
                    (Direction::Egress, touched.egress),
                ] {
                    for ip in ips {
                        let mut rules: Option<Vec<String>> = None;
                        for (_, contribution) in cache.values() {
                            let of_pod = match direction {
                                Direction::Ingress => contribution.ingress.get(&ip),
                                Direction::Egress => contribution.egress.get(&ip),
                            };
                            if let Some(of_pod) = of_pod {
                                rules
                                    .get_or_insert_with(Vec::new)
                                    .extend(of_pod.iter().cloned());
                            }
                        }
                        set_pod_chain(&mut ruleset, direction, ip, rules);
                    }
                }
                ruleset
            }
            _ => assemble(order.iter().map(|slot| match slot {
                Ok(key) => &cache[key].1,
                Err(position) => &duplicates[*position],
            })),
        };
        self.last = duplicates.is_empty().then(|| ruleset.clone());
        ruleset
    }
}

fn dedup_keep_order(lines: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    lines
        .into_iter()
        .filter(|line| seen.insert(line.clone()))
        .collect()
}

fn set_declaration(kind: SetKind) -> &'static str {
    match kind {
        SetKind::Peers => "type ipv4_addr; flags interval;",
        SetKind::PodPorts => "type ipv4_addr . inet_proto . inet_service;",
    }
}

/// The fixed skeleton: dispatch maps and the base chains.
fn skeleton(out: &mut String) {
    let t = NETPOL_TABLE;
    let _ = writeln!(out, "add map inet {t} ingress-pods {{ {MAP_DECLARATION} }}");
    let _ = writeln!(out, "add map inet {t} egress-pods {{ {MAP_DECLARATION} }}");
    let _ = writeln!(
        out,
        "add chain inet {t} forward {{ type filter hook forward priority filter + 5; policy accept; }}"
    );
    let _ = writeln!(
        out,
        "add rule inet {t} forward ct state established,related accept"
    );
    let _ = writeln!(out, "add rule inet {t} forward ip saddr vmap @egress-pods");
    let _ = writeln!(out, "add rule inet {t} forward ip daddr vmap @ingress-pods");
    // Pods talking to their own node are subject to their egress policy.
    let _ = writeln!(
        out,
        "add chain inet {t} input {{ type filter hook input priority filter + 5; policy accept; }}"
    );
    let _ = writeln!(
        out,
        "add rule inet {t} input ct state established,related accept"
    );
    let _ = writeln!(out, "add rule inet {t} input ip saddr vmap @egress-pods");
}

/// Adds elements by re-declaring the set with them (`add set NAME { ...;
/// elements = { ... } }`): nft 1.0 answers this without reading every
/// set's elements back from the kernel, unlike `add element`/`delete element`
/// (hundreds of milliseconds once a table holds tens of thousands).
fn render_elements(
    out: &mut String,
    kind: &str,
    set: &str,
    declaration: &str,
    elements: &[&String],
) {
    // Chunks keep each netlink message comfortably small.
    for chunk in elements.chunks(1000) {
        let items: Vec<&str> = chunk.iter().map(|e| e.as_str()).collect();
        let _ = writeln!(
            out,
            "add {kind} inet {} {set} {{ {declaration} elements = {{ {} }} }}",
            NETPOL_TABLE,
            items.join(", ")
        );
    }
}

const MAP_DECLARATION: &str = "type ipv4_addr : verdict;";

fn map_element(ip: &Ipv4Addr, verdict: &str, chain: &str) -> String {
    format!("{ip} : {verdict} {chain}")
}

/// A script that replaces the whole table atomically with `ruleset`
/// (converges from any state: absent, stale or foreign contents).
pub fn render_full(ruleset: &NetpolRuleset) -> String {
    let t = NETPOL_TABLE;
    let mut out = String::new();
    let _ = writeln!(out, "add table inet {t}");
    let _ = writeln!(out, "delete table inet {t}");
    let _ = writeln!(out, "add table inet {t}");
    out.push_str(&render_update(&NetpolRuleset::default(), ruleset, true));
    out
}

/// A script that turns `old` (what the kernel has) into `new`, touching only
/// what differs. `with_skeleton` also creates the maps and base chains.
pub fn render_update(old: &NetpolRuleset, new: &NetpolRuleset, with_skeleton: bool) -> String {
    let t = NETPOL_TABLE;
    let mut out = String::new();
    // 1. Sets: new ones; changed ones get their additions, or, when
    // something was removed, are flushed and refilled (same transaction, so
    // packets never see a partial set).
    for (name, set) in &new.sets {
        let declaration = set_declaration(set.kind);
        match old.sets.get(name) {
            None => {
                if set.elements.is_empty() {
                    let _ = writeln!(out, "add set inet {t} {name} {{ {declaration} }}");
                }
                let elements: Vec<&String> = set.elements.iter().collect();
                render_elements(&mut out, "set", name, declaration, &elements);
            }
            Some(previous) if Arc::ptr_eq(&previous.elements, &set.elements) => {}
            Some(previous) if previous.elements.is_subset(&set.elements) => {
                let added: Vec<&String> = set.elements.difference(&previous.elements).collect();
                render_elements(&mut out, "set", name, declaration, &added);
            }
            Some(_) => {
                let _ = writeln!(out, "flush set inet {t} {name}");
                let elements: Vec<&String> = set.elements.iter().collect();
                render_elements(&mut out, "set", name, declaration, &elements);
            }
        }
    }
    if with_skeleton {
        skeleton(&mut out);
    }
    // 2. Chains: declare new ones, refill changed ones.
    for name in new.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
        let _ = writeln!(out, "add chain inet {t} {name}");
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            Some(previous) if Arc::ptr_eq(previous, rules) || previous == rules => {}
            Some(_) => {
                let _ = writeln!(out, "flush chain inet {t} {name}");
                for rule in rules.iter() {
                    let _ = writeln!(out, "add rule inet {t} {name} {rule}");
                }
            }
            None => {
                for rule in rules.iter() {
                    let _ = writeln!(out, "add rule inet {t} {name} {rule}");
                }
            }
        }
    }
    // 3. Dispatch maps, element by element: keys that left or now point
    //    elsewhere are deleted, then new and repointed keys added (one
    //    transaction, so a repointed pod is never without its entry).
    for (map, verdict, old_map, new_map) in [
        ("ingress-pods", "goto", &old.ingress_pods, &new.ingress_pods),
        ("egress-pods", "jump", &old.egress_pods, &new.egress_pods),
    ] {
        let gone: Vec<String> = old_map
            .iter()
            .filter(|(ip, chain)| new_map.get(*ip) != Some(*chain))
            .map(|(ip, _)| ip.to_string())
            .collect();
        for chunk in gone.chunks(1000) {
            let _ = writeln!(
                out,
                "delete element inet {t} {map} {{ {} }}",
                chunk.join(", ")
            );
        }
        let elements: Vec<String> = new_map
            .iter()
            .filter(|(ip, chain)| old_map.get(*ip) != Some(*chain))
            .map(|(ip, chain)| map_element(ip, verdict, chain))
            .collect();
        render_elements(
            &mut out,
            "map",
            map,
            MAP_DECLARATION,
            &elements.iter().collect::<Vec<_>>(),
        );
    }
    // 4. What is gone: chains (no longer referenced), then sets.
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        let _ = writeln!(out, "flush chain inet {t} {name}");
        let _ = writeln!(out, "delete chain inet {t} {name}");
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(out, "delete set inet {t} {name}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use serde_json::json;

    fn pod(namespace: &str, name: &str, ip: &str, node: &str, labels: Value) -> Value {
        json!({
            "metadata": {"namespace": namespace, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "web", "containerPort": if name == "b" { 8080 } else { 80 }}]}]},
            "status": {"podIP": ip, "phase": "Running"},
        })
    }

    fn input(policies: Vec<Value>) -> NetpolInput {
        let pods = [
            pod("x", "a", "10.244.0.2", "n1", json!({"pod": "a"})),
            pod("x", "b", "10.244.0.3", "n1", json!({"pod": "b"})),
            pod("y", "a", "10.244.1.2", "n2", json!({"pod": "a"})),
            pod("y", "b", "10.244.1.3", "n2", json!({"pod": "b"})),
            pod("y", "c", "10.244.1.4", "n2", json!({"pod": "c"})),
        ];
        NetpolInput {
            namespaces: ["x", "y"]
                .iter()
                .map(|n| {
                    NamespaceInfo::from_json(&json!({"metadata": {"name": n, "labels": {"ns": n}}}))
                })
                .collect(),
            pods: pods.iter().map(|p| PodInfo::from_json(p, "n1")).collect(),
            policies: policies.iter().map(PolicyInfo::from_json).collect(),
        }
    }

    fn policy(name: &str, spec: Value) -> Value {
        json!({"metadata": {"namespace": "x", "name": name}, "spec": spec})
    }

    fn check(policies: Vec<Value>, expected: Expect) {
        let ruleset = plan_netpol(&input(policies));
        expected.assert_eq(&render_update(&NetpolRuleset::default(), &ruleset, false));
    }

    #[test]
    fn no_policies_no_rules() {
        check(vec![], expect![[""]]);
    }

    #[test]
    fn default_deny_ingress() {
        check(
            vec![policy("deny", json!({"podSelector": {}}))],
            expect![[r#"
                add chain inet podnet-netpol ing_10.244.0.2
                add chain inet podnet-netpol ing_10.244.0.3
                add rule inet podnet-netpol ing_10.244.0.2 ct state invalid drop
                add rule inet podnet-netpol ing_10.244.0.2 drop
                add rule inet podnet-netpol ing_10.244.0.3 ct state invalid drop
                add rule inet podnet-netpol ing_10.244.0.3 drop
                add map inet podnet-netpol ingress-pods { type ipv4_addr : verdict; elements = { 10.244.0.2 : goto ing_10.244.0.2, 10.244.0.3 : goto ing_10.244.0.3 } }
            "#]],
        );
    }

    #[test]
    fn selectors_ports_and_ip_blocks() {
        check(
            vec![policy(
                "web",
                json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
                    {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}},
                              {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24", "10.244.0.0/25"]}}],
                     "ports": [{"port": 80}, {"port": 81, "endPort": 90, "protocol": "UDP"}, {"port": 85, "protocol": "UDP"}, {"protocol": "SCTP"}, {"port": "web"}]},
                    {"ports": [{"port": "missing"}]}
                ]}),
            )],
            expect![[r#"
                add set inet podnet-netpol peers_2971bceb29fb49c43aa76f500618bb2a { type ipv4_addr; flags interval; elements = { 10.244.0.128-10.244.0.255, 10.244.1.3-10.244.1.4, 10.244.2.0-10.244.255.255 } }
                add chain inet podnet-netpol ing_10.244.0.2
                add rule inet podnet-netpol ing_10.244.0.2 ct state invalid drop
                add rule inet podnet-netpol ing_10.244.0.2 ip saddr @peers_2971bceb29fb49c43aa76f500618bb2a meta l4proto . th dport { tcp . 80, udp . 81-90, sctp . 0-65535 } accept
                add rule inet podnet-netpol ing_10.244.0.2 drop
                add map inet podnet-netpol ingress-pods { type ipv4_addr : verdict; elements = { 10.244.0.2 : goto ing_10.244.0.2 } }
            "#]],
        );
    }

    #[test]
    fn egress_with_named_ports_resolves_per_destination() {
        check(
            vec![policy(
                "out",
                json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"], "egress": [
                    {"to": [{"namespaceSelector": {}}], "ports": [{"port": "web"}, {"port": 53, "protocol": "UDP"}]},
                    {}
                ]}),
            )],
            expect![[r#"
                add set inet podnet-netpol peers_51813f7ea6d49055af139ac90bdd67e2 { type ipv4_addr; flags interval; elements = { 10.244.0.2-10.244.0.3, 10.244.1.2-10.244.1.4 } }
                add set inet podnet-netpol ports_4c2929a527a5dd289ab877c3b5e8d916 { type ipv4_addr . inet_proto . inet_service; elements = { 10.244.0.2 . tcp . 80, 10.244.0.3 . tcp . 8080, 10.244.1.2 . tcp . 80, 10.244.1.3 . tcp . 8080, 10.244.1.4 . tcp . 80 } }
                add chain inet podnet-netpol egr_10.244.0.3
                add rule inet podnet-netpol egr_10.244.0.3 ct state invalid drop
                add rule inet podnet-netpol egr_10.244.0.3 ip daddr @peers_51813f7ea6d49055af139ac90bdd67e2 meta l4proto . th dport { udp . 53 } return
                add rule inet podnet-netpol egr_10.244.0.3 ip daddr . meta l4proto . th dport @ports_4c2929a527a5dd289ab877c3b5e8d916 return
                add rule inet podnet-netpol egr_10.244.0.3 return
                add rule inet podnet-netpol egr_10.244.0.3 drop
                add map inet podnet-netpol egress-pods { type ipv4_addr : verdict; elements = { 10.244.0.3 : jump egr_10.244.0.3 } }
            "#]],
        );
    }

    #[test]
    fn full_render_replaces_the_table_atomically() {
        let ruleset = plan_netpol(&input(vec![policy(
            "deny",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        )]));
        expect![[r#"
            add table inet podnet-netpol
            delete table inet podnet-netpol
            add table inet podnet-netpol
            add set inet podnet-netpol peers_5dcfcbd6fcd6069627f1a0e98c208241 { type ipv4_addr; flags interval; elements = { 10.244.0.2-10.244.0.3 } }
            add map inet podnet-netpol ingress-pods { type ipv4_addr : verdict; }
            add map inet podnet-netpol egress-pods { type ipv4_addr : verdict; }
            add chain inet podnet-netpol forward { type filter hook forward priority filter + 5; policy accept; }
            add rule inet podnet-netpol forward ct state established,related accept
            add rule inet podnet-netpol forward ip saddr vmap @egress-pods
            add rule inet podnet-netpol forward ip daddr vmap @ingress-pods
            add chain inet podnet-netpol input { type filter hook input priority filter + 5; policy accept; }
            add rule inet podnet-netpol input ct state established,related accept
            add rule inet podnet-netpol input ip saddr vmap @egress-pods
            add chain inet podnet-netpol ing_10.244.0.2
            add rule inet podnet-netpol ing_10.244.0.2 ct state invalid drop
            add rule inet podnet-netpol ing_10.244.0.2 ip saddr @peers_5dcfcbd6fcd6069627f1a0e98c208241 accept
            add rule inet podnet-netpol ing_10.244.0.2 drop
            add map inet podnet-netpol ingress-pods { type ipv4_addr : verdict; elements = { 10.244.0.2 : goto ing_10.244.0.2 } }
        "#]]
        .assert_eq(&render_full(&ruleset));
    }

    #[test]
    fn update_touches_only_what_changed() {
        let deny = policy("deny", json!({"podSelector": {}}));
        let allow_b = policy(
            "allow",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        );
        let before = plan_netpol(&input(vec![deny.clone(), allow_b.clone()]));
        // y/c joins x/a's peers (label change on x/b → not a peer any more).
        let mut changed = input(vec![deny.clone(), allow_b]);
        changed.pods[1].labels.insert("pod".into(), "z".into());
        let after = plan_netpol(&changed);
        expect![[r#"
            flush set inet podnet-netpol peers_1a356ef332cd1058ea9a68290448f85d
        "#]]
        .assert_eq(&render_update(&before, &after, false));
        // Deleting the allow policy: its set goes, x/a's chain is refilled.
        let only_deny = plan_netpol(&input(vec![deny]));
        expect![[r#"
            flush chain inet podnet-netpol ing_10.244.0.2
            add rule inet podnet-netpol ing_10.244.0.2 ct state invalid drop
            add rule inet podnet-netpol ing_10.244.0.2 drop
            delete set inet podnet-netpol peers_1a356ef332cd1058ea9a68290448f85d
        "#]]
        .assert_eq(&render_update(&before, &only_deny, false));
        // Deleting everything: map entries, chains, sets.
        expect![[r#"
            delete element inet podnet-netpol ingress-pods { 10.244.0.2, 10.244.0.3 }
            flush chain inet podnet-netpol ing_10.244.0.2
            delete chain inet podnet-netpol ing_10.244.0.2
            flush chain inet podnet-netpol ing_10.244.0.3
            delete chain inet podnet-netpol ing_10.244.0.3
            delete set inet podnet-netpol peers_1a356ef332cd1058ea9a68290448f85d
        "#]]
        .assert_eq(&render_update(&before, &NetpolRuleset::default(), false));
        assert_eq!(render_update(&before, &before, false), "");
    }

    #[test]
    fn rules_with_the_same_peers_share_one_set() {
        let from_y = |name: &str, selected: &str| {
            policy(
                name,
                json!({"podSelector": {"matchLabels": {"pod": selected}},
                       "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
            )
        };
        // Same peers relative to the namespace: a different set per namespace.
        let same_namespace = policy(
            "local",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        );
        let both = plan_netpol(&input(vec![
            from_y("one", "a"),
            from_y("two", "b"),
            same_namespace.clone(),
        ]));
        expect![[r#"
            add set inet podnet-netpol peers_5dcfcbd6fcd6069627f1a0e98c208241 { type ipv4_addr; flags interval; elements = { 10.244.0.2-10.244.0.3 } }
            add set inet podnet-netpol peers_bd78fa0973ec9e7ed698d4a03e81f4bf { type ipv4_addr; flags interval; elements = { 10.244.1.2-10.244.1.4 } }
            add chain inet podnet-netpol ing_10.244.0.2
            add chain inet podnet-netpol ing_10.244.0.3
            add rule inet podnet-netpol ing_10.244.0.2 ct state invalid drop
            add rule inet podnet-netpol ing_10.244.0.2 ip saddr @peers_5dcfcbd6fcd6069627f1a0e98c208241 accept
            add rule inet podnet-netpol ing_10.244.0.2 ip saddr @peers_bd78fa0973ec9e7ed698d4a03e81f4bf accept
            add rule inet podnet-netpol ing_10.244.0.2 drop
            add rule inet podnet-netpol ing_10.244.0.3 ct state invalid drop
            add rule inet podnet-netpol ing_10.244.0.3 ip saddr @peers_5dcfcbd6fcd6069627f1a0e98c208241 accept
            add rule inet podnet-netpol ing_10.244.0.3 ip saddr @peers_bd78fa0973ec9e7ed698d4a03e81f4bf accept
            add rule inet podnet-netpol ing_10.244.0.3 drop
            add map inet podnet-netpol ingress-pods { type ipv4_addr : verdict; elements = { 10.244.0.2 : goto ing_10.244.0.2, 10.244.0.3 : goto ing_10.244.0.3 } }
        "#]]
        .assert_eq(&render_update(&NetpolRuleset::default(), &both, false));
        // A relative peer in another namespace has its own set.
        let mut other = input(vec![same_namespace.clone()]);
        other.policies[0].namespace = "y".into();
        let in_y = plan_netpol(&other);
        assert_eq!(in_y.sets.len(), 0, "y has no local pods: {in_y:?}");
        let name_x = peer_set_name(&other.policies[0], &other.policies[0].ingress[0]);
        let in_x = plan_netpol(&input(vec![same_namespace]));
        assert!(!in_x.sets.contains_key(&name_x), "{in_x:?}");
        // Deleting one of two policies that share a set keeps the set.
        let one = plan_netpol(&input(vec![from_y("one", "a")]));
        let two = plan_netpol(&input(vec![from_y("one", "a"), from_y("two", "b")]));
        expect![[r#"
            delete element inet podnet-netpol ingress-pods { 10.244.0.3 }
            flush chain inet podnet-netpol ing_10.244.0.3
            delete chain inet podnet-netpol ing_10.244.0.3
        "#]]
        .assert_eq(&render_update(&two, &one, false));
    }

    #[test]
    fn interval_helpers() {
        assert_eq!(
            normalise(vec![(5, 9), (1, 3), (4, 4), (20, 30), (25, 26)]),
            vec![(1, 9), (20, 30)]
        );
        let block: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        let except: Vec<Ipv4Net> = vec![
            "10.1.0.0/16".parse().unwrap(),
            "10.0.0.0/16".parse().unwrap(),
        ];
        let parts: Vec<String> = subtract(net_range(&block), &except)
            .into_iter()
            .map(render_range)
            .collect();
        assert_eq!(parts, vec!["10.2.0.0-10.255.255.255"]);
        assert_eq!(
            render_range(net_range(&"0.0.0.0/0".parse().unwrap())),
            "0.0.0.0-255.255.255.255"
        );
    }

    #[test]
    fn host_network_and_finished_pods_are_ignored() {
        let host = json!({"metadata": {"namespace": "x", "name": "h"}, "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"podIP": "172.18.0.2"}});
        assert_eq!(PodInfo::from_json(&host, "n1").ip, None);
        let done = json!({"metadata": {"namespace": "x", "name": "d"}, "spec": {"nodeName": "n1"}, "status": {"podIP": "10.244.0.9", "phase": "Succeeded"}});
        assert_eq!(PodInfo::from_json(&done, "n1").ip, None);
    }

    #[test]
    fn compiler_matches_plan_and_recompiles_only_what_changed() {
        let deny = policy("deny", json!({"podSelector": {}}));
        let allow = policy(
            "allow",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                                "ports": [{"port": "web"}]}],
                   "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": "web"}]}]}),
        );
        let egress = policy(
            "egress",
            json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}}]}]}),
        );
        let allow_changed = policy(
            "allow",
            json!({"podSelector": {},
                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}}]}]}),
        );
        let mut compiler = NetpolCompiler::new();
        let mut steps = vec![
            (input(vec![deny.clone()]), 1),
            (input(vec![deny.clone(), allow.clone()]), 1),
            (input(vec![deny.clone(), allow.clone(), egress.clone()]), 1),
            // Changed in place: now also selects x/b and shares egress's peers.
            (
                input(vec![deny.clone(), allow_changed.clone(), egress.clone()]),
                1,
            ),
            (input(vec![deny.clone(), allow.clone(), egress.clone()]), 1),
            (input(vec![allow.clone(), egress.clone()]), 0),
        ];
        // A label change recompiles everything.
        let mut relabelled = input(vec![allow.clone(), egress.clone()]);
        relabelled.pods[4].labels.insert("pod".into(), "a".into());
        steps.push((relabelled, 2));
        // Input order does not matter.
        let mut reordered = input(vec![egress, allow]);
        reordered.pods[4].labels.insert("pod".into(), "a".into());
        reordered.pods.reverse();
        steps.push((reordered, 0));
        for (number, (step, recompiled)) in steps.into_iter().enumerate() {
            assert_eq!(compiler.compile(&step), plan_netpol(&step), "step {number}");
            assert_eq!(compiler.last_recompiled(), recompiled, "step {number}");
        }
    }
}
