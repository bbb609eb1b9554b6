//! Typed protobuf messages to JSON, for the kinds kubectl's create
//! subcommands send. Only fields those commands (and `kubectl run`) can set
//! are converted; the server's defaulting fills in the rest.

use super::{bad, put};
use crate::ApiError;
use base64::Engine;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub fn to_json(api_version: &str, kind: &str, raw: &[u8]) -> Result<Value, ApiError> {
    match (api_version, kind) {
        ("v1", "Namespace") => {
            let ns = core::Namespace::decode(raw).map_err(bad)?;
            let mut out = Map::new();
            put(&mut out, "metadata", object_meta(ns.metadata.as_ref()));
            if let Some(spec) = ns.spec {
                put(&mut out, "spec", json!({"finalizers": spec.finalizers}));
            }
            Ok(Value::Object(out))
        }
        ("v1", "ConfigMap") => {
            let cm = core::ConfigMap::decode(raw).map_err(bad)?;
            let mut out = Map::new();
            put(&mut out, "metadata", object_meta(cm.metadata.as_ref()));
            put(&mut out, "data", string_map(&cm.data));
            put(&mut out, "binaryData", bytes_map(&cm.binary_data));
            if let Some(immutable) = cm.immutable {
                out.insert("immutable".into(), json!(immutable));
            }
            Ok(Value::Object(out))
        }
        ("v1", "Secret") => {
            let secret = core::Secret::decode(raw).map_err(bad)?;
            let mut out = Map::new();
            put(&mut out, "metadata", object_meta(secret.metadata.as_ref()));
            put(&mut out, "data", bytes_map(&secret.data));
            put(&mut out, "stringData", string_map(&secret.string_data));
            put(&mut out, "type", json!(secret.r#type.unwrap_or_default()));
            if let Some(immutable) = secret.immutable {
                out.insert("immutable".into(), json!(immutable));
            }
            Ok(Value::Object(out))
        }
        ("v1", "Service") => {
            let service = core::Service::decode(raw).map_err(bad)?;
            let mut out = Map::new();
            put(&mut out, "metadata", object_meta(service.metadata.as_ref()));
            if let Some(spec) = service.spec {
                put(&mut out, "spec", service_spec(&spec));
            }
            Ok(Value::Object(out))
        }
        ("v1", "Pod") => {
            let pod = core::Pod::decode(raw).map_err(bad)?;
            let mut out = Map::new();
            put(&mut out, "metadata", object_meta(pod.metadata.as_ref()));
            if let Some(spec) = pod.spec {
                out.insert("spec".into(), pod_spec(&spec));
            }
            Ok(Value::Object(out))
        }
        ("apps/v1", "Deployment") => {
            let deployment = apps::Deployment::decode(raw).map_err(bad)?;
            let mut out = Map::new();
            put(
                &mut out,
                "metadata",
                object_meta(deployment.metadata.as_ref()),
            );
            if let Some(spec) = deployment.spec {
                let mut s = Map::new();
                opt(&mut s, "replicas", spec.replicas.map(|v| json!(v)));
                if let Some(selector) = &spec.selector {
                    s.insert("selector".into(), label_selector(selector));
                }
                if let Some(template) = &spec.template {
                    s.insert("template".into(), pod_template(template));
                }
                if let Some(strategy) = &spec.strategy {
                    let mut st = Map::new();
                    put(
                        &mut st,
                        "type",
                        json!(strategy.r#type.clone().unwrap_or_default()),
                    );
                    if let Some(rolling) = &strategy.rolling_update {
                        let mut r = Map::new();
                        opt(
                            &mut r,
                            "maxUnavailable",
                            rolling.max_unavailable.as_ref().map(int_or_string),
                        );
                        opt(
                            &mut r,
                            "maxSurge",
                            rolling.max_surge.as_ref().map(int_or_string),
                        );
                        put(&mut st, "rollingUpdate", Value::Object(r));
                    }
                    s.insert("strategy".into(), Value::Object(st));
                }
                opt(
                    &mut s,
                    "minReadySeconds",
                    spec.min_ready_seconds.map(|v| json!(v)),
                );
                opt(
                    &mut s,
                    "revisionHistoryLimit",
                    spec.revision_history_limit.map(|v| json!(v)),
                );
                opt(
                    &mut s,
                    "progressDeadlineSeconds",
                    spec.progress_deadline_seconds.map(|v| json!(v)),
                );
                opt(
                    &mut s,
                    "paused",
                    spec.paused.filter(|p| *p).map(|v| json!(v)),
                );
                out.insert("spec".into(), Value::Object(s));
            }
            Ok(Value::Object(out))
        }
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "application/vnd.kubernetes.protobuf for {api_version} {kind} (send JSON instead)"
        ))),
    }
}

fn opt(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.to_string(), value);
    }
}

fn string_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn bytes_map(map: &BTreeMap<String, Vec<u8>>) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), json!(engine.encode(v))))
            .collect(),
    )
}

fn time(t: &meta::Time) -> Value {
    jiff::Timestamp::from_second(t.seconds.unwrap_or_default())
        .map(|ts| json!(crate::objects::format_timestamp(ts)))
        .unwrap_or(Value::Null)
}

fn object_meta(metadata: Option<&meta::ObjectMeta>) -> Value {
    let Some(m) = metadata else {
        return json!({});
    };
    let mut out = Map::new();
    put(&mut out, "name", json!(m.name.clone().unwrap_or_default()));
    put(
        &mut out,
        "generateName",
        json!(m.generate_name.clone().unwrap_or_default()),
    );
    put(
        &mut out,
        "namespace",
        json!(m.namespace.clone().unwrap_or_default()),
    );
    put(&mut out, "uid", json!(m.uid.clone().unwrap_or_default()));
    put(
        &mut out,
        "resourceVersion",
        json!(m.resource_version.clone().unwrap_or_default()),
    );
    opt(
        &mut out,
        "creationTimestamp",
        m.creation_timestamp.as_ref().map(time).filter(|_| false),
    );
    put(&mut out, "labels", string_map(&m.labels));
    put(&mut out, "annotations", string_map(&m.annotations));
    put(&mut out, "finalizers", json!(m.finalizers));
    let owners: Vec<Value> = m
        .owner_references
        .iter()
        .map(|o| {
            let mut r = Map::new();
            put(
                &mut r,
                "apiVersion",
                json!(o.api_version.clone().unwrap_or_default()),
            );
            put(&mut r, "kind", json!(o.kind.clone().unwrap_or_default()));
            put(&mut r, "name", json!(o.name.clone().unwrap_or_default()));
            put(&mut r, "uid", json!(o.uid.clone().unwrap_or_default()));
            opt(&mut r, "controller", o.controller.map(|v| json!(v)));
            opt(
                &mut r,
                "blockOwnerDeletion",
                o.block_owner_deletion.map(|v| json!(v)),
            );
            Value::Object(r)
        })
        .collect();
    put(&mut out, "ownerReferences", json!(owners));
    Value::Object(out)
}

fn label_selector(selector: &meta::LabelSelector) -> Value {
    let mut out = Map::new();
    put(&mut out, "matchLabels", string_map(&selector.match_labels));
    let expressions: Vec<Value> = selector
        .match_expressions
        .iter()
        .map(|e| {
            let mut r = Map::new();
            put(&mut r, "key", json!(e.key.clone().unwrap_or_default()));
            put(
                &mut r,
                "operator",
                json!(e.operator.clone().unwrap_or_default()),
            );
            put(&mut r, "values", json!(e.values));
            Value::Object(r)
        })
        .collect();
    put(&mut out, "matchExpressions", json!(expressions));
    Value::Object(out)
}

fn int_or_string(value: &IntOrString) -> Value {
    match value.r#type {
        Some(1) => json!(value.str_val.clone().unwrap_or_default()),
        _ => json!(value.int_val.unwrap_or_default()),
    }
}

fn quantity_map(
    map: &BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>,
) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, q)| (k.clone(), json!(q.string.clone().unwrap_or_default())))
            .collect(),
    )
}

fn service_spec(spec: &core::ServiceSpec) -> Value {
    let mut out = Map::new();
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .map(|p| {
            let mut r = Map::new();
            put(&mut r, "name", json!(p.name.clone().unwrap_or_default()));
            put(
                &mut r,
                "protocol",
                json!(p.protocol.clone().unwrap_or_default()),
            );
            opt(&mut r, "port", p.port.map(|v| json!(v)));
            opt(
                &mut r,
                "targetPort",
                p.target_port.as_ref().map(int_or_string),
            );
            opt(
                &mut r,
                "nodePort",
                p.node_port.filter(|v| *v != 0).map(|v| json!(v)),
            );
            Value::Object(r)
        })
        .collect();
    put(&mut out, "ports", json!(ports));
    put(&mut out, "selector", string_map(&spec.selector));
    put(
        &mut out,
        "clusterIP",
        json!(spec.cluster_ip.clone().unwrap_or_default()),
    );
    put(&mut out, "clusterIPs", json!(spec.cluster_ips));
    put(
        &mut out,
        "type",
        json!(spec.r#type.clone().unwrap_or_default()),
    );
    put(
        &mut out,
        "externalName",
        json!(spec.external_name.clone().unwrap_or_default()),
    );
    put(&mut out, "externalIPs", json!(spec.external_ips));
    put(
        &mut out,
        "sessionAffinity",
        json!(spec.session_affinity.clone().unwrap_or_default()),
    );
    Value::Object(out)
}

fn pod_template(template: &core::PodTemplateSpec) -> Value {
    let mut out = Map::new();
    out.insert("metadata".into(), object_meta(template.metadata.as_ref()));
    if let Some(spec) = &template.spec {
        out.insert("spec".into(), pod_spec(spec));
    }
    Value::Object(out)
}

fn container(c: &core::Container) -> Value {
    let mut out = Map::new();
    put(&mut out, "name", json!(c.name.clone().unwrap_or_default()));
    put(
        &mut out,
        "image",
        json!(c.image.clone().unwrap_or_default()),
    );
    put(&mut out, "command", json!(c.command));
    put(&mut out, "args", json!(c.args));
    put(
        &mut out,
        "workingDir",
        json!(c.working_dir.clone().unwrap_or_default()),
    );
    let ports: Vec<Value> = c
        .ports
        .iter()
        .map(|p| {
            let mut r = Map::new();
            put(&mut r, "name", json!(p.name.clone().unwrap_or_default()));
            opt(&mut r, "containerPort", p.container_port.map(|v| json!(v)));
            opt(
                &mut r,
                "hostPort",
                p.host_port.filter(|v| *v != 0).map(|v| json!(v)),
            );
            put(
                &mut r,
                "protocol",
                json!(p.protocol.clone().unwrap_or_default()),
            );
            Value::Object(r)
        })
        .collect();
    put(&mut out, "ports", json!(ports));
    let env: Vec<Value> = c
        .env
        .iter()
        .map(|e| {
            let mut r = Map::new();
            put(&mut r, "name", json!(e.name.clone().unwrap_or_default()));
            put(&mut r, "value", json!(e.value.clone().unwrap_or_default()));
            Value::Object(r)
        })
        .collect();
    put(&mut out, "env", json!(env));
    if let Some(resources) = &c.resources {
        let mut r = Map::new();
        put(&mut r, "limits", quantity_map(&resources.limits));
        put(&mut r, "requests", quantity_map(&resources.requests));
        out.insert("resources".into(), Value::Object(r));
    }
    put(
        &mut out,
        "imagePullPolicy",
        json!(c.image_pull_policy.clone().unwrap_or_default()),
    );
    put(
        &mut out,
        "terminationMessagePath",
        json!(c.termination_message_path.clone().unwrap_or_default()),
    );
    put(
        &mut out,
        "terminationMessagePolicy",
        json!(c.termination_message_policy.clone().unwrap_or_default()),
    );
    opt(&mut out, "stdin", c.stdin.filter(|v| *v).map(|v| json!(v)));
    opt(
        &mut out,
        "stdinOnce",
        c.stdin_once.filter(|v| *v).map(|v| json!(v)),
    );
    opt(&mut out, "tty", c.tty.filter(|v| *v).map(|v| json!(v)));
    Value::Object(out)
}

fn pod_spec(spec: &core::PodSpec) -> Value {
    let mut out = Map::new();
    out.insert(
        "containers".into(),
        json!(spec.containers.iter().map(container).collect::<Vec<_>>()),
    );
    put(
        &mut out,
        "initContainers",
        json!(spec
            .init_containers
            .iter()
            .map(container)
            .collect::<Vec<_>>()),
    );
    put(
        &mut out,
        "restartPolicy",
        json!(spec.restart_policy.clone().unwrap_or_default()),
    );
    opt(
        &mut out,
        "terminationGracePeriodSeconds",
        spec.termination_grace_period_seconds.map(|v| json!(v)),
    );
    put(
        &mut out,
        "dnsPolicy",
        json!(spec.dns_policy.clone().unwrap_or_default()),
    );
    put(&mut out, "nodeSelector", string_map(&spec.node_selector));
    put(
        &mut out,
        "serviceAccountName",
        json!(spec.service_account_name.clone().unwrap_or_default()),
    );
    put(
        &mut out,
        "nodeName",
        json!(spec.node_name.clone().unwrap_or_default()),
    );
    opt(
        &mut out,
        "hostNetwork",
        spec.host_network.filter(|v| *v).map(|v| json!(v)),
    );
    put(
        &mut out,
        "schedulerName",
        json!(spec.scheduler_name.clone().unwrap_or_default()),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn deployment_from_protobuf() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let deployment = apps::Deployment {
            metadata: Some(meta::ObjectMeta {
                name: Some("web".into()),
                labels: labels.clone(),
                ..Default::default()
            }),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector {
                    match_labels: labels.clone(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(meta::ObjectMeta {
                        labels,
                        ..Default::default()
                    }),
                    spec: Some(core::PodSpec {
                        containers: vec![core::Container {
                            name: Some("nginx".into()),
                            image: Some("nginx".into()),
                            ports: vec![core::ContainerPort {
                                container_port: Some(80),
                                ..Default::default()
                            }],
                            resources: Some(Default::default()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }),
                strategy: Some(Default::default()),
                ..Default::default()
            }),
            status: Some(Default::default()),
        };
        let body = envelope("apps/v1", "Deployment", deployment.encode_to_vec());
        let json = super::super::decode(&body).unwrap();
        expect_test::expect![[r#"{"metadata":{"name":"web","labels":{"app":"web"}},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}],"resources":{}}]}},"strategy":{}},"apiVersion":"apps/v1","kind":"Deployment"}"#]]
        .assert_eq(&json.to_string());
    }

    #[test]
    fn secret_data_is_base64() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            }),
            data: [("k".to_string(), b"v".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let json = super::super::decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(json["data"]["k"], "dg==");
        assert_eq!(json["type"], "Opaque");
        assert!(super::super::decode(b"{}").is_err());
    }
}
