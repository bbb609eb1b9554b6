//! Root tests of the service proxy applier in throwaway network namespaces:
//! batches from the planner are applied with the real nft / iptables-restore,
//! the result is read back (`nft -j list table`, `iptables-save`), and real
//! TCP connections go through the rules (DNAT to a listener on a dummy
//! interface, connection refused without endpoints).

use podnet_agent::proxy::{run_in_netns, ProxyApplier};
use podnet_netplan::services::{
    resolve_service, Protocol, ProxyContext, ProxyEndpointSlice, ProxyMode, ProxyPlanner,
    ProxyService, ServicePortSpec, ServiceType, SliceEndpoint, SlicePort,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Root, or a skip; under the project's test command (which sets
/// PODNET_REQUIRE_PRIVILEGED_TESTS) not being root is a failure.
fn is_root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    assert!(
        root || std::env::var_os("PODNET_REQUIRE_PRIVILEGED_TESTS").is_none(),
        "needs root (PODNET_REQUIRE_PRIVILEGED_TESTS is set)"
    );
    root
}

/// A named namespace removed on drop.
struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("pxt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(status.success());
        let netns = Netns {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        };
        // A node-like namespace: eth0 (a veth) with the node IP, a veth
        // holding "pod" addresses, loopback up.
        for command in [
            "link set lo up",
            "link add eth0 type veth peer name eth0peer",
            "addr add 172.18.0.2/16 dev eth0",
            "link set eth0peer up",
            "link set eth0 up",
            "link add pods type veth peer name podspeer",
            "addr add 10.244.1.5/32 dev pods",
            "addr add 10.244.1.6/32 dev pods",
            "link set podspeer up",
            "link set pods up",
        ] {
            let status = Command::new("ip")
                .args(["-n", &netns.name])
                .args(command.split_whitespace())
                .status()
                .unwrap();
            assert!(status.success(), "ip {command}");
        }
        netns
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = run_in_netns(&self.path, program, args, None).unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Runs `f` on a thread inside the namespace.
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

fn service(name: &str, ip: &str, port: u16, node_port: Option<u16>) -> ProxyService {
    ProxyService {
        namespace: "default".into(),
        name: name.into(),
        labels: BTreeMap::new(),
        service_type: if node_port.is_some() {
            ServiceType::NodePort
        } else {
            ServiceType::ClusterIp
        },
        cluster_ip: Some(ip.parse().unwrap()),
        ports: vec![ServicePortSpec {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port,
            node_port,
        }],
        external_ips: vec!["203.0.113.7".parse().unwrap()],
        load_balancer_ips: Vec::new(),
        affinity_timeout_seconds: None,
        internal_traffic_local: false,
        external_traffic_local: false,
    }
}

fn slice(name: &str, ips: &[&str]) -> ProxyEndpointSlice {
    ProxyEndpointSlice {
        namespace: "default".into(),
        name: format!("{name}-1"),
        service_name: name.into(),
        ports: vec![SlicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
        endpoints: ips
            .iter()
            .map(|ip| SliceEndpoint {
                addresses: vec![ip.parse().unwrap()],
                ready: true,
                serving: true,
                terminating: false,
                node_name: Some("node1".into()),
            })
            .collect(),
    }
}

fn set(planner: &mut ProxyPlanner, service: &ProxyService, slices: &[ProxyEndpointSlice]) {
    let refs: Vec<&ProxyEndpointSlice> = slices.iter().collect();
    let ports = resolve_service(&context(), service, &refs);
    planner.set_service(&service.namespace, &service.name, Some(ports));
}

fn apply(applier: &ProxyApplier, planner: &mut ProxyPlanner) -> bool {
    let existing = applier.existing_chains().unwrap();
    let batch = planner.plan(&existing);
    if let Err(error) = applier.apply(&batch) {
        panic!("{error}\nscript:\n{}", batch.script);
    }
    batch.full
}

/// Connects from inside the namespace; Ok(what the server said) or the error kind.
fn connect(netns: &Netns, address: &str) -> Result<String, std::io::ErrorKind> {
    let address: SocketAddr = address.parse().unwrap();
    netns.inside(move || {
        use std::io::Read;
        let mut stream =
            TcpStream::connect_timeout(&address, Duration::from_secs(2)).map_err(|e| e.kind())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).map_err(|e| e.kind())?;
        Ok(text)
    })
}

/// A listener on ip:8080 in the namespace answering its own address.
fn serve(netns: &Netns, ip: &'static str) {
    let listener = netns.inside(move || {
        std::net::TcpListener::bind(SocketAddr::from((ip.parse::<Ipv4Addr>().unwrap(), 8080)))
            .unwrap()
    });
    std::thread::spawn(move || {
        use std::io::Write;
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(ip.as_bytes());
        }
    });
}

/// The proxy's tables (the shared one and the shards), as `nft -j` lists them.
fn nft_json(netns: &Netns) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&netns.run("nft", &["-j", "list", "ruleset", "ip"])).unwrap();
    let items: Vec<serde_json::Value> = all["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| {
            let object = item.as_object().and_then(|o| o.values().next());
            let table = object.and_then(|o| o.get("table").or_else(|| o.get("name")));
            table
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.starts_with("podnet-proxy"))
        })
        .cloned()
        .collect();
    serde_json::json!({ "nftables": items })
}

fn chain_names(json: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("chain"))
        .map(|chain| chain["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Elements of every map called `map` (one per shard for the dispatch maps).
fn map_elements(json: &serde_json::Value, map: &str) -> usize {
    json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item.get("map"))
        .filter(|m| m["name"] == map)
        .filter_map(|m| m["elem"].as_array().map(Vec::len))
        .sum()
}

/// An applier for the node namespace `netns`, with the node prepared
/// (sysctls, service route) as the agent does at start.
fn prepared_applier(netns: &Netns, mode: ProxyMode) -> ProxyApplier {
    let applier = ProxyApplier::new(netns.path.clone(), mode);
    applier
        .prepare_node(
            "172.18.0.2".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
        )
        .unwrap();
    applier
}

/// A node namespace with backends serving on 10.244.1.5 and 10.244.1.6 and
/// an applier prepared in it.
fn node_with_two_backends(tag: &str, mode: ProxyMode) -> (Netns, ProxyApplier) {
    let netns = Netns::new(tag);
    serve(&netns, "10.244.1.5");
    serve(&netns, "10.244.1.6");
    let applier = prepared_applier(&netns, mode);
    (netns, applier)
}

/// The distinct backends that answer `count` connections to `address`.
fn backends_answering(
    netns: &Netns,
    address: &str,
    count: usize,
) -> std::collections::BTreeSet<String> {
    (0..count)
        .map(|_| connect(netns, address).unwrap())
        .collect()
}

#[test]
fn nftables_applier_programs_dnat_reject_and_updates_incrementally() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (netns, applier) = node_with_two_backends("nft", ProxyMode::Nftables);
    let mut planner = ProxyPlanner::new(ProxyMode::Nftables, context());
    let web = service("web", "10.96.0.20", 80, Some(30080));
    set(&mut planner, &web, &[slice("web", &["10.244.1.5"])]);
    let empty = service("empty", "10.96.0.21", 80, None);
    set(&mut planner, &empty, &[]);
    assert!(apply(&applier, &mut planner), "first batch is full");

    let json = nft_json(&netns);
    assert!(chain_names(&json)
        .iter()
        .any(|c| c.starts_with("service-") && c.ends_with("default/web/tcp/http")));
    assert_eq!(
        map_elements(&json, "service-ips"),
        2,
        "cluster IP and external IP"
    );
    assert_eq!(map_elements(&json, "no-endpoint-services"), 2);

    assert_eq!(connect(&netns, "10.96.0.20:80"), Ok("10.244.1.5".into()));
    assert_eq!(connect(&netns, "172.18.0.2:30080"), Ok("10.244.1.5".into()));
    assert_eq!(
        connect(&netns, "10.96.0.21:80"),
        Err(std::io::ErrorKind::ConnectionRefused),
        "no endpoints: refused"
    );
    assert_eq!(
        connect(&netns, "10.96.0.20:81"),
        Err(std::io::ErrorKind::ConnectionRefused),
        "unused port of a ClusterIP: refused"
    );

    // Endpoint moves: incremental, only that service's chains.
    set(&mut planner, &web, &[slice("web", &["10.244.1.6"])]);
    let batch = planner.plan(&[]);
    assert!(!batch.full);
    assert!(!batch.script.contains("empty"), "{}", batch.script);
    applier.apply(&batch).unwrap();
    assert_eq!(connect(&netns, "10.96.0.20:80"), Ok("10.244.1.6".into()));

    // The empty service gets an endpoint: moves from the reject map.
    set(&mut planner, &empty, &[slice("empty", &["10.244.1.5"])]);
    assert!(!apply(&applier, &mut planner));
    assert_eq!(connect(&netns, "10.96.0.21:80"), Ok("10.244.1.5".into()));
    let json = nft_json(&netns);
    assert_eq!(map_elements(&json, "no-endpoint-services"), 0);

    // Removing a service removes its chains.
    planner.set_service("default", "web", None);
    assert!(!apply(&applier, &mut planner));
    let json = nft_json(&netns);
    assert!(
        !chain_names(&json)
            .iter()
            .any(|c| c.contains("default/web/")),
        "{:?}",
        chain_names(&json)
    );
    assert!(
        connect(&netns, "10.96.0.20:80").is_err(),
        "an unallocated ClusterIP is dropped"
    );

    // A fresh planner (agent restart) replaces whatever is there.
    let mut restarted = ProxyPlanner::new(ProxyMode::Nftables, context());
    set(
        &mut restarted,
        &web,
        &[slice("web", &["10.244.1.5", "10.244.1.6"])],
    );
    assert!(apply(&applier, &mut restarted));
    let json = nft_json(&netns);
    assert!(!chain_names(&json)
        .iter()
        .any(|c| c.contains("default/empty/")));
    let seen = backends_answering(&netns, "10.96.0.20:80", 40);
    assert_eq!(seen.len(), 2, "both endpoints are chosen: {seen:?}");
}

#[test]
fn nftables_session_affinity_sticks_to_one_endpoint() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (netns, applier) = node_with_two_backends("aff", ProxyMode::Nftables);
    let mut planner = ProxyPlanner::new(ProxyMode::Nftables, context());
    let mut web = service("web", "10.96.0.20", 80, None);
    web.affinity_timeout_seconds = Some(60);
    set(
        &mut planner,
        &web,
        &[slice("web", &["10.244.1.5", "10.244.1.6"])],
    );
    apply(&applier, &mut planner);
    let first = connect(&netns, "10.96.0.20:80").unwrap();
    for _ in 0..15 {
        assert_eq!(connect(&netns, "10.96.0.20:80").unwrap(), first);
    }
    web.affinity_timeout_seconds = None;
    set(
        &mut planner,
        &web,
        &[slice("web", &["10.244.1.5", "10.244.1.6"])],
    );
    apply(&applier, &mut planner);
    let seen = backends_answering(&netns, "10.96.0.20:80", 40);
    assert_eq!(seen.len(), 2, "affinity off spreads again: {seen:?}");
}

#[test]
fn iptables_applier_uses_kube_proxy_chains_and_removes_strays() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (netns, applier) = node_with_two_backends("ipt", ProxyMode::Iptables);
    // A stray chain of a previous run.
    netns.run(
        "iptables",
        &["-t", "nat", "-N", "KUBE-SVC-STALESTALESTALE1"],
    );
    let mut planner = ProxyPlanner::new(ProxyMode::Iptables, context());
    let mut web = service("web", "10.96.0.20", 80, Some(30080));
    web.affinity_timeout_seconds = Some(60);
    set(
        &mut planner,
        &web,
        &[slice("web", &["10.244.1.5", "10.244.1.6"])],
    );
    let empty = service("empty", "10.96.0.21", 80, None);
    set(&mut planner, &empty, &[]);
    assert!(apply(&applier, &mut planner));
    let listing = netns.run("iptables", &["-t", "nat", "-L", "-n"]);
    for chain in [
        "KUBE-SERVICES",
        "KUBE-POSTROUTING",
        "KUBE-NODEPORTS",
        "KUBE-MARK-MASQ",
        "KUBE-SVC-",
        "KUBE-SEP-",
        "KUBE-EXT-",
    ] {
        assert!(listing.contains(chain), "{chain} missing:\n{listing}");
    }
    assert!(!listing.contains("STALESTALE"), "{listing}");
    let first = connect(&netns, "10.96.0.20:80").unwrap();
    for _ in 0..15 {
        assert_eq!(connect(&netns, "10.96.0.20:80").unwrap(), first, "affinity");
    }
    assert_eq!(
        connect(&netns, "172.18.0.2:30080").unwrap(),
        first,
        "nodeport, same client"
    );
    assert_eq!(
        connect(&netns, "10.96.0.21:80"),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    // Incremental: the endpoint change touches only that service.
    web.affinity_timeout_seconds = None;
    set(&mut planner, &web, &[slice("web", &["10.244.1.6"])]);
    let batch = planner.plan(&[]);
    assert!(
        !batch.full && !batch.script.contains("empty"),
        "{}",
        batch.script
    );
    applier.apply(&batch).unwrap();
    assert_eq!(connect(&netns, "10.96.0.20:80"), Ok("10.244.1.6".into()));
    // Re-applying a full batch keeps one jump per built-in chain.
    let mut restarted = ProxyPlanner::new(ProxyMode::Iptables, context());
    set(&mut restarted, &web, &[slice("web", &["10.244.1.6"])]);
    assert!(apply(&applier, &mut restarted));
    let prerouting = netns.run("iptables", &["-t", "nat", "-S", "PREROUTING"]);
    assert_eq!(
        prerouting.matches("KUBE-SERVICES").count(),
        1,
        "{prerouting}"
    );
    assert_eq!(connect(&netns, "10.96.0.20:80"), Ok("10.244.1.6".into()));
    assert!(connect(&netns, "10.96.0.21:80").is_err());
}

/// `nft -j list ruleset ip` of the proxy's tables without handles and
/// without the learned entries of affinity sets, keys, elements and objects
/// sorted: equal when the kernel holds the same ruleset whatever order it
/// was written in.
fn normalized_proxy_ruleset(netns: &Netns) -> Vec<String> {
    fn canonical(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::Object(map) => {
                let affinity_set = map
                    .get("name")
                    .and_then(|n| n.as_str())
                    .is_some_and(|n| n.starts_with("affinity-"));
                let mut fields: Vec<(String, String)> = map
                    .iter()
                    .filter(|(key, _)| *key != "handle" && !(affinity_set && *key == "elem"))
                    .map(|(key, inner)| {
                        let mut text = canonical(inner);
                        if key == "elem" {
                            if let serde_json::Value::Array(items) = inner {
                                let mut elements: Vec<String> =
                                    items.iter().map(canonical).collect();
                                elements.sort();
                                text = format!("[{}]", elements.join(","));
                            }
                        }
                        (key.clone(), text)
                    })
                    .collect();
                fields.sort();
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                format!("{{{}}}", body.join(","))
            }
            serde_json::Value::Array(items) => {
                let body: Vec<String> = items.iter().map(canonical).collect();
                format!("[{}]", body.join(","))
            }
            other => other.to_string(),
        }
    }
    let json = nft_json(netns);
    let mut items: Vec<String> = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .map(canonical)
        .collect();
    items.sort();
    items
}

#[test]
fn nftables_incremental_changes_leave_what_a_full_rewrite_writes() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (netns, applier) = node_with_two_backends("nftinc", ProxyMode::Nftables);
    let mut planner = ProxyPlanner::new(ProxyMode::Nftables, context());
    let web = service("web", "10.96.0.20", 80, Some(30080));
    set(&mut planner, &web, &[slice("web", &["10.244.1.5"])]);
    assert!(apply(&applier, &mut planner));

    // Changes of every kind, each written incrementally (the netlink path).
    let mut local = service("local", "10.96.0.22", 80, Some(30082));
    local.external_traffic_local = true;
    local.service_type = ServiceType::LoadBalancer;
    local.load_balancer_ips = vec!["172.18.255.3".parse().unwrap()];
    set(
        &mut planner,
        &local,
        &[slice("local", &["10.244.1.5", "10.244.1.6"])],
    );
    assert!(!apply(&applier, &mut planner));
    let empty = service("empty", "10.96.0.21", 80, Some(30081));
    set(&mut planner, &empty, &[]);
    assert!(!apply(&applier, &mut planner));
    set(
        &mut planner,
        &web,
        &[slice("web", &["10.244.1.5", "10.244.1.6"])],
    );
    assert!(!apply(&applier, &mut planner));
    let mut sticky = service("sticky", "10.96.0.23", 80, None);
    sticky.external_ips.clear();
    sticky.affinity_timeout_seconds = Some(60);
    set(&mut planner, &sticky, &[slice("sticky", &["10.244.1.6"])]);
    assert!(!apply(&applier, &mut planner));
    set(&mut planner, &empty, &[slice("empty", &["10.244.1.6"])]);
    set(&mut planner, &web, &[slice("web", &["10.244.1.6"])]);
    assert!(!apply(&applier, &mut planner));
    planner.set_service("default", "local", None);
    assert!(!apply(&applier, &mut planner));

    assert_eq!(connect(&netns, "10.96.0.20:80"), Ok("10.244.1.6".into()));
    assert_eq!(connect(&netns, "10.96.0.21:80"), Ok("10.244.1.6".into()));
    assert_eq!(connect(&netns, "172.18.0.2:30081"), Ok("10.244.1.6".into()));
    assert_eq!(connect(&netns, "10.96.0.23:80"), Ok("10.244.1.6".into()));
    assert!(connect(&netns, "10.96.0.22:80").is_err(), "local is gone");
    let incremental = normalized_proxy_ruleset(&netns);

    // A fresh planner with the same services writes everything at once.
    let mut fresh = ProxyPlanner::new(ProxyMode::Nftables, context());
    set(&mut fresh, &web, &[slice("web", &["10.244.1.6"])]);
    set(&mut fresh, &empty, &[slice("empty", &["10.244.1.6"])]);
    set(&mut fresh, &sticky, &[slice("sticky", &["10.244.1.6"])]);
    assert!(apply(&applier, &mut fresh));
    let full = normalized_proxy_ruleset(&netns);
    assert_eq!(incremental, full);
}

#[test]
fn nftables_full_batch_replaces_an_older_layout() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let netns = Netns::new("nftold");
    serve(&netns, "10.244.1.5");
    let applier = prepared_applier(&netns, ProxyMode::Nftables);
    // The single-table layout of earlier versions, DNATing the ClusterIP
    // elsewhere, and a shard table of a layout with more shards.
    let old = "table ip podnet-proxy {
	chain nat-output { type nat hook output priority -100; policy accept;
		jump services
	}
	chain services {
		ip daddr 10.96.0.20 tcp dport 80 goto service-OLD
	}
	chain service-OLD {
		meta l4proto tcp dnat to 10.244.9.9:8080
	}
}
table ip podnet-proxy-40 {
	chain nat-output { type nat hook output priority -110; policy accept;
		ip daddr 10.96.0.20 drop
	}
}
";
    let output = run_in_netns(&netns.path, "nft", &["-f", "-"], Some(old)).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut planner = ProxyPlanner::new(ProxyMode::Nftables, context());
    let web = service("web", "10.96.0.20", 80, None);
    set(&mut planner, &web, &[slice("web", &["10.244.1.5"])]);
    assert!(apply(&applier, &mut planner));
    let tables = netns.run("nft", &["list", "tables"]);
    assert!(!tables.contains("podnet-proxy-40"), "{tables}");
    let json = nft_json(&netns);
    assert!(!chain_names(&json).iter().any(|c| c == "service-OLD"));
    assert_eq!(connect(&netns, "10.96.0.20:80"), Ok("10.244.1.5".into()));
}
