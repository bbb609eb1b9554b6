//! The scheduler: binds every pending pod (empty `spec.nodeName`, our
//! `schedulerName`) to a node through the `binding` subresource.
//!
//! [`plan`] holds the pure decision and [`snapshot`] the incrementally kept
//! cluster view; this module is the loop. It owns one node and one pod watch
//! and decides as soon as a pod arrives, so a created pod is bound within one
//! round trip of its watch event. A pod that fits nowhere gets a
//! FailedScheduling event and the PodScheduled=False/Unschedulable condition,
//! and is retried whenever a node changes or a bound pod goes away (and
//! periodically). Bindings are "assumed" into the snapshot immediately so the
//! next decision counts them before the watch confirms them.

pub mod plan;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};

use self::plan::schedule_pod;
use self::snapshot::{pod_key, ClusterSnapshot, PodKey, PodUsage};
use crate::events::{EventSource, EventType, Recorder};
use crate::watch::Informer;
use crate::{is_api_status, ControllerError, ControllersConfig};

/// True when the pod is waiting for this scheduler.
pub fn pod_is_ours_and_pending(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or_default().is_empty()
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or(crate::DEFAULT_SCHEDULER_NAME)
            == scheduler_name
        && spec
            .scheduling_gates
            .as_ref()
            .is_none_or(|gates| gates.is_empty())
        && pod.metadata.deletion_timestamp.is_none()
        && !pod_is_terminal(pod)
}

/// Succeeded and Failed pods no longer hold node resources.
pub fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status
            .as_ref()
            .and_then(|status| status.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn bound_node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .filter(|name| !name.is_empty())
}

/// The Binding a decision is written as. The UID guards against binding a
/// pod deleted and recreated under the same name meanwhile.
pub fn binding_for(pod: &Pod, node_name: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Node".to_string()),
            name: Some(node_name.to_string()),
            ..ObjectReference::default()
        },
    }
}

/// The strategic merge patch that marks a pod unschedulable (conditions merge by type).
pub fn unschedulable_condition_patch(message: &str, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": Time(now),
            }]
        }
    })
}

fn existing_unschedulable_message(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == "PodScheduled" && condition.status == "False")
        .and_then(|condition| condition.message.as_deref())
}

struct UnschedulablePod {
    pod: Arc<Pod>,
    message: String,
}

struct SchedulerLoop {
    client: Client,
    scheduler_name: String,
    recorder: Recorder,
    snapshot: ClusterSnapshot,
    /// Pods to try now.
    active: BTreeMap<PodKey, Arc<Pod>>,
    /// Pods that fit nowhere at their last attempt (also in `active` while queued for a retry).
    unschedulable: HashMap<PodKey, UnschedulablePod>,
    /// Pods bound by us but not yet seen bound through the watch: key → uid.
    assumed: HashMap<PodKey, String>,
}

impl SchedulerLoop {
    fn retry_unschedulable(&mut self) {
        for (key, entry) in &self.unschedulable {
            self.active.insert(key.clone(), entry.pod.clone());
        }
    }

    fn on_node_event(&mut self, event: Event<Node>, nodes: &Informer<Node>) {
        match event {
            Event::Apply(node) | Event::InitApply(node) => {
                self.snapshot.upsert_node(Arc::new(node));
                self.retry_unschedulable();
            }
            Event::Delete(node) => {
                self.snapshot
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
            Event::Init => {}
            Event::InitDone => {
                let names: HashSet<String> = nodes
                    .store()
                    .state()
                    .iter()
                    .filter_map(|node| node.metadata.name.clone())
                    .collect();
                self.snapshot.retain_nodes(&|name| names.contains(name));
                self.retry_unschedulable();
            }
        }
    }

    fn on_pod_event(&mut self, event: Event<Pod>, pods: &Informer<Pod>) {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => self.on_pod(pod),
            Event::Delete(pod) => self.forget_pod(&pod_key(&pod)),
            Event::Init => {}
            Event::InitDone => {
                let present: HashSet<PodKey> = pods
                    .store()
                    .state()
                    .iter()
                    .map(|pod| pod_key(pod))
                    .collect();
                let mut gone: Vec<PodKey> = self.snapshot.placed_pod_keys();
                gone.extend(self.active.keys().cloned());
                gone.extend(self.unschedulable.keys().cloned());
                gone.retain(|key| !present.contains(key));
                for key in gone {
                    self.forget_pod(&key);
                }
            }
        }
    }

    fn forget_pod(&mut self, key: &str) {
        self.active.remove(key);
        self.unschedulable.remove(key);
        self.assumed.remove(key);
        if self.snapshot.remove_pod(key).is_some() {
            self.retry_unschedulable();
        }
    }

    fn on_pod(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        if let Some(node_name) = bound_node_name(&pod) {
            self.assumed.remove(&key);
            self.active.remove(&key);
            self.unschedulable.remove(&key);
            if pod_is_terminal(&pod) {
                if self.snapshot.remove_pod(&key).is_some() {
                    self.retry_unschedulable();
                }
            } else if self.snapshot.placement(&key) != Some(node_name) {
                self.snapshot
                    .place_pod(key, node_name, PodUsage::from_pod(&pod));
            }
            return;
        }
        // An event from before our own binding must not undo the assumption.
        if self
            .assumed
            .get(&key)
            .is_some_and(|uid| pod.metadata.uid.as_ref() == Some(uid))
        {
            return;
        }
        self.assumed.remove(&key);
        if self.snapshot.remove_pod(&key).is_some() {
            self.retry_unschedulable();
        }
        if pod_is_ours_and_pending(&pod, &self.scheduler_name) {
            // The pod changed, so it may fit now; an unschedulable entry keeps its
            // last message so an unchanged outcome writes nothing again (our own
            // status write comes back through here).
            let pod = Arc::new(pod);
            if let Some(entry) = self.unschedulable.get_mut(&key) {
                entry.pod = pod.clone();
            }
            self.active.insert(key, pod);
        } else {
            self.active.remove(&key);
            self.unschedulable.remove(&key);
        }
    }

    async fn schedule_active_pods(&mut self) {
        while let Some((key, pod)) = self.active.pop_first() {
            let usage = PodUsage::from_pod(&pod);
            let previous_message = self.unschedulable.remove(&key).map(|entry| entry.message);
            match schedule_pod(&pod, &usage, &self.snapshot) {
                Ok(node_name) => {
                    self.bind(key, pod, usage, node_name, previous_message)
                        .await
                }
                Err(failure) => {
                    self.mark_unschedulable(key, pod, failure.message(), previous_message)
                }
            }
        }
    }

    async fn bind(
        &mut self,
        key: PodKey,
        pod: Arc<Pod>,
        usage: PodUsage,
        node_name: String,
        previous_message: Option<String>,
    ) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let binding = binding_for(&pod, &node_name);
        match api
            .create_subresource::<Binding, serde_json::Value>(
                "binding",
                &name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = %key, node = %node_name, "bound");
                self.snapshot.place_pod(key.clone(), &node_name, usage);
                self.assumed
                    .insert(key, pod.metadata.uid.clone().unwrap_or_default());
                self.recorder.publish(
                    pod.object_ref(&()),
                    EventType::Normal,
                    "Scheduled",
                    format!("Successfully assigned {namespace}/{name} to {node_name}"),
                );
            }
            // Already bound, deleted or replaced: the watch brings the truth.
            Err(error) if is_api_status(&error, 409) || is_api_status(&error, 404) => {
                tracing::debug!(pod = %key, %error, "binding not needed any more");
            }
            Err(error) => {
                let error =
                    ControllerError::api(format!("bind pod {key} to node {node_name}"), error);
                tracing::warn!(%error, "binding failed; the pod is retried on the next change");
                let message = format!("Binding rejected: {error}");
                self.mark_unschedulable(key, pod, message, previous_message);
            }
        }
    }

    fn mark_unschedulable(
        &mut self,
        key: PodKey,
        pod: Arc<Pod>,
        message: String,
        previous_message: Option<String>,
    ) {
        let already_reported = previous_message.as_deref() == Some(message.as_str())
            || existing_unschedulable_message(&pod) == Some(message.as_str());
        if !already_reported {
            tracing::info!(pod = %key, %message, "pod is unschedulable");
            self.recorder.publish(
                pod.object_ref(&()),
                EventType::Warning,
                "FailedScheduling",
                message.clone(),
            );
            let client = self.client.clone();
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let patch = unschedulable_condition_patch(&message, Timestamp::now());
            tokio::spawn(async move {
                let api: Api<Pod> = Api::namespaced(client, &namespace);
                if let Err(error) = api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
                {
                    if !is_api_status(&error, 404) {
                        let error = ControllerError::api(
                            format!("set PodScheduled=False on pod {namespace}/{name}"),
                            error,
                        );
                        tracing::warn!(%error, "could not record unschedulable condition");
                    }
                }
            });
        }
        self.unschedulable
            .insert(key, UnschedulablePod { pod, message });
    }
}

/// Watches nodes and pods and binds pending pods until the process stops.
pub async fn run_scheduler(
    client: Client,
    config: ControllersConfig,
) -> Result<(), ControllerError> {
    let mut nodes = Informer::new(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        "nodes (scheduler)",
    );
    let mut pods = Informer::new(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        "pods (scheduler)",
    );
    let mut state = SchedulerLoop {
        recorder: Recorder::new(
            client.clone(),
            EventSource::component(config.scheduler_name.clone()),
        ),
        client,
        scheduler_name: config.scheduler_name.clone(),
        snapshot: ClusterSnapshot::default(),
        active: BTreeMap::new(),
        unschedulable: HashMap::new(),
        assumed: HashMap::new(),
    };
    let mut retry_timer = tokio::time::interval(config.unschedulable_retry_period);
    retry_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = nodes.next_event() => match event {
                Some(event) => state.on_node_event(event, &nodes),
                None => break,
            },
            event = pods.next_event() => match event {
                Some(event) => state.on_pod_event(event, &pods),
                None => break,
            },
            _ = retry_timer.tick() => state.retry_unschedulable(),
        }
        // Decide only on a complete view: a partial node or pod list could
        // overcommit a node or report a pod unschedulable that fits.
        if nodes.synced() && pods.synced() && !state.active.is_empty() {
            state.schedule_active_pods().await;
        }
    }
    Err(ControllerError::ControllerStopped {
        controller: "scheduler",
        reason: "a watch stream ended".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use serde_json::json;

    #[test]
    fn binding_targets_the_node_and_guards_the_uid() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": []}
        }))
        .unwrap();
        expect![[r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web","namespace":"default","uid":"u1"},"target":{"apiVersion":"v1","kind":"Node","name":"node1"}}"#]]
            .assert_eq(&serde_json::to_string(&binding_for(&pod, "node1")).unwrap());
    }

    #[test]
    fn unschedulable_patch_shape() {
        let patch = unschedulable_condition_patch(
            "0/1 nodes are available: 1 Insufficient cpu.",
            Timestamp::UNIX_EPOCH,
        );
        expect![[r#"{"status":{"conditions":[{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/1 nodes are available: 1 Insufficient cpu.","lastProbeTime":null,"lastTransitionTime":"1970-01-01T00:00:00Z"}]}}"#]]
            .assert_eq(&patch.to_string());
    }

    #[test]
    fn only_pending_pods_of_this_scheduler_are_taken() {
        let pod = |spec: serde_json::Value| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec}),
            )
            .unwrap()
        };
        assert!(pod_is_ours_and_pending(
            &pod(json!({"containers": []})),
            "default-scheduler"
        ));
        assert!(!pod_is_ours_and_pending(
            &pod(json!({"containers": [], "nodeName": "n1"})),
            "default-scheduler"
        ));
        assert!(!pod_is_ours_and_pending(
            &pod(json!({"containers": [], "schedulerName": "other"})),
            "default-scheduler"
        ));
        assert!(!pod_is_ours_and_pending(
            &pod(json!({"containers": [], "schedulingGates": [{"name": "wait"}]})),
            "default-scheduler"
        ));
    }
}
