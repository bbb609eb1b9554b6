//! NetworkPolicy benchmark (run by bench/netpol.sh, needs root and nft).
//!
//! In throwaway namespaces (a "node" with a `cni0` bridge and two real pods,
//! client 10.250.0.2 and server 10.250.0.3, plus N simulated pods that are
//! only IPs in 10.250.16.0/20), it measures:
//! - programming N policies over N pods from scratch (compile + nft apply);
//! - adding one policy when N exist (convert the new object, compile with
//!   the agent's `NetpolCompiler`, which recompiles only that policy, diff,
//!   nft apply);
//! - TCP connection rate and connect latency client → server with no table,
//!   with 0 policies, with N unrelated policies, and with the server isolated
//!   by one policy allowing the client, alone or among N others. Two
//!   identical labs are measured in alternation so that outside load hits
//!   both sides of each ratio alike.
//!
//! Writes JSON to the path given with `--out` and prints a short table.

use podnet_agent::netpol::{apply_script, enable_bridge_netfilter};
use podnet_netplan::netpol::{
    plan_netpol, render_full, render_update, NamespaceInfo, NetpolCompiler, NetpolInput, PodInfo,
    PolicyInfo,
};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Lab {
    names: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn lab(prefix: &str) -> Lab {
    let node = format!("{prefix}-node");
    let mut lab = Lab {
        names: vec![node.clone()],
    };
    ip(&["netns", "add", &node]);
    ip(&["-n", &node, "link", "set", "lo", "up"]);
    ip(&["-n", &node, "link", "add", "cni0", "type", "bridge"]);
    ip(&["-n", &node, "addr", "add", "10.250.0.1/16", "dev", "cni0"]);
    ip(&["-n", &node, "link", "set", "cni0", "up"]);
    for (index, pod) in ["client", "server"].iter().enumerate() {
        let name = format!("{prefix}-{pod}");
        lab.names.push(name.clone());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let host_end = format!("vb{index}");
        ip(&[
            "-n", &node, "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns",
            &name,
        ]);
        ip(&[
            "-n", &node, "link", "set", &host_end, "master", "cni0", "up",
        ]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("10.250.0.{}/16", index + 2),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
    }
    lab
}

fn pod(namespace: &str, name: &str, ip: Ipv4Addr, labels: serde_json::Value) -> PodInfo {
    PodInfo::from_json(
        &json!({
            "metadata": {"namespace": namespace, "name": name, "labels": labels},
            "spec": {"nodeName": "node", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
            "status": {"podIP": ip.to_string(), "phase": "Running"},
        }),
        "node",
    )
}

/// `count` simulated pods in 10 namespaces, plus the two real ones.
fn input(count: usize, policies: Vec<serde_json::Value>) -> NetpolInput {
    let mut pods = vec![
        pod(
            "bench",
            "client",
            "10.250.0.2".parse().unwrap(),
            json!({"app": "client"}),
        ),
        pod(
            "bench",
            "server",
            "10.250.0.3".parse().unwrap(),
            json!({"app": "server"}),
        ),
    ];
    for i in 0..count {
        let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 250, 16, 0)) + i as u32);
        pods.push(pod(
            &format!("ns{}", i % 10),
            &format!("p{i}"),
            address,
            json!({"pod": format!("p{i}"), "role": format!("client-{}", i % 50)}),
        ));
    }
    let mut namespaces: Vec<NamespaceInfo> = (0..10)
        .map(|n| {
            NamespaceInfo::from_json(
                &json!({"metadata": {"name": format!("ns{n}"), "labels": {"team": format!("t{}", n % 3)}}}),
            )
        })
        .collect();
    namespaces.push(NamespaceInfo::from_json(
        &json!({"metadata": {"name": "bench"}}),
    ));
    NetpolInput {
        namespaces,
        pods,
        policies: policies.iter().map(PolicyInfo::from_json).collect(),
    }
}

/// Policy i selects simulated pod i and admits a rotating mix of peers.
fn unrelated_policy(i: usize) -> serde_json::Value {
    let from = match i % 4 {
        0 => json!([{"podSelector": {"matchLabels": {"role": format!("client-{}", i % 50)}}}]),
        1 => json!([{"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % 3)}},
                     "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": [format!("client-{}", i % 50), "client-0"]}]}}]),
        2 => {
            json!([{"ipBlock": {"cidr": "10.250.16.0/20", "except": [format!("10.250.{}.0/24", 16 + i % 16)]}}])
        }
        _ => json!([{"namespaceSelector": {"matchLabels": {"team": "t1"}}}]),
    };
    json!({
        "metadata": {"namespace": format!("ns{}", i % 10), "name": format!("pol-{i}")},
        "spec": {
            "podSelector": {"matchLabels": {"pod": format!("p{i}")}},
            "policyTypes": if i.is_multiple_of(5) { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) },
            "ingress": [{"from": from, "ports": [{"port": 80}, {"port": "http"}, {"port": 9000, "endPort": 9100, "protocol": "UDP"}]}],
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}],
        }
    })
}

fn server_policy() -> serde_json::Value {
    json!({
        "metadata": {"namespace": "bench", "name": "server-allows-client"},
        "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}]}
    })
}

struct ConnectStats {
    rate_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    failures: usize,
}

/// Sequential TCP connects client → server:80 for `duration`.
fn connect_loop(client: &Path, duration: Duration) -> ConnectStats {
    let address: SocketAddr = "10.250.0.3:80".parse().unwrap();
    podnet_netlink::in_netns(client, move || {
        let mut latencies = Vec::new();
        let mut failures = 0;
        let started = Instant::now();
        while started.elapsed() < duration {
            let t = Instant::now();
            match TcpStream::connect_timeout(&address, Duration::from_millis(500)) {
                Ok(stream) => {
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                    // Reset on close: no TIME_WAIT pile-up over thousands of connects.
                    let _ = nix::sys::socket::setsockopt(
                        &stream,
                        nix::sys::socket::sockopt::Linger,
                        &libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        },
                    );
                    drop(stream);
                }
                Err(_) => failures += 1,
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pick = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        ConnectStats {
            rate_per_s: latencies.len() as f64 / elapsed,
            p50_us: pick(0.5),
            p99_us: pick(0.99),
            failures,
        }
    })
    .expect("enter client netns")
}

/// One lab ready to measure: its node and client namespaces.
struct Bed {
    _lab: Lab,
    node: PathBuf,
    client: PathBuf,
}

fn bed(prefix: &str) -> Bed {
    let lab = lab(prefix);
    let node = netns_path(&format!("{prefix}-node"));
    let client = netns_path(&format!("{prefix}-client"));
    let server = netns_path(&format!("{prefix}-server"));
    enable_bridge_netfilter(&node).expect("bridge netfilter");
    let listener = podnet_netlink::in_netns(&server, || TcpListener::bind("0.0.0.0:80"))
        .expect("enter server netns")
        .expect("bind server");
    std::thread::spawn(move || for _ in listener.incoming() {});
    Bed {
        _lab: lab,
        node,
        client,
    }
}

/// Alternate short runs on two beds (so load from elsewhere hits both
/// alike); rate is the median of the runs, latencies pooled.
fn compare(a: &Bed, b: &Bed, rounds: usize, each: Duration) -> (ConnectStats, ConnectStats) {
    let mut runs_a = Vec::new();
    let mut runs_b = Vec::new();
    for _ in 0..rounds {
        runs_a.push(connect_loop(&a.client, each));
        runs_b.push(connect_loop(&b.client, each));
    }
    (merge(runs_a), merge(runs_b))
}

fn merge(mut runs: Vec<ConnectStats>) -> ConnectStats {
    runs.sort_by(|x, y| x.rate_per_s.partial_cmp(&y.rate_per_s).unwrap());
    let median = &runs[runs.len() / 2];
    let mut p50: Vec<f64> = runs.iter().map(|r| r.p50_us).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.p99_us).collect();
    p50.sort_by(|x, y| x.partial_cmp(y).unwrap());
    p99.sort_by(|x, y| x.partial_cmp(y).unwrap());
    ConnectStats {
        rate_per_s: median.rate_per_s,
        p50_us: p50[p50.len() / 2],
        p99_us: p99[p99.len() / 2],
        failures: runs.iter().map(|r| r.failures).sum(),
    }
}

fn main() {
    let mut out: Option<PathBuf> = None;
    let mut dump_dir: Option<PathBuf> = None;
    let mut count = 1000usize;
    let mut seconds = 1u64;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from),
            "--dump-dir" => dump_dir = args.next().map(PathBuf::from),
            "--policies" => {
                count = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--policies N")
            }
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds S")
            }
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rounds R")
            }
            other => panic!(
                "unknown argument {other} (use --out PATH --policies N --seconds S --rounds R --dump-dir DIR)"
            ),
        }
    }
    let prefix = format!("pnb{}", std::process::id());
    // Bed a: the table with no policies; bed b: N unrelated policies.
    let a = bed(&format!("{prefix}a"));
    let b = bed(&format!("{prefix}b"));
    let each = Duration::from_secs(seconds);

    let no_table = connect_loop(&a.client, each);
    // Pods and namespaces converted once, as the agent keeps them.
    let base = input(count, vec![]);
    let with = |policies: &[PolicyInfo]| NetpolInput {
        policies: policies.to_vec(),
        ..base.clone()
    };
    let empty = plan_netpol(&base);
    apply_script(&a.node, &render_full(&empty)).expect("apply empty");

    // N policies from scratch (convert + compile + apply).
    let mut compiler = NetpolCompiler::new();
    let started = Instant::now();
    let policies: Vec<PolicyInfo> = (0..count)
        .map(|i| PolicyInfo::from_json(&unrelated_policy(i)))
        .collect();
    let full = compiler.compile(&with(&policies));
    let compiled = started.elapsed();
    let script = render_full(&full);
    apply_script(&b.node, &script).expect("apply N policies");
    let program_all = started.elapsed();

    let (zero, unrelated) = compare(&a, &b, rounds, each);

    // Add one policy (isolating the server, allowing the client) when N exist.
    let started = Instant::now();
    let mut with_server = policies.clone();
    with_server.push(PolicyInfo::from_json(&server_policy()));
    let next = compiler.compile(&with(&with_server));
    let add_recompiled = compiler.last_recompiled();
    let update = render_update(&full, &next, false);
    let add_compiled = started.elapsed();
    apply_script(&b.node, &update).expect("apply one more");
    let add_one = started.elapsed();
    assert_eq!(
        next,
        plan_netpol(&with(&with_server)),
        "compiler agrees with plan_netpol"
    );

    // Delete that policy again (a set and a map entry go).
    let started = Instant::now();
    let back = compiler.compile(&with(&policies));
    let removal = render_update(&next, &back, false);
    apply_script(&b.node, &removal).expect("remove one");
    let remove_one = started.elapsed();
    if let Some(dir) = &dump_dir {
        // The scripts, to replay by hand (`nft -f`) in a throwaway namespace.
        std::fs::create_dir_all(dir).expect("dump dir");
        for (name, text) in [
            ("full.nft", &script),
            ("add_one.nft", &update),
            ("remove_one.nft", &removal),
        ] {
            std::fs::write(dir.join(name), text).expect("write dump");
        }
    }
    apply_script(&b.node, &render_update(&back, &next, false)).expect("re-add");

    // The server's policy alone on bed a, then compare isolated paths.
    let alone = plan_netpol(&with(&[PolicyInfo::from_json(&server_policy())]));
    apply_script(&a.node, &render_update(&empty, &alone, false)).expect("apply one policy");
    let (isolated_alone, isolated_among_many) = compare(&a, &b, rounds, each);

    let elements: usize = full.sets.values().map(|s| s.elements.len()).sum();
    let rules: usize = full.chains.values().map(|c| c.len()).sum();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let result = json!({
        "policies": count,
        "pods": count + 2,
        "ruleset": {"sets": full.sets.len(), "set_elements": elements, "chains": full.chains.len(), "rules": rules, "script_bytes": script.len()},
        "program_all_ms": ms(program_all),
        "program_all_compile_ms": ms(compiled),
        "add_one_policy_ms": ms(add_one),
        "add_one_policy_compile_ms": ms(add_compiled),
        "add_one_policy_script_lines": update.lines().count(),
        "add_one_policy_policies_compiled": add_recompiled,
        "remove_one_policy_ms": ms(remove_one),
        "connect": {
            "no_table": stats_json(&no_table),
            "zero_policies": stats_json(&zero),
            "unrelated_policies": stats_json(&unrelated),
            "server_isolated_alone": stats_json(&isolated_alone),
            "server_isolated_among_unrelated": stats_json(&isolated_among_many),
        },
        "rate_ratio_zero_over_unrelated": zero.rate_per_s / unrelated.rate_per_s,
        "rate_ratio_isolated_alone_over_among_unrelated": isolated_alone.rate_per_s / isolated_among_many.rate_per_s,
        "p50_latency_ratio_unrelated_over_zero": unrelated.p50_us / zero.p50_us,
        "p50_latency_ratio_among_unrelated_over_alone": isolated_among_many.p50_us / isolated_alone.p50_us,
        "connect_runs": {"rounds": rounds, "seconds_each": seconds},
    });
    println!(
        "NetworkPolicy benchmark ({count} policies over {} pods, one node)",
        count + 2
    );
    println!(
        "  program all from scratch   {:>8.1} ms (compile {:.1} ms)",
        ms(program_all),
        ms(compiled)
    );
    println!(
        "  add one policy at {count:<5}    {:>8.1} ms (compile+diff {:.1} ms, {} policy compiled, {} nft lines)",
        ms(add_one),
        ms(add_compiled),
        add_recompiled,
        update.lines().count()
    );
    println!("  remove one policy          {:>8.1} ms", ms(remove_one));
    println!("  connects/s   p50 µs   p99 µs  fails  case");
    for (name, stats) in [
        ("no table", &no_table),
        ("0 policies", &zero),
        ("N unrelated policies", &unrelated),
        ("server isolated, 1 policy", &isolated_alone),
        ("server isolated, N+1 policies", &isolated_among_many),
    ] {
        println!(
            "  {:>10.0} {:>8.1} {:>8.1} {:>6}  {name}",
            stats.rate_per_s, stats.p50_us, stats.p99_us, stats.failures
        );
    }
    println!(
        "  rate ratio 0 / N unrelated: {:.3}; isolated 1 / N+1: {:.3}",
        zero.rate_per_s / unrelated.rate_per_s,
        isolated_alone.rate_per_s / isolated_among_many.rate_per_s
    );
    println!(
        "  p50 latency ratio N unrelated / 0: {:.3}; isolated N+1 / 1: {:.3}",
        unrelated.p50_us / zero.p50_us,
        isolated_among_many.p50_us / isolated_alone.p50_us
    );
    if let Some(path) = out {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("results dir");
        }
        std::fs::write(&path, serde_json::to_string_pretty(&result).unwrap()).expect("write JSON");
        println!("  written to {}", path.display());
    }
}

fn stats_json(stats: &ConnectStats) -> serde_json::Value {
    json!({"rate_per_s": stats.rate_per_s, "p50_us": stats.p50_us, "p99_us": stats.p99_us, "failures": stats.failures})
}
