//! Node IPAM and the scheduler against a real API server.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::Api;
use podnet_controllers::ControllersConfig;
use support::{wait_for, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_gets_a_distinct_pod_cidr_and_keeps_it_across_restarts() {
    let mut cluster = TestCluster::start().await;
    for name in ["node-a", "node-b", "node-c"] {
        cluster.create_ready_node(name, "2").await;
    }
    cluster.run_controllers(TestCluster::fast_config());
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let read_cidrs = || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let cidrs: Vec<(String, String, Vec<String>)> = list
            .items
            .iter()
            .map(|node| {
                let spec = node.spec.clone().unwrap_or_default();
                (
                    node.metadata.name.clone().unwrap(),
                    spec.pod_cidr.unwrap_or_default(),
                    spec.pod_cidrs.unwrap_or_default(),
                )
            })
            .collect();
        cidrs
            .iter()
            .all(|(_, cidr, _)| !cidr.is_empty())
            .then_some(cidrs)
    };
    let cidrs = wait_for(
        "pod cidrs on all nodes",
        Duration::from_secs(10),
        read_cidrs,
    )
    .await;
    let distinct: BTreeSet<&String> = cidrs.iter().map(|(_, cidr, _)| cidr).collect();
    assert_eq!(distinct.len(), 3, "{cidrs:?}");
    for (name, cidr, cidr_list) in &cidrs {
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with("/24"),
            "{name}: {cidr}"
        );
        assert_eq!(cidr_list, &vec![cidr.clone()]);
    }

    // A restarted allocator derives what is taken from the Nodes themselves.
    cluster.run_controllers(TestCluster::fast_config());
    cluster.create_ready_node("node-d", "2").await;
    let cidrs = wait_for("pod cidr on node-d", Duration::from_secs(10), read_cidrs).await;
    let distinct: BTreeSet<&String> = cidrs.iter().map(|(_, cidr, _)| cidr).collect();
    assert_eq!(distinct.len(), 4, "{cidrs:?}");
}

fn bound_node(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .node_name
        .clone()
        .filter(|name| !name.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_quickly_and_spread_by_free_resources() {
    let mut cluster = TestCluster::start().await;
    cluster.create_ready_node("node-a", "4").await;
    cluster.create_ready_node("node-b", "4").await;
    // These nodes get no heartbeats: keep them Ready for the whole test (with
    // the fast 2 s grace period they turn Unknown, get tainted, and a loaded
    // machine then sees pods that can never be bound).
    cluster.run_controllers(ControllersConfig {
        node_monitor_grace_period: Duration::from_secs(600),
        ..TestCluster::fast_config()
    });
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");

    // Warm up: the scheduler has synced once the first pod is bound.
    cluster.create_pod("default", "warmup", "100m").await;
    wait_for("warmup bound", Duration::from_secs(10), || async {
        pods.get("warmup").await.ok().as_ref().and_then(bound_node)
    })
    .await;

    // Measure create → bound through a watch, as a client would see it.
    let mut stream = pods
        .watch(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    let mut latencies = Vec::new();
    let mut placements = Vec::new();
    let mut create_latencies = Vec::new();
    for index in 0..20 {
        let name = format!("web-{index}");
        let started = Instant::now();
        cluster.create_pod("default", &name, "100m").await;
        create_latencies.push(started.elapsed());
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("pod event in time")
                .expect("watch open")
                .expect("watch event");
            if let WatchEvent::Modified(pod) | WatchEvent::Added(pod) = event {
                if pod.metadata.name.as_deref() == Some(name.as_str()) {
                    if let Some(node) = bound_node(&pod) {
                        latencies.push(started.elapsed());
                        placements.push(node);
                        break;
                    }
                }
            }
        }
    }
    latencies.sort();
    create_latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "create -> bound: p50 {median:?}, max {:?} (the create request alone: p50 {:?})",
        latencies.last().unwrap(),
        create_latencies[create_latencies.len() / 2]
    );
    let on_a = placements.iter().filter(|node| *node == "node-a").count();
    assert!(
        (9..=11).contains(&on_a),
        "equal pods should balance over equal nodes: {placements:?}"
    );

    let scheduled = wait_for("Scheduled event", Duration::from_secs(10), || async {
        let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|event| {
            event.reason.as_deref() == Some("Scheduled")
                && event.involved_object.name.as_deref() == Some("web-3")
        })
    })
    .await;
    let message = scheduled.message.unwrap();
    assert!(
        message.starts_with("Successfully assigned default/web-3 to node-"),
        "{message}"
    );
    assert_eq!(
        scheduled.source.unwrap().component.as_deref(),
        Some("default-scheduler")
    );
    let pod = pods.get("web-3").await.unwrap();
    let condition = pod
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(condition.status, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pod_is_reported_then_bound_when_a_node_fits() {
    let mut cluster = TestCluster::start().await;
    cluster.create_ready_node("node-a", "1").await;
    cluster.create_ready_node("node-b", "1").await;
    cluster.run_controllers(TestCluster::fast_config());
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    cluster.create_pod("default", "big", "2").await;

    let condition = wait_for("PodScheduled=False", Duration::from_secs(10), || async {
        let pod = pods.get("big").await.ok()?;
        pod.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        condition.message.as_deref(),
        Some("0/2 nodes are available: 2 Insufficient cpu.")
    );
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let event = wait_for(
        "FailedScheduling event",
        Duration::from_secs(10),
        || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|event| event.reason.as_deref() == Some("FailedScheduling"))
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.message.as_deref(),
        Some("0/2 nodes are available: 2 Insufficient cpu.")
    );
    assert_eq!(event.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(event.involved_object.name.as_deref(), Some("big"));

    // A node that fits arrives: the pod is retried on the node change, not on a timer.
    cluster.create_ready_node("node-c", "4").await;
    let node = wait_for("big bound", Duration::from_secs(3), || async {
        pods.get("big").await.ok().as_ref().and_then(bound_node)
    })
    .await;
    assert_eq!(node, "node-c");
}
