//! End to end: the VXLAN overlay's data path defaults on a real two-node
//! cluster. flannel.1's tx checksum offload follows
//! `--vxlan-tx-checksum-offload` (auto: on from Linux 5.7), the outer VXLAN
//! packets skip conntrack, the underlay bridge skips bridge netfilter, and a
//! bulk TCP transfer between pods on different nodes arrives intact either
//! way. Needs root, runc and kubectl.

mod support;

use std::time::Duration;
use support::*;

fn kernel_at_least_5_7() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    (major, minor) >= (5, 7)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A busybox httpd on `node` serving 16 MiB of random bytes as /big.
fn bulk_server(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: bulk
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && dd if=/dev/urandom of=/www/big bs=1048576 count=16 2>/dev/null && touch /www/ready && exec httpd -f -p 8080 -h /www"]
"#
    )
}

/// Starts a bulk server on node 2 and a client on node 1, downloads the file
/// across the overlay and compares checksums on both ends.
fn bulk_transfer_across_nodes_is_intact(cluster: &Cluster) {
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let manifest = bulk_server(&node2) + "---\n" + &client_pod("client", &node1);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    cluster.wait_phase("bulk", "Running", Duration::from_secs(120));
    cluster.wait_phase("client", "Running", Duration::from_secs(120));
    cluster.wait_for("the bulk file", Duration::from_secs(60), || {
        cluster
            .kubectl(&["exec", "bulk", "--", "test", "-f", "/www/ready"])
            .status
            .success()
    });
    let server_sum = cluster.kubectl_ok(&["exec", "bulk", "--", "md5sum", "/www/big"]);
    let server_sum = server_sum.split_whitespace().next().unwrap().to_string();
    let ip = pod_ip(cluster, "bulk");
    let client_sum = cluster.kubectl_ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        &format!("timeout 30 wget -qO- http://{ip}:8080/big | md5sum"),
    ]);
    assert_eq!(
        client_sum.split_whitespace().next(),
        Some(server_sum.as_str()),
        "16 MiB across the overlay arrive unchanged"
    );
}

#[test]
fn auto_offload_notrack_and_plain_underlay_carry_bulk_tcp_intact() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2eov", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let features = stdout(&cluster.node_exec(&node1, &["ethtool", "-k", "flannel.1"]));
    let expected = if kernel_at_least_5_7() { "on" } else { "off" };
    assert!(
        features.contains(&format!("tx-checksumming: {expected}")),
        "auto turns tx checksum offload {expected} on this kernel:\n{features}"
    );
    if kernel_at_least_5_7() {
        assert!(
            features.contains("tx-tcp-segmentation: on"),
            "TSO comes back with the checksum offload:\n{features}"
        );
    }

    let node_ip = cluster.kubectl_ok(&[
        "get",
        "node",
        &node1,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let table =
        stdout(&cluster.node_exec(&node1, &["nft", "list", "table", "ip", "podnet-overlay"]));
    assert!(
        table.contains(&format!("ip daddr {node_ip} udp dport 8472 notrack"))
            && table.contains(&format!("ip saddr {node_ip} udp dport 8472 notrack")),
        "{table}"
    );

    if std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        let underlay = format!("{}-underlay", cluster.name);
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &underlay, "sysctl", "-n"])
            .arg("net.bridge.bridge-nf-call-iptables")
            .output()
            .unwrap();
        assert_eq!(stdout(&output).trim(), "0", "underlay bridge netfilter off");
    }

    bulk_transfer_across_nodes_is_intact(&cluster);

    // The tunnel's own packets left no conntrack entries on either node.
    for node in [node1, format!("{}-node2", cluster.name)] {
        let output = cluster.node_exec(&node, &["conntrack", "-L", "-p", "udp"]);
        assert!(
            output.status.success(),
            "conntrack -L on {node}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let entries = stdout(&output);
        assert!(
            !entries.contains("dport=8472"),
            "VXLAN packets were tracked on {node}:\n{entries}"
        );
    }
}

#[test]
fn offload_off_is_honoured_and_still_carries_bulk_tcp_intact() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2eoff", 2, &["--vxlan-tx-checksum-offload", "off"]);
    let node1 = format!("{}-node1", cluster.name);
    let features = stdout(&cluster.node_exec(&node1, &["ethtool", "-k", "flannel.1"]));
    assert!(features.contains("tx-checksumming: off"), "{features}");
    assert!(features.contains("tx-tcp-segmentation: off"), "{features}");
    bulk_transfer_across_nodes_is_intact(&cluster);
}
