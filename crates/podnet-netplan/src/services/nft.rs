//! nftables form of the service proxy: one table `ip podnet-proxy`, shaped
//! like kube-proxy's nftables mode.
//!
//! - `services` (jumped to from nat prerouting and output) dispatches with
//!   `ip daddr . meta l4proto . th dport vmap @service-ips` (ClusterIPs,
//!   externalIPs, LoadBalancer IPs) and, for the node's own addresses,
//!   `meta l4proto . th dport vmap @service-nodeports`.
//! - Per service port: `service-…` (all usable endpoints), `local-…` (this
//!   node's, for traffic policy Local), `external-…` (NodePort / external
//!   entry: masquerade, or keep the source for externalTrafficPolicy Local)
//!   and one `endpoint-…` chain per endpoint (hairpin mark, affinity, DNAT).
//! - Filter chains at priority dstnat-10 reject traffic for services without
//!   endpoints (`no-endpoint-services`, `no-endpoint-nodeports`, verdict
//!   `goto reject-chain`, or `drop` when only local endpoints count and there
//!   are none) and, after DNAT, reject unused ports of ClusterIPs and drop
//!   unallocated addresses of the service network.
//! - Masquerade happens in postrouting on mark 0x4000.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{
    name_hash, Change, Dialect, Piece, ProxyContext, ResolvedEndpoint, ResolvedServicePort,
};

/// The table all rules live in.
pub const TABLE: &str = "podnet-proxy";
/// Table key used in [`Piece::chains`] (nftables has one table).
const T: &str = "ip";

/// The nftables dialect.
pub struct Nftables;

struct Names {
    base: String,
    hash: String,
}

impl Names {
    fn new(port: &ResolvedServicePort) -> Names {
        let base = format!(
            "{}/{}/{}/{}",
            port.id.namespace,
            port.id.service,
            port.id.protocol.lower(),
            port.id.port_name
        );
        let hash = name_hash(&base, 8);
        Names { base, hash }
    }
    fn service(&self) -> String {
        format!("service-{}-{}", self.hash, self.base)
    }
    fn local(&self) -> String {
        format!("local-{}-{}", self.hash, self.base)
    }
    fn external(&self) -> String {
        format!("external-{}-{}", self.hash, self.base)
    }
    fn endpoint(&self, endpoint: &ResolvedEndpoint) -> String {
        let base = format!("{}__{}/{}", self.base, endpoint.ip, endpoint.port);
        format!("endpoint-{}-{}", name_hash(&base, 8), base)
    }
    fn affinity(&self, endpoint: &ResolvedEndpoint, timeout: u32) -> String {
        // The timeout is part of the hash so that changing it makes a new set
        // (a set's timeout cannot be changed in place).
        let base = format!("{}__{}/{}", self.base, endpoint.ip, endpoint.port);
        format!(
            "affinity-{}-{}",
            name_hash(&format!("{base}/{timeout}"), 8),
            base
        )
    }
}

fn chain(piece: &mut Piece, name: String, rules: Vec<String>) {
    piece.chains.insert((T.to_string(), name), rules);
}

fn element(piece: &mut Piece, container: &str, key: String, value: String) {
    piece.elements.insert((container.to_string(), key), value);
}

/// Rules choosing one of `endpoints` uniformly: affinity first, then a
/// cascade of `numgen random mod k == 0` (probability 1/k for the k-th last).
fn policy_rules(
    names: &Names,
    port: &ResolvedServicePort,
    endpoints: &[ResolvedEndpoint],
    mut rules: Vec<String>,
) -> Vec<String> {
    if let Some(timeout) = port.affinity_timeout_seconds {
        for endpoint in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                names.affinity(endpoint, timeout),
                names.endpoint(endpoint)
            ));
        }
    }
    let count = endpoints.len();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let remaining = count - index;
        if remaining == 1 {
            rules.push(format!("goto {}", names.endpoint(endpoint)));
        } else {
            rules.push(format!(
                "numgen random mod {remaining} == 0 goto {}",
                names.endpoint(endpoint)
            ));
        }
    }
    rules
}

impl Dialect for Nftables {
    fn render(&self, context: &ProxyContext, ports: &[ResolvedServicePort]) -> Piece {
        let mut piece = Piece::default();
        for port in ports {
            render_port(context, port, &mut piece);
        }
        piece
    }

    fn full_batch(
        &self,
        context: &ProxyContext,
        desired: &Piece,
        _existing_chains: &[(String, String)],
    ) -> String {
        let mut out = String::with_capacity(256 * desired.chains.len() + 4096);
        // Creating then deleting makes the delete succeed whether or not the
        // table exists; the whole file is one transaction, so traffic never
        // sees a half-written table.
        let _ = writeln!(out, "add table ip {TABLE}");
        let _ = writeln!(out, "delete table ip {TABLE}");
        out.push_str(&skeleton(context));
        for (_, name) in desired.chains.keys() {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
        for (name, declaration) in &desired.sets {
            let _ = writeln!(out, "add set ip {TABLE} {name} {declaration}");
        }
        for ((_, name), rules) in &desired.chains {
            for rule in rules {
                let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
            }
        }
        let mut by_container: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((container, key), value) in &desired.elements {
            by_container
                .entry(container)
                .or_default()
                .push(element_text(key, value));
        }
        for (container, elements) in by_container {
            for chunk in elements.chunks(1000) {
                let _ = writeln!(
                    out,
                    "add element ip {TABLE} {container} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
        out
    }

    fn incremental_batch(&self, _context: &ProxyContext, change: &Change<'_>) -> String {
        let mut out = String::new();
        for (_, name) in &change.added_chains {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
        for (_, name) in change.changed_chains.iter().chain(&change.removed_chains) {
            let _ = writeln!(out, "flush chain ip {TABLE} {name}");
        }
        let mut removed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (container, key, _) in &change.removed_elements {
            removed.entry(container).or_default().push(key);
        }
        for (container, keys) in removed {
            let _ = writeln!(
                out,
                "delete element ip {TABLE} {container} {{ {} }}",
                keys.join(", ")
            );
        }
        for set in change
            .removed_sets
            .iter()
            .copied()
            .chain(change.changed_sets.iter().map(|(name, _)| *name))
        {
            let _ = writeln!(out, "delete set ip {TABLE} {set}");
        }
        for (set, declaration) in change.added_sets.iter().chain(&change.changed_sets) {
            let _ = writeln!(out, "add set ip {TABLE} {set} {declaration}");
        }
        for ((_, name), rules) in &change.chain_rules {
            for rule in rules.iter() {
                let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
            }
        }
        let mut added: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (container, key, value) in &change.added_elements {
            added
                .entry(container)
                .or_default()
                .push(element_text(key, value));
        }
        for (container, elements) in added {
            let _ = writeln!(
                out,
                "add element ip {TABLE} {container} {{ {} }}",
                elements.join(", ")
            );
        }
        for (_, name) in &change.removed_chains {
            let _ = writeln!(out, "delete chain ip {TABLE} {name}");
        }
        out
    }
}

fn element_text(key: &str, value: &str) -> String {
    if value.is_empty() {
        key.to_string()
    } else {
        format!("{key} : {value}")
    }
}

fn render_port(context: &ProxyContext, port: &ResolvedServicePort, piece: &mut Piece) {
    let names = Names::new(port);
    let protocol = port.id.protocol.lower();
    let has_endpoints = !port.endpoints.is_empty();
    let external_chain_needed =
        port.has_external_access() && !port.external_traffic_endpoints().is_empty();
    let service_chain_needed =
        has_endpoints && (!port.internal_traffic_local || external_chain_needed);
    let local_chain_needed = !port.local_endpoints.is_empty()
        && (port.internal_traffic_local || (external_chain_needed && port.external_traffic_local));
    let no_endpoint_verdict = if has_endpoints {
        // Endpoints exist, but none this traffic may use (policy Local).
        "drop".to_string()
    } else {
        "goto reject-chain".to_string()
    };

    // Which chain ClusterIP traffic enters; the masquerade rule for traffic
    // not from pods (the node itself) sits at its top.
    let cluster_target = match (port.internal_traffic_local, port.cluster_ip) {
        (_, None) => None,
        (true, Some(_)) if local_chain_needed => Some(names.local()),
        (false, Some(_)) if service_chain_needed => Some(names.service()),
        _ => None,
    };
    let masquerade_rule = port.cluster_ip.map(|ip| {
        format!(
            "ip daddr {ip} {protocol} dport {} ip saddr != {} jump mark-for-masquerade",
            port.port, context.cluster_cidr
        )
    });
    let head_for = |chain: &str| -> Vec<String> {
        match (&cluster_target, &masquerade_rule) {
            (Some(target), Some(rule)) if target == chain => vec![rule.clone()],
            _ => Vec::new(),
        }
    };

    let mut used: Vec<ResolvedEndpoint> = Vec::new();
    if service_chain_needed {
        let name = names.service();
        let rules = policy_rules(&names, port, &port.endpoints, head_for(&name));
        chain(piece, name, rules);
        used.extend(port.endpoints.iter().copied());
    }
    if local_chain_needed {
        let name = names.local();
        let rules = policy_rules(&names, port, &port.local_endpoints, head_for(&name));
        chain(piece, name, rules);
        used.extend(port.local_endpoints.iter().copied());
    }
    used.sort();
    used.dedup();
    for endpoint in &used {
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", endpoint.ip)];
        if let Some(timeout) = port.affinity_timeout_seconds {
            let set = names.affinity(endpoint, timeout);
            rules.push(format!("update @{set} {{ ip saddr }}"));
            piece.sets.insert(
                set,
                format!("{{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"),
            );
        }
        rules.push(format!(
            "meta l4proto {protocol} dnat to {}:{}",
            endpoint.ip, endpoint.port
        ));
        chain(piece, names.endpoint(endpoint), rules);
    }
    if external_chain_needed {
        let rules = if port.external_traffic_local {
            vec![
                format!(
                    "ip saddr {} goto {} comment \"short-circuit pod traffic\"",
                    context.cluster_cidr,
                    names.service()
                ),
                "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
                    .to_string(),
                format!(
                    "fib saddr type local goto {} comment \"short-circuit local traffic\"",
                    names.service()
                ),
                format!("goto {}", names.local()),
            ]
        } else {
            vec![
                "jump mark-for-masquerade".to_string(),
                format!("goto {}", names.service()),
            ]
        };
        chain(piece, names.external(), rules);
    }

    if let Some(cluster_ip) = port.cluster_ip {
        element(piece, "cluster-ips", cluster_ip.to_string(), String::new());
        let key = format!("{cluster_ip} . {protocol} . {}", port.port);
        match &cluster_target {
            Some(target) => element(piece, "service-ips", key, format!("goto {target}")),
            None => element(
                piece,
                "no-endpoint-services",
                key,
                no_endpoint_verdict.clone(),
            ),
        }
    }
    for address in &port.external_addresses {
        let key = format!("{address} . {protocol} . {}", port.port);
        if external_chain_needed {
            element(
                piece,
                "service-ips",
                key,
                format!("goto {}", names.external()),
            );
        } else {
            element(
                piece,
                "no-endpoint-services",
                key,
                no_endpoint_verdict.clone(),
            );
        }
    }
    if let Some(node_port) = port.node_port {
        let key = format!("{protocol} . {node_port}");
        if external_chain_needed {
            element(
                piece,
                "service-nodeports",
                key,
                format!("goto {}", names.external()),
            );
        } else {
            element(piece, "no-endpoint-nodeports", key, no_endpoint_verdict);
        }
    }
}

/// The fixed part of the table: sets, maps, base chains and helpers.
pub fn skeleton(context: &ProxyContext) -> String {
    let node_ips = context
        .node_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let node_ip_elements = if node_ips.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {node_ips} }};")
    };
    format!(
        r#"table ip {TABLE} {{
	comment "podnet service proxy"
	set cluster-ips {{ type ipv4_addr; comment "Active ClusterIPs"; }}
	set nodeport-ips {{ type ipv4_addr; comment "IPs that accept NodePort traffic";{node_ip_elements} }}
	map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"; }}
	map service-nodeports {{ type inet_proto . inet_service : verdict; comment "NodePort traffic"; }}
	map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict; comment "vmap to drop or reject packets to services with no endpoints"; }}
	map no-endpoint-nodeports {{ type inet_proto . inet_service : verdict; comment "vmap to drop or reject packets to service nodeports with no endpoints"; }}
	chain filter-prerouting {{ type filter hook prerouting priority -110; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump nodeport-endpoints-check
	}}
	chain filter-prerouting-post-dnat {{ type filter hook prerouting priority -90; policy accept;
		ct state new jump cluster-ips-check
	}}
	chain filter-output {{ type filter hook output priority -110; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump nodeport-endpoints-check
	}}
	chain filter-output-post-dnat {{ type filter hook output priority -90; policy accept;
		ct state new jump cluster-ips-check
	}}
	chain nat-prerouting {{ type nat hook prerouting priority -100; policy accept;
		jump services
	}}
	chain nat-output {{ type nat hook output priority -100; policy accept;
		jump services
	}}
	chain nat-postrouting {{ type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}}
	chain mark-for-masquerade {{
		meta mark set meta mark | 0x4000
	}}
	chain masquerading {{
		meta mark & 0x4000 == 0 return
		meta mark set meta mark ^ 0x4000
		masquerade fully-random
	}}
	chain services {{
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
	}}
	chain service-endpoints-check {{
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}}
	chain nodeport-endpoints-check {{
		ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
	}}
	chain cluster-ips-check {{
		ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
		ip daddr {service_cidr} drop comment "Drop traffic to unallocated ClusterIPs"
	}}
	chain reject-chain {{
		reject
	}}
}}
"#,
        service_cidr = context.service_cidr
    )
}
