//! Node lifecycle: notices nodes whose agent stopped reporting. A node whose
//! newest heartbeat (its Lease in `kube-node-lease` renewed, or its Ready
//! condition's `lastHeartbeatTime`) is older than the grace period gets its
//! conditions set to Unknown ("Kubelet stopped posting node status.") and the
//! `node.kubernetes.io/unreachable` taints; a node reporting Ready=False gets
//! the `not-ready` taints; a healthy node loses both. These are the taints the
//! scheduler and tolerations (`tolerationSeconds`) are written against.
//!
//! [`plan_node_health`] decides for one node from its object, its lease and
//! the clock; the loop evaluates every node each monitor period.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use crate::events::{EventSource, EventType, Recorder};
use crate::scheduler::plan::{TAINT_NOT_READY, TAINT_UNREACHABLE};
use crate::watch::Informer;
use crate::{is_api_status, ControllerError, ControllersConfig};

/// Namespace of the node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Conditions besides Ready that go Unknown with it, as upstream.
const CONDITIONS_GOING_UNKNOWN: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];

/// What to change on one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeHealthPlan {
    /// Strategic merge patch for the status subresource (conditions merge by type).
    pub status_patch: Option<serde_json::Value>,
    /// The node's complete new taint list, when it changes.
    pub taints: Option<Vec<Taint>>,
    /// An event to record about the node: reason and message.
    pub event: Option<(&'static str, String)>,
}

/// The newest sign of life: lease renewal or Ready heartbeat, else creation.
pub fn last_heartbeat(node: &Node, lease_renew_time: Option<Timestamp>) -> Option<Timestamp> {
    let ready_heartbeat = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition.type_ == "Ready")
        })
        .and_then(|condition| condition.last_heartbeat_time.as_ref())
        .map(|time| time.0);
    match (lease_renew_time, ready_heartbeat) {
        (Some(lease), Some(ready)) => Some(lease.max(ready)),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => node.metadata.creation_timestamp.as_ref().map(|time| time.0),
    }
}

fn managed_taint(key: &str, effect: &str, time_added: Option<Time>) -> Taint {
    Taint {
        key: key.to_string(),
        value: None,
        effect: effect.to_string(),
        time_added,
    }
}

/// Decides what one node needs.
pub fn plan_node_health(
    node: &Node,
    lease_renew_time: Option<Timestamp>,
    now: Timestamp,
    grace_period: Duration,
) -> NodeHealthPlan {
    let mut plan = NodeHealthPlan::default();
    let node_name = node.metadata.name.clone().unwrap_or_default();
    let conditions = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.clone())
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .find(|condition| condition.type_ == "Ready");
    let mut ready_status = ready
        .map(|condition| condition.status.clone())
        .unwrap_or_else(|| "Unknown".to_string());

    let stale = last_heartbeat(node, lease_renew_time).is_some_and(|heartbeat| {
        let silent_for = now.duration_since(heartbeat);
        silent_for.as_secs_f64() > grace_period.as_secs_f64()
    });
    if stale && ready.is_none_or(|condition| condition.status != "Unknown") {
        let mut patched = Vec::new();
        match ready {
            Some(ready) => patched.push(serde_json::json!({
                "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": ready.last_heartbeat_time, "lastTransitionTime": Time(now),
            })),
            None => patched.push(serde_json::json!({
                "type": "Ready", "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                "message": "Kubelet never posted node status.",
                "lastHeartbeatTime": null, "lastTransitionTime": Time(now),
            })),
        }
        for condition in conditions.iter().filter(|condition| {
            CONDITIONS_GOING_UNKNOWN.contains(&condition.type_.as_str())
                && condition.status != "Unknown"
        }) {
            patched.push(serde_json::json!({
                "type": condition.type_, "status": "Unknown", "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastHeartbeatTime": condition.last_heartbeat_time, "lastTransitionTime": Time(now),
            }));
        }
        plan.status_patch = Some(serde_json::json!({ "status": { "conditions": patched } }));
        plan.event = Some((
            "NodeNotReady",
            format!("Node {node_name} status is now: NodeNotReady"),
        ));
        ready_status = "Unknown".to_string();
    }

    let desired_key = match ready_status.as_str() {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(TAINT_UNREACHABLE),
    };
    let current_taints = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.clone())
        .unwrap_or_default();
    let is_managed = |taint: &Taint| taint.key == TAINT_NOT_READY || taint.key == TAINT_UNREACHABLE;
    let mut desired: Vec<Taint> = current_taints
        .iter()
        .filter(|taint| !is_managed(taint))
        .cloned()
        .collect();
    if let Some(key) = desired_key {
        for effect in ["NoSchedule", "NoExecute"] {
            let existing = current_taints
                .iter()
                .find(|taint| taint.key == key && taint.effect == effect);
            // NoExecute taints carry timeAdded: tolerationSeconds count from it.
            let time_added = match existing {
                Some(existing) => existing.time_added.clone(),
                None if effect == "NoExecute" => Some(Time(now)),
                None => None,
            };
            desired.push(managed_taint(key, effect, time_added));
        }
    }
    let identity = |taints: &[Taint]| {
        let mut keys: Vec<(String, String, Option<String>)> = taints
            .iter()
            .map(|taint| (taint.key.clone(), taint.effect.clone(), taint.value.clone()))
            .collect();
        keys.sort();
        keys
    };
    if identity(&desired) != identity(&current_taints) {
        plan.taints = Some(desired);
    }
    plan
}

/// The merge patch for a new taint list, guarded by the resourceVersion the
/// decision was made on so a concurrent edit (say `kubectl taint`) is not lost.
pub fn taints_patch(node: &Node, taints: &[Taint]) -> serde_json::Value {
    let taints = if taints.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(taints)
    };
    serde_json::json!({
        "metadata": { "resourceVersion": node.metadata.resource_version },
        "spec": { "taints": taints },
    })
}

/// Watches nodes and their leases and marks silent nodes until the process stops.
pub async fn run_node_lifecycle(
    client: Client,
    config: ControllersConfig,
) -> Result<(), ControllerError> {
    config.validate()?;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let mut nodes = Informer::new(
        nodes_api.clone(),
        watcher::Config::default(),
        "nodes (node lifecycle)",
    );
    let mut leases = Informer::new(
        Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        watcher::Config::default(),
        "node leases (node lifecycle)",
    );
    let recorder = Recorder::new(client, EventSource::component("node-controller"));
    let mut monitor_timer = tokio::time::interval(config.node_monitor_period);
    monitor_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = nodes.next_event() => if event.is_none() { break },
            event = leases.next_event() => if event.is_none() { break },
            _ = monitor_timer.tick() => {
                if !(nodes.synced() && leases.synced()) {
                    continue;
                }
                let renew_times: HashMap<String, Timestamp> = leases
                    .store()
                    .state()
                    .iter()
                    .filter_map(|lease| {
                        let renew = lease.spec.as_ref()?.renew_time.as_ref()?.0;
                        Some((lease.metadata.name.clone()?, renew))
                    })
                    .collect();
                let now = Timestamp::now();
                for node in nodes.store().state() {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    let plan = plan_node_health(&node, renew_times.get(&name).copied(), now, config.node_monitor_grace_period);
                    apply_node_health(&nodes_api, &recorder, &node, &name, plan).await;
                }
            }
        }
    }
    Err(ControllerError::ControllerStopped {
        controller: "node-lifecycle",
        reason: "a watch stream ended".to_string(),
    })
}

async fn apply_node_health(
    nodes_api: &Api<Node>,
    recorder: &Recorder,
    node: &Node,
    name: &str,
    plan: NodeHealthPlan,
) {
    if let Some(patch) = &plan.status_patch {
        match nodes_api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => tracing::warn!(node = %name, "node stopped posting status; marked Unknown"),
            Err(error) => {
                let error = ControllerError::api(format!("mark node {name} Unknown"), error);
                tracing::warn!(%error, "retrying on the next monitor period");
                return;
            }
        }
    }
    if let Some((reason, message)) = plan.event {
        recorder.publish(node.object_ref(&()), EventType::Normal, reason, message);
    }
    if let Some(taints) = &plan.taints {
        let patch = taints_patch(node, taints);
        match nodes_api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(node = %name, ?taints, "node taints updated"),
            // Changed meanwhile (often by our own status write): decide again next period.
            Err(error) if is_api_status(&error, 409) || is_api_status(&error, 404) => {}
            Err(error) => {
                let error = ControllerError::api(format!("update taints of node {name}"), error);
                tracing::warn!(%error, "retrying on the next monitor period");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use serde_json::json;

    const GRACE: Duration = Duration::from_secs(40);

    fn node(ready: Option<(&str, &str)>, taints: serde_json::Value) -> Node {
        let mut conditions = vec![
            json!({"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": "2025-01-01T00:00:00Z"}),
        ];
        if let Some((status, heartbeat)) = ready {
            conditions
                .push(json!({"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": "node1", "resourceVersion": "7", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"taints": taints},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn render(plan: &NodeHealthPlan) -> String {
        format!(
            "status: {}\ntaints: {}\nevent: {:?}\n",
            plan.status_patch
                .as_ref()
                .map_or("-".to_string(), |patch| patch.to_string()),
            plan.taints
                .as_ref()
                .map_or("-".to_string(), |taints| serde_json::to_string(taints)
                    .unwrap()),
            plan.event
        )
    }

    #[test]
    fn fresh_ready_node_needs_nothing() {
        let plan = plan_node_health(
            &node(Some(("True", "2025-01-01T00:00:30Z")), json!(null)),
            None,
            at("2025-01-01T00:01:00Z"),
            GRACE,
        );
        assert_eq!(plan, NodeHealthPlan::default());
    }

    #[test]
    fn recent_lease_keeps_a_node_with_old_status_heartbeat_alive() {
        let plan = plan_node_health(
            &node(Some(("True", "2025-01-01T00:00:00Z")), json!(null)),
            Some(at("2025-01-01T00:09:50Z")),
            at("2025-01-01T00:10:00Z"),
            GRACE,
        );
        assert_eq!(plan, NodeHealthPlan::default());
    }

    #[test]
    fn silent_node_goes_unknown_and_unreachable() {
        let plan = plan_node_health(
            &node(
                Some(("True", "2025-01-01T00:00:00Z")),
                json!([{"key": "team", "value": "a", "effect": "NoSchedule"}]),
            ),
            Some(at("2025-01-01T00:00:10Z")),
            at("2025-01-01T00:01:00Z"),
            GRACE,
        );
        expect![[r#"
            status: {"status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status.","lastHeartbeatTime":"2025-01-01T00:00:00Z","lastTransitionTime":"2025-01-01T00:01:00Z"},{"type":"MemoryPressure","status":"Unknown","reason":"NodeStatusUnknown","message":"Kubelet stopped posting node status.","lastHeartbeatTime":"2025-01-01T00:00:00Z","lastTransitionTime":"2025-01-01T00:01:00Z"}]}}
            taints: [{"effect":"NoSchedule","key":"team","value":"a"},{"effect":"NoSchedule","key":"node.kubernetes.io/unreachable"},{"effect":"NoExecute","key":"node.kubernetes.io/unreachable","timeAdded":"2025-01-01T00:01:00Z"}]
            event: Some(("NodeNotReady", "Node node1 status is now: NodeNotReady"))
        "#]]
        .assert_eq(&render(&plan));
    }

    #[test]
    fn node_already_unknown_and_tainted_is_stable() {
        let plan = plan_node_health(
            &node(
                Some(("Unknown", "2025-01-01T00:00:00Z")),
                json!([
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2025-01-01T00:01:00Z"}
                ]),
            ),
            None,
            at("2025-01-01T01:00:00Z"),
            GRACE,
        );
        assert_eq!(plan, NodeHealthPlan::default());
    }

    #[test]
    fn recovered_node_loses_managed_taints_only() {
        let plan = plan_node_health(
            &node(
                Some(("True", "2025-01-01T01:00:00Z")),
                json!([
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                    {"key": "team", "effect": "NoSchedule"}
                ]),
            ),
            None,
            at("2025-01-01T01:00:05Z"),
            GRACE,
        );
        expect![[r#"
            status: -
            taints: [{"effect":"NoSchedule","key":"team"}]
            event: None
        "#]]
        .assert_eq(&render(&plan));
    }

    #[test]
    fn not_ready_node_gets_not_ready_taints() {
        let plan = plan_node_health(
            &node(Some(("False", "2025-01-01T00:00:59Z")), json!(null)),
            None,
            at("2025-01-01T00:01:00Z"),
            GRACE,
        );
        expect![[r#"
            status: -
            taints: [{"effect":"NoSchedule","key":"node.kubernetes.io/not-ready"},{"effect":"NoExecute","key":"node.kubernetes.io/not-ready","timeAdded":"2025-01-01T00:01:00Z"}]
            event: None
        "#]]
        .assert_eq(&render(&plan));
    }

    #[test]
    fn node_that_never_reported_goes_unknown_after_grace_from_creation() {
        let plan = plan_node_health(
            &node(None, json!(null)),
            None,
            at("2025-01-01T00:00:41Z"),
            GRACE,
        );
        let status = plan.status_patch.unwrap().to_string();
        assert!(status.contains("NodeStatusNeverUpdated"), "{status}");
    }

    #[test]
    fn taints_patch_is_guarded_and_clears_with_null() {
        let node = node(None, json!(null));
        expect![[r#"{"metadata":{"resourceVersion":"7"},"spec":{"taints":null}}"#]]
            .assert_eq(&taints_patch(&node, &[]).to_string());
    }
}
