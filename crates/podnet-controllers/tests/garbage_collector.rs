//! The garbage collector against a real API server: background, foreground
//! and orphan propagation along ownerReferences.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::json;
use support::{wait_for, TestCluster};

async fn create(
    api: &Api<ConfigMap>,
    name: &str,
    owner: Option<&ConfigMap>,
    block: bool,
) -> ConfigMap {
    let mut value = json!({"metadata": {"name": name}, "data": {"k": "v"}});
    if let Some(owner) = owner {
        value["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "ConfigMap",
            "name": owner.metadata.name, "uid": owner.metadata.uid,
            "controller": true, "blockOwnerDeletion": block,
        }]);
    }
    api.create(
        &PostParams::default(),
        &serde_json::from_value(value).unwrap(),
    )
    .await
    .expect("config map created")
}

async fn gone(api: &Api<ConfigMap>, name: &str) -> Option<()> {
    match api.get(name).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Some(()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletion_removes_dependents_transitively() {
    let mut cluster = TestCluster::start().await;
    cluster.run_controllers(TestCluster::fast_config());
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let owner = create(&api, "owner", None, false).await;
    let child = create(&api, "child", Some(&owner), false).await;
    create(&api, "grandchild", Some(&child), false).await;
    let unrelated = create(&api, "unrelated", None, false).await;
    // A dependent created right after its owner must survive (no false positives
    // from watches of different resources arriving out of order).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(api.get("grandchild").await.is_ok());

    api.delete("owner", &DeleteParams::background())
        .await
        .expect("owner deleted");
    wait_for("child collected", Duration::from_secs(10), || {
        gone(&api, "child")
    })
    .await;
    wait_for("grandchild collected", Duration::from_secs(10), || {
        gone(&api, "grandchild")
    })
    .await;
    assert_eq!(
        api.get("unrelated").await.unwrap().metadata.uid,
        unrelated.metadata.uid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() {
    let mut cluster = TestCluster::start().await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let owner = create(&api, "owner", None, false).await;
    // The dependent carries its own finalizer, so its removal can be held back.
    let mut dependent = json!({"metadata": {"name": "dependent", "finalizers": ["example.com/hold"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner.metadata.uid, "blockOwnerDeletion": true}]}});
    dependent["data"] = json!({"k": "v"});
    api.create(
        &PostParams::default(),
        &serde_json::from_value(dependent).unwrap(),
    )
    .await
    .unwrap();
    cluster.run_controllers(TestCluster::fast_config());

    api.delete("owner", &DeleteParams::foreground())
        .await
        .expect("owner deletion accepted");
    let dependent = wait_for(
        "dependent being deleted",
        Duration::from_secs(10),
        || async {
            let found = api.get("dependent").await.ok()?;
            found.metadata.deletion_timestamp.is_some().then_some(found)
        },
    )
    .await;
    assert!(dependent.metadata.deletion_timestamp.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owner_now = api
        .get("owner")
        .await
        .expect("owner waits for its blocking dependent");
    assert!(owner_now
        .metadata
        .finalizers
        .unwrap()
        .contains(&"foregroundDeletion".to_string()));

    api.patch(
        "dependent",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("owner gone", Duration::from_secs(10), || {
        gone(&api, "owner")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let mut cluster = TestCluster::start().await;
    cluster.run_controllers(TestCluster::fast_config());
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let owner = create(&api, "owner", None, false).await;
    create(&api, "kept", Some(&owner), true).await;

    api.delete("owner", &DeleteParams::orphan())
        .await
        .expect("owner deletion accepted");
    wait_for("owner gone", Duration::from_secs(10), || {
        gone(&api, "owner")
    })
    .await;
    let kept = api
        .get("kept")
        .await
        .expect("dependent is orphaned, not deleted");
    assert!(kept
        .metadata
        .owner_references
        .unwrap_or_default()
        .is_empty());
    assert!(kept.metadata.deletion_timestamp.is_none());
}
