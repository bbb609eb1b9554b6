//! What a Service's endpoints should be, as upstream's EndpointSlice and
//! Endpoints controllers decide it. Pure: a Service and the pods of its
//! namespace in, desired EndpointSlices and the legacy Endpoints object out,
//! plus the create/update/delete plan against the slices that exist.
//!
//! - Pods count when they match the selector, have an IP and are not
//!   finished (Succeeded/Failed). Terminating pods stay in slices with
//!   `terminating: true` (so proxies can fall back to them) and leave the
//!   legacy Endpoints, unless `publishNotReadyAddresses`.
//! - `ready` = pod Ready and not terminating; `serving` = pod Ready; with
//!   `publishNotReadyAddresses` both are true.
//! - Named target ports resolve per pod (container port name and protocol);
//!   pods that resolve ports differently land in different slices. A pod
//!   without the named port is left out of that port.
//! - At most [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice; a Service with
//!   no endpoints keeps one empty placeholder slice, as upstream.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{json, Map, Value};

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label present (empty) on the slices and Endpoints of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// One resolved port of a slice: name, number, protocol, appProtocol.
pub type SlicePort = Value;

/// A slice's content before it gets a name.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredSlice {
    /// `ports` (possibly empty).
    pub ports: Vec<SlicePort>,
    /// `endpoints`, sorted by pod name.
    pub endpoints: Vec<Value>,
}

/// What to write for one Service's slices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    /// New slices (full objects with `generateName`).
    pub create: Vec<Value>,
    /// Changed slices (full objects carrying the existing name and resourceVersion).
    pub update: Vec<Value>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn pod_ip(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first().map(|ip| ip.ip.clone()))
        .or_else(|| status.pod_ip.clone())
        .filter(|ip| !ip.is_empty() && !ip.contains(':'))
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the Service's selector (non-empty) matches the pod.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() || pod.metadata.namespace != service.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value))
}

/// Whether the endpoint controllers manage this Service at all: it has a
/// selector and is not ExternalName.
pub fn managed_service(service: &Service) -> bool {
    let Some(spec) = service.spec.as_ref() else {
        return false;
    };
    spec.type_.as_deref() != Some("ExternalName")
        && spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pod's number for a service port's target port, or None when a named
/// port is not declared by any of its containers.
fn resolve_target_port(
    pod: &Pod,
    target: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    port: i32,
    protocol: &str,
) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match target {
        None => Some(port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            if let Ok(number) = name.parse::<i32>() {
                return Some(number);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|container| {
                container.ports.as_ref()?.iter().find_map(|p| {
                    let p_protocol = p.protocol.as_deref().unwrap_or("TCP");
                    (p.name.as_deref() == Some(name.as_str()) && p_protocol == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The service's ports resolved for one pod.
fn ports_for_pod(service: &Service, pod: &Pod) -> Vec<SlicePort> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .cloned()
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|port| {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let number = resolve_target_port(pod, port.target_port.as_ref(), port.port, &protocol)?;
            let mut entry = json!({
                "name": port.name.clone().unwrap_or_default(),
                "port": number,
                "protocol": protocol,
            });
            if let Some(app) = &port.app_protocol {
                entry["appProtocol"] = json!(app);
            }
            Some(entry)
        })
        .collect()
}

/// The pods of `pods` that belong in the Service's endpoints, by name.
fn member_pods<'a>(service: &Service, pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let mut members: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|pod| selects(service, pod) && pod_ip(pod).is_some() && !is_finished(pod))
        .collect();
    members.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    members
}

fn endpoint_for(service: &Service, pod: &Pod) -> Value {
    let publish = publish_not_ready(service);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let serving = publish || pod_is_ready(pod);
    let ready = serving && (!terminating || publish);
    let mut endpoint = json!({
        "addresses": [pod_ip(pod).unwrap_or_default()],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    });
    if let Some(hostname) = pod_hostname(service, pod) {
        endpoint["hostname"] = json!(hostname);
    }
    if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
        endpoint["nodeName"] = json!(node);
    }
    endpoint["targetRef"] = json!({
        "kind": "Pod",
        "namespace": pod.metadata.namespace,
        "name": pod.metadata.name,
        "uid": pod.metadata.uid,
    });
    endpoint
}

/// A pod's DNS hostname in a headless Service it is the subdomain of.
fn pod_hostname(service: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_ref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()).then(|| hostname.clone())
}

/// The slices' contents: endpoints grouped by resolved port set, in chunks
/// of at most `max_per_slice`. No endpoints at all gives no slice (the
/// planner keeps a placeholder).
pub fn desired_slices(service: &Service, pods: &[&Pod], max_per_slice: usize) -> Vec<DesiredSlice> {
    let mut by_ports: BTreeMap<String, (Vec<SlicePort>, Vec<Value>)> = BTreeMap::new();
    for pod in member_pods(service, pods) {
        let ports = ports_for_pod(service, pod);
        let key = serde_json::to_string(&ports).expect("JSON values serialize");
        by_ports
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push(endpoint_for(service, pod));
    }
    let mut slices = Vec::new();
    for (_, (ports, endpoints)) in by_ports {
        for chunk in endpoints.chunks(max_per_slice.max(1)) {
            slices.push(DesiredSlice {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    slices
}

fn service_labels(service: &Service) -> Map<String, Value> {
    let mut labels: Map<String, Value> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn slice_labels(service: &Service) -> Value {
    let mut labels = service_labels(service);
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        json!(service.metadata.name.clone().unwrap_or_default()),
    );
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    Value::Object(labels)
}

fn owner_reference(service: &Service) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "name": service.metadata.name,
        "uid": service.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The full slice object for `content` (no name yet).
fn slice_object(service: &Service, content: &DesiredSlice) -> Value {
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": format!("{name}-"),
            "namespace": service.metadata.namespace,
            "labels": slice_labels(service),
            "ownerReferences": [owner_reference(service)],
        },
        "addressType": "IPv4",
        "endpoints": content.endpoints,
        "ports": content.ports,
    });
    if content.endpoints.is_empty() {
        slice["endpoints"] = Value::Null;
    }
    slice
}

/// The parts of a slice this controller owns, for comparison.
fn owned_view(slice: &Value) -> Value {
    let endpoints = match &slice["endpoints"] {
        Value::Array(list) if !list.is_empty() => Value::Array(list.clone()),
        _ => Value::Null,
    };
    let ports = match &slice["ports"] {
        Value::Array(list) => Value::Array(list.clone()),
        _ => json!([]),
    };
    json!({
        "labels": slice["metadata"]["labels"],
        "owners": slice["metadata"]["ownerReferences"],
        "addressType": slice["addressType"],
        "endpoints": endpoints,
        "ports": ports,
    })
}

/// Plan one Service's slices against the ones this controller manages now
/// (`existing`, as JSON). Slices with the same port set are reused in name
/// order, so a steady state writes nothing and a change rewrites only the
/// slices whose content moved.
pub fn plan_slices(
    service: &Service,
    pods: &[&Pod],
    existing: &[Value],
    max_per_slice: usize,
) -> SlicePlan {
    let mut desired = desired_slices(service, pods, max_per_slice);
    if desired.is_empty() {
        desired.push(DesiredSlice {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    let mut existing: Vec<&Value> = existing.iter().collect();
    existing.sort_by_key(|slice| slice["metadata"]["name"].as_str().unwrap_or("").to_string());
    let mut plan = SlicePlan::default();
    let mut unused: Vec<&Value> = Vec::new();
    // Pass 1: exact matches stay untouched.
    let mut remaining: Vec<Value> = Vec::new();
    let mut wanted: Vec<Value> = desired.iter().map(|d| slice_object(service, d)).collect();
    for slice in existing {
        match wanted
            .iter()
            .position(|want| owned_view(want) == owned_view(slice))
        {
            Some(index) => {
                wanted.remove(index);
            }
            None => unused.push(slice),
        }
    }
    remaining.append(&mut wanted);
    // Pass 2: reuse leftover slices (same ports first), then create.
    for want in remaining {
        let reuse = unused
            .iter()
            .position(|old| old["ports"] == want["ports"])
            .or_else(|| (!unused.is_empty()).then_some(0));
        match reuse {
            Some(index) => {
                let old = unused.remove(index);
                let mut updated = want;
                let meta = updated["metadata"]
                    .as_object_mut()
                    .expect("built as object");
                meta.remove("generateName");
                meta.insert("name".into(), old["metadata"]["name"].clone());
                meta.insert(
                    "resourceVersion".into(),
                    old["metadata"]["resourceVersion"].clone(),
                );
                plan.update.push(updated);
            }
            None => plan.create.push(want),
        }
    }
    plan.delete = unused
        .iter()
        .filter_map(|slice| slice["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    plan
}

/// The legacy Endpoints object's content: `metadata.labels` and `subsets`.
pub fn desired_endpoints(service: &Service, pods: &[&Pod]) -> Value {
    let publish = publish_not_ready(service);
    // Subsets group addresses with the same resolved ports.
    // ports -> (ports, ready addresses, not-ready addresses)
    type Subset = (Vec<Value>, Vec<Value>, Vec<Value>);
    let mut subsets: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in member_pods(service, pods) {
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if terminating && !publish {
            continue;
        }
        let ports: Vec<Value> = ports_for_pod(service, pod)
            .into_iter()
            .map(|mut port| {
                if port["name"] == json!("") {
                    port.as_object_mut().expect("object").remove("name");
                }
                port
            })
            .collect();
        let key = serde_json::to_string(&ports).expect("JSON values serialize");
        let mut address = json!({"ip": pod_ip(pod).unwrap_or_default()});
        if let Some(hostname) = pod_hostname(service, pod) {
            address["hostname"] = json!(hostname);
        }
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
            address["nodeName"] = json!(node);
        }
        address["targetRef"] = json!({
            "kind": "Pod",
            "namespace": pod.metadata.namespace,
            "name": pod.metadata.name,
            "uid": pod.metadata.uid,
        });
        let entry = subsets
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pod_is_ready(pod) {
            entry.1.push(address);
        } else {
            entry.2.push(address);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_values()
        .filter(|(ports, _, _)| !ports.is_empty())
        .map(|(ports, mut ready, mut not_ready)| {
            let by_ip = |a: &Value, b: &Value| a["ip"].as_str().cmp(&b["ip"].as_str());
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect();
    json!({"labels": Value::Object(service_labels(service)), "subsets": subsets})
}

/// Whether a stored Endpoints object already matches [`desired_endpoints`].
pub fn endpoints_match(current: &Value, desired: &Value) -> bool {
    let labels = |v: &Value| match v {
        Value::Object(map) if !map.is_empty() => v.clone(),
        _ => json!({}),
    };
    let subsets = |v: &Value| match v {
        Value::Array(list) if !list.is_empty() => v.clone(),
        _ => json!([]),
    };
    labels(&current["metadata"]["labels"]) == labels(&desired["labels"])
        && subsets(&current["subsets"]) == subsets(&desired["subsets"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool, extra: Value) -> Pod {
        let mut pod = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "nginx",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        merge(&mut pod, extra);
        serde_json::from_value(pod).unwrap()
    }

    fn merge(target: &mut Value, patch: Value) {
        if let (Value::Object(t), Value::Object(p)) = (&mut *target, &patch) {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v.clone());
            }
        } else {
            *target = patch;
        }
    }

    fn render(values: &[Value]) -> String {
        values
            .iter()
            .map(|v| serde_json::to_string(v).unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn conditions_named_ports_and_membership() {
        let svc = service(
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.50",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}),
        );
        let ready = pod("a", "10.244.0.5", true, json!({}));
        let not_ready = pod(
            "b",
            "10.244.1.5",
            false,
            json!({"spec": {"nodeName": "node2"}}),
        );
        let terminating = pod(
            "c",
            "10.244.0.6",
            true,
            json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}),
        );
        // Declares the port under another number: its own slice.
        let other_port = pod(
            "d",
            "10.244.0.7",
            true,
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": 9090}]}]}}),
        );
        let no_ip = pod("e", "", true, json!({}));
        let finished = pod(
            "f",
            "10.244.0.9",
            false,
            json!({"status": {"phase": "Succeeded"}}),
        );
        let other_app = pod(
            "g",
            "10.244.0.10",
            true,
            json!({"metadata": {"labels": {"app": "db"}}}),
        );
        let pods = [
            &ready,
            &not_ready,
            &terminating,
            &other_port,
            &no_ip,
            &finished,
            &other_app,
        ];
        let plan = plan_slices(&svc, &pods, &[], MAX_ENDPOINTS_PER_SLICE);
        expect![[r#"
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"generateName":"web-","namespace":"default","labels":{"app":"web","kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},"ownerReferences":[{"apiVersion":"v1","kind":"Service","name":"web","uid":"svc-uid","controller":true,"blockOwnerDeletion":true}]},"addressType":"IPv4","endpoints":[{"addresses":["10.244.0.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node1","targetRef":{"kind":"Pod","namespace":"default","name":"a","uid":"uid-a"}},{"addresses":["10.244.1.5"],"conditions":{"ready":false,"serving":false,"terminating":false},"nodeName":"node2","targetRef":{"kind":"Pod","namespace":"default","name":"b","uid":"uid-b"}},{"addresses":["10.244.0.6"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"node1","targetRef":{"kind":"Pod","namespace":"default","name":"c","uid":"uid-c"}}],"ports":[{"name":"http","port":8080,"protocol":"TCP"}]}
            {"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"generateName":"web-","namespace":"default","labels":{"app":"web","kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},"ownerReferences":[{"apiVersion":"v1","kind":"Service","name":"web","uid":"svc-uid","controller":true,"blockOwnerDeletion":true}]},"addressType":"IPv4","endpoints":[{"addresses":["10.244.0.7"],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node1","targetRef":{"kind":"Pod","namespace":"default","name":"d","uid":"uid-d"}}],"ports":[{"name":"http","port":9090,"protocol":"TCP"}]}"#]]
        .assert_eq(&render(&plan.create));
        expect![[r#"{"labels":{"app":"web"},"subsets":[{"ports":[{"name":"http","port":8080,"protocol":"TCP"}],"addresses":[{"ip":"10.244.0.5","nodeName":"node1","targetRef":{"kind":"Pod","namespace":"default","name":"a","uid":"uid-a"}}],"notReadyAddresses":[{"ip":"10.244.1.5","nodeName":"node2","targetRef":{"kind":"Pod","namespace":"default","name":"b","uid":"uid-b"}}]},{"ports":[{"name":"http","port":9090,"protocol":"TCP"}],"addresses":[{"ip":"10.244.0.7","nodeName":"node1","targetRef":{"kind":"Pod","namespace":"default","name":"d","uid":"uid-d"}}]}]}"#]]
            .assert_eq(&desired_endpoints(&svc, &pods).to_string());
    }

    #[test]
    fn publish_not_ready_and_headless_hostnames() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None",
            "publishNotReadyAddresses": true, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}));
        let starting = pod(
            "web-0",
            "10.244.0.5",
            false,
            json!({"spec": {"hostname": "web-0", "subdomain": "web"}}),
        );
        let plan = plan_slices(&svc, &[&starting], &[], MAX_ENDPOINTS_PER_SLICE);
        expect![[r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"generateName":"web-","namespace":"default","labels":{"app":"web","service.kubernetes.io/headless":"","kubernetes.io/service-name":"web","endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"},"ownerReferences":[{"apiVersion":"v1","kind":"Service","name":"web","uid":"svc-uid","controller":true,"blockOwnerDeletion":true}]},"addressType":"IPv4","endpoints":[{"addresses":["10.244.0.5"],"conditions":{"ready":true,"serving":true,"terminating":false},"hostname":"web-0","nodeName":"node1","targetRef":{"kind":"Pod","namespace":"default","name":"web-0","uid":"uid-web-0"}}],"ports":[{"name":"","port":80,"protocol":"TCP"}]}"#]]
            .assert_eq(&render(&plan.create));
    }

    fn named(mut slice: Value, name: &str, rv: &str) -> Value {
        let meta = slice["metadata"].as_object_mut().unwrap();
        meta.remove("generateName");
        meta.insert("name".into(), json!(name));
        meta.insert("resourceVersion".into(), json!(rv));
        slice
    }

    #[test]
    fn steady_state_writes_nothing_and_changes_reuse_slices() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}),
        );
        let pods: Vec<Pod> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.244.{}.{}", i / 200, i % 200 + 2),
                    true,
                    json!({}),
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let first = plan_slices(&svc, &refs, &[], MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(first.create.len(), 2);
        assert_eq!(first.create[0]["endpoints"].as_array().unwrap().len(), 100);
        assert_eq!(first.create[1]["endpoints"].as_array().unwrap().len(), 50);
        let existing = vec![
            named(first.create[0].clone(), "web-aaaaa", "5"),
            named(first.create[1].clone(), "web-bbbbb", "6"),
        ];
        assert_eq!(
            plan_slices(&svc, &refs, &existing, MAX_ENDPOINTS_PER_SLICE),
            SlicePlan::default()
        );
        // The last pod goes: only the second slice is rewritten.
        let fewer = plan_slices(&svc, &refs[..149], &existing, MAX_ENDPOINTS_PER_SLICE);
        assert!(fewer.create.is_empty() && fewer.delete.is_empty());
        assert_eq!(fewer.update.len(), 1);
        assert_eq!(fewer.update[0]["metadata"]["name"], "web-bbbbb");
        assert_eq!(fewer.update[0]["metadata"]["resourceVersion"], "6");
        // Every pod gone: one empty placeholder is kept, the other deleted.
        let none = plan_slices(&svc, &[], &existing, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(none.update.len(), 1);
        assert_eq!(none.update[0]["endpoints"], Value::Null);
        assert_eq!(none.update[0]["ports"], json!([]));
        assert_eq!(none.delete.len(), 1);
    }

    #[test]
    fn services_without_selector_are_not_managed() {
        assert!(!managed_service(&service(json!({"ports": [{"port": 80}]}))));
        assert!(!managed_service(&service(
            json!({"type": "ExternalName", "externalName": "x", "selector": {"a": "b"}})
        )));
        assert!(managed_service(&service(
            json!({"selector": {"app": "web"}})
        )));
    }
}
