//! End to end: Deployments and DaemonSets on a real two-node `podnet up`
//! cluster, driven by the real kubectl (create, rollout status, scale,
//! rollout restart/history/undo, expose, delete). Needs root, runc and kubectl.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::*;

fn web_pods(cluster: &Cluster) -> Vec<(String, String, String, String)> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName} {.status.podIP} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            // Pods being deleted carry a fifth field.
            if fields.len() < 4 || fields.get(4).is_some_and(|f| !f.is_empty()) {
                return None;
            }
            Some((
                fields[0].to_string(),
                fields[1].to_string(),
                fields[2].to_string(),
                fields[3].to_string(),
            ))
        })
        .collect()
}

fn rollout_status(cluster: &Cluster) -> Duration {
    let start = Instant::now();
    let out = cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    start.elapsed()
}

#[test]
fn deployment_lifecycle_with_kubectl() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("wl", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);

    let start = Instant::now();
    cluster.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    let first = rollout_status(&cluster);
    eprintln!(
        "create + rollout status (3 replicas): {:.2}s",
        start.elapsed().as_secs_f64()
    );
    let _ = first;
    let pods = web_pods(&cluster);
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(
        pods.iter().all(|p| p.1 == "Running" && !p.3.is_empty()),
        "{pods:?}"
    );
    let nodes: BTreeSet<&str> = pods.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from([node1.as_str(), node2.as_str()]),
        "pods spread over both nodes: {pods:?}"
    );
    let rs = cluster.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rs.lines().count(), 1, "{rs}");

    // Scale up and down.
    cluster.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    let elapsed = rollout_status(&cluster);
    eprintln!("scale 3→5 + rollout status: {:.2}s", elapsed.as_secs_f64());
    cluster.wait_for("5 running pods", Duration::from_secs(60), || {
        let pods = web_pods(&cluster);
        pods.len() == 5 && pods.iter().all(|p| p.1 == "Running")
    });
    cluster.kubectl_ok(&["scale", "deployment", "web", "--replicas=1"]);
    rollout_status(&cluster);
    cluster.wait_for("1 pod left", Duration::from_secs(60), || {
        web_pods(&cluster).len() == 1
    });

    // Back to 3, then restart: a new ReplicaSet, revision 2.
    cluster.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    rollout_status(&cluster);
    let before: BTreeSet<String> = web_pods(&cluster).into_iter().map(|p| p.0).collect();
    let start = Instant::now();
    cluster.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&cluster);
    eprintln!(
        "rollout restart (3 replicas) + rollout status: {:.2}s",
        start.elapsed().as_secs_f64()
    );
    cluster.wait_for("3 new pods", Duration::from_secs(60), || {
        let pods = web_pods(&cluster);
        pods.len() == 3
            && pods
                .iter()
                .all(|p| p.1 == "Running" && !before.contains(&p.0))
    });
    let history = cluster.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );

    // Undo: back to revision 1's ReplicaSet, which becomes revision 3.
    let rs1 = cluster.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[?(@.metadata.annotations.deployment\\.kubernetes\\.io/revision==\"1\")]}{.metadata.name}{end}",
    ]);
    assert!(!rs1.is_empty());
    cluster.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&cluster);
    cluster.wait_for("revision 1's ReplicaSet is revision 3 with 3 pods", Duration::from_secs(60), || {
        let out = cluster.kubectl_ok(&[
            "get",
            "rs",
            &rs1,
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {.status.readyReplicas}",
        ]);
        out.trim() == "3 3"
    });
    let history = cluster.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 "),
        "{history}"
    );

    // Expose: the Endpoints list the pod IPs.
    cluster.kubectl_ok(&["expose", "deployment", "web", "--port=80"]);
    cluster.wait_for(
        "endpoints hold the 3 pod IPs",
        Duration::from_secs(30),
        || {
            let ips: BTreeSet<String> = web_pods(&cluster).into_iter().map(|p| p.3).collect();
            let out = cluster.kubectl_ok(&[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ]);
            let listed: BTreeSet<String> = out.split_whitespace().map(String::from).collect();
            ips.len() == 3 && listed == ips
        },
    );

    // Delete: ReplicaSets and pods go.
    cluster.kubectl_ok(&["delete", "deployment", "web"]);
    cluster.wait_for("replicasets and pods gone", Duration::from_secs(90), || {
        let rs = cluster.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
        let pods = cluster.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        rs.trim().is_empty() && pods.trim().is_empty()
    });
    cluster.down();
}

const DAEMON_SET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: c
        image: busybox
        command: [sleep, "3600"]
"#;

#[test]
fn daemon_set_runs_one_pod_per_node() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("wd", 2, &[]);
    cluster.kubectl_stdin(&["apply", "-f", "-"], DAEMON_SET);
    let out = cluster.kubectl_ok(&["rollout", "status", "daemonset/agent", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
    ]);
    let mut nodes: Vec<&str> = pods.lines().collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [
            format!("{}-node1 Running", cluster.name),
            format!("{}-node2 Running", cluster.name)
        ],
        "{pods}"
    );
    let status = cluster.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.desiredNumberScheduled} {.status.numberReady} {.status.updatedNumberScheduled}",
    ]);
    assert_eq!(status.trim(), "2 2 2");
    cluster.kubectl_ok(&["delete", "ds", "agent"]);
    cluster.wait_for("daemon pods gone", Duration::from_secs(90), || {
        cluster
            .kubectl_ok(&["get", "pods", "-l", "app=agent", "-o", "name"])
            .trim()
            .is_empty()
    });
    cluster.down();
}
