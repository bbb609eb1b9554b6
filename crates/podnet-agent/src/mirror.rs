//! The node agent's own pod in kube-system (a mirror pod, as the kubelet
//! makes for static pods), so that `kubectl get pods -n kube-system` lists the
//! network agent of every node and `kubectl logs -n kube-system <pod>` shows
//! its log: the flow the docs use to check a cluster's CNI pods.

use crate::AgentError;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const MIRROR_NAMESPACE: &str = "kube-system";
pub const MIRROR_CONTAINER: &str = "agent";

/// `podnet-<node>`.
pub fn mirror_pod_name(node: &str) -> String {
    format!("podnet-{node}")
}

pub fn is_mirror_pod(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

fn desired(node: &str, node_ip: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": mirror_pod_name(node),
            "namespace": MIRROR_NAMESPACE,
            "labels": {"app": "podnet", "k8s-app": "podnet-agent", "tier": "node"},
            "annotations": {MIRROR_ANNOTATION: node, "kubernetes.io/config.source": "podnet-agent"},
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": MIRROR_CONTAINER, "image": "podnet/agent:local", "command": ["podnet", "agent"]}],
        },
        "status": {"hostIP": node_ip, "podIP": node_ip},
    })
}

/// Create (or refresh) the mirror pod and report it Running and Ready.
pub async fn ensure_mirror_pod(
    pods: &Api<Pod>,
    node: &str,
    node_ip: &str,
    started: jiff::Timestamp,
) -> Result<(), AgentError> {
    let name = mirror_pod_name(node);
    if pods
        .get_opt(&name)
        .await
        .map_err(AgentError::api("get agent pod"))?
        .is_none()
    {
        let pod: Pod = serde_json::from_value(desired(node, node_ip)).expect("static pod shape");
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(AgentError::api("create agent pod")(error)),
        }
    }
    let start = started.to_string();
    let condition = |kind: &str| serde_json::json!({"type": kind, "status": "True", "lastTransitionTime": start});
    let status = serde_json::json!({"status": {
        "phase": "Running",
        "hostIP": node_ip,
        "podIP": node_ip,
        "podIPs": [{"ip": node_ip}],
        "startTime": start,
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
        "containerStatuses": [{
            "name": MIRROR_CONTAINER,
            "image": "podnet/agent:local",
            "imageID": "",
            "containerID": format!("podnet://agent-{node}"),
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": {"running": {"startedAt": start}},
        }],
    }});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(AgentError::api("report agent pod status"))?;
    Ok(())
}
