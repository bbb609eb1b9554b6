//! The cluster DNS add-on `podnet up` installs once the nodes are Ready:
//! the `coredns` Deployment (2 replicas of `podnet dns`, labelled
//! `k8s-app=kube-dns`) and the `kube-dns` Service at 10.96.0.10 in
//! kube-system, as kubeadm names them.

use anyhow::{Context, Result};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::path::Path;

/// The DNS service's ClusterIP (kubelet's --cluster-dns).
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
/// Port of the /ready, /health and /metrics endpoint in DNS pods.
pub const HEALTH_PORT: u16 = 8181;

/// The add-on's objects. `upstreams` become `--upstream` arguments; empty
/// means the node's resolv.conf (the pods use dnsPolicy Default).
pub fn manifests(image: &str, upstreams: &[String]) -> Vec<Value> {
    let mut args = vec![
        "dns".to_string(),
        "--listen".to_string(),
        "0.0.0.0:53".to_string(),
        "--health-listen".to_string(),
        format!("0.0.0.0:{HEALTH_PORT}"),
    ];
    for upstream in upstreams {
        args.push("--upstream".to_string());
        args.push(upstream.clone());
    }
    let labels = json!({"k8s-app": "kube-dns"});
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "podnet-dns"},
            },
            "spec": {
                "selector": labels,
                "clusterIP": DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": HEALTH_PORT},
                ],
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "coredns",
                "namespace": "kube-system",
                "labels": labels,
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                // A new pod is Ready before an old one goes: no gap in service.
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "dnsPolicy": "Default",
                        "terminationGracePeriodSeconds": 30,
                        "containers": [{
                            "name": "coredns",
                            "image": image,
                            "args": args,
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": HEALTH_PORT},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": HEALTH_PORT},
                                "periodSeconds": 10,
                                "failureThreshold": 5,
                            },
                        }],
                    },
                },
            },
        }),
    ]
}

fn resource_of(object: &Value) -> ApiResource {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    };
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        plural: format!("{}s", kind.to_ascii_lowercase()),
    }
}

/// Apply the add-on (server-side apply, so running `up` logic again converges).
pub fn install(kubeconfig: &Path, image: &str, upstreams: &[String]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = crate::readiness::client_from(kubeconfig).await?;
        for object in manifests(image, upstreams) {
            let resource = resource_of(&object);
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), "kube-system", &resource);
            api.patch(
                &name,
                &PatchParams::apply("podnet-up").force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("applying {} kube-system/{name}", resource.kind))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_runs_podnet_dns_with_the_upstreams() {
        let objects = manifests("docker.io/podnet/podnet:abc", &["172.18.0.1:53".into()]);
        assert_eq!(objects[0]["spec"]["clusterIP"], "10.96.0.10");
        let container = &objects[1]["spec"]["template"]["spec"]["containers"][0];
        expect_test::expect![[r#"["dns","--listen","0.0.0.0:53","--health-listen","0.0.0.0:8181","--upstream","172.18.0.1:53"]"#]]
            .assert_eq(&container["args"].to_string());
        assert_eq!(objects[1]["spec"]["replicas"], 2);
        assert_eq!(
            objects[1]["spec"]["template"]["metadata"]["labels"]["k8s-app"],
            "kube-dns"
        );
    }
}
