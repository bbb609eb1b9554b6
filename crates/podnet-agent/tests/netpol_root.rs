//! Root test of the NetworkPolicy applier in throwaway namespaces: a "node"
//! namespace with a `cni0` bridge and three "pod" namespaces on veths, rules
//! compiled by podnet-netplan and applied with `nft -f -` by the agent's
//! applier; TCP and UDP probes between the pods check what the kernel does.
//! Skips without root or nft.

use podnet_agent::netpol::{apply_script, enable_bridge_netfilter};
use podnet_netplan::netpol::{
    plan_netpol, render_full, render_update, NamespaceInfo, NetpolInput, PodInfo, PolicyInfo,
};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn can_run() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let nft = Command::new("nft").arg("--version").output().is_ok();
    if !(root && nft) {
        assert!(
            std::env::var_os("PODNET_REQUIRE_PRIVILEGED_TESTS").is_none(),
            "needs root and nft (PODNET_REQUIRE_PRIVILEGED_TESTS is set)"
        );
        eprintln!("skipping: needs root and nft");
    }
    root && nft
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Namespaces named `<prefix>-node`, `<prefix>-a`, ... removed on drop.
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

impl Lab {
    fn path(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// Node + pods a, b, c at 10.250.0.2-4 (a bridged /24 inside the lab).
    fn new(prefix: &str) -> Lab {
        let node = format!("{prefix}-node");
        let mut lab = Lab {
            names: vec![node.clone()],
        };
        ip(&["netns", "add", &node]);
        ip(&["-n", &node, "link", "set", "lo", "up"]);
        ip(&["-n", &node, "link", "add", "cni0", "type", "bridge"]);
        ip(&["-n", &node, "addr", "add", "10.250.0.1/24", "dev", "cni0"]);
        ip(&["-n", &node, "link", "set", "cni0", "up"]);
        for (index, pod) in ["a", "b", "c"].iter().enumerate() {
            let name = format!("{prefix}-{pod}");
            lab.names.push(name.clone());
            ip(&["netns", "add", &name]);
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            let host_end = format!("vh{pod}");
            ip(&[
                "-n", &node, "link", "add", &host_end, "type", "veth", "peer", "name", "eth0",
                "netns", &name,
            ]);
            ip(&[
                "-n", &node, "link", "set", &host_end, "master", "cni0", "up",
            ]);
            let address = format!("10.250.0.{}/24", index + 2);
            ip(&["-n", &name, "addr", "add", &address, "dev", "eth0"]);
            ip(&["-n", &name, "link", "set", "eth0", "up"]);
            ip(&["-n", &name, "route", "add", "default", "via", "10.250.0.1"]);
        }
        lab
    }
}

/// TCP and UDP servers on port 80 in a namespace, answering "ok".
fn serve(netns: &Path) {
    let (tcp, udp) = podnet_netlink::in_netns(netns, || {
        (
            TcpListener::bind("0.0.0.0:80").unwrap(),
            UdpSocket::bind("0.0.0.0:80").unwrap(),
        )
    })
    .unwrap();
    std::thread::spawn(move || {
        for stream in tcp.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"ok");
        }
    });
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        while let Ok((_, peer)) = udp.recv_from(&mut buffer) {
            let _ = udp.send_to(b"ok", peer);
        }
    });
}

fn probe_tcp(from: &Path, to: &str) -> bool {
    let address: SocketAddr = format!("{to}:80").parse().unwrap();
    podnet_netlink::in_netns(from, || {
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        else {
            return false;
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        reply == b"ok"
    })
    .unwrap()
}

fn probe_udp(from: &Path, to: &str) -> bool {
    podnet_netlink::in_netns(from, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        socket.send_to(b"hi", format!("{to}:80")).unwrap();
        let mut buffer = [0u8; 8];
        matches!(socket.recv_from(&mut buffer), Ok((2, _)))
    })
    .unwrap()
}

fn input(policies: &[serde_json::Value]) -> NetpolInput {
    let pods = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(index, name)| {
            PodInfo::from_json(
                &json!({
                    "metadata": {"namespace": "x", "name": name, "labels": {"pod": name}},
                    "spec": {"nodeName": "node"},
                    "status": {"podIP": format!("10.250.0.{}", index + 2), "phase": "Running"},
                }),
                "node",
            )
        })
        .collect();
    NetpolInput {
        namespaces: vec![NamespaceInfo::from_json(
            &json!({"metadata": {"name": "x"}}),
        )],
        pods,
        policies: policies.iter().map(PolicyInfo::from_json).collect(),
    }
}

fn policy(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"namespace": "x", "name": name}, "spec": spec})
}

fn nft_list(netns: &Path) -> String {
    let output = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["nft", "list", "table", "inet", "podnet-netpol"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn applier_enforces_and_updates_in_a_bridged_namespace() {
    if !can_run() {
        return;
    }
    let prefix = format!("pnnp{}", std::process::id());
    let _lab = Lab::new(&prefix);
    let node = Lab::path(&format!("{prefix}-node"));
    let [a, b, c] = ["a", "b", "c"].map(|p| Lab::path(&format!("{prefix}-{p}")));
    for pod in [&a, &b, &c] {
        serve(pod);
    }
    enable_bridge_netfilter(&node).unwrap();
    assert!(probe_tcp(&b, "10.250.0.2") && probe_udp(&b, "10.250.0.2"));

    // A foreign leftover table is replaced: convergence from any state.
    apply_script(
        &node,
        "add table inet podnet-netpol\nadd chain inet podnet-netpol junk\n",
    )
    .unwrap();

    // Deny all ingress to a: bridged same-node traffic is dropped, a's own
    // connections (and their replies) work, the node still reaches a.
    let deny = policy(
        "deny",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}}),
    );
    let first = plan_netpol(&input(std::slice::from_ref(&deny)));
    apply_script(&node, &render_full(&first)).unwrap();
    assert!(!nft_list(&node).contains("junk"));
    assert!(!probe_tcp(&b, "10.250.0.2"), "b → a must be dropped");
    assert!(!probe_udp(&c, "10.250.0.2"), "c → a (UDP) must be dropped");
    assert!(probe_tcp(&a, "10.250.0.3"), "a → b and its reply");
    assert!(probe_udp(&a, "10.250.0.3"), "a → b UDP and its reply");
    assert!(probe_tcp(&node, "10.250.0.2"), "node → a is always allowed");

    // Allow from b on TCP 80 only: an incremental update.
    let allow = policy(
        "allow-b",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
            "from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}]}),
    );
    let second = plan_netpol(&input(&[deny.clone(), allow]));
    let update = render_update(&first, &second, false);
    assert!(!update.contains("delete table"), "{update}");
    apply_script(&node, &update).unwrap();
    assert!(probe_tcp(&b, "10.250.0.2"));
    assert!(
        !probe_udp(&b, "10.250.0.2"),
        "TCP-only rule must not allow UDP"
    );
    assert!(!probe_tcp(&c, "10.250.0.2"));

    // Egress: c may only talk to a (which itself only admits b): nothing.
    let egress = policy(
        "c-out",
        json!({"podSelector": {"matchLabels": {"pod": "c"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.250.0.0/24", "except": ["10.250.0.3/32"]}}]}]}),
    );
    let third = plan_netpol(&input(&[deny.clone(), egress]));
    apply_script(&node, &render_update(&second, &third, false)).unwrap();
    assert!(
        !probe_tcp(&c, "10.250.0.3"),
        "b is excepted from c's egress"
    );
    assert!(!probe_tcp(&c, "10.250.0.2"), "a's ingress still denies c");
    assert!(!probe_tcp(&b, "10.250.0.2"), "allow-b is gone");
    assert!(probe_tcp(&b, "10.250.0.4"), "c's ingress is open");

    // Back to nothing: every chain and set is removed, traffic flows.
    let empty = plan_netpol(&input(&[]));
    apply_script(&node, &render_update(&third, &empty, false)).unwrap();
    let listing = nft_list(&node);
    assert!(
        !listing.contains("chain ing_") && !listing.contains("set "),
        "{listing}"
    );
    assert!(probe_tcp(&c, "10.250.0.3") && probe_tcp(&b, "10.250.0.2"));
    // Applying the same full ruleset twice is harmless (idempotent).
    apply_script(&node, &render_full(&empty)).unwrap();
    apply_script(&node, &render_full(&empty)).unwrap();
}
