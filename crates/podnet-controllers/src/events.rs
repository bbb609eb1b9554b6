//! Recording core/v1 Events the way `kubectl describe` and `kubectl get events`
//! expect them: one Event object per distinct (object, type, reason, message)
//! series, whose `count` and `lastTimestamp` are bumped when the same thing
//! happens again instead of creating a new object each time.
//!
//! The decision (create a new Event or bump an existing one) is the pure
//! [`plan_event_write`]; [`Recorder`] only remembers series and sends requests.
//! It depends on nothing but `kube`, so the node agent reuses it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource as CoreEventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::{is_api_status, ControllerError};

/// Events about cluster-scoped objects (nodes, namespaces) live in this namespace, as upstream.
pub const CLUSTER_SCOPED_EVENT_NAMESPACE: &str = "default";

/// Remembered series are forgotten past this many, so a long-running process
/// does not grow without bound; a forgotten series simply starts a new Event.
const MAX_REMEMBERED_SERIES: usize = 4096;

/// The `type` of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something needs attention.
    Warning,
}

impl EventType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Who reports the events (`source.component`, `source.host`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventSource {
    /// E.g. `default-scheduler`, `kubelet`, `node-controller`.
    pub component: String,
    /// The node name for per-node reporters such as the agent.
    pub host: Option<String>,
}

impl EventSource {
    /// A source without a host.
    pub fn component(component: impl Into<String>) -> Self {
        EventSource {
            component: component.into(),
            host: None,
        }
    }
}

/// What identifies one series of repeated events.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventSeriesKey {
    involved_kind: Option<String>,
    involved_namespace: Option<String>,
    involved_name: Option<String>,
    involved_uid: Option<String>,
    involved_field_path: Option<String>,
    event_type: EventType,
    reason: String,
    message: String,
}

impl EventSeriesKey {
    /// The key of an event about `involved_object`.
    pub fn new(
        involved_object: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Self {
        EventSeriesKey {
            involved_kind: involved_object.kind.clone(),
            involved_namespace: involved_object.namespace.clone(),
            involved_name: involved_object.name.clone(),
            involved_uid: involved_object.uid.clone(),
            involved_field_path: involved_object.field_path.clone(),
            event_type,
            reason: reason.to_string(),
            message: message.to_string(),
        }
    }
}

/// What the recorder knows about an Event object it already wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSeriesState {
    /// Namespace of the Event object.
    pub event_namespace: String,
    /// Name of the Event object.
    pub event_name: String,
    /// How many times the event happened so far.
    pub count: i32,
    /// When it first happened.
    pub first_timestamp: Timestamp,
}

/// The request that records one occurrence.
#[derive(Clone, Debug, PartialEq)]
pub enum EventWrite {
    /// POST a new Event.
    Create(Box<Event>),
    /// Merge-patch `count` and `lastTimestamp` of an existing Event.
    Bump {
        /// Namespace of the Event.
        namespace: String,
        /// Name of the Event.
        name: String,
        /// The merge patch body.
        patch: serde_json::Value,
    },
}

/// Decides how to record one occurrence, given what was written for the same
/// series before, and returns the series state after the write.
pub fn plan_event_write(
    previous: Option<&EventSeriesState>,
    involved_object: &ObjectReference,
    event_type: EventType,
    reason: &str,
    message: &str,
    source: &EventSource,
    now: Timestamp,
) -> (EventWrite, EventSeriesState) {
    if let Some(previous) = previous {
        let count = previous.count.saturating_add(1);
        let patch = serde_json::json!({ "count": count, "lastTimestamp": Time(now) });
        let state = EventSeriesState {
            count,
            ..previous.clone()
        };
        let write = EventWrite::Bump {
            namespace: previous.event_namespace.clone(),
            name: previous.event_name.clone(),
            patch,
        };
        return (write, state);
    }
    let event_namespace = involved_object
        .namespace
        .clone()
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| CLUSTER_SCOPED_EVENT_NAMESPACE.to_string());
    // Upstream names events `<object>.<unix nanoseconds in hex>`: unique per
    // occurrence and sortable, which `kubectl get events` output relies on.
    let event_name = format!(
        "{}.{:x}",
        involved_object.name.as_deref().unwrap_or("unknown"),
        now.as_nanosecond()
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(event_name.clone()),
            namespace: Some(event_namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: involved_object.clone(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(event_type.as_str().to_string()),
        source: Some(CoreEventSource {
            component: Some(source.component.clone()),
            host: source.host.clone(),
        }),
        reporting_component: Some(source.component.clone()),
        reporting_instance: Some(
            source
                .host
                .clone()
                .unwrap_or_else(|| source.component.clone()),
        ),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        ..Event::default()
    };
    let state = EventSeriesState {
        event_namespace,
        event_name,
        count: 1,
        first_timestamp: now,
    };
    (EventWrite::Create(Box::new(event)), state)
}

/// Writes Events for one reporting component, deduplicating repeats into series.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    source: EventSource,
    series: Arc<Mutex<HashMap<EventSeriesKey, EventSeriesState>>>,
}

impl Recorder {
    /// A recorder reporting as `source`.
    pub fn new(client: Client, source: EventSource) -> Self {
        Recorder {
            client,
            source,
            series: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records one occurrence and waits for the API to accept it.
    pub async fn record(
        &self,
        involved_object: &ObjectReference,
        event_type: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), ControllerError> {
        let key = EventSeriesKey::new(involved_object, event_type, reason, message);
        let now = Timestamp::now();
        let write = {
            let mut series = self
                .series
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let (write, state) = plan_event_write(
                series.get(&key),
                involved_object,
                event_type,
                reason,
                message,
                &self.source,
                now,
            );
            if series.len() >= MAX_REMEMBERED_SERIES && !series.contains_key(&key) {
                series.clear();
            }
            series.insert(key.clone(), state);
            write
        };
        match write {
            EventWrite::Create(event) => self.create(*event).await,
            EventWrite::Bump {
                namespace,
                name,
                patch,
            } => {
                let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(error) if is_api_status(&error, 404) => {
                        // The Event expired or was deleted: start the series afresh.
                        self.forget(&key);
                        let (write, state) = plan_event_write(
                            None,
                            involved_object,
                            event_type,
                            reason,
                            message,
                            &self.source,
                            now,
                        );
                        self.remember(key, state);
                        match write {
                            EventWrite::Create(event) => self.create(*event).await,
                            EventWrite::Bump { .. } => {
                                unreachable!("a series without history is always created")
                            }
                        }
                    }
                    Err(error) => Err(ControllerError::api(
                        format!("update event {namespace}/{name}"),
                        error,
                    )),
                }
            }
        }
    }

    /// Records one occurrence in the background; failures are logged, never
    /// returned, because an event must not hold up the work it describes.
    pub fn publish(
        &self,
        involved_object: ObjectReference,
        event_type: EventType,
        reason: &str,
        message: String,
    ) {
        let recorder = self.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(error) = recorder
                .record(&involved_object, event_type, &reason, &message)
                .await
            {
                tracing::warn!(%error, reason, "could not record event");
            }
        });
    }

    async fn create(&self, event: Event) -> Result<(), ControllerError> {
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event)
            .await
            .map(|_| ())
            .map_err(|error| {
                ControllerError::api(format!("create event {namespace}/{name}"), error)
            })
    }

    fn forget(&self, key: &EventSeriesKey) {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
    }

    fn remember(&self, key: EventSeriesKey, state: EventSeriesState) {
        self.series
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn pod_reference() -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some("web".into()),
            uid: Some("0f0e".into()),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn first_occurrence_creates_a_complete_event() {
        let now: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        let (write, state) = plan_event_write(
            None,
            &pod_reference(),
            EventType::Normal,
            "Scheduled",
            "Successfully assigned default/web to node1",
            &EventSource::component("default-scheduler"),
            now,
        );
        let EventWrite::Create(event) = write else {
            panic!("expected a create")
        };
        expect![[r#"
            {
              "apiVersion": "v1",
              "kind": "Event",
              "count": 1,
              "firstTimestamp": "2025-01-02T03:04:05Z",
              "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": "web",
                "namespace": "default",
                "uid": "0f0e"
              },
              "lastTimestamp": "2025-01-02T03:04:05Z",
              "message": "Successfully assigned default/web to node1",
              "metadata": {
                "name": "web.1816c11eeef33200",
                "namespace": "default"
              },
              "reason": "Scheduled",
              "reportingComponent": "default-scheduler",
              "reportingInstance": "default-scheduler",
              "source": {
                "component": "default-scheduler"
              },
              "type": "Normal"
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&event).unwrap());
        assert_eq!(state.count, 1);
        assert_eq!(state.event_name, "web.1816c11eeef33200");
    }

    #[test]
    fn repeat_bumps_count_and_last_timestamp_of_the_same_event() {
        let first: Timestamp = "2025-01-02T03:04:05Z".parse().unwrap();
        let later: Timestamp = "2025-01-02T03:05:00Z".parse().unwrap();
        let source = EventSource::component("default-scheduler");
        let reference = pod_reference();
        let (_, state) = plan_event_write(
            None,
            &reference,
            EventType::Warning,
            "FailedScheduling",
            "m",
            &source,
            first,
        );
        let (write, state) = plan_event_write(
            Some(&state),
            &reference,
            EventType::Warning,
            "FailedScheduling",
            "m",
            &source,
            later,
        );
        let (write_again, state) = plan_event_write(
            Some(&state),
            &reference,
            EventType::Warning,
            "FailedScheduling",
            "m",
            &source,
            later,
        );
        assert_eq!(state.count, 3);
        assert_eq!(state.first_timestamp, first);
        let EventWrite::Bump {
            namespace,
            name,
            patch,
        } = write
        else {
            panic!("expected a bump")
        };
        assert_eq!(
            (namespace.as_str(), name.as_str()),
            ("default", "web.1816c11eeef33200")
        );
        expect![[r#"{"count":2,"lastTimestamp":"2025-01-02T03:05:00Z"}"#]]
            .assert_eq(&patch.to_string());
        let EventWrite::Bump { patch, .. } = write_again else {
            panic!("expected a bump")
        };
        assert_eq!(patch["count"], 3);
    }

    #[test]
    fn events_about_cluster_scoped_objects_go_to_the_default_namespace() {
        let node = ObjectReference {
            kind: Some("Node".into()),
            name: Some("node1".into()),
            ..Default::default()
        };
        let (write, _) = plan_event_write(
            None,
            &node,
            EventType::Normal,
            "NodeNotReady",
            "Node node1 status is now: NodeNotReady",
            &EventSource::component("node-controller"),
            Timestamp::UNIX_EPOCH,
        );
        let EventWrite::Create(event) = write else {
            panic!("expected a create")
        };
        assert_eq!(event.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn different_messages_are_different_series() {
        let reference = pod_reference();
        let a = EventSeriesKey::new(
            &reference,
            EventType::Warning,
            "FailedScheduling",
            "0/1 nodes are available",
        );
        let b = EventSeriesKey::new(
            &reference,
            EventType::Warning,
            "FailedScheduling",
            "0/2 nodes are available",
        );
        assert_ne!(a, b);
    }
}
