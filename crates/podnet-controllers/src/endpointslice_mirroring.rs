//! EndpointSlice mirroring, as upstream's controller of that name: the
//! Endpoints of a Service without a selector (written by hand, e.g. for a
//! database outside the cluster) are mirrored into EndpointSlices, because
//! service proxies read slices only.
//!
//! - Mirrored: Endpoints whose Service exists and has no selector, unless
//!   labelled `endpointslice.kubernetes.io/skip-mirror: "true"`.
//! - One slice per subset (at most [`MAX_MIRRORED_PER_SLICE`] addresses each,
//!   IPv4 only), named `<endpoints>-mirror-<n>`: deterministic names make
//!   every write idempotent (server-side apply) and a crash harmless.
//! - `addresses` are ready and serving, `notReadyAddresses` neither;
//!   hostname, nodeName and targetRef are kept; the Endpoints' labels are
//!   copied, plus `kubernetes.io/service-name` and the managed-by label.
//! - Owned by the Endpoints (controller reference), so they go with it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::endpoints::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use crate::watch::Informer;
use crate::{is_api_status, ControllerError};

/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MIRRORING_MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// Label on Endpoints that must not be mirrored.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Upstream's default `--mirroring-max-endpoints-per-subset`.
pub const MAX_MIRRORED_PER_SLICE: usize = 1000;

type Key = (String, String);

fn has_selector(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.as_ref())
        .is_some_and(|selector| !selector.is_empty())
}

fn slice_endpoint(address: &EndpointAddress, ready: bool) -> Option<Value> {
    address.ip.parse::<std::net::Ipv4Addr>().ok()?;
    let mut endpoint = json!({
        "addresses": [address.ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": false},
    });
    if let Some(hostname) = &address.hostname {
        endpoint["hostname"] = json!(hostname);
    }
    if let Some(node) = &address.node_name {
        endpoint["nodeName"] = json!(node);
    }
    if let Some(target) = &address.target_ref {
        endpoint["targetRef"] = serde_json::to_value(target).unwrap_or(Value::Null);
    }
    Some(endpoint)
}

/// The slices `endpoints` should be mirrored into, given its Service (None:
/// no Service), each complete with name, labels and owner. Pure.
pub fn mirrored_slices(endpoints: &Endpoints, service: Option<&Service>) -> Vec<Value> {
    let Some(service) = service else {
        return Vec::new();
    };
    if has_selector(service)
        || endpoints
            .labels()
            .get(SKIP_MIRROR_LABEL)
            .map(String::as_str)
            == Some("true")
        || endpoints.metadata.deletion_timestamp.is_some()
    {
        return Vec::new();
    }
    let name = endpoints.name_any();
    let namespace = endpoints.namespace().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = endpoints
        .labels()
        .iter()
        .filter(|(key, _)| key.as_str() != MANAGED_BY_LABEL && key.as_str() != SERVICE_NAME_LABEL)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.to_string(), name.clone());
    labels.insert(
        MANAGED_BY_LABEL.to_string(),
        MIRRORING_MANAGED_BY.to_string(),
    );
    let owner = json!([{
        "apiVersion": "v1",
        "kind": "Endpoints",
        "name": name,
        "uid": endpoints.metadata.uid.clone().unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    let mut slices = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<Value> = subset
            .ports
            .iter()
            .flatten()
            .map(|port| {
                let mut value = json!({
                    "name": port.name.clone().unwrap_or_default(),
                    "port": port.port,
                    "protocol": port.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                });
                if let Some(app) = &port.app_protocol {
                    value["appProtocol"] = json!(app);
                }
                value
            })
            .collect();
        let all: Vec<Value> = subset
            .addresses
            .iter()
            .flatten()
            .filter_map(|address| slice_endpoint(address, true))
            .chain(
                subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .filter_map(|address| slice_endpoint(address, false)),
            )
            .collect();
        for chunk in all.chunks(MAX_MIRRORED_PER_SLICE) {
            slices.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-mirror-{}", slices.len()),
                    "namespace": namespace,
                    "labels": labels,
                    "ownerReferences": owner,
                },
                "addressType": "IPv4",
                "endpoints": chunk,
                "ports": ports,
            }));
        }
    }
    slices
}

/// True when `existing` already holds what `desired` asks for.
fn up_to_date(existing: &EndpointSlice, desired: &Value) -> bool {
    let Ok(existing) = serde_json::to_value(existing) else {
        return false;
    };
    let same = |field: &str| {
        let have = existing.get(field).cloned().unwrap_or(Value::Null);
        let want = desired.get(field).cloned().unwrap_or(Value::Null);
        have == want || (want.as_array().is_some_and(Vec::is_empty) && have.is_null())
    };
    same("endpoints")
        && same("ports")
        && existing["metadata"]["labels"] == desired["metadata"]["labels"]
        && existing["metadata"]["ownerReferences"] == desired["metadata"]["ownerReferences"]
}

struct MirroringLoop {
    client: Client,
    services: Informer<Service>,
    endpoints: Informer<Endpoints>,
    slices: Informer<EndpointSlice>,
    dirty: BTreeSet<Key>,
}

fn key_of<K: kube::Resource>(object: &K) -> Key {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

fn touched<K: kube::Resource>(event: &Event<K>) -> Option<&K> {
    match event {
        Event::Apply(object) | Event::InitApply(object) | Event::Delete(object) => Some(object),
        Event::Init | Event::InitDone => None,
    }
}

impl MirroringLoop {
    async fn sync(&mut self, key: &Key) -> Result<(), ControllerError> {
        let (namespace, name) = key;
        let endpoints = self.endpoints.get(namespace, name);
        let service = self.services.get(namespace, name);
        let desired = match &endpoints {
            Some(endpoints) => mirrored_slices(endpoints, service.as_deref()),
            None => Vec::new(),
        };
        let existing: Vec<_> = self
            .slices
            .store()
            .state()
            .into_iter()
            .filter(|slice| {
                slice.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && slice.labels().get(SERVICE_NAME_LABEL) == Some(name)
                    && slice.labels().get(MANAGED_BY_LABEL).map(String::as_str)
                        == Some(MIRRORING_MANAGED_BY)
            })
            .collect();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let wanted: BTreeSet<String> = desired
            .iter()
            .filter_map(|slice| slice["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        for slice in &desired {
            let slice_name = slice["metadata"]["name"].as_str().unwrap_or_default();
            if existing
                .iter()
                .any(|have| have.name_any() == slice_name && up_to_date(have, slice))
            {
                continue;
            }
            api.patch(
                slice_name,
                &PatchParams::apply(MIRRORING_MANAGED_BY).force(),
                &Patch::Apply(slice),
            )
            .await
            .map_err(|error| {
                ControllerError::api(
                    format!("mirror endpoints {namespace}/{name} into slice {slice_name}"),
                    error,
                )
            })?;
        }
        for slice in existing {
            let slice_name = slice.name_any();
            if wanted.contains(&slice_name) {
                continue;
            }
            match api.delete(&slice_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(error) if is_api_status(&error, 404) => {}
                Err(error) => {
                    return Err(ControllerError::api(
                        format!("delete mirrored slice {namespace}/{slice_name}"),
                        error,
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Watches Endpoints, Services and mirrored slices until the process stops.
pub async fn run_endpointslice_mirroring(client: Client) -> Result<(), ControllerError> {
    let mirrored =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MIRRORING_MANAGED_BY}"));
    let mut state = MirroringLoop {
        services: Informer::new(
            Api::all(client.clone()),
            watcher::Config::default(),
            "services (endpointslice mirroring)",
        ),
        endpoints: Informer::new(
            Api::all(client.clone()),
            watcher::Config::default(),
            "endpoints (endpointslice mirroring)",
        ),
        slices: Informer::new(
            Api::all(client.clone()),
            mirrored,
            "mirrored endpointslices",
        ),
        client,
        dirty: BTreeSet::new(),
    };
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = state.services.next_event() => {
                let Some(event) = event else { break };
                if let Some(service) = touched(&event) { state.dirty.insert(key_of(service)); }
            }
            event = state.endpoints.next_event() => {
                let Some(event) = event else { break };
                if let Some(endpoints) = touched(&event) { state.dirty.insert(key_of(endpoints)); }
            }
            event = state.slices.next_event() => {
                let Some(event) = event else { break };
                if let Some(slice) = touched(&event) {
                    if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                        state.dirty.insert((slice.namespace().unwrap_or_default(), service.clone()));
                    }
                }
            }
            _ = retry => { retry_at = None; }
        }
        if !(state.services.synced() && state.endpoints.synced() && state.slices.synced()) {
            continue;
        }
        let dirty = std::mem::take(&mut state.dirty);
        for key in dirty {
            if let Err(error) = state.sync(&key).await {
                tracing::warn!(%error, "endpointslice mirroring: retrying in 1 s");
                state.dirty.insert(key);
                retry_at = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
            }
        }
    }
    Err(ControllerError::ControllerStopped {
        controller: "endpointslice-mirroring",
        reason: "a watch ended".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn endpoints(labels: Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "prod", "uid": "ep-uid", "labels": labels},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.10", "hostname": "db-0"}, {"ip": "2001:db8::1"}],
                 "notReadyAddresses": [{"ip": "192.0.2.11", "nodeName": "node1"}],
                 "ports": [{"name": "pg", "port": 5432}]},
                {"addresses": [{"ip": "192.0.2.20"}], "ports": [{"port": 80, "protocol": "UDP"}]}
            ]
        }))
        .unwrap()
    }

    fn service(selector: Option<Value>) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {"selector": selector, "ports": [{"port": 5432}]}
        }))
        .unwrap()
    }

    #[test]
    fn selectorless_service_endpoints_become_one_slice_per_subset() {
        let slices = mirrored_slices(&endpoints(json!({"team": "data"})), Some(&service(None)));
        let text: Vec<String> = slices.iter().map(|s| s.to_string()).collect();
        expect![[r#"
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"db-mirror-0","namespace":"prod","labels":{"endpointslice.kubernetes.io/managed-by":"endpointslicemirroring-controller.k8s.io","kubernetes.io/service-name":"db","team":"data"},"ownerReferences":[{"apiVersion":"v1","kind":"Endpoints","name":"db","uid":"ep-uid","controller":true,"blockOwnerDeletion":true}]},"addressType":"IPv4","endpoints":[{"addresses":["192.0.2.10"],"conditions":{"ready":true,"serving":true,"terminating":false},"hostname":"db-0"},{"addresses":["192.0.2.11"],"conditions":{"ready":false,"serving":false,"terminating":false},"nodeName":"node1"}],"ports":[{"name":"pg","port":5432,"protocol":"TCP"}]}
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"db-mirror-1","namespace":"prod","labels":{"endpointslice.kubernetes.io/managed-by":"endpointslicemirroring-controller.k8s.io","kubernetes.io/service-name":"db","team":"data"},"ownerReferences":[{"apiVersion":"v1","kind":"Endpoints","name":"db","uid":"ep-uid","controller":true,"blockOwnerDeletion":true}]},"addressType":"IPv4","endpoints":[{"addresses":["192.0.2.20"],"conditions":{"ready":true,"serving":true,"terminating":false}}],"ports":[{"name":"","port":80,"protocol":"UDP"}]}"#]]
        .assert_eq(&text.join("\n"));
    }

    #[test]
    fn nothing_is_mirrored_with_a_selector_without_a_service_or_when_skipped() {
        let plain = endpoints(json!({}));
        assert!(mirrored_slices(&plain, Some(&service(Some(json!({"app": "db"}))))).is_empty());
        assert!(mirrored_slices(&plain, None).is_empty());
        let skipped = endpoints(json!({SKIP_MIRROR_LABEL: "true"}));
        assert!(mirrored_slices(&skipped, Some(&service(None))).is_empty());
        assert_eq!(
            mirrored_slices(&plain, Some(&service(Some(json!({}))))).len(),
            2
        );
    }
}
