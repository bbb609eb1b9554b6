//! Workload decisions (pure): what the ReplicaSet, Deployment and DaemonSet
//! controllers should do given a snapshot of the objects they own, following
//! upstream's controllers (pkg/controller/replicaset, deployment, daemon).
//!
//! Every function takes the time as an argument and does no I/O; the loop in
//! [`crate::workloads_controller`] applies the plans.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetStatus, Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet,
    ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use crate::scheduler::plan::{node_selector_term_matches, toleration_tolerates_taint};

/// Label carrying the hash of the pod template a ReplicaSet was made from.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Label carrying the hash of the template a DaemonSet pod was made from.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// Revision of a Deployment and of each of its ReplicaSets.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Replicas the owning Deployment asked for when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// Replicas plus surge allowed when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// At most this many pods are created or deleted per sync (upstream burstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// Deployment annotations that are not copied onto its ReplicaSets.
const NOT_COPIED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    "deprecated.deployment.rollback.to",
];

// ---------------------------------------------------------------- helpers

/// True when the label selector selects the labels (`matchLabels` and
/// `matchExpressions` all hold; an empty selector selects everything).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|req| {
        let value = labels.get(&req.key);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The controller reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
}

/// An owner reference with `controller` and `blockOwnerDeletion` set, so the
/// garbage collector cascades deletion (and foreground deletion waits).
pub fn controller_reference(kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".to_string(),
        kind: kind.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Not being deleted and not finished (upstream `IsPodActive`).
pub fn pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` (upstream `IsPodAvailable`).
pub fn pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

/// Time until a ready pod becomes available, if it is ready but not yet available.
fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    if min_ready_seconds <= 0 || !pod_ready(pod) || pod_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = ready_since(pod)?;
    let due = since.as_second() + i64::from(min_ready_seconds);
    Some(Duration::from_secs(
        (due - now.as_second()).max(0) as u64 + 1,
    ))
}

fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Order in which pods are deleted on scale-down, first deleted first
/// (upstream `ActivePods` Less): unscheduled, then Pending < Unknown < Running,
/// not ready, ready for a shorter time, more restarts, newer.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let node = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    node(a)
        .cmp(&node(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| pod_ready(a).cmp(&pod_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restart_count(b).cmp(&restart_count(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// FNV-1a (32 bit), the hash upstream uses for template hashes.
fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Upstream's `rand.SafeEncodeString` alphabet (no vowels, no confusable characters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The hash of a pod template (and collision count), as a short DNS-safe
/// string like upstream's `pod-template-hash` values.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut text = serde_json::to_string(template).expect("templates serialize");
    if let Some(count) = collision_count {
        text.push_str(&count.to_string());
    }
    let decimal = fnv32a(text.as_bytes()).to_string();
    decimal
        .bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

fn template_without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
    }
    template
}

/// Same template apart from the pod-template-hash label (upstream `EqualIgnoreHash`).
pub fn templates_equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let a = serde_json::to_value(template_without_hash(a)).expect("templates serialize");
    let b = serde_json::to_value(template_without_hash(b)).expect("templates serialize");
    normalize(a) == normalize(b)
}

/// Empty maps/arrays and nulls are absent in wire form.
fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalize(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// A pod for a controller: the template's labels, annotations and spec, named
/// `<prefix><5 random characters>` by the API server (generateName).
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    namespace: &str,
    generate_name: &str,
) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Which objects a controller owns, adopts or releases.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Names of objects already owned (controller reference to this owner) and still selected.
    pub owned: Vec<String>,
    /// Orphans the selector matches: they get a controller reference to this owner.
    pub adopt: Vec<String>,
    /// Owned objects the selector no longer matches: their reference is removed.
    pub release: Vec<String>,
}

/// Upstream's ControllerRefManager: claim objects by controller reference and
/// selector. Objects being deleted are never adopted; a deleting owner adopts nothing.
pub fn claim(owner: &ObjectMeta, selector: &LabelSelector, objects: &[&ObjectMeta]) -> Claim {
    let uid = owner.uid.as_deref().unwrap_or_default();
    let mut result = Claim::default();
    for meta in objects {
        let name = meta.name.clone().unwrap_or_default();
        let matches = selector_matches(selector, &labels_of(meta));
        match controller_of(meta) {
            Some(controller) if controller.uid == uid => {
                if matches {
                    result.owned.push(name);
                } else if owner.deletion_timestamp.is_none() {
                    result.release.push(name);
                }
            }
            Some(_) => {}
            None => {
                if matches
                    && meta.deletion_timestamp.is_none()
                    && owner.deletion_timestamp.is_none()
                {
                    result.adopt.push(name);
                }
            }
        }
    }
    result
}

// ---------------------------------------------------------------- ReplicaSet

/// What the ReplicaSet controller does for one ReplicaSet.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplicaSetPlan {
    /// Orphan pods to adopt.
    pub adopt: Vec<String>,
    /// Owned pods the selector no longer matches.
    pub release: Vec<String>,
    /// Pods to create from the template.
    pub create: usize,
    /// Pods to delete, in this order.
    pub delete: Vec<String>,
    /// The status to write (only if it differs from the current one).
    pub status: ReplicaSetStatus,
    /// Sync again after this long (a ready pod becomes available).
    pub recheck_after: Option<Duration>,
}

/// Decides pod creations/deletions and the status of a ReplicaSet given the
/// pods of its namespace (upstream `syncReplicaSet` + `calculateStatus`).
pub fn plan_replica_set(rs: &ReplicaSet, pods: &[&Pod], now: Timestamp) -> ReplicaSetPlan {
    let spec = rs.spec.as_ref();
    let selector = spec.map(|s| s.selector.clone()).unwrap_or_default();
    let wanted = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let metas: Vec<&ObjectMeta> = pods.iter().map(|p| &p.metadata).collect();
    let claimed = claim(&rs.metadata, &selector, &metas);
    let mut active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            (claimed.owned.contains(&name) || claimed.adopt.contains(&name)) && pod_active(p)
        })
        .collect();
    let mut plan = ReplicaSetPlan {
        adopt: claimed.adopt,
        release: claimed.release,
        ..ReplicaSetPlan::default()
    };
    if rs.metadata.deletion_timestamp.is_none() {
        if active.len() < wanted {
            plan.create = (wanted - active.len()).min(BURST_REPLICAS);
        } else if active.len() > wanted {
            active.sort_by(|a, b| deletion_order(a, b));
            plan.delete = active
                .iter()
                .take((active.len() - wanted).min(BURST_REPLICAS))
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
        }
    }
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .map(labels_of)
        .unwrap_or_default();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            let labels = labels_of(&p.metadata);
            template_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pod_available(p, min_ready, now))
        .count();
    plan.recheck_after = active
        .iter()
        .filter_map(|p| until_available(p, min_ready, now))
        .min();
    plan.status = ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    plan
}

/// Status equality in wire form (zero counts and absent ones are the same).
pub fn same_status<T: serde::Serialize>(a: Option<&T>, b: &T) -> bool {
    let a = a.map(|a| normalize_zero(serde_json::to_value(a).expect("status serializes")));
    a == Some(normalize_zero(
        serde_json::to_value(b).expect("status serializes"),
    ))
}

fn normalize_zero(value: Value) -> Value {
    match normalize(value) {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| v != &json!(0)).collect())
        }
        other => other,
    }
}

// ---------------------------------------------------------------- Deployment

/// One write the Deployment controller makes to a ReplicaSet.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaSetAction {
    /// Create the new ReplicaSet.
    Create(Box<ReplicaSet>),
    /// Set replicas and annotations of an owned ReplicaSet.
    Scale {
        name: String,
        replicas: i32,
        annotations: BTreeMap<String, String>,
    },
    /// Delete an old ReplicaSet beyond the revision history limit.
    Delete(String),
}

/// What the Deployment controller does for one Deployment.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeploymentPlan {
    /// Orphan ReplicaSets to adopt.
    pub adopt: Vec<String>,
    /// ReplicaSet writes, in order.
    pub actions: Vec<ReplicaSetAction>,
    /// The Deployment's revision annotation, if it must change.
    pub revision: Option<String>,
    /// The status to write (only if it differs).
    pub status: DeploymentStatus,
}

fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_ANNOTATION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
    )
}

/// Resolves an int-or-percent against a total; percentages round up for
/// surge and down for unavailability (upstream `ResolveFenceposts`).
fn resolve(value: Option<&IntOrString>, total: i32, round_up: bool, default_percent: i32) -> i32 {
    let percent = |p: i32| {
        let scaled = i64::from(p) * i64::from(total);
        if round_up {
            ((scaled + 99) / 100) as i32
        } else {
            (scaled / 100) as i32
        }
    };
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => s
            .trim_end_matches('%')
            .parse::<i32>()
            .map(percent)
            .unwrap_or(0),
        None => percent(default_percent),
    }
}

/// (maxSurge, maxUnavailable) of a RollingUpdate Deployment.
pub fn fenceposts(deployment: &Deployment) -> (i32, i32) {
    let spec = deployment.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let rolling = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(
        rolling.and_then(|r| r.max_surge.as_ref()),
        replicas,
        true,
        25,
    );
    let unavailable = resolve(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
        25,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn recreate(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn copied_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Decides one sync of a Deployment over the ReplicaSets of its namespace
/// (upstream `syncDeployment`: rolloutRolling / rolloutRecreate / sync when
/// paused, cleanupDeployment, syncRolloutStatus).
pub fn plan_deployment(
    deployment: &Deployment,
    replica_sets: &[&ReplicaSet],
    now: Timestamp,
) -> DeploymentPlan {
    let spec = deployment.spec.clone().unwrap_or_default();
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let metas: Vec<&ObjectMeta> = replica_sets.iter().map(|r| &r.metadata).collect();
    let claimed = claim(&deployment.metadata, &spec.selector, &metas);
    let mut owned: Vec<ReplicaSet> = replica_sets
        .iter()
        .filter(|r| {
            let n = r.metadata.name.clone().unwrap_or_default();
            claimed.owned.contains(&n) || claimed.adopt.contains(&n)
        })
        .map(|r| (*r).clone())
        .collect();
    owned.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let mut plan = DeploymentPlan {
        adopt: claimed.adopt,
        ..DeploymentPlan::default()
    };
    let new_index = owned.iter().position(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| templates_equal_ignoring_hash(t, &spec.template))
    });
    let max_old_revision = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_index)
        .map(|(_, rs)| revision_of(&rs.metadata))
        .max()
        .unwrap_or(0);
    let new_revision = (max_old_revision + 1).to_string();
    let (max_surge, max_unavailable) = if recreate(deployment) {
        (0, 0)
    } else {
        fenceposts(deployment)
    };
    let deleting = deployment.metadata.deletion_timestamp.is_some();
    let paused = spec.paused == Some(true);
    let mut created_new = None;
    // Upstream returns after scaling the new ReplicaSet up; old ones wait
    // for the next sync (which the new ReplicaSet's events trigger).
    let mut scaled_up = false;
    let annotations_for = |revision: String| {
        let mut annotations = copied_annotations(deployment);
        annotations.insert(REVISION_ANNOTATION.to_string(), revision);
        annotations.insert(
            DESIRED_REPLICAS_ANNOTATION.to_string(),
            replicas.to_string(),
        );
        annotations.insert(
            MAX_REPLICAS_ANNOTATION.to_string(),
            (replicas + max_surge).to_string(),
        );
        annotations
    };

    // Working copy of spec replicas after this sync's writes.
    let mut desired: Vec<i32> = owned.iter().map(spec_replicas).collect();
    let total_spec = |d: &[i32]| d.iter().sum::<i32>();
    let old_indices: Vec<usize> = (0..owned.len()).filter(|i| Some(*i) != new_index).collect();
    let old_active = old_indices
        .iter()
        .any(|i| desired[*i] > 0 || status_of(&owned[*i]).0 > 0);

    if !deleting {
        match new_index {
            None if !paused => {
                // Create the new ReplicaSet.
                let initial = if recreate(deployment) {
                    if old_active {
                        0
                    } else {
                        replicas
                    }
                } else if old_indices.is_empty() {
                    replicas
                } else {
                    let max_total = replicas + max_surge;
                    let current = total_spec(&desired);
                    (max_total - current).clamp(0, replicas)
                };
                let collision = deployment.status.as_ref().and_then(|s| s.collision_count);
                let hash = template_hash(&spec.template, collision);
                let mut template = spec.template.clone();
                template
                    .metadata
                    .get_or_insert_with(Default::default)
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone());
                let mut selector = spec.selector.clone();
                selector
                    .match_labels
                    .get_or_insert_with(Default::default)
                    .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone());
                let mut labels = template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone());
                let rs_name = format!("{name}-{hash}");
                let rs = ReplicaSet {
                    metadata: ObjectMeta {
                        name: Some(rs_name.clone()),
                        namespace: Some(namespace.clone()),
                        labels: Some(labels),
                        annotations: Some(annotations_for(new_revision.clone())),
                        owner_references: Some(vec![controller_reference(
                            "Deployment",
                            &deployment.metadata,
                        )]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec {
                        replicas: Some(initial),
                        min_ready_seconds: spec.min_ready_seconds,
                        selector,
                        template: Some(template),
                    }),
                    status: None,
                };
                plan.actions.push(ReplicaSetAction::Create(Box::new(rs)));
                plan.revision = Some(new_revision.clone());
                created_new = Some(rs_name);
            }
            None => {}
            Some(new) => {
                let new_rs = &owned[new];
                let current_revision = revision_of(&new_rs.metadata);
                let revision = if current_revision < max_old_revision + 1 {
                    new_revision.clone()
                } else {
                    current_revision.to_string()
                };
                let mut target = desired[new];
                if paused {
                    // Paused: only proportional scaling of a complete rollout.
                    if old_indices.iter().all(|i| desired[*i] == 0) {
                        target = replicas;
                    }
                } else if recreate(deployment) {
                    if !old_active {
                        target = replicas;
                    }
                } else if target > replicas {
                    target = replicas;
                } else if target < replicas {
                    let max_total = replicas + max_surge;
                    let current = total_spec(&desired);
                    if current < max_total {
                        target += (max_total - current).min(replicas - target);
                    }
                }
                let annotations = annotations_for(revision.clone());
                let existing = new_rs.metadata.annotations.clone().unwrap_or_default();
                let annotations_differ =
                    annotations.iter().any(|(k, v)| existing.get(k) != Some(v));
                if target != desired[new] || annotations_differ {
                    scaled_up = target > desired[new];
                    desired[new] = target;
                    plan.actions.push(ReplicaSetAction::Scale {
                        name: new_rs.metadata.name.clone().unwrap_or_default(),
                        replicas: target,
                        annotations,
                    });
                }
                if deployment
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION_ANNOTATION))
                    != Some(&revision)
                {
                    plan.revision = Some(revision);
                }
            }
        }

        // Old ReplicaSets.
        if !paused {
            if recreate(deployment) {
                for i in &old_indices {
                    if desired[*i] > 0 {
                        desired[*i] = 0;
                        plan.actions.push(scale_action(&owned[*i], 0));
                    }
                }
            } else if !old_indices.is_empty() && created_new.is_none() && !scaled_up {
                let new_unavailable = match new_index {
                    Some(n) => (desired[n] - status_of(&owned[n]).2).max(0),
                    None => 0,
                };
                let all_pods: i32 = total_spec(&desired);
                let min_available = replicas - max_unavailable;
                let mut max_scaled_down = all_pods - min_available - new_unavailable;
                // First the unhealthy old replicas (upstream cleanupUnhealthyReplicas).
                for i in &old_indices {
                    if max_scaled_down <= 0 {
                        break;
                    }
                    let unhealthy = desired[*i] - status_of(&owned[*i]).2;
                    if desired[*i] == 0 || unhealthy <= 0 {
                        continue;
                    }
                    let down = unhealthy.min(max_scaled_down);
                    desired[*i] -= down;
                    max_scaled_down -= down;
                }
                // Then available ones, oldest first, keeping minAvailable.
                let available: i32 = (0..owned.len())
                    .map(|i| status_of(&owned[i]).2.min(desired[i]))
                    .sum();
                let mut budget = available - min_available;
                for i in &old_indices {
                    if budget <= 0 {
                        break;
                    }
                    if desired[*i] == 0 {
                        continue;
                    }
                    let down = desired[*i].min(budget);
                    desired[*i] -= down;
                    budget -= down;
                }
                for i in &old_indices {
                    if desired[*i] != spec_replicas(&owned[*i]) {
                        plan.actions.push(scale_action(&owned[*i], desired[*i]));
                    }
                }
            }
        }

        // Revision history clean-up: fully scaled-down old ReplicaSets beyond the limit.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut cleanable: Vec<&ReplicaSet> = old_indices
            .iter()
            .filter(|i| desired[**i] == 0 && status_of(&owned[**i]).0 == 0)
            .map(|i| &owned[*i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        if cleanable.len() > limit {
            cleanable.sort_by_key(|rs| revision_of(&rs.metadata));
            let excess = cleanable.len() - limit;
            for rs in cleanable.into_iter().take(excess) {
                plan.actions.push(ReplicaSetAction::Delete(
                    rs.metadata.name.clone().unwrap_or_default(),
                ));
            }
        }
    }

    // Status from the observed ReplicaSets.
    let mut actual = 0;
    let mut ready = 0;
    let mut available = 0;
    for rs in &owned {
        let (r, rd, av) = status_of(rs);
        actual += r;
        ready += rd;
        available += av;
    }
    let updated = new_index.map(|n| status_of(&owned[n]).0).unwrap_or(0);
    let total_spec_now: i32 = desired.iter().sum();
    let unavailable = (total_spec_now - available).max(0);
    let previous = deployment.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    let min_available = replicas - max_unavailable;
    if available >= min_available {
        set_condition(
            &mut conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        );
    } else {
        set_condition(
            &mut conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        );
    }
    let new_name = new_index.map(|n| owned[n].metadata.name.clone().unwrap_or_default());
    let complete = new_index.is_some()
        && updated == replicas
        && available == replicas
        && actual == replicas
        && new_index
            .map(|n| status_of(&owned[n]).2 == replicas)
            .unwrap_or(false);
    if let Some(created) = &created_new {
        set_condition(
            &mut conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{created}\""),
            now,
        );
    } else if let Some(new_name) = &new_name {
        if complete {
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                now,
            );
        } else if !paused {
            set_condition(
                &mut conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{new_name}\" is progressing."),
                now,
            );
        }
    }
    plan.status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: Some(actual),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some(unavailable),
        conditions: Some(conditions),
        collision_count: previous.collision_count,
        terminating_replicas: None,
    };
    plan
}

fn scale_action(rs: &ReplicaSet, replicas: i32) -> ReplicaSetAction {
    ReplicaSetAction::Scale {
        name: rs.metadata.name.clone().unwrap_or_default(),
        replicas,
        annotations: BTreeMap::new(),
    }
}

/// Sets a condition; its lastTransitionTime changes only when the status
/// does, lastUpdateTime only when the reason or message does.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    match existing {
        Some(condition) => {
            if condition.status != status {
                condition.last_transition_time = Some(Time(now));
            }
            if condition.status != status
                || condition.reason.as_deref() != Some(reason)
                || condition.message.as_deref() != Some(message)
            {
                condition.last_update_time = Some(Time(now));
            }
            condition.status = status.to_string();
            condition.reason = Some(reason.to_string());
            condition.message = Some(message.to_string());
        }
        None => conditions.push(DeploymentCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(now)),
            last_update_time: Some(Time(now)),
        }),
    }
}

// ---------------------------------------------------------------- DaemonSet

/// Tolerations every DaemonSet pod gets (upstream `AddOrUpdateDaemonPodTolerations`).
pub fn daemon_tolerations(template: &PodTemplateSpec) -> Vec<Toleration> {
    let mut tolerations = template
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let host_network = template
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut extra = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        extra.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    for (key, effect) in extra {
        if !tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect))
        {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some(effect.to_string()),
                ..Toleration::default()
            });
        }
    }
    tolerations
}

/// Whether a DaemonSet pod should run on the node: node selector, required
/// node affinity and NoSchedule/NoExecute taints (upstream `NodeShouldRunDaemonPod`).
pub fn should_run_on(template: &PodTemplateSpec, node: &Node) -> bool {
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let spec = template.spec.clone().unwrap_or_default();
    let labels = labels_of(&node.metadata);
    if !spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    {
        if !required
            .node_selector_terms
            .iter()
            .any(|term| node_selector_term_matches(term, node))
        {
            return false;
        }
    }
    let tolerations = daemon_tolerations(template);
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| {
            tolerations
                .iter()
                .any(|t| toleration_tolerates_taint(t, taint))
        })
}

/// The node a DaemonSet pod is for: its nodeName, or the node its
/// `metadata.name` node affinity names.
pub fn daemon_pod_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// The template a DaemonSet pod is created from for one node: the template
/// plus the revision hash label, the daemon tolerations and a required node
/// affinity on `metadata.name` (the scheduler then binds it there).
pub fn daemon_pod_template(ds: &DaemonSet, hash: &str, node: &str) -> PodTemplateSpec {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut value = serde_json::to_value(&template).expect("templates serialize");
    value["metadata"]["labels"][CONTROLLER_REVISION_HASH_LABEL] = json!(hash);
    value["spec"]["tolerations"] =
        serde_json::to_value(daemon_tolerations(&template)).expect("tolerations serialize");
    let term =
        json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    let affinity = &mut value["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"];
    affinity["nodeSelectorTerms"] = json!([term]);
    serde_json::from_value(value).expect("daemon pod template is valid")
}

/// What the DaemonSet controller does for one DaemonSet.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DaemonSetPlan {
    /// Orphan pods to adopt.
    pub adopt: Vec<String>,
    /// Owned pods the selector no longer matches.
    pub release: Vec<String>,
    /// Nodes that need a pod.
    pub create_on: Vec<String>,
    /// Pods to delete (surplus, misscheduled, failed, or outdated under RollingUpdate).
    pub delete: Vec<String>,
    /// The template hash new pods carry.
    pub hash: String,
    /// The status to write (only if it differs).
    pub status: DaemonSetStatus,
    /// Sync again after this long (a ready pod becomes available).
    pub recheck_after: Option<Duration>,
}

/// Decides one sync of a DaemonSet over all nodes and the pods of its namespace.
pub fn plan_daemon_set(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&Pod],
    now: Timestamp,
) -> DaemonSetPlan {
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let hash = template_hash(
        &spec.template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    );
    let metas: Vec<&ObjectMeta> = pods.iter().map(|p| &p.metadata).collect();
    let claimed = claim(&ds.metadata, &spec.selector, &metas);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut plan = DaemonSetPlan {
        hash: hash.clone(),
        ..DaemonSetPlan::default()
    };
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if !(claimed.owned.contains(&name) || claimed.adopt.contains(&name)) {
            continue;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Failed") {
            plan.delete.push(name);
            continue;
        }
        if let Some(node) = daemon_pod_node(pod) {
            by_node.entry(node).or_default().push(pod);
        } else {
            plan.delete.push(name);
        }
    }
    plan.adopt = claimed.adopt;
    plan.release = claimed.release;
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let current_hash = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            == Some(&hash)
    };
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    let mut unavailable_nodes = 0;
    let mut outdated: Vec<(bool, String)> = Vec::new();
    let node_names: Vec<String> = nodes
        .iter()
        .map(|n| n.metadata.name.clone().unwrap_or_default())
        .collect();
    for node in nodes {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let should_run = should_run_on(&spec.template, node);
        let mut node_pods = by_node.remove(&node_name).unwrap_or_default();
        if should_run {
            desired += 1;
            if node_pods.is_empty() {
                plan.create_on.push(node_name.clone());
                unavailable_nodes += 1;
                continue;
            }
            current += 1;
            // Keep the oldest pod; extras go.
            node_pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            for extra in node_pods.iter().skip(1) {
                plan.delete
                    .push(extra.metadata.name.clone().unwrap_or_default());
            }
            let pod = node_pods[0];
            let is_available = pod_available(pod, min_ready, now);
            if pod_ready(pod) {
                ready += 1;
            }
            if is_available {
                available += 1;
            } else {
                unavailable_nodes += 1;
            }
            if let Some(wait) = until_available(pod, min_ready, now) {
                plan.recheck_after = Some(plan.recheck_after.map_or(wait, |w| w.min(wait)));
            }
            if current_hash(pod) {
                updated += 1;
            } else {
                outdated.push((is_available, pod.metadata.name.clone().unwrap_or_default()));
            }
        } else if !node_pods.is_empty() {
            misscheduled += 1;
            for pod in node_pods {
                plan.delete
                    .push(pod.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    // Pods for nodes that no longer exist.
    for (node, node_pods) in by_node {
        if !node_names.contains(&node) {
            for pod in node_pods {
                plan.delete
                    .push(pod.metadata.name.clone().unwrap_or_default());
            }
        }
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    if rolling {
        let max_unavailable = resolve(
            spec.update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref()),
            desired,
            true,
            0,
        )
        .max(1);
        // Outdated pods that are already unavailable go first, at no cost.
        outdated.sort();
        let mut budget = max_unavailable - unavailable_nodes;
        for (is_available, name) in outdated {
            if !is_available {
                plan.delete.push(name);
            } else if budget > 0 {
                plan.delete.push(name);
                budget -= 1;
            }
        }
    }
    if deleting {
        plan.create_on.clear();
        plan.delete.clear();
    }
    plan.status = DaemonSetStatus {
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some((desired - available).max(0)),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    plan
}

#[cfg(test)]
mod tests;
