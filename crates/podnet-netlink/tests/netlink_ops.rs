//! Root tests of the netlink handle against real throwaway namespaces,
//! checked with `ip -j` and `bridge -j`.

mod common;

use std::net::Ipv4Addr;

use common::TestNetns;
use podnet_netlink::{BridgeSpec, NetlinkHandle, RouteSpec, VxlanSpec};

#[test]
fn veth_bridge_hairpin_address_and_routes() {
    assert!(common::is_root(), "netlink tests need root");
    let host = TestNetns::new("host");
    let pod = TestNetns::new("pod");
    let handle = NetlinkHandle::open_in(&host.path()).unwrap();

    let bridge = handle
        .ensure_bridge(&BridgeSpec {
            name: "cni0".to_string(),
            mtu: Some(1450),
            address: Some("10.244.7.1/24".parse().unwrap()),
        })
        .unwrap();
    // Ensuring twice is a no-op.
    let again = handle
        .ensure_bridge(&BridgeSpec {
            name: "cni0".to_string(),
            mtu: Some(1450),
            address: Some("10.244.7.1/24".parse().unwrap()),
        })
        .unwrap();
    assert_eq!(bridge.index, again.index);

    handle
        .create_veth_pair("vethtest01", "eth0", &pod.path(), Some(1450))
        .unwrap();
    handle.set_link_master("vethtest01", "cni0").unwrap();
    handle.set_bridge_port_hairpin("vethtest01", true).unwrap();
    handle.set_link_up("vethtest01").unwrap();

    let links = host.ip_json(&["-d", "link", "show", "vethtest01"]);
    let veth = &links[0];
    assert_eq!(veth["mtu"], 1450);
    assert_eq!(veth["master"], "cni0");
    assert_eq!(veth["linkinfo"]["info_slave_data"]["hairpin"], true);

    // The peer was created directly in the pod netns with its final name.
    let pod_handle = NetlinkHandle::open_in(&pod.path()).unwrap();
    assert!(handle.link_by_name("eth0").unwrap().is_none());
    pod_handle
        .add_address("eth0", "10.244.7.5/24".parse().unwrap())
        .unwrap();
    pod_handle
        .ensure_address("eth0", "10.244.7.5/24".parse().unwrap())
        .unwrap();
    pod_handle.set_link_up("eth0").unwrap();
    pod_handle.set_link_up("lo").unwrap();
    pod_handle
        .add_route(&RouteSpec::via(
            "0.0.0.0/0".parse().unwrap(),
            Ipv4Addr::new(10, 244, 7, 1),
        ))
        .unwrap();
    let addresses = pod.ip_json(&["addr", "show", "eth0"]);
    assert_eq!(addresses[0]["addr_info"][0]["local"], "10.244.7.5");
    let routes = pod.ip_json(&["route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.244.7.1");
    let ipv4_addresses: Vec<_> = pod_handle
        .list_addresses("eth0")
        .unwrap()
        .into_iter()
        .filter(|address| address.addr().is_ipv4())
        .collect();
    assert_eq!(ipv4_addresses, vec!["10.244.7.5/24".parse().unwrap()]);

    assert!(pod.ping("10.244.7.1", 56), "pod reaches its gateway");
    assert!(
        host.ping("10.244.7.5", 1422),
        "gateway reaches the pod at full mtu"
    );

    // Onlink and scope-link routes, replace, delete.
    handle
        .replace_route(&RouteSpec {
            destination: "10.9.0.0/16".parse().unwrap(),
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            device: Some("cni0".to_string()),
            onlink: true,
            scope_link: false,
            protocol: NetlinkHandle::PODNET_ROUTE_PROTOCOL,
        })
        .unwrap();
    handle
        .add_route(&RouteSpec {
            destination: "10.8.0.0/16".parse().unwrap(),
            gateway: None,
            device: Some("cni0".to_string()),
            onlink: false,
            scope_link: true,
            protocol: 4,
        })
        .unwrap();
    let onlink = host.ip_json(&["route", "show", "10.9.0.0/16"]);
    assert_eq!(onlink[0]["flags"][0], "onlink");
    assert_eq!(onlink[0]["protocol"], "80");
    let listed = handle.list_routes().unwrap();
    assert!(listed
        .iter()
        .any(|route| route.onlink && route.protocol == 80));
    assert!(listed
        .iter()
        .any(|route| route.scope_link && route.destination.to_string() == "10.8.0.0/16"));
    assert!(handle.delete_route("10.9.0.0/16".parse().unwrap()).unwrap());
    assert!(!handle.delete_route("10.9.0.0/16".parse().unwrap()).unwrap());
    assert_eq!(
        host.ip_json(&["route", "show", "10.9.0.0/16"]),
        serde_json::json!([])
    );

    // Deleting the host end removes the pair; deleting again is fine.
    assert!(handle.delete_link("vethtest01").unwrap());
    assert!(!handle.delete_link("vethtest01").unwrap());
    assert!(pod_handle.link_by_name("eth0").unwrap().is_none());
}

#[test]
fn vxlan_neighbours_fdb_sysctl_and_move() {
    assert!(common::is_root(), "netlink tests need root");
    let node = TestNetns::new("node");
    let other = TestNetns::new("other");
    let handle = NetlinkHandle::open_in(&node.path()).unwrap();
    let mac = [0x02, 0xaa, 0, 0, 0, 0x01];
    let spec = VxlanSpec {
        name: "flannel.1".to_string(),
        vni: 1,
        local_ip: Ipv4Addr::new(172, 18, 0, 9),
        port: 8472,
        mtu: 1450,
        mac,
        address: Some("10.244.3.0/32".parse().unwrap()),
        tx_checksum_offload: false,
    };
    let first = handle.ensure_vxlan(&spec).unwrap();
    let second = handle.ensure_vxlan(&spec).unwrap();
    assert_eq!(
        first.index, second.index,
        "ensure keeps an identical device"
    );
    let details = node.ip_json(&["-d", "link", "show", "flannel.1"]);
    let info = &details[0]["linkinfo"]["info_data"];
    assert_eq!(info["id"], 1);
    assert_eq!(info["port"], 8472);
    assert_eq!(info["local"], "172.18.0.9");
    assert_eq!(info["learning"], false);
    assert_eq!(details[0]["mtu"], 1450);
    assert_eq!(details[0]["address"], "02:aa:00:00:00:01");
    assert!(!handle.tx_checksum_offload_enabled("flannel.1").unwrap());
    // Offload on and back off in place, on the same device.
    let offloaded = handle
        .ensure_vxlan(&VxlanSpec {
            tx_checksum_offload: true,
            ..spec.clone()
        })
        .unwrap();
    assert_eq!(offloaded.index, first.index);
    assert!(handle.tx_checksum_offload_enabled("flannel.1").unwrap());
    let features = std::process::Command::new("ip")
        .args(["netns", "exec", &node.name, "ethtool", "-k", "flannel.1"])
        .output()
        .expect("run ethtool");
    let features = String::from_utf8_lossy(&features.stdout);
    assert!(
        features.contains("tx-tcp-segmentation: on"),
        "TSO follows the checksum offload: {features}"
    );
    handle.ensure_vxlan(&spec).unwrap();
    assert!(!handle.tx_checksum_offload_enabled("flannel.1").unwrap());

    // A changed VNI recreates the device.
    let changed = handle
        .ensure_vxlan(&VxlanSpec {
            vni: 2,
            ..spec.clone()
        })
        .unwrap();
    assert_eq!(changed.vxlan.unwrap().0, 2);

    let remote_mac = [0x02, 0xbb, 0, 0, 0, 0x02];
    handle
        .replace_permanent_neighbour("flannel.1", Ipv4Addr::new(10, 244, 4, 0), remote_mac)
        .unwrap();
    handle
        .replace_permanent_neighbour("flannel.1", Ipv4Addr::new(10, 244, 4, 0), remote_mac)
        .unwrap();
    let neighbours = node.ip_json(&["neigh", "show", "dev", "flannel.1"]);
    assert_eq!(neighbours[0]["dst"], "10.244.4.0");
    assert_eq!(neighbours[0]["lladdr"], "02:bb:00:00:00:02");
    assert_eq!(neighbours[0]["state"][0], "PERMANENT");

    handle
        .append_fdb("flannel.1", remote_mac, Ipv4Addr::new(172, 18, 0, 10))
        .unwrap();
    handle
        .replace_fdb("flannel.1", remote_mac, Ipv4Addr::new(172, 18, 0, 10))
        .unwrap();
    let fdb = node.fdb_json("flannel.1");
    let entry = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["mac"] == "02:bb:00:00:00:02")
        .expect("fdb entry present");
    assert_eq!(entry["dst"], "172.18.0.10");
    assert_eq!(handle.list_fdb("flannel.1").unwrap().len(), 1);

    assert!(handle
        .delete_fdb("flannel.1", remote_mac, Some(Ipv4Addr::new(172, 18, 0, 10)))
        .unwrap());
    assert!(!handle
        .delete_fdb("flannel.1", remote_mac, Some(Ipv4Addr::new(172, 18, 0, 10)))
        .unwrap());
    assert!(handle
        .delete_neighbour("flannel.1", Ipv4Addr::new(10, 244, 4, 0))
        .unwrap());
    assert!(!handle
        .delete_neighbour("flannel.1", Ipv4Addr::new(10, 244, 4, 0))
        .unwrap());

    handle.write_sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(handle.read_sysctl("net.ipv4.ip_forward").unwrap(), "1");
    let other_handle = NetlinkHandle::open_in(&other.path()).unwrap();
    assert_eq!(
        other_handle.read_sysctl("net.ipv4.ip_forward").unwrap(),
        "0",
        "sysctl stays per netns"
    );

    // Move a link into another namespace, renaming it.
    let dummy_peer = TestNetns::new("peer");
    handle
        .create_veth_pair("vmove0", "eth9", &dummy_peer.path(), None)
        .unwrap();
    handle
        .move_link_to_netns("vmove0", &other.path(), Some("moved0"))
        .unwrap();
    assert!(handle.link_by_name("vmove0").unwrap().is_none());
    assert!(other_handle.link_by_name("moved0").unwrap().is_some());
}

#[test]
fn netns_in_a_private_directory_is_created_entered_and_deleted() {
    assert!(common::is_root(), "netlink tests need root");
    let directory = tempfile::tempdir().unwrap();
    let netns_directory = directory.path().join("run/netns");
    let path = netns_directory.join("cni-test");
    podnet_netlink::create_netns(&path).unwrap();
    assert!(podnet_netlink::is_netns(&path));
    assert!(
        podnet_netlink::create_netns(&path).is_err(),
        "creating twice fails"
    );
    podnet_netlink::ensure_netns(&path).unwrap();
    let names = podnet_netlink::in_netns(&path, || {
        let handle = NetlinkHandle::current().unwrap();
        handle
            .list_links()
            .unwrap()
            .into_iter()
            .map(|link| link.name)
            .collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(names, vec!["lo".to_string()]);
    podnet_netlink::delete_netns(&path).unwrap();
    podnet_netlink::delete_netns(&path).unwrap();
    assert!(!path.exists());
    podnet_netlink::release_netns_directory(&netns_directory).unwrap();
}
