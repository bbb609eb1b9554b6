//! The `default/kubernetes` Service and its Endpoints and EndpointSlice, as
//! upstream's API server keeps them: the Service at the first address of the
//! service network on port 443 (`https`), the endpoints at the address pods
//! reach this server at.

use crate::objects::{meta_str, object_key};
use crate::request::ResourceTarget;
use crate::rest::{FieldValidation, Rest, WriteOptions};
use crate::service_alloc::KUBERNETES_SERVICE_IP;
use crate::ApiError;
use podnet_model::registry;
use serde_json::{json, Value};
use std::net::SocketAddr;

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";

fn target(group: &str, version: &str, plural: &str) -> ResourceTarget {
    ResourceTarget {
        info: registry::find(group, version, plural).expect("registry serves the resource"),
        namespace: Some(NAMESPACE.into()),
        name: Some(NAME.into()),
        subresource: None,
        legacy_watch: false,
    }
}

fn options() -> WriteOptions {
    WriteOptions {
        field_manager: "kube-apiserver".into(),
        field_manager_given: true,
        dry_run: false,
        field_validation: FieldValidation::Ignore,
    }
}

/// The three objects for an API server reachable at `advertised`.
pub fn desired_objects(advertised: SocketAddr) -> [(ResourceTarget, Value); 3] {
    let ip = advertised.ip().to_string();
    let port = advertised.port();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBERNETES_SERVICE_IP.to_string(),
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": ip}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    [
        (target("", "v1", "services"), service),
        (target("", "v1", "endpoints"), endpoints),
        (target("discovery.k8s.io", "v1", "endpointslices"), slice),
    ]
}

/// The fields of `desired` that the server owns, copied onto `current`.
fn merged(current: &Value, desired: &Value) -> Value {
    let mut merged = current.clone();
    for (key, value) in desired.as_object().into_iter().flatten() {
        match key.as_str() {
            "metadata" => {
                for (label, text) in value["labels"].as_object().into_iter().flatten() {
                    merged["metadata"]["labels"][label] = text.clone();
                }
            }
            "spec" => {
                // Only the ports: the address is allocated and immutable.
                merged["spec"]["ports"] = value["ports"].clone();
            }
            _ => merged[key] = value.clone(),
        }
    }
    merged
}

impl Rest {
    /// Create or correct the `kubernetes` Service, Endpoints and EndpointSlice.
    pub fn ensure_kubernetes_service(&self, advertised: SocketAddr) -> Result<(), ApiError> {
        for (target, desired) in desired_objects(advertised) {
            let key = object_key(target.info, Some(NAMESPACE), NAME);
            let existing = match self.store.get(&key)? {
                Some(record) => Some(crate::rest::decode_record(target.info, &record)?),
                None => None,
            };
            match existing {
                None => match self.create(&target, desired, &options()) {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                    Err(error) => return Err(error),
                },
                Some(current) => {
                    let wanted = merged(&current, &desired);
                    if wanted != current {
                        tracing::info!(
                            resource = target.info.plural,
                            rv = meta_str(&current, "resourceVersion").unwrap_or(""),
                            "updating the kubernetes service object"
                        );
                        self.update(&target, NAME, wanted, &options())?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_service_only_gets_its_ports_and_labels_corrected() {
        let [(_, service), _, _] = desired_objects("172.18.0.1:6443".parse().unwrap());
        let current = json!({"metadata": {"name": "kubernetes", "labels": {"extra": "x"}},
            "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 41000}]}});
        let wanted = merged(&current, &service);
        expect_test::expect![[r#"{"metadata":{"name":"kubernetes","labels":{"extra":"x","component":"apiserver","provider":"kubernetes"}},"spec":{"clusterIP":"10.96.0.1","type":"ClusterIP","ports":[{"name":"https","port":443,"protocol":"TCP","targetPort":6443}]},"apiVersion":"v1","kind":"Service"}"#]]
            .assert_eq(&wanted.to_string());
    }
}
