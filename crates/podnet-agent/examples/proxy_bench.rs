//! Service proxy benchmark (run by bench/services.sh): for nftables and
//! iptables mode side by side, in throwaway network namespaces, measure
//! - the time to program N services × 2 endpoints (planner + kernel),
//! - adding one service when N exist,
//! - one endpoint change when N exist (nftables: also the same kind of
//!   change written with `nft -f`, in alternating rounds),
//! - first-connection latency to a ClusterIP with 100 versus N services,
//! - the planner's memory at N services.
//!
//! Prints a short table and writes JSON (--out).

use podnet_agent::proxy::ProxyApplier;
use podnet_netplan::services::{
    nft, resolve_service, Protocol, ProxyContext, ProxyEndpointSlice, ProxyMode, ProxyPlanner,
    ProxyService, ServicePortSpec, ServiceType, SliceEndpoint, SlicePort,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("pxb-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let netns = Netns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        for command in [
            "link set lo up",
            "link add eth0 type veth peer name eth0peer",
            "addr add 172.18.0.2/16 dev eth0",
            "link set eth0peer up",
            "link set eth0 up",
            "link add pods type veth peer name podspeer",
            "addr add 10.244.255.1/32 dev pods",
            "link set podspeer up",
            "link set pods up",
        ] {
            assert!(Command::new("ip")
                .args(["-n", &netns.name])
                .args(command.split_whitespace())
                .status()
                .unwrap()
                .success());
        }
        netns
    }

    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path.clone();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn context() -> ProxyContext {
    ProxyContext {
        node_name: "node1".into(),
        node_ips: vec!["172.18.0.2".parse().unwrap()],
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        service_cidr: "10.96.0.0/12".parse().unwrap(),
        sctp: true,
    }
}

fn service_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + index as u32)
}

fn endpoint_ip(index: usize, which: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 2)) + (index * 2 + which) as u32 % 60000)
}

fn service(index: usize) -> ProxyService {
    ProxyService {
        namespace: "bench".into(),
        name: format!("svc-{index}"),
        labels: BTreeMap::new(),
        service_type: ServiceType::ClusterIp,
        cluster_ip: Some(service_ip(index)),
        ports: vec![ServicePortSpec {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        external_ips: Vec::new(),
        load_balancer_ips: Vec::new(),
        affinity_timeout_seconds: None,
        internal_traffic_local: false,
        external_traffic_local: false,
    }
}

fn slice(index: usize, endpoints: &[Ipv4Addr]) -> ProxyEndpointSlice {
    ProxyEndpointSlice {
        namespace: "bench".into(),
        name: format!("svc-{index}-1"),
        service_name: format!("svc-{index}"),
        ports: vec![SlicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
        endpoints: endpoints
            .iter()
            .map(|ip| SliceEndpoint {
                addresses: vec![*ip],
                ready: true,
                serving: true,
                terminating: false,
                node_name: Some("node2".into()),
            })
            .collect(),
    }
}

fn set(planner: &mut ProxyPlanner, index: usize, endpoints: &[Ipv4Addr]) {
    let context = context();
    let service = service(index);
    let slice = slice(index, endpoints);
    let ports = resolve_service(&context, &service, &[&slice]);
    planner.set_service(&service.namespace, &service.name, Some(ports));
}

fn apply(applier: &ProxyApplier, planner: &mut ProxyPlanner) -> Duration {
    apply_with(applier, planner, true)
}

/// Plans and applies; `netlink` false sends incremental nftables batches
/// through `nft -f` instead of the netlink path (for the side-by-side).
fn apply_with(applier: &ProxyApplier, planner: &mut ProxyPlanner, netlink: bool) -> Duration {
    let started = Instant::now();
    let existing = if planner.will_replace_all() {
        applier.existing_chains().unwrap()
    } else {
        Vec::new()
    };
    let batch = planner.plan(&existing);
    applier
        .apply_with(&batch, netlink)
        .unwrap_or_else(|e| panic!("{e}"));
    started.elapsed()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

/// Connect latencies (ms) to `target` from inside the namespace.
fn connect_latencies(netns: &Netns, target: SocketAddr, count: usize) -> Vec<f64> {
    netns.inside(move || {
        let listener = std::net::TcpListener::bind("10.244.255.1:8080").unwrap();
        let accepter = std::thread::spawn(move || {
            for _ in 0..count {
                let _ = listener.accept();
            }
        });
        let mut latencies = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let stream = TcpStream::connect_timeout(&target, Duration::from_secs(2)).unwrap();
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            drop(stream);
        }
        let _ = accepter.join();
        latencies
    })
}

struct ModeResult {
    /// `nftables`, `iptables`, or `nftables-Nshards` for another shard count.
    mode: String,
    services: usize,
    program_all_ms: f64,
    add_one_ms: f64,
    endpoint_change_ms: f64,
    /// nftables: the same changes written with `nft -f` (alternating rounds).
    add_one_nft_cli_ms: Option<f64>,
    endpoint_change_nft_cli_ms: Option<f64>,
    planner_memory_kib: u64,
    process_rss_kib: u64,
    latency_ms_median: f64,
    latency_ms_p99: f64,
    /// Median connect time to the listener itself, before and after the
    /// proxy's tables were written.
    direct_ms_without_tables: f64,
    direct_ms_with_tables: f64,
}

fn run_mode(mode: ProxyMode, shards: usize, services: usize, repeats: usize) -> ModeResult {
    let name = match mode {
        ProxyMode::Nftables if shards == nft::SHARDS => "nftables".to_string(),
        ProxyMode::Nftables => format!("nftables-{shards}shards"),
        ProxyMode::Iptables => "iptables".to_string(),
    };
    let netns = Netns::new(&format!("{}{}-{shards}", &name[..3], services));
    let applier = ProxyApplier::new(netns.path.clone(), mode);
    applier
        .prepare_node(
            "172.18.0.2".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
        )
        .unwrap();
    // New connections that match no service still pass every proxy table's
    // nat chains (16 shard lookups in nftables mode): measured straight to
    // the listener before and after the tables exist.
    let direct = SocketAddr::from(([10, 244, 255, 1], 8080));
    let mut direct_before = connect_latencies(&netns, direct, 300);
    let mut planner = match mode {
        ProxyMode::Nftables => ProxyPlanner::with_nft_shards(context(), shards),
        ProxyMode::Iptables => ProxyPlanner::new(mode, context()),
    };
    // The probe service points at a real local listener.
    let local = "10.244.255.1".parse().unwrap();
    for index in 0..services {
        if index == services / 2 {
            set(&mut planner, index, &[local]);
        } else {
            set(
                &mut planner,
                index,
                &[endpoint_ip(index, 0), endpoint_ip(index, 1)],
            );
        }
    }
    let program_all = apply(&applier, &mut planner);
    let planner_memory_kib = (planner.approximate_bytes() / 1024) as u64;
    let process_rss_kib = rss_kib();

    // Rounds alternate between the default path and (nftables) `nft -f`
    // for every batch, so both are measured under the same conditions.
    let paths: &[bool] = if mode == ProxyMode::Nftables {
        &[true, false]
    } else {
        &[true]
    };
    let (mut add_one, mut add_one_nft) = (Vec::new(), Vec::new());
    for extra in 0..repeats * paths.len() {
        let netlink = paths[extra % paths.len()];
        let index = services + extra;
        set(
            &mut planner,
            index,
            &[endpoint_ip(index, 0), endpoint_ip(index, 1)],
        );
        let elapsed = apply_with(&applier, &mut planner, netlink).as_secs_f64() * 1000.0;
        if netlink {
            add_one.push(elapsed);
        } else {
            add_one_nft.push(elapsed);
        }
    }
    let (mut endpoint_change, mut endpoint_change_nft) = (Vec::new(), Vec::new());
    for round in 0..repeats * paths.len() {
        let netlink = paths[round % paths.len()];
        let index = (round * 7 + 1) % services;
        if index == services / 2 {
            continue;
        }
        set(
            &mut planner,
            index,
            &[endpoint_ip(index, 0), endpoint_ip(index + 1000 + round, 1)],
        );
        let elapsed = apply_with(&applier, &mut planner, netlink).as_secs_f64() * 1000.0;
        if netlink {
            endpoint_change.push(elapsed);
        } else {
            endpoint_change_nft.push(elapsed);
        }
    }
    let target = SocketAddr::from((service_ip(services / 2), 80));
    let mut latencies = connect_latencies(&netns, target, 300);
    let mut direct_after = connect_latencies(&netns, direct, 300);
    let result = ModeResult {
        mode: name,
        services,
        program_all_ms: program_all.as_secs_f64() * 1000.0,
        add_one_ms: median(&mut add_one),
        endpoint_change_ms: median(&mut endpoint_change),
        add_one_nft_cli_ms: (!add_one_nft.is_empty()).then(|| median(&mut add_one_nft)),
        endpoint_change_nft_cli_ms: (!endpoint_change_nft.is_empty())
            .then(|| median(&mut endpoint_change_nft)),
        planner_memory_kib,
        process_rss_kib,
        latency_ms_median: median(&mut latencies),
        latency_ms_p99: percentile(&mut latencies, 0.99),
        direct_ms_without_tables: median(&mut direct_before),
        direct_ms_with_tables: median(&mut direct_after),
    };
    // Leave the namespace's tables to the namespace: deleting it frees them.
    drop(netns);
    result
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let sizes: Vec<usize> = value("--sizes")
        .unwrap_or_else(|| "100,1000,10000".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let modes: Vec<ProxyMode> = value("--modes")
        .unwrap_or_else(|| "nftables,iptables".into())
        .split(',')
        .map(|m| match m {
            "iptables" => ProxyMode::Iptables,
            _ => ProxyMode::Nftables,
        })
        .collect();
    let repeats: usize = value("--repeats").and_then(|v| v.parse().ok()).unwrap_or(5);
    // nftables shard counts to compare (the default layout first).
    let shard_counts: Vec<usize> = value("--nft-shards")
        .unwrap_or_else(|| nft::SHARDS.to_string())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let out = value("--out");

    let mut results = Vec::new();
    for &size in &sizes {
        for &mode in &modes {
            let counts: &[usize] = if mode == ProxyMode::Nftables {
                &shard_counts
            } else {
                &[1]
            };
            for &shards in counts {
                eprintln!("programming {size} services in {mode:?} mode ({shards} shards) ...");
                results.push(run_mode(mode, shards, size, repeats));
            }
        }
    }
    println!(
        "{:<9} {:>8} {:>14} {:>11} {:>14} {:>11} {:>11} {:>11}",
        "mode",
        "services",
        "program all",
        "add one",
        "endpoint chg",
        "conn p50",
        "conn p99",
        "planner state"
    );
    for r in &results {
        println!(
            "{:<9} {:>8} {:>12.0}ms {:>9.1}ms {:>12.1}ms {:>9.3}ms {:>9.3}ms {:>8}KiB",
            r.mode,
            r.services,
            r.program_all_ms,
            r.add_one_ms,
            r.endpoint_change_ms,
            r.latency_ms_median,
            r.latency_ms_p99,
            r.planner_memory_kib
        );
    }
    for r in &results {
        println!(
            "{} {}: connect straight to the backend (no service) p50 {:.3}ms without the proxy's tables, {:.3}ms with them ({:.2}x)",
            r.mode,
            r.services,
            r.direct_ms_without_tables,
            r.direct_ms_with_tables,
            r.direct_ms_with_tables / r.direct_ms_without_tables
        );
        if let (Some(add), Some(change)) = (r.add_one_nft_cli_ms, r.endpoint_change_nft_cli_ms) {
            println!(
                "{} {}: same changes through nft -f: add one {add:.1}ms ({:.1}x the netlink path), endpoint change {change:.1}ms ({:.1}x)",
                r.mode,
                r.services,
                add / r.add_one_ms,
                change / r.endpoint_change_ms
            );
        }
    }
    let find = |mode: &str, size: usize| {
        results
            .iter()
            .find(|r| r.mode == mode && r.services == size)
    };
    let mut ratios = serde_json::Map::new();
    for &size in &sizes {
        if let (Some(n), Some(i)) = (find("nftables", size), find("iptables", size)) {
            let ratio = serde_json::json!({
                "program_all_iptables_over_nftables": i.program_all_ms / n.program_all_ms,
                "add_one_iptables_over_nftables": i.add_one_ms / n.add_one_ms,
                "endpoint_change_iptables_over_nftables": i.endpoint_change_ms / n.endpoint_change_ms,
            });
            println!(
                "ratio iptables/nftables at {size}: program all {:.2}x, add one {:.2}x, endpoint change {:.2}x",
                i.program_all_ms / n.program_all_ms,
                i.add_one_ms / n.add_one_ms,
                i.endpoint_change_ms / n.endpoint_change_ms
            );
            ratios.insert(size.to_string(), ratio);
        }
    }
    let (smallest, largest) = (sizes.iter().min().copied(), sizes.iter().max().copied());
    let mut latency_flatness = serde_json::Map::new();
    if let (Some(small), Some(large)) = (smallest, largest) {
        for mode in ["nftables", "iptables"] {
            if let (Some(a), Some(b)) = (find(mode, small), find(mode, large)) {
                let ratio = b.latency_ms_median / a.latency_ms_median;
                println!(
                    "{mode}: first-connection latency {large} vs {small} services: {ratio:.2}x (p50), {:.2}x (p99)",
                    b.latency_ms_p99 / a.latency_ms_p99
                );
                latency_flatness.insert(
                    mode.to_string(),
                    serde_json::json!({"p50_ratio": ratio, "p99_ratio": b.latency_ms_p99 / a.latency_ms_p99, "small": small, "large": large}),
                );
            }
        }
    }
    let json = serde_json::json!({
        "benchmark": "service proxy programming",
        "endpoints_per_service": 2,
        "repeats": repeats,
        "results": results.iter().map(|r| serde_json::json!({
            "mode": r.mode,
            "services": r.services,
            "program_all_ms": r.program_all_ms,
            "add_one_service_ms": r.add_one_ms,
            "endpoint_change_ms": r.endpoint_change_ms,
            "add_one_service_nft_cli_ms": r.add_one_nft_cli_ms,
            "endpoint_change_nft_cli_ms": r.endpoint_change_nft_cli_ms,
            "first_connection_latency_ms_p50": r.latency_ms_median,
            "first_connection_latency_ms_p99": r.latency_ms_p99,
            "direct_connection_ms_p50_without_proxy_tables": r.direct_ms_without_tables,
            "direct_connection_ms_p50_with_proxy_tables": r.direct_ms_with_tables,
            "planner_state_kib": r.planner_memory_kib,
            "process_rss_kib": r.process_rss_kib,
        })).collect::<Vec<_>>(),
        "iptables_over_nftables": ratios,
        "latency_ratio_large_over_small": latency_flatness,
    });
    if let Some(out) = out {
        if let Some(parent) = std::path::Path::new(&out).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::fs::write(&out, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        eprintln!("wrote {out}");
    }
}
