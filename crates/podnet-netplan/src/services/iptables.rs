//! iptables form of the service proxy, with kube-proxy's chain names so that
//! `iptables -t nat -L -n | grep KUBE` shows what the documentation shows:
//! KUBE-SERVICES, KUBE-NODEPORTS, KUBE-SVC-* (all endpoints), KUBE-SVL-*
//! (local endpoints), KUBE-EXT-* (external entry), KUBE-SEP-* (one
//! endpoint), KUBE-MARK-MASQ and KUBE-POSTROUTING. Applied with
//! `iptables-restore --noflush`, naming only the chains that changed; the
//! shared chains (KUBE-SERVICES, KUBE-NODEPORTS, filter KUBE-SERVICES and
//! KUBE-EXTERNAL-SERVICES) are rewritten whole when one of their rules
//! changes, as kube-proxy does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{
    name_hash, Change, Dialect, Piece, ProxyContext, ResolvedEndpoint, ResolvedServicePort,
};

/// The iptables dialect.
pub struct Iptables;

/// Chains that always exist, per table, in restore order.
pub const FIXED_CHAINS: &[(&str, &str)] = &[
    ("filter", "KUBE-SERVICES"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-NODEPORTS"),
    ("nat", "KUBE-POSTROUTING"),
    ("nat", "KUBE-MARK-MASQ"),
];

/// Jumps from the built-in chains into ours: (table, chain, rule). The
/// applier checks each with `iptables -C` and inserts the missing ones.
pub fn base_jumps() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    let services = ["-m", "comment", "--comment", "kubernetes service portals"];
    let new_services = [
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        "kubernetes service portals",
        "-j",
        "KUBE-SERVICES",
    ];
    let new_external = [
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        "kubernetes externally-visible service portals",
        "-j",
        "KUBE-EXTERNAL-SERVICES",
    ];
    let with = |base: &[&'static str], target: &'static str| {
        let mut rule = base.to_vec();
        rule.extend(["-j", target]);
        rule
    };
    vec![
        ("nat", "PREROUTING", with(&services, "KUBE-SERVICES")),
        ("nat", "OUTPUT", with(&services, "KUBE-SERVICES")),
        (
            "nat",
            "POSTROUTING",
            vec![
                "-m",
                "comment",
                "--comment",
                "kubernetes postrouting rules",
                "-j",
                "KUBE-POSTROUTING",
            ],
        ),
        ("filter", "FORWARD", new_services.to_vec()),
        ("filter", "OUTPUT", new_services.to_vec()),
        ("filter", "INPUT", new_external.to_vec()),
        ("filter", "FORWARD", new_external.to_vec()),
    ]
}

fn hash16(text: &str) -> String {
    name_hash(text, 16)
}

struct Names {
    /// `ns/svc:port` (upstream's ServicePortName string).
    display: String,
    protocol: &'static str,
}

impl Names {
    fn new(port: &ResolvedServicePort) -> Names {
        Names {
            display: port.id.to_string(),
            protocol: port.id.protocol.lower(),
        }
    }
    fn svc(&self) -> String {
        format!(
            "KUBE-SVC-{}",
            hash16(&format!("{}{}", self.display, self.protocol))
        )
    }
    fn svl(&self) -> String {
        format!(
            "KUBE-SVL-{}",
            hash16(&format!("{}{}", self.display, self.protocol))
        )
    }
    fn ext(&self) -> String {
        format!(
            "KUBE-EXT-{}",
            hash16(&format!("{}{}", self.display, self.protocol))
        )
    }
    fn sep(&self, endpoint: &ResolvedEndpoint) -> String {
        format!(
            "KUBE-SEP-{}",
            hash16(&format!("{}{}{}", self.display, self.protocol, endpoint))
        )
    }
}

fn quote(comment: &str) -> String {
    format!("\"{comment}\"")
}

fn policy_rules(
    names: &Names,
    port: &ResolvedServicePort,
    endpoints: &[ResolvedEndpoint],
    mut rules: Vec<String>,
) -> Vec<String> {
    if let Some(timeout) = port.affinity_timeout_seconds {
        for endpoint in endpoints {
            rules.push(format!(
                "-m comment --comment {} -m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}",
                quote(&format!("{} -> {endpoint}", names.display)),
                sep = names.sep(endpoint)
            ));
        }
    }
    let count = endpoints.len();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let remaining = count - index;
        let comment = quote(&format!("{} -> {endpoint}", names.display));
        if remaining == 1 {
            rules.push(format!(
                "-m comment --comment {comment} -j {}",
                names.sep(endpoint)
            ));
        } else {
            rules.push(format!(
                "-m comment --comment {comment} -m statistic --mode random --probability {:.10} -j {}",
                1.0 / remaining as f64,
                names.sep(endpoint)
            ));
        }
    }
    rules
}

fn add_chain(piece: &mut Piece, table: &str, name: String, rules: Vec<String>) {
    piece.chains.insert((table.to_string(), name), rules);
}

fn add_shared(piece: &mut Piece, table: &str, chain: &str, rule: String) {
    piece
        .elements
        .insert((format!("{table}/{chain}"), rule), String::new());
}

fn render_port(context: &ProxyContext, port: &ResolvedServicePort, piece: &mut Piece) {
    let names = Names::new(port);
    let protocol = names.protocol;
    let display = &names.display;
    let has_endpoints = !port.endpoints.is_empty();
    let external_chain_needed =
        port.has_external_access() && !port.external_traffic_endpoints().is_empty();
    let service_chain_needed =
        has_endpoints && (!port.internal_traffic_local || external_chain_needed);
    let local_chain_needed = !port.local_endpoints.is_empty()
        && (port.internal_traffic_local || (external_chain_needed && port.external_traffic_local));
    let (no_endpoint_target, no_endpoint_comment) = if has_endpoints {
        ("DROP", "has no local endpoints")
    } else {
        ("REJECT", "has no endpoints")
    };
    let cluster_target = match (port.internal_traffic_local, port.cluster_ip) {
        (_, None) => None,
        (true, Some(_)) if local_chain_needed => Some(names.svl()),
        (false, Some(_)) if service_chain_needed => Some(names.svc()),
        _ => None,
    };
    let masquerade_rule = port.cluster_ip.map(|ip| {
        format!(
            "-m comment --comment {} -m {protocol} -p {protocol} -d {ip}/32 --dport {} ! -s {} -j KUBE-MARK-MASQ",
            quote(&format!("{display} cluster IP")),
            port.port,
            context.cluster_cidr
        )
    });
    let head_for = |chain: &str| -> Vec<String> {
        match (&cluster_target, &masquerade_rule) {
            (Some(target), Some(rule)) if target == chain => vec![rule.clone()],
            _ => Vec::new(),
        }
    };
    let mut used: BTreeSet<ResolvedEndpoint> = BTreeSet::new();
    if service_chain_needed {
        let name = names.svc();
        let rules = policy_rules(&names, port, &port.endpoints, head_for(&name));
        add_chain(piece, "nat", name, rules);
        used.extend(port.endpoints.iter().copied());
    }
    if local_chain_needed {
        let name = names.svl();
        let rules = policy_rules(&names, port, &port.local_endpoints, head_for(&name));
        add_chain(piece, "nat", name, rules);
        used.extend(port.local_endpoints.iter().copied());
    }
    for endpoint in &used {
        let sep = names.sep(endpoint);
        let recent = if port.affinity_timeout_seconds.is_some() {
            format!("-m recent --name {sep} --set ")
        } else {
            String::new()
        };
        let rules = vec![
            format!(
                "-m comment --comment {} -s {}/32 -j KUBE-MARK-MASQ",
                quote(display),
                endpoint.ip
            ),
            format!(
                "-m comment --comment {} {recent}-m {protocol} -p {protocol} -j DNAT --to-destination {endpoint}",
                quote(display)
            ),
        ];
        add_chain(piece, "nat", sep, rules);
    }
    if external_chain_needed {
        let rules = if port.external_traffic_local {
            vec![
                format!(
                    "-m comment --comment {} -s {} -j {}",
                    quote(&format!("pod traffic for {display} external destinations")),
                    context.cluster_cidr,
                    names.svc()
                ),
                format!(
                    "-m comment --comment {} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                    quote(&format!(
                        "masquerade LOCAL traffic for {display} external destinations"
                    ))
                ),
                format!(
                    "-m comment --comment {} -m addrtype --src-type LOCAL -j {}",
                    quote(&format!(
                        "route LOCAL traffic for {display} external destinations"
                    )),
                    names.svc()
                ),
                format!("-j {}", names.svl()),
            ]
        } else {
            vec![
                format!(
                    "-m comment --comment {} -j KUBE-MARK-MASQ",
                    quote(&format!(
                        "masquerade traffic for {display} external destinations"
                    ))
                ),
                format!("-j {}", names.svc()),
            ]
        };
        add_chain(piece, "nat", names.ext(), rules);
    }

    if let Some(cluster_ip) = port.cluster_ip {
        let matcher = format!(
            "-m {protocol} -p {protocol} -d {cluster_ip}/32 --dport {}",
            port.port
        );
        match &cluster_target {
            Some(target) => add_shared(
                piece,
                "nat",
                "KUBE-SERVICES",
                format!(
                    "-m comment --comment {} {matcher} -j {target}",
                    quote(&format!("{display} cluster IP"))
                ),
            ),
            None => add_shared(
                piece,
                "filter",
                "KUBE-SERVICES",
                format!(
                    "-m comment --comment {} {matcher} -j {no_endpoint_target}",
                    quote(&format!("{display} {no_endpoint_comment}"))
                ),
            ),
        }
    }
    for address in &port.external_addresses {
        let matcher = format!(
            "-m {protocol} -p {protocol} -d {address}/32 --dport {}",
            port.port
        );
        if external_chain_needed {
            add_shared(
                piece,
                "nat",
                "KUBE-SERVICES",
                format!(
                    "-m comment --comment {} {matcher} -j {}",
                    quote(&format!("{display} external IP")),
                    names.ext()
                ),
            );
        } else {
            add_shared(
                piece,
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                format!(
                    "-m comment --comment {} {matcher} -j {no_endpoint_target}",
                    quote(&format!("{display} {no_endpoint_comment}"))
                ),
            );
        }
    }
    if let Some(node_port) = port.node_port {
        if external_chain_needed {
            add_shared(
                piece,
                "nat",
                "KUBE-NODEPORTS",
                format!(
                    "-m comment --comment {} -m {protocol} -p {protocol} --dport {node_port} -j {}",
                    quote(display),
                    names.ext()
                ),
            );
        } else {
            add_shared(
                piece,
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                format!(
                    "-m comment --comment {} -m addrtype --dst-type LOCAL -m {protocol} -p {protocol} --dport {node_port} -j {no_endpoint_target}",
                    quote(&format!("{display} {no_endpoint_comment}"))
                ),
            );
        }
    }
}

/// Rules of a shared chain that are not contributed by services.
fn fixed_rules(context: &ProxyContext, table: &str, chain: &str) -> (Vec<String>, Vec<String>) {
    match (table, chain) {
        ("nat", "KUBE-SERVICES") => (
            Vec::new(),
            vec![format!(
                "-m comment --comment {} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
                quote(
                    "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
                )
            )],
        ),
        ("nat", "KUBE-POSTROUTING") => (
            vec![
                "-m mark ! --mark 0x4000/0x4000 -j RETURN".to_string(),
                "-j MARK --xor-mark 0x4000".to_string(),
                format!(
                    "-m comment --comment {} -j MASQUERADE --random-fully",
                    quote("kubernetes service traffic requiring SNAT")
                ),
            ],
            Vec::new(),
        ),
        ("nat", "KUBE-MARK-MASQ") => (vec!["-j MARK --or-mark 0x4000".to_string()], Vec::new()),
        ("filter", "KUBE-SERVICES") => (
            Vec::new(),
            vec![format!(
                "-m comment --comment {} -d {} -j DROP",
                quote("drop traffic to unallocated or unused ClusterIPs"),
                context.service_cidr
            )],
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

fn split_container(container: &str) -> (&str, &str) {
    container.split_once('/').unwrap_or(("nat", container))
}

/// Per table: chains to declare (flush), rule lines, chains to delete.
#[derive(Default)]
struct TableBatch {
    declare: BTreeSet<String>,
    rules: Vec<String>,
    delete: BTreeSet<String>,
}

fn render_tables(tables: BTreeMap<&str, TableBatch>) -> String {
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let Some(batch) = tables.get(table) else {
            continue;
        };
        if batch.declare.is_empty() && batch.rules.is_empty() && batch.delete.is_empty() {
            continue;
        }
        let _ = writeln!(out, "*{table}");
        for chain in &batch.declare {
            let _ = writeln!(out, ":{chain} - [0:0]");
        }
        for rule in &batch.rules {
            out.push_str(rule);
            out.push('\n');
        }
        for chain in &batch.delete {
            let _ = writeln!(out, "-X {chain}");
        }
        out.push_str("COMMIT\n");
    }
    out
}

fn shared_chain_rules(
    context: &ProxyContext,
    table: &str,
    chain: &str,
    rules: impl Iterator<Item = String>,
    out: &mut Vec<String>,
) {
    let (head, tail) = fixed_rules(context, table, chain);
    for rule in head.into_iter().chain(rules).chain(tail) {
        out.push(format!("-A {chain} {rule}"));
    }
}

impl Dialect for Iptables {
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
        existing_chains: &[(String, String)],
    ) -> String {
        let mut tables: BTreeMap<&str, TableBatch> = BTreeMap::new();
        let mut shared: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
        for (table, chain) in FIXED_CHAINS {
            shared.entry((table, chain)).or_default();
        }
        for (container, rule) in desired.elements.keys() {
            let (table, chain) = split_container(container);
            shared.entry((table, chain)).or_default().push(rule.clone());
        }
        for ((table, chain), rules) in shared {
            let batch = tables.entry(table).or_default();
            batch.declare.insert(chain.to_string());
            shared_chain_rules(context, table, chain, rules.into_iter(), &mut batch.rules);
        }
        for ((table, chain), rules) in &desired.chains {
            let batch = tables.entry(table.as_str()).or_default();
            batch.declare.insert(chain.clone());
            for rule in rules {
                batch.rules.push(format!("-A {chain} {rule}"));
            }
        }
        for (table, chain) in existing_chains {
            let batch = tables.entry(table.as_str()).or_default();
            if !batch.declare.contains(chain) && is_ours(chain) {
                batch.declare.insert(chain.clone());
                batch.delete.insert(chain.clone());
            }
        }
        render_tables(tables)
    }

    fn incremental_batch(&self, context: &ProxyContext, change: &Change<'_>) -> String {
        let mut tables: BTreeMap<&str, TableBatch> = BTreeMap::new();
        for (table, chain) in change.added_chains.iter().chain(&change.changed_chains) {
            let batch = tables.entry(table.as_str()).or_default();
            batch.declare.insert(chain.clone());
        }
        for ((table, chain), rules) in &change.chain_rules {
            let batch = tables.entry(table.as_str()).or_default();
            for rule in rules.iter() {
                batch.rules.push(format!("-A {chain} {rule}"));
            }
        }
        for (table, chain) in &change.removed_chains {
            let batch = tables.entry(table.as_str()).or_default();
            batch.declare.insert(chain.clone());
            batch.delete.insert(chain.clone());
        }
        for (container, elements) in &change.touched_containers {
            let (table, chain) = split_container(container);
            let batch = tables.entry(table).or_default();
            batch.declare.insert(chain.to_string());
            shared_chain_rules(
                context,
                table,
                chain,
                elements.iter().map(|(rule, _)| rule.to_string()),
                &mut batch.rules,
            );
        }
        render_tables(tables)
    }
}

/// Chains this proxy owns (and may delete when no longer wanted).
pub fn is_ours(chain: &str) -> bool {
    ["KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-"]
        .iter()
        .any(|prefix| chain.starts_with(prefix))
}
