//! Fuzz loop for the request path (parse → answer → encode, and the
//! forwarding finish with no upstream): random bytes and mutations of valid
//! queries, bounded by a count. Any panic or an input taking longer than
//! 100 ms is reported with its bytes and fails the run.
//!
//! cargo run --release -p podnet-dns --example fuzz_requests -- [COUNT] [SEED]

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use podnet_dns::fast::{ReplyCache, DEFAULT_CAPACITY};
use podnet_dns::server::{Handler, Step, UdpStep};
use podnet_dns::snapshot::{EndpointInfo, PortInfo, ServiceInfo, SliceInfo, World};
use podnet_dns::{ForwardConfig, Forwarder, Snapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn world() -> World {
    let mut world = World::default();
    for ns in ["default", "kube-system", "other"] {
        world.namespaces.insert(ns.into());
    }
    let port = |name: &str, port| PortInfo {
        name: name.into(),
        protocol: "tcp".into(),
        port,
    };
    world.services.insert(
        ("default".into(), "web".into()),
        ServiceInfo {
            namespace: "default".into(),
            name: "web".into(),
            cluster_ips: vec!["10.96.0.20".parse().unwrap()],
            external_name: None,
            ports: vec![port("http", 80)],
            publish_not_ready: false,
        },
    );
    world.services.insert(
        ("default".into(), "db".into()),
        ServiceInfo {
            namespace: "default".into(),
            name: "db".into(),
            cluster_ips: vec![],
            external_name: None,
            ports: vec![port("mysql", 3306)],
            publish_not_ready: false,
        },
    );
    world.services.insert(
        ("other".into(), "ext".into()),
        ServiceInfo {
            namespace: "other".into(),
            name: "ext".into(),
            cluster_ips: vec![],
            external_name: Some("example.org".into()),
            ports: vec![],
            publish_not_ready: false,
        },
    );
    world.slices.insert(
        ("default".into(), "db-1".into()),
        SliceInfo {
            namespace: "default".into(),
            service: "db".into(),
            ports: vec![port("mysql", 3306)],
            endpoints: (0..50u32)
                .map(|i| EndpointInfo {
                    addresses: vec![format!("10.244.1.{i}").parse().unwrap()],
                    hostname: i.is_multiple_of(2).then(|| format!("db-{i}")),
                    ready: true,
                })
                .collect(),
        },
    );
    world
}

fn seeds() -> Vec<Vec<u8>> {
    let names = [
        "web.default.svc.cluster.local.",
        "db.default.svc.cluster.local.",
        "_mysql._tcp.db.default.svc.cluster.local.",
        "db-0.db.default.svc.cluster.local.",
        "ext.other.svc.cluster.local.",
        "20.0.96.10.in-addr.arpa.",
        "cluster.local.",
        "dns-version.cluster.local.",
        "default.svc.cluster.local.",
        "a.b.c.d.e.f.cluster.local.",
        "10-244-1-1.default.pod.cluster.local.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::PTR,
        RecordType::TXT,
        RecordType::SOA,
        RecordType::NS,
        RecordType::CNAME,
        RecordType::ANY,
        RecordType::AXFR,
        RecordType::MX,
    ];
    let mut seeds = Vec::new();
    for (index, name) in names.iter().enumerate() {
        for (t, query_type) in types.iter().enumerate() {
            let mut message =
                Message::new((index * 31 + t) as u16, MessageType::Query, OpCode::Query);
            message.metadata.recursion_desired = true;
            message.add_query(Query::query(Name::from_ascii(name).unwrap(), *query_type));
            if t.is_multiple_of(2) {
                let mut edns = Edns::new();
                edns.set_max_payload(if t.is_multiple_of(4) { 4096 } else { 100 });
                message.set_edns(edns);
            }
            seeds.push(message.to_vec().unwrap());
        }
    }
    seeds
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.random_range(0..10) {
        0 => {
            let length = rng.random_range(0..600);
            (0..length).map(|_| rng.random()).collect()
        }
        _ => {
            let mut bytes = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..6) {
                if bytes.is_empty() {
                    bytes.push(rng.random());
                    continue;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..7) {
                    0 => bytes[at] ^= 1 << rng.random_range(0..8),
                    1 => bytes[at] = rng.random(),
                    2 => bytes.truncate(at),
                    3 => bytes.insert(at, rng.random()),
                    // Compression pointers (loops, forward references).
                    4 => {
                        if at + 1 < bytes.len() {
                            bytes[at] = 0xc0 | rng.random_range(0..0x40);
                            bytes[at + 1] = rng.random();
                        }
                    }
                    // Header counts.
                    5 => {
                        if bytes.len() >= 12 {
                            let field = 4 + 2 * rng.random_range(0..4);
                            bytes[field] = rng.random();
                            bytes[field + 1] = rng.random();
                        }
                    }
                    _ => {
                        let extra: Vec<u8> =
                            (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                        bytes.extend(extra);
                    }
                }
            }
            bytes
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(
        &world(),
        "cluster.local",
        5,
        1,
    )));
    // No upstreams: forwarding fails at once (SERVFAIL) without I/O.
    let forwarder = Arc::new(Forwarder::new(ForwardConfig::default()));
    let handler = Handler::new(snapshot, forwarder);
    let seeds = seeds();
    // UDP inputs take the UDP threads' path (reply cache in front).
    let (mut cache, mut scratch, mut out) =
        (ReplyCache::new(DEFAULT_CAPACITY), Vec::new(), Vec::new());
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let (mut replies, mut dropped, mut upstream, mut slowest) = (0u64, 0u64, 0u64, Duration::ZERO);
    for index in 0..count {
        let input = mutate(&mut rng, &seeds);
        let tcp = index.is_multiple_of(3);
        let begin = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let step = if tcp {
                handler.start(&input, tcp)
            } else {
                match handler.start_udp(&input, &mut cache, &mut scratch, &mut out) {
                    UdpStep::Reply => Step::Done(Some(out.clone())),
                    UdpStep::Nothing => Step::Done(None),
                    UdpStep::Upstream(pending) => Step::Upstream(pending),
                }
            };
            match step {
                Step::Done(Some(reply)) => {
                    assert!(
                        tcp || reply.len() <= 4096,
                        "UDP reply of {} bytes",
                        reply.len()
                    );
                    1
                }
                Step::Done(None) => 0,
                Step::Upstream(pending) => {
                    let (request, outcome) = *pending;
                    runtime
                        .block_on(handler.finish(&request, outcome, tcp))
                        .map(|_| 2)
                        .unwrap_or(0)
                }
            }
        }));
        let took = begin.elapsed();
        slowest = slowest.max(took);
        match result {
            Ok(1) => replies += 1,
            Ok(2) => upstream += 1,
            Ok(_) => dropped += 1,
            Err(_) => {
                eprintln!("PANIC on input #{index}: {input:02x?}");
                std::process::exit(1);
            }
        }
        if took > Duration::from_millis(100) {
            eprintln!("SLOW ({took:?}) on input #{index}: {input:02x?}");
            std::process::exit(1);
        }
    }
    println!(
        "{count} inputs (seed {seed}) in {:.1}s: {replies} answered, {upstream} via the forwarding path, {dropped} dropped; no panic; slowest {:?}",
        started.elapsed().as_secs_f64(),
        slowest
    );
}
