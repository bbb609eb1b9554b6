//! Benchmark server: podnet-dns answering a synthetic cluster built
//! in-process (N services, of which every tenth is headless with 3
//! endpoints; every ClusterIP service has one endpoint; M pods with
//! hostname/subdomain), forwarding other names to `--upstream`. Writes the
//! same records as an unbound `server:` include and dnsperf query files,
//! prints one JSON line (memory after the snapshot is built) and serves
//! until killed.
//!
//! bench_server LISTEN UPSTREAM SERVICES PODS OUT_DIR

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use podnet_dns::snapshot::{EndpointInfo, PodInfo, PortInfo, ServiceInfo, SliceInfo, World};
use podnet_dns::{ForwardConfig, Forwarder, Handler, Snapshot};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn ip(base: [u8; 2], index: usize) -> Ipv4Addr {
    let n = index + 10;
    Ipv4Addr::new(base[0], base[1] + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = args[1].parse().expect("LISTEN");
    let upstream: SocketAddr = args[2].parse().expect("UPSTREAM");
    let services: usize = args[3].parse().expect("SERVICES");
    let pods: usize = args[4].parse().expect("PODS");
    let out = std::path::PathBuf::from(&args[5]);
    let before = rss_kib();

    let mut world = World::default();
    // Written as we go: no large strings in the measured process.
    let file = |name: &str| std::io::BufWriter::new(std::fs::File::create(out.join(name)).unwrap());
    let mut zone = file("zone.conf");
    let mut cluster_queries = file("queries-cluster.txt");
    let mut mixed_queries = file("queries-mixed.txt");
    writeln!(
        zone,
        "local-zone: \"cluster.local.\" static\nlocal-zone: \"example.org.\" static"
    )
    .unwrap();
    for n in 0..100 {
        world.namespaces.insert(format!("ns{n}"));
    }
    let http = PortInfo {
        name: "http".into(),
        protocol: "tcp".into(),
        port: 80,
    };
    let mut pod_index = 0usize;
    for i in 0..services {
        let namespace = format!("ns{}", i % 100);
        let name = format!("svc{i}");
        let fqdn = format!("{name}.{namespace}.svc.cluster.local.");
        let headless = i.is_multiple_of(10);
        let endpoint_count = if headless { 3 } else { 1 };
        let mut endpoints = Vec::new();
        for e in 0..endpoint_count {
            let address = ip([10, 244], pod_index);
            pod_index += 1;
            endpoints.push(EndpointInfo {
                addresses: vec![IpAddr::V4(address)],
                hostname: (headless && e == 0).then(|| format!("{name}-0")),
                ready: true,
            });
            if headless {
                writeln!(zone, "local-data: \"{fqdn} 5 IN A {address}\"").unwrap();
            }
        }
        let cluster_ips = if headless {
            Vec::new()
        } else {
            let address = ip([10, 96], i);
            writeln!(zone, "local-data: \"{fqdn} 5 IN A {address}\"").unwrap();
            vec![IpAddr::V4(address)]
        };
        world.services.insert(
            (namespace.clone(), name.clone()),
            ServiceInfo {
                namespace: namespace.clone(),
                name: name.clone(),
                cluster_ips,
                external_name: None,
                ports: vec![http.clone()],
                publish_not_ready: false,
            },
        );
        world.slices.insert(
            (namespace.clone(), format!("{name}-abcde")),
            SliceInfo {
                namespace: namespace.clone(),
                service: name.clone(),
                endpoints,
                ports: vec![http.clone()],
            },
        );
        writeln!(cluster_queries, "{fqdn} A").unwrap();
    }
    for p in 0..pods {
        let namespace = format!("ns{}", p % 100);
        world.pods.insert(
            (namespace.clone(), format!("pod{p}")),
            PodInfo {
                namespace,
                hostname: format!("pod{p}"),
                subdomain: format!("svc{}", (p % services.max(1)) / 10 * 10),
                ips: vec![IpAddr::V4(ip([10, 244], p))],
                ready: true,
            },
        );
    }
    for f in 0..1000 {
        writeln!(
            zone,
            "local-data: \"fwd{f}.example.org. 300 IN A 192.0.2.{}\"",
            f % 250 + 1
        )
        .unwrap();
    }
    // The mixed file: 60 % service names, 15 % headless, 15 % NXDOMAIN, 10 % forwarded.
    for q in 0..20_000usize {
        let line = match q % 20 {
            0..=11 => {
                let i = (q * 7919) % services.max(1);
                let i = if i.is_multiple_of(10) {
                    (i + 1) % services.max(1)
                } else {
                    i
                };
                format!("svc{i}.ns{}.svc.cluster.local. A", i % 100)
            }
            12..=14 => {
                let i = ((q * 7919) % services.max(1)) / 10 * 10;
                format!("svc{i}.ns{}.svc.cluster.local. A", i % 100)
            }
            15..=17 => format!("nope{q}.ns{}.svc.cluster.local. A", q % 100),
            _ => format!("fwd{}.example.org. A", q % 1000),
        };
        writeln!(mixed_queries, "{line}").unwrap();
    }
    drop((zone, cluster_queries, mixed_queries));

    let snapshot = Snapshot::build(&world, "cluster.local", 5, 1);
    let untrimmed = rss_kib();
    // As the watcher does after publishing a snapshot.
    podnet_dns::release_free_memory();
    let after = rss_kib();
    println!(
        "{{\"services\": {services}, \"pods\": {pods}, \"endpoints\": {pod_index}, \"rss_before_kib\": {before}, \"rss_untrimmed_kib\": {untrimmed}, \"rss_after_snapshot_kib\": {after}}}"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let forwarder = Arc::new(Forwarder::new(ForwardConfig {
            upstreams: vec![upstream],
            ..Default::default()
        }));
        let handler = Arc::new(Handler::new(
            Arc::new(ArcSwap::from_pointee(snapshot)),
            forwarder,
        ));
        // The world stays alive, as in the server (the watcher keeps it).
        let _world = world;
        let _server = podnet_dns::server::serve(listen, 2, handler)
            .await
            .expect("serve");
        std::future::pending::<()>().await;
    });
}
