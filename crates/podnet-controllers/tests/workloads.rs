//! The ReplicaSet, Deployment and DaemonSet controllers against a real API
//! server, with the scheduler running and a stand-in kubelet that marks bound
//! pods Running and Ready and finishes pods being deleted.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::{wait_for, TestCluster};

const WAIT: Duration = Duration::from_secs(20);

/// Marks every bound pod Running and Ready (with an IP) unless its name is in
/// `hold` (a label `hold=true` keeps it not ready), and deletes pods that are
/// being deleted with grace 0, as an agent would.
fn run_fake_kubelet(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let nodes: Api<Node> = Api::all(client.clone());
        let mut next_ip = 10u32;
        loop {
            // Heartbeats, so the node lifecycle controller keeps the nodes Ready.
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            for node in ["node1", "node2"] {
                let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                    "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
                let _ = nodes
                    .patch_status(node, &PatchParams::default(), &Patch::Strategic(&status))
                    .await;
            }
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    let ns = pod.namespace().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = api
                            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    let bound = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some();
                    let hold = pod.labels().get("hold").map(String::as_str) == Some("true");
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if bound && !hold && !ready {
                        next_ip += 1;
                        let ip = format!("10.244.0.{}", next_ip % 250 + 2);
                        let now = k8s_openapi::jiff::Timestamp::now().to_string();
                        let status = json!({"status": {"phase": "Running", "podIP": ip,
                            "podIPs": [{"ip": ip}],
                            "conditions": [{"type": "Ready", "status": "True",
                                "lastTransitionTime": now}]}});
                        let _ = api
                            .patch_status(
                                &pod.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(&status),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn owned_by<'a>(pods: &'a [Pod], kind: &str, name: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            p.owner_references().iter().any(|o| {
                o.kind == kind
                    && o.name == name
                    && o.controller == Some(true)
                    && o.block_owner_deletion == Some(true)
            })
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn start() -> (TestCluster, tokio::task::JoinHandle<()>) {
    let mut cluster = TestCluster::start().await;
    cluster.run_controllers(TestCluster::fast_config());
    cluster.create_ready_node("node1", "8").await;
    cluster.create_ready_node("node2", "8").await;
    let kubelet = run_fake_kubelet(cluster.client.clone());
    (cluster, kubelet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_set_creates_adopts_scales_and_reports_status() {
    let (cluster, kubelet) = start().await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");

    // An orphan that matches the selector, kept not ready: it is adopted.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "rs", "hold": "true"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();

    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "rs"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rs"}},
            "template": {"metadata": {"labels": {"app": "rs"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();

    let names = wait_for("3 owned pods, 2 ready", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let owned = owned_by(&list.items, "ReplicaSet", "rs");
        let status = sets.get("rs").await.ok()?.status?;
        (owned.len() == 3
            && status.replicas == 3
            && status.ready_replicas == Some(2)
            && status.available_replicas == Some(2)
            && status.fully_labeled_replicas == Some(3)
            && status.observed_generation == Some(1))
        .then(|| owned.iter().map(|p| p.name_any()).collect::<BTreeSet<_>>())
    })
    .await;
    assert!(names.contains("orphan"), "{names:?}");
    for name in &names {
        assert!(
            name == "orphan" || (name.starts_with("rs-") && name.len() == 8),
            "{name}"
        );
    }

    // Scale to 1: the not-ready orphan goes first, then the newer one.
    sets.patch(
        "rs",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let left = wait_for("1 pod left", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let all_live: Vec<_> = list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let status = sets.get("rs").await.ok()?.status?;
        (all_live.len() == 1 && status.replicas == 1 && status.observed_generation == Some(2))
            .then(|| all_live[0].name_any())
    })
    .await;
    assert_ne!(left, "orphan");

    // A deleted pod is replaced.
    pods.delete(&left, &DeleteParams::default()).await.unwrap();
    wait_for("replacement pod", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let owned = owned_by(&list.items, "ReplicaSet", "rs");
        (owned.len() == 1 && owned[0].name_any() != left).then_some(())
    })
    .await;

    // Deleting the ReplicaSet cascades to its pods.
    sets.delete("rs", &DeleteParams::default()).await.unwrap();
    wait_for("pods gone with the replicaset", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    kubelet.abort();
}

async fn deployment_view(api: &Api<Deployment>, name: &str) -> Option<(i32, i32, i32, String)> {
    let d = api.get(name).await.ok()?;
    let status = d.status?;
    if status.observed_generation < d.metadata.generation {
        return None;
    }
    let progressing = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")?
        .reason
        .unwrap_or_default();
    Some((
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
        status.replicas.unwrap_or(0),
        progressing,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_scales_rolls_back_and_cascades() {
    let (cluster, kubelet) = start().await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");

    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    wait_for("rollout 1 complete", WAIT, || async {
        let view = deployment_view(&deployments, "web").await?;
        (view == (3, 3, 3, "NewReplicaSetAvailable".to_string())).then_some(())
    })
    .await;
    let first = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first.len(), 1);
    let first_rs = &first[0];
    let hash = first_rs.labels()["pod-template-hash"].clone();
    assert_eq!(first_rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        first_rs.annotations()["deployment.kubernetes.io/revision"],
        "1"
    );
    let list = pods.list(&ListParams::default()).await.unwrap().items;
    let owned = owned_by(&list, "ReplicaSet", &first_rs.name_any());
    assert_eq!(owned.len(), 3);
    assert!(owned
        .iter()
        .all(|p| p.labels()["pod-template-hash"] == hash));

    // A template change rolls out a second ReplicaSet (revision 2); the old one ends at 0.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"metadata": {"annotations":
                {"kubectl.kubernetes.io/restartedAt": "now"}}}}})),
        )
        .await
        .unwrap();
    wait_for("rollout 2 complete", WAIT, || async {
        let view = deployment_view(&deployments, "web").await?;
        let sets = sets.list(&ListParams::default()).await.ok()?.items;
        let old = sets.iter().find(|s| s.name_any() == first_rs.name_any())?;
        (view == (3, 3, 3, "NewReplicaSetAvailable".to_string())
            && sets.len() == 2
            && old.spec.as_ref()?.replicas == Some(0))
        .then_some(())
    })
    .await;
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "2");
    let available = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );

    // Scale through the scale subresource.
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    wait_for("scaled to 5", WAIT, || async {
        let view = deployment_view(&deployments, "web").await?;
        (view == (5, 5, 5, "NewReplicaSetAvailable".to_string())).then_some(())
    })
    .await;

    // Rolling back (as kubectl rollout undo: the old template) reuses the first
    // ReplicaSet, which becomes revision 3.
    let mut template = first_rs.spec.clone().unwrap().template.unwrap();
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "replace", "path": "/spec/template",
                    "value": template}]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    wait_for("rollback complete", WAIT, || async {
        let view = deployment_view(&deployments, "web").await?;
        let rs = sets.get(&first_rs.name_any()).await.ok()?;
        (view == (5, 5, 5, "NewReplicaSetAvailable".to_string())
            && rs.annotations().get("deployment.kubernetes.io/revision")? == "3")
            .then_some(())
    })
    .await;

    // Deleting the Deployment removes its ReplicaSets and pods.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "replicasets and pods gone",
        Duration::from_secs(30),
        || async {
            let sets = sets.list(&ListParams::default()).await.ok()?.items;
            let pods = pods.list(&ListParams::default()).await.ok()?.items;
            (sets.is_empty() && pods.is_empty()).then_some(())
        },
    )
    .await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_deployment_replaces_all_pods() {
    let (cluster, kubelet) = start().await;
    let client = cluster.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "rec"},
        "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": "rec"}},
            "template": {"metadata": {"labels": {"app": "rec"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    wait_for("rollout complete", WAIT, || async {
        let view = deployment_view(&deployments, "rec").await?;
        (view == (2, 2, 2, "NewReplicaSetAvailable".to_string())).then_some(())
    })
    .await;
    deployments
        .patch(
            "rec",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"spec": {"containers":
                [{"name": "c", "image": "busybox"}]}}}})),
        )
        .await
        .unwrap();
    wait_for("recreate complete", WAIT, || async {
        let view = deployment_view(&deployments, "rec").await?;
        let d = deployments.get("rec").await.ok()?;
        (view == (2, 2, 2, "NewReplicaSetAvailable".to_string())
            && d.annotations().get("deployment.kubernetes.io/revision")? == "2")
            .then_some(())
    })
    .await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_set_runs_one_pod_per_eligible_node_and_rolls() {
    let (cluster, kubelet) = start().await;
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    daemon_sets
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    let node_of = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    wait_for("a ready pod on each node", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let owned = owned_by(&list.items, "DaemonSet", "agent");
        let nodes: BTreeSet<_> = owned.iter().filter_map(|p| node_of(p)).collect();
        let status = daemon_sets.get("agent").await.ok()?.status?;
        (owned.len() == 2
            && nodes.len() == 2
            && status.desired_number_scheduled == 2
            && status.current_number_scheduled == 2
            && status.number_ready == 2
            && status.number_available == Some(2)
            && status.updated_number_scheduled == Some(2))
        .then_some(())
    })
    .await;

    // A NoSchedule taint it does not tolerate takes node2 out.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "node2",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"taints": [{"key": "dedicated", "value": "x",
                "effect": "NoSchedule"}]}}),
            ),
        )
        .await
        .unwrap();
    wait_for("only node1 keeps a pod", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let owned = owned_by(&list.items, "DaemonSet", "agent");
        let status = daemon_sets.get("agent").await.ok()?.status?;
        (owned.len() == 1
            && node_of(owned[0]).as_deref() == Some("node1")
            && status.desired_number_scheduled == 1)
            .then_some(())
    })
    .await;

    // A template change replaces the pod (RollingUpdate).
    let before = pods.list(&ListParams::default()).await.unwrap().items;
    let old_name = owned_by(&before, "DaemonSet", "agent")[0].name_any();
    daemon_sets
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}),
            ),
        )
        .await
        .unwrap();
    wait_for("pod replaced with the new template", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let owned = owned_by(&list.items, "DaemonSet", "agent");
        let status = daemon_sets.get("agent").await.ok()?.status?;
        (owned.len() == 1
            && owned[0].name_any() != old_name
            && status.updated_number_scheduled == Some(1)
            && status.number_available == Some(1)
            && status.observed_generation == Some(2))
        .then_some(())
    })
    .await;
    kubelet.abort();
}
