//! Root test of the overlay applier: three "node" namespaces joined by a
//! bridge in an "underlay" namespace, each with a cni0 bridge and a "pod"
//! namespace. After applying each node's plan, pods ping each other across
//! nodes over VXLAN, then over host-gw after switching backends.

mod common;

use std::net::Ipv4Addr;

use common::TestNetns;
use podnet_netlink::{apply_overlay_plan, BridgeSpec, NetlinkHandle, RouteSpec};
use podnet_netplan::overlay::{
    plan_overlay, MacAddress, OverlayBackend, OverlayInput, OverlayNode,
};

const UNDERLAY_MTU: u32 = 1500;

struct SimulatedNode {
    netns: TestNetns,
    pod: TestNetns,
    pod_ip: String,
    overlay: OverlayNode,
}

fn build_cluster(underlay: &TestNetns) -> Vec<SimulatedNode> {
    let underlay_handle = NetlinkHandle::open_in(&underlay.path()).unwrap();
    underlay_handle
        .ensure_bridge(&BridgeSpec {
            name: "underlay0".to_string(),
            mtu: Some(UNDERLAY_MTU),
            address: None,
        })
        .unwrap();
    (0..3u8)
        .map(|index| {
            let netns = TestNetns::new(&format!("node{index}"));
            let pod = TestNetns::new(&format!("pod{index}"));
            let node_ip = Ipv4Addr::new(172, 18, 0, index + 2);
            let underlay_port = format!("u{}n{index}", std::process::id() % 100000);
            underlay_handle
                .create_veth_pair(&underlay_port, "eth0", &netns.path(), Some(UNDERLAY_MTU))
                .unwrap();
            underlay_handle
                .set_link_master(&underlay_port, "underlay0")
                .unwrap();
            underlay_handle.set_link_up(&underlay_port).unwrap();

            let node = NetlinkHandle::open_in(&netns.path()).unwrap();
            node.add_address("eth0", format!("{node_ip}/16").parse().unwrap())
                .unwrap();
            node.set_link_up("eth0").unwrap();
            node.set_link_up("lo").unwrap();
            let pod_cidr: ipnet::Ipv4Net = format!("10.244.{index}.0/24").parse().unwrap();
            let gateway = Ipv4Addr::new(10, 244, index, 1);
            node.ensure_bridge(&BridgeSpec {
                name: "cni0".to_string(),
                mtu: Some(UNDERLAY_MTU - 50),
                address: Some(format!("{gateway}/24").parse().unwrap()),
            })
            .unwrap();
            node.create_veth_pair("vethpod", "eth0", &pod.path(), Some(UNDERLAY_MTU - 50))
                .unwrap();
            node.set_link_master("vethpod", "cni0").unwrap();
            node.set_link_up("vethpod").unwrap();

            let pod_handle = NetlinkHandle::open_in(&pod.path()).unwrap();
            let pod_ip = Ipv4Addr::new(10, 244, index, 2);
            pod_handle
                .add_address("eth0", format!("{pod_ip}/24").parse().unwrap())
                .unwrap();
            pod_handle.set_link_up("eth0").unwrap();
            pod_handle.set_link_up("lo").unwrap();
            pod_handle
                .add_route(&RouteSpec::via("0.0.0.0/0".parse().unwrap(), gateway))
                .unwrap();

            let name = format!("node-{index}");
            SimulatedNode {
                netns,
                pod,
                pod_ip: pod_ip.to_string(),
                overlay: OverlayNode {
                    vtep_mac: Some(MacAddress::derived_from(&name)),
                    name,
                    pod_cidr: Some(pod_cidr),
                    internal_ip: Some(node_ip),
                },
            }
        })
        .collect()
}

fn apply_all(
    nodes: &[SimulatedNode],
    backend: OverlayBackend,
) -> Vec<podnet_netlink::OverlayApplyReport> {
    let all: Vec<OverlayNode> = nodes.iter().map(|node| node.overlay.clone()).collect();
    nodes
        .iter()
        .map(|node| {
            let plan = plan_overlay(&OverlayInput {
                this_node: node.overlay.name.clone(),
                backend,
                underlay_mtu: UNDERLAY_MTU,
                vxlan_tx_checksum_offload: true,
                nodes: all.clone(),
            });
            let handle = NetlinkHandle::open_in(&node.netns.path()).unwrap();
            apply_overlay_plan(&handle, &plan).unwrap()
        })
        .collect()
}

fn assert_full_mesh(nodes: &[SimulatedNode], payload: u32) {
    for source in nodes {
        for target in nodes {
            if source.pod_ip != target.pod_ip {
                assert!(
                    source.pod.ping(&target.pod_ip, payload),
                    "pod {} reaches pod {} with {payload} bytes",
                    source.pod_ip,
                    target.pod_ip
                );
            }
        }
    }
}

#[test]
fn pods_ping_across_nodes_over_vxlan_then_host_gw() {
    assert!(common::is_root(), "overlay tests need root");
    let underlay = TestNetns::new("underlay");
    let nodes = build_cluster(&underlay);

    let reports = apply_all(&nodes, OverlayBackend::Vxlan);
    assert!(reports.iter().all(|report| !report.is_unchanged()));
    let vxlan = nodes[0].netns.ip_json(&["-d", "link", "show", "flannel.1"]);
    assert_eq!(vxlan[0]["mtu"], UNDERLAY_MTU - 50);
    let node0_handle = NetlinkHandle::open_in(&nodes[0].netns.path()).unwrap();
    assert!(node0_handle
        .tx_checksum_offload_enabled("flannel.1")
        .unwrap());
    let routes = nodes[0].netns.ip_json(&["route", "show", "10.244.1.0/24"]);
    assert_eq!(routes[0]["gateway"], "10.244.1.0");
    assert_eq!(routes[0]["dev"], "flannel.1");
    assert_eq!(routes[0]["flags"][0], "onlink");
    let fdb = nodes[0].netns.fdb_json("flannel.1");
    assert_eq!(fdb.as_array().unwrap().len(), 2, "{fdb}");
    // Largest packet that fits the overlay MTU: 1450 - 20 (IP) - 8 (ICMP).
    assert_full_mesh(&nodes, UNDERLAY_MTU - 50 - 28);

    // Applying again changes nothing.
    let again = apply_all(&nodes, OverlayBackend::Vxlan);
    assert!(
        again.iter().all(|report| report.is_unchanged()),
        "{again:?}"
    );

    // A stale entry of ours (a node that left) is removed on the next apply.
    let node0 = NetlinkHandle::open_in(&nodes[0].netns.path()).unwrap();
    node0
        .replace_permanent_neighbour(
            "flannel.1",
            Ipv4Addr::new(10, 244, 9, 0),
            [2, 0, 0, 0, 0, 9],
        )
        .unwrap();
    node0
        .append_fdb(
            "flannel.1",
            [2, 0, 0, 0, 0, 9],
            Ipv4Addr::new(172, 18, 0, 99),
        )
        .unwrap();
    node0
        .replace_route(&RouteSpec {
            destination: "10.244.9.0/24".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 244, 9, 0)),
            device: Some("flannel.1".to_string()),
            onlink: true,
            scope_link: false,
            protocol: NetlinkHandle::PODNET_ROUTE_PROTOCOL,
        })
        .unwrap();
    let reports = apply_all(&nodes, OverlayBackend::Vxlan);
    assert_eq!(reports[0].removed.len(), 3, "{:?}", reports[0]);
    assert_eq!(
        nodes[0].netns.ip_json(&["route", "show", "10.244.9.0/24"]),
        serde_json::json!([])
    );

    // Switch to host-gw: the VXLAN device goes, routes point at node IPs.
    apply_all(&nodes, OverlayBackend::HostGw);
    let links = nodes[0].netns.ip_json(&["link", "show"]);
    assert!(!links
        .as_array()
        .unwrap()
        .iter()
        .any(|link| link["ifname"] == "flannel.1"));
    let routes = nodes[0].netns.ip_json(&["route", "show", "10.244.2.0/24"]);
    assert_eq!(routes[0]["gateway"], "172.18.0.4");
    assert_full_mesh(&nodes, 56);
    assert!(apply_all(&nodes, OverlayBackend::HostGw)
        .iter()
        .all(|report| report.is_unchanged()));
}
