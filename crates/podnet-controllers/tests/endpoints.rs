//! The EndpointSlice and Endpoints controllers against a real API server:
//! slices follow pod readiness, named ports resolve per pod, selector-less
//! Services keep manual Endpoints (mirrored into a slice), deleting the
//! Service removes both.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use support::{wait_for, TestCluster};

async fn create_pod(api: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 8080}]}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    set_ready(api, name, ip, ready).await;
}

async fn set_ready(api: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// (ip, ready) of every endpoint in the Service's slices, sorted.
async fn slice_view(api: &Api<EndpointSlice>, service: &str) -> Vec<(String, bool, bool)> {
    let list = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    let mut view: Vec<(String, bool, bool)> = list
        .items
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .map(|e| {
            let conditions = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                conditions.ready.unwrap_or(false),
                conditions.terminating.unwrap_or(false),
            )
        })
        .collect();
    view.sort();
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_and_endpoints_follow_pods() {
    let mut cluster = TestCluster::start().await;
    cluster.run_controllers(TestCluster::fast_config());
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    // No pods yet: one empty placeholder slice, an Endpoints without subsets.
    wait_for("placeholder slice", Duration::from_secs(10), || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .ok()?;
        (list.items.len() == 1 && list.items[0].endpoints.is_empty()).then_some(())
    })
    .await;

    create_pod(&pods, "a", "10.244.0.5", true).await;
    create_pod(&pods, "b", "10.244.1.5", false).await;
    wait_for("two endpoints", Duration::from_secs(10), || async {
        (slice_view(&slices, "web").await
            == vec![
                ("10.244.0.5".to_string(), true, false),
                ("10.244.1.5".to_string(), false, false),
            ])
        .then_some(())
    })
    .await;
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "one slice for one port set");
    let slice = &list.items[0];
    assert_eq!(slice.ports.as_ref().unwrap()[0].port, Some(8080));
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Service", Some(true))
    );
    let legacy = endpoints.get("web").await.unwrap();
    let subset = &legacy.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.244.0.5");
    assert_eq!(
        subset.not_ready_addresses.as_ref().unwrap()[0].ip,
        "10.244.1.5"
    );

    // Readiness flips reach the slice quickly (watch-driven).
    let mut delays = Vec::new();
    for round in 0..5 {
        let ready = round % 2 == 0;
        let started = Instant::now();
        set_ready(&pods, "b", "10.244.1.5", ready).await;
        wait_for("readiness change", Duration::from_secs(10), || async {
            slice_view(&slices, "web")
                .await
                .contains(&("10.244.1.5".to_string(), ready, false))
                .then_some(())
        })
        .await;
        delays.push(started.elapsed());
    }
    delays.sort();
    eprintln!(
        "readiness change to slice update (5 rounds, incl. polling): median {:?}, max {:?}",
        delays[2], delays[4]
    );

    // A pod being deleted (graceful) shows as terminating, then leaves.
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for("terminating endpoint", Duration::from_secs(10), || async {
        slice_view(&slices, "web")
            .await
            .contains(&("10.244.0.5".to_string(), false, true))
            .then_some(())
    })
    .await;
    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for("endpoint gone", Duration::from_secs(10), || async {
        (slice_view(&slices, "web").await.len() == 1).then_some(())
    })
    .await;

    // Deleting the Service removes its Endpoints (slices go with their owner).
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("endpoints deleted", Duration::from_secs(10), || async {
        match endpoints.get("web").await {
            Err(kube::Error::Api(status)) if status.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
    wait_for("slices deleted", Duration::from_secs(10), || async {
        slice_view(&slices, "web").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectorless_services_keep_manual_endpoints_and_many_pods_split_slices() {
    let mut cluster = TestCluster::start().await;
    cluster.run_controllers(TestCluster::fast_config());
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let manual: Service = serde_json::from_value(json!({
        "metadata": {"name": "external"}, "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let manual_endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}]
    }))
    .unwrap();
    endpoints
        .create(&PostParams::default(), &manual_endpoints)
        .await
        .unwrap();

    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    for i in 0..120 {
        create_pod(
            &pods,
            &format!("p{i:03}"),
            &format!("10.244.{}.{}", i / 100, i % 100 + 2),
            true,
        )
        .await;
    }
    wait_for(
        "120 endpoints in two slices",
        Duration::from_secs(20),
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let mut sizes: Vec<usize> = list.items.iter().map(|s| s.endpoints.len()).collect();
            sizes.sort();
            (sizes == vec![20, 100]).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = endpoints.get("external").await.unwrap();
    assert_eq!(
        kept.subsets.unwrap()[0].addresses.as_ref().unwrap()[0].ip,
        "192.0.2.10"
    );
    // The EndpointSlice controller leaves the selector-less Service alone;
    // its manual Endpoints are mirrored into one slice.
    let external = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=external"))
        .await
        .unwrap();
    let managers: Vec<(String, String)> = external
        .items
        .iter()
        .map(|slice| {
            (
                slice.metadata.name.clone().unwrap_or_default(),
                slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"]
                    .clone(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        vec![(
            "external-mirror-0".to_string(),
            "endpointslicemirroring-controller.k8s.io".to_string()
        )]
    );
    assert_eq!(external.items[0].endpoints[0].addresses, vec!["192.0.2.10"]);
}
