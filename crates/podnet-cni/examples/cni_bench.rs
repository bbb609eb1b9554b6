//! CNI ADD+DEL latency: podnet-cni against the reference bridge + host-local
//! plugins with the configuration the agent writes for each, in the same
//! run, rounds interleaved (which plugin goes first alternates). Everything happens in namespaces this program
//! creates (a "node" namespace holding cni0 and one pod namespace), removed
//! at the end. Prints one JSON object.
//!
//! Each round also measures what both plugins' DEL cannot avoid: the
//! kernel deleting a pod's veth (the same veth on the same bridge, created
//! and deleted here over netlink with no plugin). Most of that time is the
//! kernel waiting for an RCU grace period while it unregisters the two
//! devices, so it is reported apart, with the ratio of what remains.
//!
//! Usage: cni_bench PODNET_CNI_BINARY [ROUNDS] [REFERENCE_DIR]

use podnet_cni::CniInvoker;
use podnet_netlink::{NetlinkHandle, OwnedNetns};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Setup {
    invoker: CniInvoker,
    node: OwnedNetns,
    _root: tempfile::TempDir,
}

fn setup(name: &str, plugin_dir: PathBuf, plugin: serde_json::Value) -> Setup {
    let node = OwnedNetns::create(
        PathBuf::from("/run/netns").join(format!("cnibench-{}-{name}", std::process::id())),
    )
    .expect("create the node namespace");
    let root = tempfile::tempdir().expect("temporary directory");
    let conf_dir = root.path().join("etc/cni/net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let mut plugin = plugin;
    plugin["ipam"]["dataDir"] = json!(root.path().join("var/lib/cni/networks"));
    let conflist = json!({"cniVersion": "1.0.0", "name": "podnet", "plugins": [plugin]});
    std::fs::write(conf_dir.join("10-podnet.conflist"), conflist.to_string()).unwrap();
    let invoker = CniInvoker::new(
        vec![plugin_dir],
        conf_dir,
        root.path().join("var/lib/cni"),
        Some(node.path().to_path_buf()),
    );
    Setup {
        invoker,
        node,
        _root: root,
    }
}

/// The kernel's share of a DEL: a veth like a pod's (host end up on the
/// setup's cni0, `eth0` inside the pod namespace, up, with an address),
/// deleted from the pod side in one netlink request, as both plugins do.
/// The handles and cni0's index are looked up once.
struct VethDelete {
    node: NetlinkHandle,
    inside: NetlinkHandle,
    pod: PathBuf,
    bridge_index: u32,
}

impl VethDelete {
    fn new(node_netns: &Path, pod: &Path) -> VethDelete {
        let node = NetlinkHandle::open_in(node_netns).expect("netlink in the node namespace");
        let bridge_index = node
            .link_by_name("cni0")
            .expect("look up cni0")
            .expect("cni0 exists after the warm-up ADD")
            .index;
        VethDelete {
            node,
            inside: NetlinkHandle::open_in(pod).expect("netlink in the pod namespace"),
            pod: pod.to_path_buf(),
            bridge_index,
        }
    }

    fn measure(&self) -> Duration {
        self.node
            .create_veth_pair_on_bridge(
                "vethfloor",
                "eth0",
                &self.pod,
                Some(1450),
                self.bridge_index,
                true,
            )
            .expect("create the veth");
        self.inside
            .configure_link("eth0", "10.244.1.250/24".parse().unwrap(), &[])
            .expect("address on eth0, up");
        let started = Instant::now();
        assert!(self.inside.delete_link("eth0").expect("delete eth0"));
        started.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1000.0 / samples.len() as f64;
    json!({
        "mean_ms": (mean * 100.0).round() / 100.0,
        "p50_ms": (percentile(&samples, 50.0) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&samples, 99.0) * 100.0).round() / 100.0,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let podnet_cni = PathBuf::from(
        args.get(1)
            .expect("usage: cni_bench PODNET_CNI [ROUNDS] [REFERENCE_DIR]"),
    );
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(50);
    let reference_dir = PathBuf::from(args.get(3).map(String::as_str).unwrap_or("/usr/lib/cni"));
    let podnet_dir = podnet_cni.parent().unwrap_or(Path::new("/")).to_path_buf();
    let common = |kind: &str| json!({"type": kind, "bridge": "cni0", "mtu": 1450, "hairpinMode": true, "isGateway": true});
    let mut podnet_plugin = common(
        podnet_cni
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("podnet-cni"),
    );
    podnet_plugin["ipam"] = json!({"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"});
    let mut reference_plugin = common("bridge");
    reference_plugin["ipam"] = json!({
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
    });
    let setups = [
        ("podnet-cni", setup("podnet", podnet_dir, podnet_plugin)),
        (
            "bridge+host-local",
            setup("reference", reference_dir, reference_plugin),
        ),
    ];
    let pod = OwnedNetns::create(
        PathBuf::from("/run/netns").join(format!("cnibench-{}-pod", std::process::id())),
    )
    .expect("create the pod namespace");
    // Per plugin: ADD+DEL, ADD alone, DEL alone.
    let mut samples: Vec<[Vec<Duration>; 3]> = vec![Default::default(), Default::default()];
    let mut veth_deletes = Vec::new();
    // Warm-up: the first ADD creates the bridge.
    for (_, setup) in &setups {
        setup
            .invoker
            .add("warm", pod.path(), "eth0", &[])
            .expect("ADD");
        setup
            .invoker
            .del("warm", Some(pod.path()), "eth0", &[])
            .expect("DEL");
    }
    let veth_delete = VethDelete::new(setups[0].1.node.path(), pod.path());
    for round in 0..rounds {
        // Which plugin goes first alternates: the kernel's share of a DEL
        // depends on where the RCU grace period stands, which the previous
        // DEL moved.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let setup = &setups[index].1;
            let id = format!("bench{round}");
            let started = Instant::now();
            setup
                .invoker
                .add(&id, pod.path(), "eth0", &[])
                .expect("ADD");
            let added = started.elapsed();
            setup
                .invoker
                .del(&id, Some(pod.path()), "eth0", &[])
                .expect("DEL");
            let total = started.elapsed();
            samples[index][0].push(total);
            samples[index][1].push(added);
            samples[index][2].push(total - added);
        }
        veth_deletes.push(veth_delete.measure());
    }
    let podnet = summary(samples[0][0].clone());
    let reference = summary(samples[1][0].clone());
    let ratio = podnet["mean_ms"].as_f64().unwrap() / reference["mean_ms"].as_f64().unwrap();
    let floor = summary(veth_deletes);
    let floor_ms = floor["mean_ms"].as_f64().unwrap();
    let beyond = |total: &serde_json::Value| total["mean_ms"].as_f64().unwrap() - floor_ms;
    let ratio_beyond = beyond(&podnet) / beyond(&reference);
    println!(
        "{}",
        json!({
            "rounds": rounds,
            "add_del_podnet_cni": podnet,
            "add_del_reference": reference,
            "ratio_podnet_to_reference": (ratio * 1000.0).round() / 1000.0,
            "add_podnet_cni": summary(samples[0][1].clone()),
            "add_reference": summary(samples[1][1].clone()),
            "del_podnet_cni": summary(samples[0][2].clone()),
            "del_reference": summary(samples[1][2].clone()),
            "kernel_veth_delete": floor,
            "ratio_beyond_kernel_veth_delete": (ratio_beyond * 1000.0).round() / 1000.0,
        })
    );
}
