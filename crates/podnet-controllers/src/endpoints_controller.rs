//! The loop behind [`crate::endpoints`]: watches Services, Pods, this
//! controller's EndpointSlices and Endpoints, and rewrites the slices and the
//! legacy Endpoints of every Service an event touches (upstream's
//! EndpointSlice and Endpoints controllers in one loop, sharing the caches).
//!
//! Watch-driven: a pod readiness change reaches its slices in one round trip.
//! Writes not yet seen back through the watch are remembered as
//! expectations; a Service with unmet expectations waits for its own events
//! rather than acting on a stale cache (which could duplicate slices).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::{json, Value};

use crate::endpoints::{
    desired_endpoints, endpoints_match, managed_service, plan_slices, selects, MANAGED_BY,
    MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL,
};
use crate::watch::Informer;
use crate::{is_api_status, ControllerError, ControllersConfig};

type Key = (String, String);

/// How long writes may stay unseen before the cache is trusted again.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Expect {
    SlicePresent(String, i64),
    SliceGone(String),
    EndpointsAt(i64),
}

fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn key_of<K: kube::Resource>(object: &K) -> Key {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

struct EndpointsLoop {
    client: Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    slices: Informer<EndpointSlice>,
    endpoints: Informer<Endpoints>,
    dirty: BTreeSet<Key>,
    /// Services seen deleted: their Endpoints go too.
    deleted_services: BTreeSet<Key>,
    /// Writes not yet seen back, and when the first of them was made.
    expectations: HashMap<Key, (Instant, Vec<Expect>)>,
    /// Pods each Service's endpoints held after its last sync.
    service_pods: HashMap<Key, BTreeSet<String>>,
    /// Services to retry after a failed write.
    retry: BTreeSet<Key>,
    all_dirty_once: bool,
}

impl EndpointsLoop {
    fn synced(&self) -> bool {
        self.services.synced()
            && self.pods.synced()
            && self.slices.synced()
            && self.endpoints.synced()
    }

    fn on_service(&mut self, event: Event<Service>) {
        match event {
            Event::Apply(service) | Event::InitApply(service) => {
                self.dirty.insert(key_of(&service));
            }
            Event::Delete(service) => {
                let key = key_of(&service);
                self.deleted_services.insert(key.clone());
                self.dirty.insert(key);
            }
            Event::Init | Event::InitDone => {}
        }
    }

    fn on_pod(&mut self, event: Event<Pod>) {
        let pod = match event {
            Event::Apply(pod) | Event::InitApply(pod) | Event::Delete(pod) => pod,
            Event::Init | Event::InitDone => return,
        };
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        for service in self.services.store().state() {
            if service.metadata.namespace.as_deref() == Some(namespace.as_str())
                && selects(&service, &pod)
            {
                self.dirty.insert(key_of(service.as_ref()));
            }
        }
        for (key, pods) in &self.service_pods {
            if key.0 == namespace && pods.contains(&name) {
                self.dirty.insert(key.clone());
            }
        }
    }

    fn on_slice(&mut self, event: Event<EndpointSlice>) {
        if let Event::Apply(slice) | Event::Delete(slice) = event {
            if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                self.dirty
                    .insert((slice.namespace().unwrap_or_default(), service.clone()));
            }
        }
    }

    fn on_endpoints(&mut self, event: Event<Endpoints>) {
        if let Event::Apply(endpoints) | Event::Delete(endpoints) = event {
            let key = key_of(&endpoints);
            if self.expectations.contains_key(&key) {
                self.dirty.insert(key);
            }
        }
    }

    /// Whether the caches reflect every write made for `key`.
    fn expectations_met(&mut self, key: &Key, slices: &[Arc<EndpointSlice>]) -> bool {
        let Some((since, expected)) = self.expectations.get(key) else {
            return true;
        };
        // A write someone else undid at once would never be seen: give up
        // waiting after a while and act on the cache as it is.
        if since.elapsed() > EXPECTATION_TIMEOUT {
            self.expectations.remove(key);
            return true;
        }
        let endpoints = self.endpoints.store().state();
        let met = expected.iter().all(|expect| match expect {
            Expect::SlicePresent(name, version) => slices
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(name) && rv(&s.metadata) >= *version),
            Expect::SliceGone(name) => !slices
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(name)),
            Expect::EndpointsAt(version) => endpoints
                .iter()
                .any(|e| &key_of(e.as_ref()) == key && rv(&e.metadata) >= *version),
        });
        if met {
            self.expectations.remove(key);
        }
        met
    }

    async fn sync_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.is_empty() {
            return;
        }
        let all_pods = self.pods.store().state();
        let mut pods_by_namespace: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for pod in &all_pods {
            pods_by_namespace
                .entry(pod.metadata.namespace.as_deref().unwrap_or(""))
                .or_default()
                .push(pod.as_ref());
        }
        let mut slices_by_service: HashMap<Key, Vec<Arc<EndpointSlice>>> = HashMap::new();
        for slice in self.slices.store().state() {
            if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL) {
                slices_by_service
                    .entry((slice.namespace().unwrap_or_default(), service.clone()))
                    .or_default()
                    .push(slice);
            }
        }
        let services: HashMap<Key, Arc<Service>> = self
            .services
            .store()
            .state()
            .into_iter()
            .map(|s| (key_of(s.as_ref()), s))
            .collect();
        for key in dirty {
            let slices = slices_by_service.remove(&key).unwrap_or_default();
            if !self.expectations_met(&key, &slices) {
                self.retry.insert(key);
                continue;
            }
            let pods = pods_by_namespace
                .get(key.0.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let result = self
                .sync_service(&key, services.get(&key).map(Arc::as_ref), pods, &slices)
                .await;
            if let Err(error) = result {
                tracing::warn!(service = %format!("{}/{}", key.0, key.1), %error, "endpoints sync failed; retrying");
                self.retry.insert(key);
            }
        }
    }

    async fn sync_service(
        &mut self,
        key: &Key,
        service: Option<&Service>,
        pods: &[&Pod],
        slices: &[Arc<EndpointSlice>],
    ) -> Result<(), ControllerError> {
        let (namespace, name) = key;
        let slice_api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let endpoints_api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let Some(service) = service.filter(|s| managed_service(s)) else {
            // Gone or selector-less: no managed slices; Endpoints go only
            // with the Service (selector-less Services keep manual ones).
            for slice in slices {
                let slice_name = slice.name_any();
                match slice_api
                    .delete(&slice_name, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(error) if is_api_status(&error, 404) => {}
                    Err(error) => {
                        return Err(ControllerError::api(
                            format!("delete endpointslice {namespace}/{slice_name}"),
                            error,
                        ))
                    }
                }
                self.expect(key, Expect::SliceGone(slice_name));
            }
            self.service_pods.remove(key);
            if self.deleted_services.remove(key) && service.is_none() {
                match endpoints_api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(error) if is_api_status(&error, 404) => {}
                    Err(error) => {
                        return Err(ControllerError::api(
                            format!("delete endpoints {namespace}/{name}"),
                            error,
                        ))
                    }
                }
            }
            return Ok(());
        };
        self.deleted_services.remove(key);
        let existing: Vec<Value> = slices
            .iter()
            .map(|s| serde_json::to_value(s.as_ref()).expect("slices serialize"))
            .collect();
        let plan = plan_slices(service, pods, &existing, MAX_ENDPOINTS_PER_SLICE);
        let members: BTreeSet<String> = pods
            .iter()
            .filter(|pod| selects(service, pod))
            .map(|pod| pod.name_any())
            .collect();
        self.service_pods.insert(key.clone(), members);
        for slice in plan.create {
            let slice: EndpointSlice =
                serde_json::from_value(slice).expect("planned slices are valid");
            let created = slice_api
                .create(&PostParams::default(), &slice)
                .await
                .map_err(|e| {
                    ControllerError::api(
                        format!("create endpointslice for service {namespace}/{name}"),
                        e,
                    )
                })?;
            self.expect(
                key,
                Expect::SlicePresent(created.name_any(), rv(&created.metadata)),
            );
        }
        for slice in plan.update {
            let slice: EndpointSlice =
                serde_json::from_value(slice).expect("planned slices are valid");
            let slice_name = slice.name_any();
            let updated = slice_api
                .replace(&slice_name, &PostParams::default(), &slice)
                .await
                .map_err(|e| {
                    ControllerError::api(
                        format!("update endpointslice {namespace}/{slice_name}"),
                        e,
                    )
                })?;
            self.expect(key, Expect::SlicePresent(slice_name, rv(&updated.metadata)));
        }
        for slice_name in plan.delete {
            match slice_api
                .delete(&slice_name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(error) if is_api_status(&error, 404) => {}
                Err(error) => {
                    return Err(ControllerError::api(
                        format!("delete endpointslice {namespace}/{slice_name}"),
                        error,
                    ))
                }
            }
            self.expect(key, Expect::SliceGone(slice_name));
        }

        // Legacy Endpoints.
        let desired = desired_endpoints(service, pods);
        let current = self.endpoints.get(&key.0, &key.1);
        let current_json = current
            .as_ref()
            .map(|e| serde_json::to_value(e.as_ref()).expect("endpoints serialize"));
        if current_json
            .as_ref()
            .is_some_and(|c| endpoints_match(c, &desired))
        {
            return Ok(());
        }
        let mut object = current_json.unwrap_or_else(|| {
            json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace}})
        });
        object["metadata"]["labels"] = desired["labels"].clone();
        object["subsets"] = desired["subsets"].clone();
        let endpoints: Endpoints =
            serde_json::from_value(object).expect("planned endpoints are valid");
        let written = if current.is_some() {
            endpoints_api
                .replace(name, &PostParams::default(), &endpoints)
                .await
        } else {
            endpoints_api
                .create(&PostParams::default(), &endpoints)
                .await
        }
        .map_err(|e| ControllerError::api(format!("write endpoints {namespace}/{name}"), e))?;
        self.expect(key, Expect::EndpointsAt(rv(&written.metadata)));
        Ok(())
    }

    fn expect(&mut self, key: &Key, expect: Expect) {
        self.expectations
            .entry(key.clone())
            .or_insert_with(|| (Instant::now(), Vec::new()))
            .1
            .push(expect);
    }
}

/// Runs the EndpointSlice and Endpoints controllers until the process stops.
pub async fn run_endpoint_controllers(
    client: Client,
    _config: ControllersConfig,
) -> Result<(), ControllerError> {
    let mut state = EndpointsLoop {
        services: Informer::new(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            "services (endpoints)",
        ),
        pods: Informer::new(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            "pods (endpoints)",
        ),
        slices: Informer::new(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
            "endpointslices (endpoints)",
        ),
        endpoints: Informer::new(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            "endpoints (endpoints)",
        ),
        client,
        dirty: BTreeSet::new(),
        deleted_services: BTreeSet::new(),
        expectations: HashMap::new(),
        service_pods: HashMap::new(),
        retry: BTreeSet::new(),
        all_dirty_once: false,
    };
    let mut retry_timer = tokio::time::interval(Duration::from_millis(500));
    retry_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = state.services.next_event() => match event {
                Some(event) => state.on_service(event),
                None => break,
            },
            event = state.pods.next_event() => match event {
                Some(event) => state.on_pod(event),
                None => break,
            },
            event = state.slices.next_event() => match event {
                Some(event) => state.on_slice(event),
                None => break,
            },
            event = state.endpoints.next_event() => match event {
                Some(event) => state.on_endpoints(event),
                None => break,
            },
            _ = retry_timer.tick() => {
                let retry = std::mem::take(&mut state.retry);
                state.dirty.extend(retry);
            }
        }
        // Take whatever else has already arrived before writing, so a burst
        // of pod changes costs one pass.
        loop {
            let mut more = false;
            if let Some(Some(event)) = state.services.next_event().now_or_never() {
                state.on_service(event);
                more = true;
            }
            if let Some(Some(event)) = state.pods.next_event().now_or_never() {
                state.on_pod(event);
                more = true;
            }
            if let Some(Some(event)) = state.slices.next_event().now_or_never() {
                state.on_slice(event);
                more = true;
            }
            if let Some(Some(event)) = state.endpoints.next_event().now_or_never() {
                state.on_endpoints(event);
                more = true;
            }
            if !more {
                break;
            }
        }
        if !state.synced() {
            continue;
        }
        if !state.all_dirty_once {
            state.all_dirty_once = true;
            let all: Vec<Key> = state
                .services
                .store()
                .state()
                .iter()
                .map(|s| key_of(s.as_ref()))
                .collect();
            state.dirty.extend(all);
            // Slices left behind by Services deleted while we were away.
            let orphans: Vec<Key> = state
                .slices
                .store()
                .state()
                .iter()
                .filter_map(|s| {
                    s.labels()
                        .get(SERVICE_NAME_LABEL)
                        .map(|svc| (s.namespace().unwrap_or_default(), svc.clone()))
                })
                .collect();
            state.dirty.extend(orphans);
        }
        state.sync_dirty().await;
    }
    Err(ControllerError::ControllerStopped {
        controller: "endpoints",
        reason: "a watch stream ended".to_string(),
    })
}
