//! Namespace lifecycle and node lifecycle against a real API server.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use support::{wait_for, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_namespace_is_emptied_then_finalized() {
    let mut cluster = TestCluster::start().await;
    cluster.run_controllers(TestCluster::fast_config());
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "team");
    for name in ["settings", "guarded"] {
        let mut config_map = json!({"metadata": {"name": name}, "data": {"k": "v"}});
        if name == "guarded" {
            config_map["metadata"]["finalizers"] = json!(["example.com/hold"]);
        }
        config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(config_map).unwrap(),
            )
            .await
            .expect("config map created");
    }
    cluster.create_pod("team", "worker", "10m").await;

    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("namespace delete accepted");

    // Everything deletable goes; the finalized object holds the namespace open.
    let condition = wait_for(
        "NamespaceFinalizersRemaining condition",
        Duration::from_secs(10),
        || async {
            let namespace = namespaces.get("team").await.ok()?;
            let remaining = config_maps.list(&Default::default()).await.ok()?;
            if remaining.items.len() != 1 {
                return None;
            }
            namespace
                .status?
                .conditions?
                .into_iter()
                .find(|c| c.type_ == "NamespaceFinalizersRemaining")
        },
    )
    .await;
    assert_eq!(
        condition.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(cluster.client.clone(), "team");
    assert!(pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(
        namespaces.get("team").await.is_ok(),
        "namespace must wait for its content"
    );

    // Releasing the finalizer lets the object go, then the namespace.
    config_maps
        .patch(
            "guarded",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("finalizer removed");
    wait_for("namespace gone", Duration::from_secs(10), || async {
        match namespaces.get("team").await {
            Err(kube::Error::Api(status)) if status.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
}

fn node_condition(node: &Node, type_: &str) -> Option<(String, Option<String>)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| (condition.status.clone(), condition.reason.clone()))
}

fn taint_keys(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|spec| spec.taints.as_ref())
        .map(|taints| {
            taints
                .iter()
                .map(|taint| format!("{}:{}", taint.key, taint.effect))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_marked_unknown_and_tainted_then_recovers() {
    let mut cluster = TestCluster::start().await;
    cluster.create_ready_node("node-a", "2").await;
    cluster.create_ready_node("node-b", "2").await;
    cluster.run_controllers(TestCluster::fast_config());
    let nodes: Api<Node> = Api::all(cluster.client.clone());

    // node-b keeps heartbeating; node-a goes silent.
    let heartbeat_cluster_client = cluster.client.clone();
    let heartbeat = tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(heartbeat_cluster_client);
        loop {
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now}]}});
            let _ = nodes
                .patch_status(
                    "node-b",
                    &PatchParams::default(),
                    &Patch::Strategic(&status),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let node = wait_for(
        "node-a Unknown and tainted",
        Duration::from_secs(10),
        || async {
            let node = nodes.get("node-a").await.ok()?;
            (taint_keys(&node).len() == 2).then_some(node)
        },
    )
    .await;
    assert_eq!(
        node_condition(&node, "Ready"),
        Some(("Unknown".into(), Some("NodeStatusUnknown".into())))
    );
    let ready = node
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );
    assert_eq!(
        taint_keys(&node),
        vec![
            "node.kubernetes.io/unreachable:NoSchedule",
            "node.kubernetes.io/unreachable:NoExecute"
        ]
    );
    let healthy = nodes.get("node-b").await.unwrap();
    assert_eq!(node_condition(&healthy, "Ready").unwrap().0, "True");
    assert!(taint_keys(&healthy).is_empty());

    // The agent comes back: the taints go.
    cluster.set_node_ready("node-a", "2", "True").await;
    let node = wait_for("node-a untainted", Duration::from_secs(10), || async {
        let node = nodes.get("node-a").await.ok()?;
        taint_keys(&node).is_empty().then_some(node)
    })
    .await;
    assert_eq!(node_condition(&node, "Ready").unwrap().0, "True");
    heartbeat.abort();
}
