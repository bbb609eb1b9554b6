//! nftables form of the service proxy, shaped like kube-proxy's nftables
//! mode but spread over several tables so that one change costs the same
//! whatever the number of services.
//!
//! - Table `ip podnet-proxy` holds what every service shares: the filter
//!   chains at priority dstnat-10 that reject traffic for services without
//!   endpoints (`no-endpoint-services`, `no-endpoint-nodeports`, verdict
//!   `goto reject-chain`, or `drop` when only local endpoints count and there
//!   are none) and, after DNAT, reject unused ports of ClusterIPs
//!   (`cluster-ips`) and drop unallocated addresses of the service network;
//!   masquerade in postrouting on mark 0x4000.
//! - Tables `ip podnet-proxy-00` … `-15` (the shards; a service lives in the
//!   one its `namespace/name` hashes to) each have nat prerouting and output
//!   base chains jumping to `services`, which dispatches with
//!   `ip daddr . meta l4proto . th dport vmap @service-ips` (ClusterIPs,
//!   externalIPs, LoadBalancer IPs) and, for the node's own addresses,
//!   `meta l4proto . th dport vmap @service-nodeports`.
//! - Per service port, in its shard: `service-…` (all usable endpoints),
//!   `local-…` (this node's, for traffic policy Local), `external-…`
//!   (NodePort / external entry: masquerade, or keep the source for
//!   externalTrafficPolicy Local) and one `endpoint-…` chain per endpoint
//!   (hairpin mark, affinity, DNAT).
//!
//! Why shards: when a transaction adds a rule or map element that jumps, the
//! kernel re-validates the whole jump graph of that table at commit (every
//! chain reachable from its base chains). With one table of 30k chains that
//! is 40-100 ms per change; a shard holds 1/16 of them. A packet of a new
//! connection walks the shards' nat chains in turn until one translates it
//! (NAT stops at the first chain that binds), one map lookup per shard.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{
    name_hash, Change, Dialect, Piece, ProxyContext, ResolvedEndpoint, ResolvedServicePort,
};

/// The table of shared checks and masquerading; shards are named after it.
pub const TABLE: &str = "podnet-proxy";
/// Number of shard tables services are spread over (the default; benchmarks
/// compare others through [`Nftables::with_shards`]).
pub const SHARDS: usize = 16;

/// Name of shard `index`'s table.
pub fn shard_table(index: usize) -> String {
    format!("{TABLE}-{index:02}")
}

/// The shard (of `shards`) a service lives in: FNV-1a of `namespace/name`,
/// so every port of a service shares one table and the choice never changes.
pub fn shard_of(namespace: &str, name: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in namespace.bytes().chain([b'/']).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// True for the names of tables this dialect owns (the shared one, shards,
/// and shards of a layout with another shard count).
pub fn is_proxy_table(name: &str) -> bool {
    name == TABLE
        || name
            .strip_prefix(TABLE)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// Key of a map or set in [`Piece::elements`] / [`Piece::sets`]: `table name`.
fn qualified(table: &str, name: &str) -> String {
    format!("{table} {name}")
}

/// Splits a `table name` key (keys without a table belong to [`TABLE`]).
fn split_qualified(key: &str) -> (&str, &str) {
    key.split_once(' ').unwrap_or((TABLE, key))
}

/// The nftables dialect.
#[derive(Clone, Copy, Debug)]
pub struct Nftables {
    shards: usize,
}

impl Default for Nftables {
    fn default() -> Nftables {
        Nftables { shards: SHARDS }
    }
}

impl Nftables {
    /// The dialect with services spread over `shards` tables (at least one).
    pub fn with_shards(shards: usize) -> Nftables {
        Nftables {
            shards: shards.max(1),
        }
    }
}

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

fn chain(piece: &mut Piece, table: &str, name: String, rules: Vec<String>) {
    piece.chains.insert((table.to_string(), name), rules);
}

fn element(piece: &mut Piece, table: &str, container: &str, key: String, value: String) {
    piece
        .elements
        .insert((qualified(table, container), key), value);
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
            render_port(context, port, self.shards, &mut piece);
        }
        piece
    }

    fn full_batch(
        &self,
        context: &ProxyContext,
        desired: &Piece,
        existing_chains: &[(String, String)],
    ) -> String {
        let mut out = String::with_capacity(256 * desired.chains.len() + 4096);
        // Creating then deleting makes the delete succeed whether or not the
        // table exists; the whole file is one transaction, so traffic never
        // sees a half-written table. Tables of ours from another layout
        // (`existing_chains` lists them as `(table, "")`) go too.
        let mut tables: Vec<String> = vec![TABLE.to_string()];
        tables.extend((0..self.shards).map(shard_table));
        for (table, _) in existing_chains {
            if is_proxy_table(table) && !tables.contains(table) {
                let _ = writeln!(out, "delete table ip {table}");
            }
        }
        for table in &tables {
            let _ = writeln!(out, "add table ip {table}");
            let _ = writeln!(out, "delete table ip {table}");
        }
        out.push_str(&skeleton(context, self.shards));
        for shard in 0..self.shards {
            out.push_str(&shard_skeleton(context, shard, self.shards));
        }
        for (table, name) in desired.chains.keys() {
            let _ = writeln!(out, "add chain ip {table} {name}");
        }
        for (key, declaration) in &desired.sets {
            let (table, name) = split_qualified(key);
            let _ = writeln!(out, "add set ip {table} {name} {declaration}");
        }
        for ((table, name), rules) in &desired.chains {
            for rule in rules {
                let _ = writeln!(out, "add rule ip {table} {name} {rule}");
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
            let (table, name) = split_qualified(container);
            for chunk in elements.chunks(1000) {
                let _ = writeln!(
                    out,
                    "add element ip {table} {name} {{ {} }}",
                    chunk.join(", ")
                );
            }
        }
        out
    }

    fn incremental_batch(&self, _context: &ProxyContext, change: &Change<'_>) -> String {
        let mut out = String::new();
        for (table, name) in &change.added_chains {
            let _ = writeln!(out, "add chain ip {table} {name}");
        }
        for (table, name) in change.changed_chains.iter().chain(&change.removed_chains) {
            let _ = writeln!(out, "flush chain ip {table} {name}");
        }
        let mut removed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (container, key, _) in &change.removed_elements {
            removed.entry(container).or_default().push(key);
        }
        for (container, keys) in removed {
            let (table, name) = split_qualified(container);
            let _ = writeln!(
                out,
                "delete element ip {table} {name} {{ {} }}",
                keys.join(", ")
            );
        }
        for set in change
            .removed_sets
            .iter()
            .copied()
            .chain(change.changed_sets.iter().map(|(name, _)| *name))
        {
            let (table, name) = split_qualified(set);
            let _ = writeln!(out, "delete set ip {table} {name}");
        }
        for (set, declaration) in change.added_sets.iter().chain(&change.changed_sets) {
            let (table, name) = split_qualified(set);
            let _ = writeln!(out, "add set ip {table} {name} {declaration}");
        }
        for ((table, name), rules) in &change.chain_rules {
            for rule in rules.iter() {
                let _ = writeln!(out, "add rule ip {table} {name} {rule}");
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
            let (table, name) = split_qualified(container);
            let _ = writeln!(
                out,
                "add element ip {table} {name} {{ {} }}",
                elements.join(", ")
            );
        }
        for (table, name) in &change.removed_chains {
            let _ = writeln!(out, "delete chain ip {table} {name}");
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

fn render_port(
    context: &ProxyContext,
    port: &ResolvedServicePort,
    shards: usize,
    piece: &mut Piece,
) {
    let names = Names::new(port);
    let shard = shard_table(shard_of(&port.id.namespace, &port.id.service, shards));
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
        chain(piece, &shard, name, rules);
        used.extend(port.endpoints.iter().copied());
    }
    if local_chain_needed {
        let name = names.local();
        let rules = policy_rules(&names, port, &port.local_endpoints, head_for(&name));
        chain(piece, &shard, name, rules);
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
                qualified(&shard, &set),
                format!("{{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"),
            );
        }
        rules.push(format!(
            "meta l4proto {protocol} dnat to {}:{}",
            endpoint.ip, endpoint.port
        ));
        chain(piece, &shard, names.endpoint(endpoint), rules);
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
        chain(piece, &shard, names.external(), rules);
    }

    if let Some(cluster_ip) = port.cluster_ip {
        element(
            piece,
            TABLE,
            "cluster-ips",
            cluster_ip.to_string(),
            String::new(),
        );
        let key = format!("{cluster_ip} . {protocol} . {}", port.port);
        match &cluster_target {
            Some(target) => element(piece, &shard, "service-ips", key, format!("goto {target}")),
            None => element(
                piece,
                TABLE,
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
                &shard,
                "service-ips",
                key,
                format!("goto {}", names.external()),
            );
        } else {
            element(
                piece,
                TABLE,
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
                &shard,
                "service-nodeports",
                key,
                format!("goto {}", names.external()),
            );
        } else {
            element(
                piece,
                TABLE,
                "no-endpoint-nodeports",
                key,
                no_endpoint_verdict,
            );
        }
    }
}

fn node_ip_elements(context: &ProxyContext) -> String {
    let node_ips = context
        .node_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if node_ips.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {node_ips} }};")
    }
}

/// The fixed part of the shared table: sets, maps, base chains and helpers.
pub fn skeleton(context: &ProxyContext, shards: usize) -> String {
    let node_ip_elements = node_ip_elements(context);
    format!(
        r#"table ip {TABLE} {{
	comment "podnet service proxy: shared checks and masquerading; services are in tables {TABLE}-00 to -{last:02}"
	set cluster-ips {{ type ipv4_addr; comment "Active ClusterIPs"; }}
	set nodeport-ips {{ type ipv4_addr; comment "IPs that accept NodePort traffic";{node_ip_elements} }}
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
	chain nat-postrouting {{ type nat hook postrouting priority 100; policy accept;
		jump masquerading
	}}
	chain masquerading {{
		meta mark & 0x4000 == 0 return
		meta mark set meta mark ^ 0x4000
		masquerade fully-random
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
        service_cidr = context.service_cidr,
        last = shards.max(1) - 1,
    )
}

/// The fixed part of shard `index`'s table: its dispatch maps and nat base
/// chains (services of the shard add their chains and map elements).
pub fn shard_skeleton(context: &ProxyContext, index: usize, shards: usize) -> String {
    let node_ip_elements = node_ip_elements(context);
    format!(
        r#"table ip {table} {{
	comment "podnet service proxy: services shard {index} of {shards}"
	set nodeport-ips {{ type ipv4_addr; comment "IPs that accept NodePort traffic";{node_ip_elements} }}
	map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"; }}
	map service-nodeports {{ type inet_proto . inet_service : verdict; comment "NodePort traffic"; }}
	chain nat-prerouting {{ type nat hook prerouting priority -100; policy accept;
		jump services
	}}
	chain nat-output {{ type nat hook output priority -100; policy accept;
		jump services
	}}
	chain mark-for-masquerade {{
		meta mark set meta mark | 0x4000
	}}
	chain services {{
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
	}}
}}
"#,
        table = shard_table(index),
    )
}
