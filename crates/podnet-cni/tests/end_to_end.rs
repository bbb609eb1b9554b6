//! Root tests: a "node" namespace and a pod namespace kept in a temporary
//! node directory; the invoker runs ADD, the node pings the pod (traffic stays
//! inside our namespaces), CHECK, DEL, and nothing is left behind. Run once
//! with podnet-cni and once with the reference bridge + host-local plugins.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use podnet_cni::{Attachment, CniInvoker};
use podnet_netlink::{NetlinkHandle, OwnedNetns};
use serde_json::json;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

enum PluginSet {
    Podnet,
    Reference,
}

struct NodeFixture {
    node_netns_name: String,
    node_netns: Option<OwnedNetns>,
    root: tempfile::TempDir,
    invoker: CniInvoker,
}

impl NodeFixture {
    fn new(plugin_set: PluginSet) -> NodeFixture {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "CNI end-to-end tests need root"
        );
        let node_netns_name = format!(
            "pcni-{}-{}-node",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let node_netns =
            OwnedNetns::create(PathBuf::from("/run/netns").join(&node_netns_name)).unwrap();
        let root = tempfile::tempdir().unwrap();
        let conf_dir = root.path().join("etc/cni/net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let data_dir = root.path().join("var/lib/cni/networks");
        let (plugin_dir, conflist) = match plugin_set {
            PluginSet::Podnet => {
                let bin = root.path().join("opt/cni/bin");
                std::fs::create_dir_all(&bin).unwrap();
                std::os::unix::fs::symlink(
                    env!("CARGO_BIN_EXE_podnet-cni"),
                    bin.join("podnet-cni"),
                )
                .unwrap();
                (
                    bin,
                    json!({
                        "cniVersion": "1.1.0",
                        "name": "podnet",
                        "plugins": [{
                            "type": "podnet-cni", "bridge": "cni0", "mtu": 1450,
                            "hairpinMode": true, "isGateway": true,
                            "ipam": {"subnet": "10.244.1.0/24", "gateway": "10.244.1.1", "dataDir": data_dir}
                        }]
                    }),
                )
            }
            PluginSet::Reference => (
                PathBuf::from(REFERENCE_PLUGIN_DIR),
                json!({
                    "cniVersion": "1.0.0",
                    "name": "podnet",
                    "plugins": [{
                        "type": "bridge", "bridge": "cni0", "mtu": 1450,
                        "hairpinMode": true, "isGateway": true,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": data_dir
                        }
                    }, {
                        // The reference bridge leaves lo down; runtimes add
                        // the loopback plugin for that.
                        "type": "loopback"
                    }]
                }),
            ),
        };
        std::fs::write(conf_dir.join("10-podnet.conflist"), conflist.to_string()).unwrap();
        let invoker = CniInvoker::new(
            vec![plugin_dir],
            conf_dir,
            root.path().join("var/lib/cni"),
            Some(node_netns.path().to_path_buf()),
        );
        NodeFixture {
            node_netns_name,
            node_netns: Some(node_netns),
            root,
            invoker,
        }
    }

    fn pod_netns(&self, name: &str) -> OwnedNetns {
        OwnedNetns::create(self.root.path().join("run/netns").join(name)).unwrap()
    }

    fn node_handle(&self) -> NetlinkHandle {
        NetlinkHandle::open_in(self.node_netns.as_ref().unwrap().path()).unwrap()
    }

    fn ping_from_node(&self, address: &str) -> bool {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.node_netns_name,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                address,
            ])
            .output()
            .unwrap()
            .status
            .success()
    }

    fn veths_on_bridge(&self) -> Vec<String> {
        let handle = self.node_handle();
        let Some(bridge) = handle.link_by_name("cni0").unwrap() else {
            return Vec::new();
        };
        handle
            .list_links()
            .unwrap()
            .into_iter()
            .filter(|link| link.master_index == Some(bridge.index))
            .map(|link| link.name)
            .collect()
    }

    fn reservations(&self) -> Vec<String> {
        let directory = self.root.path().join("var/lib/cni/networks/podnet");
        let Ok(entries) = std::fs::read_dir(directory) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<std::net::Ipv4Addr>().is_ok())
            .collect();
        names.sort();
        names
    }

    fn cached_results(&self) -> usize {
        std::fs::read_dir(self.root.path().join("var/lib/cni/results"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

impl Drop for NodeFixture {
    fn drop(&mut self) {
        self.node_netns.take();
        let _ = podnet_netlink::release_netns_directory(&self.root.path().join("run/netns"));
    }
}

fn pod_address(result: &serde_json::Value) -> String {
    let address = result["ips"][0]["address"]
        .as_str()
        .expect("result has an address");
    address.split('/').next().unwrap().to_string()
}

fn args(pod: &str) -> Vec<(String, String)> {
    vec![
        ("K8S_POD_NAMESPACE".to_string(), "default".to_string()),
        ("K8S_POD_NAME".to_string(), pod.to_string()),
    ]
}

fn add_ping_check_del(plugin_set: PluginSet) {
    let fixture = NodeFixture::new(plugin_set);
    let pod = fixture.pod_netns("cni-pod1");
    let result = fixture
        .invoker
        .add("pod1", pod.path(), "eth0", &args("pod1"))
        .unwrap();
    let address = pod_address(&result);
    assert!(address.starts_with("10.244.1."), "{result}");
    assert_eq!(result["ips"][0]["gateway"], "10.244.1.1");
    assert!(
        fixture.ping_from_node(&address),
        "node reaches pod {address}"
    );

    let pod_handle = NetlinkHandle::open_in(pod.path()).unwrap();
    assert_eq!(pod_handle.require_link("eth0").unwrap().mtu, 1450);
    assert!(pod_handle.require_link("lo").unwrap().is_up);
    let veths = fixture.veths_on_bridge();
    assert_eq!(veths.len(), 1, "one veth on cni0: {veths:?}");
    assert!(veths[0].starts_with("veth"));
    assert_eq!(fixture.reservations(), vec![address.clone()]);

    fixture
        .invoker
        .check("pod1", pod.path(), "eth0", &args("pod1"))
        .unwrap();

    // A second ADD of the same interface must fail and leave pod1 working.
    assert!(fixture
        .invoker
        .add("pod1", pod.path(), "eth0", &args("pod1"))
        .is_err());
    assert!(
        fixture.ping_from_node(&address),
        "pod still reachable after a refused ADD"
    );

    fixture
        .invoker
        .del("pod1", Some(pod.path()), "eth0", &args("pod1"))
        .unwrap();
    assert_eq!(fixture.veths_on_bridge(), Vec::<String>::new());
    assert_eq!(fixture.reservations(), Vec::<String>::new());
    assert_eq!(fixture.cached_results(), 0);
    assert!(pod_handle.link_by_name("eth0").unwrap().is_none());
    // DEL is idempotent, also once the netns is gone.
    fixture
        .invoker
        .del("pod1", Some(pod.path()), "eth0", &args("pod1"))
        .unwrap();
    let pod_path = pod.path().to_path_buf();
    drop(pod_handle);
    drop(pod);
    fixture
        .invoker
        .del("pod1", Some(&pod_path), "eth0", &args("pod1"))
        .unwrap();
}

#[test]
fn podnet_cni_add_ping_check_del() {
    add_ping_check_del(PluginSet::Podnet);
}

#[test]
fn reference_plugins_add_ping_check_del() {
    add_ping_check_del(PluginSet::Reference);
}

#[test]
fn podnet_cni_gc_releases_attachments_not_listed_and_status_is_ready() {
    let fixture = NodeFixture::new(PluginSet::Podnet);
    fixture.invoker.status().unwrap();
    let kept = fixture.pod_netns("cni-kept");
    let leaked = fixture.pod_netns("cni-leaked");
    let kept_result = fixture
        .invoker
        .add("kept", kept.path(), "eth0", &args("kept"))
        .unwrap();
    fixture
        .invoker
        .add("leaked", leaked.path(), "eth0", &args("leaked"))
        .unwrap();
    assert_eq!(fixture.reservations().len(), 2);
    assert_eq!(fixture.veths_on_bridge().len(), 2);

    fixture
        .invoker
        .gc(&[Attachment {
            container_id: "kept".to_string(),
            ifname: "eth0".to_string(),
        }])
        .unwrap();
    assert_eq!(fixture.reservations(), vec![pod_address(&kept_result)]);
    assert_eq!(fixture.veths_on_bridge().len(), 1);
    assert_eq!(fixture.cached_results(), 1);
    assert!(fixture.ping_from_node(&pod_address(&kept_result)));
    fixture
        .invoker
        .del("kept", Some(kept.path()), "eth0", &[])
        .unwrap();
}

#[test]
fn podnet_cni_rolls_back_when_the_range_is_exhausted_and_reuses_released_addresses() {
    let fixture = NodeFixture::new(PluginSet::Podnet);
    // Make the range tiny: rewrite the conflist with a /30 (one pod address).
    let conf = fixture.root.path().join("etc/cni/net.d/10-podnet.conflist");
    let mut conflist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    conflist["plugins"][0]["ipam"]["subnet"] = json!("10.244.1.0/30");
    std::fs::write(&conf, conflist.to_string()).unwrap();
    let first = fixture.pod_netns("cni-first");
    let second = fixture.pod_netns("cni-second");
    fixture
        .invoker
        .add("first", first.path(), "eth0", &[])
        .unwrap();
    let error = fixture
        .invoker
        .add("second", second.path(), "eth0", &[])
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no IP addresses available in range set"),
        "{error}"
    );
    assert_eq!(
        fixture.veths_on_bridge().len(),
        1,
        "the failed ADD left no veth"
    );
    fixture
        .invoker
        .del("second", Some(second.path()), "eth0", &[])
        .unwrap();
    fixture
        .invoker
        .del("first", Some(first.path()), "eth0", &[])
        .unwrap();
    fixture
        .invoker
        .add("second", second.path(), "eth0", &[])
        .unwrap();
    fixture
        .invoker
        .del("second", Some(second.path()), "eth0", &[])
        .unwrap();
    assert_eq!(fixture.reservations(), Vec::<String>::new());
}

#[test]
fn podnet_cni_add_replaces_a_host_veth_left_by_a_crashed_add() {
    let fixture = NodeFixture::new(PluginSet::Podnet);
    let pod = fixture.pod_netns("cni-pod-remnant");
    // What an ADD that died after creating the pair leaves once its pod end
    // is gone: a host-side veth with the attachment's name (its peer here is
    // a stand-in kept in the node namespace).
    let host_veth = podnet_cni::plugin::host_veth_name("remnant", "eth0");
    let node = fixture.node_handle();
    node.create_veth_pair(
        &host_veth,
        "remnant-peer",
        fixture.node_netns.as_ref().unwrap().path(),
        None,
    )
    .unwrap();
    let remnant_index = node.require_link(&host_veth).unwrap().index;
    let result = fixture
        .invoker
        .add("remnant", pod.path(), "eth0", &args("remnant"))
        .unwrap();
    let replaced = node.require_link(&host_veth).unwrap();
    assert_ne!(replaced.index, remnant_index, "the remnant was replaced");
    assert!(node.link_by_name("remnant-peer").unwrap().is_none());
    assert_eq!(fixture.veths_on_bridge(), vec![host_veth.clone()]);
    assert!(fixture.ping_from_node(&pod_address(&result)));
    fixture
        .invoker
        .del("remnant", Some(pod.path()), "eth0", &args("remnant"))
        .unwrap();
    assert!(fixture.veths_on_bridge().is_empty());
    assert!(fixture.reservations().is_empty());
}
