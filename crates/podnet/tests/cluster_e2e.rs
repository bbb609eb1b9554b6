//! End to end: `podnet up` a real two-node cluster in network namespaces,
//! drive it with the real kubectl, and `podnet down` it, checking that
//! nothing is left behind. Needs root, runc and kubectl.

mod support;

use std::path::Path;
use std::time::Duration;
use support::*;

const TWO_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: pod1
  labels: {app: pod1}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE1}
  volumes: [{name: shared, emptyDir: {}}]
  containers:
  - name: c1
    image: busybox
    command: [sh, -c, "echo from-c1 > /shared/note; sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: c2
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: c3
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo hello-from-c3 > /www/index.html && httpd -f -p 80 -h /www"]
---
apiVersion: v1
kind: Pod
metadata:
  name: pod2
spec:
  nodeSelector: {kubernetes.io/hostname: NODE2}
  containers:
  - name: c4
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo hello-from-pod2 > /www/index.html && httpd -f -p 80 -h /www"]
"#;

#[test]
fn two_nodes_pods_share_localhost_and_reach_each_other_across_the_overlay() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2ea", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let nodes = cluster.kubectl_ok(&["get", "nodes", "-o", "wide"]);
    assert!(nodes.contains(&node1) && nodes.contains(&node2), "{nodes}");

    let manifest = TWO_PODS.replace("NODE1", &node1).replace("NODE2", &node2);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    cluster.wait_for("both pods Running", Duration::from_secs(120), || {
        let phases =
            cluster.kubectl_ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
        phases
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
            == 2
    });
    let ip1 = pod_ip(&cluster, "pod1");
    let ip2 = pod_ip(&cluster, "pod2");
    assert!(
        ip1.starts_with("10.244.") && ip2.starts_with("10.244."),
        "{ip1} {ip2}"
    );
    let subnet = |ip: &str| ip.rsplit_once('.').unwrap().0.to_string();
    assert_ne!(
        subnet(&ip1),
        subnet(&ip2),
        "pods on different nodes get IPs from different /24s"
    );
    let wide = cluster.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains(&ip1) && wide.contains(&node1) && wide.contains(&node2),
        "{wide}"
    );

    // Containers of one pod share localhost and the network interfaces.
    cluster.wait_for("c3 serving on localhost", Duration::from_secs(30), || {
        let output = cluster.kubectl(&[
            "exec",
            "pod1",
            "-c",
            "c1",
            "--",
            "wget",
            "-qO-",
            "http://localhost:80/",
        ]);
        String::from_utf8_lossy(&output.stdout).contains("hello-from-c3")
    });
    // IPv6 duplicate address detection may still be running ("tentative") on
    // the first call, so compare the interface set and addresses only.
    let addr = |c: &str| {
        cluster
            .kubectl_ok(&["exec", "pod1", "-c", c, "--", "ip", "addr"])
            .replace(" tentative", "")
    };
    let (a1, a2, a3) = (addr("c1"), addr("c2"), addr("c3"));
    assert!(a1.contains(&ip1), "{a1}");
    assert_eq!(a1, a2);
    assert_eq!(a1, a3);

    // The emptyDir is shared: c1 wrote, c2 reads.
    let note = cluster.kubectl_ok(&["exec", "pod1", "-c", "c2", "--", "cat", "/shared/note"]);
    assert_eq!(note.trim(), "from-c1");

    // Across the overlay without NAT.
    cluster.wait_for(
        "pod1 reaching pod2 across nodes",
        Duration::from_secs(30),
        || {
            let url = format!("http://{ip2}:80/");
            let output = cluster.kubectl(&[
                "exec", "pod1", "-c", "c1", "--", "timeout", "3", "wget", "-qO-", &url,
            ]);
            String::from_utf8_lossy(&output.stdout).contains("hello-from-pod2")
        },
    );

    // On the node: its pod sandboxes, eth0 with the pod IP, ping from the node.
    let netns = cluster.node_exec(&node1, &["ip", "netns"]);
    let listing = String::from_utf8_lossy(&netns.stdout).to_string();
    // Other pods (the cluster DNS pods) may have sandboxes on this node too:
    // one of the node's cni- namespaces holds eth0 with pod1's IP.
    let sandboxes: Vec<&str> = listing
        .split_whitespace()
        .filter(|word| word.starts_with("cni-"))
        .collect();
    assert!(
        !sandboxes.is_empty(),
        "no cni- namespace on {node1}: {listing}"
    );
    let holds_pod1 = sandboxes.iter().any(|sandbox| {
        let inside = cluster.node_exec(
            &node1,
            &["ip", "netns", "exec", sandbox, "ip", "addr", "show", "eth0"],
        );
        String::from_utf8_lossy(&inside.stdout).contains(&ip1)
    });
    assert!(
        holds_pod1,
        "no sandbox on {node1} has eth0 with {ip1}: {listing}"
    );
    let ping = cluster.node_exec(&node1, &["ping", "-c", "1", "-W", "2", &ip1]);
    assert!(
        ping.status.success(),
        "ping from node: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // The network agent of each node is a pod in kube-system with its log.
    let system = cluster.kubectl_ok(&["get", "pods", "-n", "kube-system", "-o", "wide"]);
    let agent_pod = format!("podnet-{node1}");
    assert!(
        system.contains(&agent_pod) && system.contains("Running"),
        "{system}"
    );
    let agent_log = cluster.kubectl_ok(&["logs", "-n", "kube-system", &agent_pod, "--tail", "200"]);
    assert!(
        agent_log.contains("CNI configuration written"),
        "{agent_log}"
    );

    // Down removes everything.
    let output = cluster.down();
    assert!(
        output.status.success(),
        "podnet down: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&cluster.name))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!Path::new(&cluster.root.path().join(&cluster.name)).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&cluster.root.path().display().to_string()),
        "mounts left behind"
    );
}
