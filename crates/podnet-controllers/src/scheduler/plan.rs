//! The scheduling decision for one pod: filter the nodes it may run on, score
//! the feasible ones, pick the best. Pure: it reads a [`ClusterSnapshot`] and
//! returns a node name or the reasons no node fits, worded as upstream's
//! scheduler words them (users and tests grep for those messages).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::snapshot::{ClusterSnapshot, NodeInfo, PodUsage};
use crate::quantity::parse_quantity_milli;

/// Taint key of nodes whose Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key of nodes whose Ready condition is Unknown (agent silent).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key of cordoned nodes.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const REASON_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const REASON_HOST_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
const REASON_TOO_MANY_PODS: &str = "Too many pods";
const REASON_BEING_DELETED: &str = "node(s) were being deleted";

/// Weight of spreading replicas of one controller relative to least-allocated
/// (upstream weighs its default topology spreading 2 against resources 1).
const SPREAD_WEIGHT: i64 = 2;
const MAX_NODE_SCORE: i64 = 100;

/// Why a pod fits no node: how many nodes there are and a histogram of reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulingFailure {
    /// Number of nodes considered.
    pub node_count: usize,
    /// Reason → number of nodes rejected for it.
    pub reasons: BTreeMap<String, usize>,
}

impl SchedulingFailure {
    /// The upstream message, e.g. `0/2 nodes are available: 2 Insufficient cpu.`
    /// (reasons as "count reason", sorted as strings, like upstream).
    pub fn message(&self) -> String {
        if self.node_count == 0 {
            return "no nodes available to schedule pods".to_string();
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        format!(
            "0/{} nodes are available: {}.",
            self.node_count,
            parts.join(", ")
        )
    }
}

/// True when a toleration tolerates a taint (upstream `ToleratesTaint`).
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration
        .effect
        .as_deref()
        .filter(|effect| !effect.is_empty())
    {
        if effect != taint.effect {
            return false;
        }
    }
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    match toleration.key.as_deref().filter(|key| !key.is_empty()) {
        // An empty key with Exists tolerates every taint.
        None => operator == "Exists",
        Some(key) if key != taint.key => false,
        Some(_) => match operator {
            "Exists" => true,
            "Equal" | "" => {
                toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
            _ => false,
        },
    }
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|toleration| toleration_tolerates_taint(toleration, taint))
}

fn synthetic_taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        value: None,
        time_added: None,
    }
}

/// The node's Ready condition status ("True", "False", "Unknown"), "Unknown" if absent.
pub fn node_ready_status(node: &Node) -> &str {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|condition| condition.type_ == "Ready")
        })
        .map(|condition| condition.status.as_str())
        .unwrap_or("Unknown")
}

/// Taints that keep pods off the node: its own NoSchedule/NoExecute taints plus
/// the ones its conditions imply even before the node lifecycle controller has
/// written them (a not-ready node must not receive pods in the meantime).
fn scheduling_taints(node: &Node) -> Vec<Taint> {
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|spec| spec.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|taint| taint.effect == "NoSchedule" || taint.effect == "NoExecute")
        .collect();
    let implied_key = match node_ready_status(node) {
        "True" => None,
        "False" => Some(TAINT_NOT_READY),
        _ => Some(
            if node
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .is_some()
            {
                TAINT_UNREACHABLE
            } else {
                // A node that never reported status is still starting up.
                TAINT_NOT_READY
            },
        ),
    };
    if let Some(key) = implied_key {
        if !taints
            .iter()
            .any(|taint| taint.key == key && taint.effect == "NoSchedule")
        {
            taints.push(synthetic_taint(key, "NoSchedule"));
        }
    }
    taints
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let as_integer = |text: &str| text.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|value| values.iter().any(|candidate| candidate == value)),
        "NotIn" => value.is_none_or(|value| !values.iter().any(|candidate| candidate == value)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(actual), Some(bound)) = (
                value.and_then(as_integer),
                values.first().and_then(|bound| as_integer(bound)),
            ) else {
                return false;
            };
            if requirement.operator == "Gt" {
                actual > bound
            } else {
                actual < bound
            }
        }
        _ => false,
    }
}

/// True when a node selector term matches the node; an empty term matches nothing.
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let labels_match = expressions.iter().all(|requirement| {
        requirement_matches(
            requirement,
            labels
                .and_then(|labels| labels.get(&requirement.key))
                .map(String::as_str),
        )
    });
    let fields_match = fields.iter().all(|requirement| {
        let value = match requirement.key.as_str() {
            "metadata.name" => node.metadata.name.as_deref(),
            _ => None,
        };
        requirement_matches(requirement, value)
    });
    labels_match && fields_match
}

fn node_matches_selector_and_required_affinity(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.metadata.labels.as_ref();
    let selector_matches = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(key, value)| labels.and_then(|labels| labels.get(key)) == Some(value));
    if !selector_matches {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|node_affinity| {
            node_affinity
                .required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| node_selector_term_matches(term, node)),
    }
}

fn allocatable_milli(node: &Node, resource: &str) -> Option<i128> {
    let status = node.status.as_ref()?;
    let quantity = status
        .allocatable
        .as_ref()
        .and_then(|allocatable| allocatable.get(resource))
        .or_else(|| {
            status
                .capacity
                .as_ref()
                .and_then(|capacity| capacity.get(resource))
        })?;
    parse_quantity_milli(&quantity.0).ok()
}

/// Checks one node in upstream's plugin order, stopping at the first failing
/// check; returns the reasons it fails (several only for resources).
pub fn filter_node(pod: &Pod, usage: &PodUsage, info: &NodeInfo) -> Result<(), Vec<String>> {
    let Some(node) = info.node.as_deref() else {
        return Err(vec![REASON_BEING_DELETED.to_string()]);
    };
    if node.metadata.deletion_timestamp.is_some() {
        return Err(vec![REASON_BEING_DELETED.to_string()]);
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.tolerations.as_deref())
        .unwrap_or_default();
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|spec| spec.unschedulable)
        .unwrap_or(false);
    if cordoned
        && !tolerated(
            tolerations,
            &synthetic_taint(TAINT_UNSCHEDULABLE, "NoSchedule"),
        )
    {
        return Err(vec![REASON_UNSCHEDULABLE.to_string()]);
    }
    if let Some(taint) = scheduling_taints(node)
        .into_iter()
        .find(|taint| !tolerated(tolerations, taint))
    {
        return Err(vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        )]);
    }
    if !node_matches_selector_and_required_affinity(pod, node) {
        return Err(vec![REASON_AFFINITY.to_string()]);
    }
    if usage.host_ports.iter().any(|wanted| {
        info.host_ports
            .iter()
            .any(|used| used.conflicts_with(wanted))
    }) {
        return Err(vec![REASON_HOST_PORTS.to_string()]);
    }
    let mut reasons = Vec::new();
    // A node that does not state its pod capacity is not limited by count.
    if let Some(max_pods) = allocatable_milli(node, "pods") {
        if (info.pod_count as i128 + 1) * 1000 > max_pods {
            reasons.push(REASON_TOO_MANY_PODS.to_string());
        }
    }
    for (resource, wanted) in &usage.requests {
        if *wanted <= 0 {
            continue;
        }
        let allocatable = allocatable_milli(node, resource).unwrap_or(0);
        let already = info.requested.get(resource).copied().unwrap_or(0);
        if allocatable - already < *wanted {
            reasons.push(format!("Insufficient {resource}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

fn least_allocated_score(usage: &PodUsage, info: &NodeInfo, node: &Node) -> i64 {
    let score_of = |allocatable: Option<i128>, requested: i128| -> i64 {
        match allocatable {
            Some(allocatable) if allocatable > 0 => {
                let free = (allocatable - requested).max(0);
                (free * i128::from(MAX_NODE_SCORE) / allocatable) as i64
            }
            _ => 0,
        }
    };
    let cpu = score_of(
        allocatable_milli(node, "cpu"),
        info.nonzero_cpu_milli + usage.nonzero_cpu_milli,
    );
    let memory = score_of(
        allocatable_milli(node, "memory"),
        info.nonzero_memory_milli + usage.nonzero_memory_milli,
    );
    (cpu + memory) / 2
}

fn preferred_affinity_weight(pod: &Pod, node: &Node) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.affinity.as_ref())
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|node_affinity| {
            node_affinity
                .preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|preferred| node_selector_term_matches(&preferred.preference, node))
        .map(|preferred| i64::from(preferred.weight))
        .sum()
}

/// Picks the node for a pod, or explains why none fits.
pub fn schedule_pod(
    pod: &Pod,
    usage: &PodUsage,
    snapshot: &ClusterSnapshot,
) -> Result<String, SchedulingFailure> {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible: Vec<(&str, &NodeInfo, &Node)> = Vec::new();
    for (name, info) in snapshot.nodes() {
        let Some(node) = info.node.as_deref() else {
            continue;
        };
        match filter_node(pod, usage, info) {
            Ok(()) => feasible.push((name, info, node)),
            Err(node_reasons) => {
                for reason in node_reasons {
                    *reasons.entry(reason).or_insert(0) += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        return Err(SchedulingFailure {
            node_count: snapshot.node_count(),
            reasons,
        });
    }
    let same_controller_count = |info: &NodeInfo| -> i64 {
        usage
            .controller_uid
            .as_ref()
            .and_then(|uid| info.pods_per_controller.get(uid))
            .map_or(0, |count| *count as i64)
    };
    let max_same_controller = feasible
        .iter()
        .map(|(_, info, _)| same_controller_count(info))
        .max()
        .unwrap_or(0);
    let max_preferred = feasible
        .iter()
        .map(|(_, _, node)| preferred_affinity_weight(pod, node))
        .max()
        .unwrap_or(0);
    let best = feasible
        .iter()
        .map(|(name, info, node)| {
            let spread = if max_same_controller == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max_same_controller - same_controller_count(info))
                    / max_same_controller
            };
            let preferred = if max_preferred == 0 {
                0
            } else {
                MAX_NODE_SCORE * preferred_affinity_weight(pod, node) / max_preferred
            };
            let score =
                least_allocated_score(usage, info, node) + SPREAD_WEIGHT * spread + preferred;
            (
                score,
                std::cmp::Reverse(info.pod_count),
                std::cmp::Reverse(*name),
            )
        })
        .max()
        .expect("feasible is not empty");
    Ok(best.2 .0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use serde_json::json;
    use std::sync::Arc;

    fn node(name: &str, cpu: &str, extra: serde_json::Value) -> Arc<Node> {
        let mut value = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        merge(&mut value, extra);
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
                for (key, value) in patch {
                    merge(target.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
            (target, patch) => *target = patch,
        }
    }

    fn pod(name: &str, spec_extra: serde_json::Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        });
        merge(&mut value, json!({ "spec": spec_extra }));
        serde_json::from_value(value).unwrap()
    }

    fn pod_requesting_cpu(name: &str, cpu: &str) -> Pod {
        pod(
            name,
            json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn cluster(nodes: Vec<Arc<Node>>) -> ClusterSnapshot {
        let mut snapshot = ClusterSnapshot::default();
        for node in nodes {
            snapshot.upsert_node(node);
        }
        snapshot
    }

    fn check(pod: &Pod, snapshot: &ClusterSnapshot, expected: Expect) {
        let outcome = match schedule_pod(pod, &PodUsage::from_pod(pod), snapshot) {
            Ok(node) => format!("bound to {node}"),
            Err(failure) => failure.message(),
        };
        expected.assert_eq(&outcome);
    }

    #[test]
    fn insufficient_cpu_on_every_node_reads_like_upstream() {
        let snapshot = cluster(vec![node("n1", "1", json!({})), node("n2", "1", json!({}))]);
        check(
            &pod_requesting_cpu("big", "2"),
            &snapshot,
            expect!["0/2 nodes are available: 2 Insufficient cpu."],
        );
    }

    #[test]
    fn requests_of_pods_already_placed_count_against_allocatable() {
        let mut snapshot = cluster(vec![node("n1", "1", json!({})), node("n2", "2", json!({}))]);
        let first = pod_requesting_cpu("first", "1500m");
        snapshot.place_pod("default/first".into(), "n2", PodUsage::from_pod(&first));
        check(
            &pod_requesting_cpu("second", "800m"),
            &snapshot,
            expect!["bound to n1"],
        );
        check(
            &pod_requesting_cpu("third", "1200m"),
            &snapshot,
            expect!["0/2 nodes are available: 2 Insufficient cpu."],
        );
    }

    #[test]
    fn mixed_reasons_are_counted_and_sorted() {
        let snapshot = cluster(vec![
            node("n1", "1", json!({"spec": {"unschedulable": true}})),
            node(
                "n2",
                "1",
                json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
            ),
            node(
                "n3",
                "1",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
            node("n4", "1", json!({"metadata": {"labels": {"disk": "hdd"}}})),
            node(
                "n5",
                "100m",
                json!({"metadata": {"labels": {"disk": "ssd"}}, "status": {"allocatable": {"pods": "0"}}}),
            ),
        ]);
        check(
            &pod("p", json!({"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]})),
            &snapshot,
            expect!["0/5 nodes are available: 1 Insufficient cpu, 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable."],
        );
    }

    #[test]
    fn tolerations_admit_tainted_and_cordoned_nodes() {
        let snapshot = cluster(vec![node(
            "n1",
            "1",
            json!({"spec": {"unschedulable": true, "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}}),
        )]);
        check(
            &pod("p", json!({})),
            &snapshot,
            expect!["0/1 nodes are available: 1 node(s) were unschedulable."],
        );
        check(
            &pod(
                "p",
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}),
            ),
            &snapshot,
            expect!["0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}."],
        );
        check(
            &pod(
                "p",
                json!({"tolerations": [
                    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "dedicated", "value": "gpu"}
                ]}),
            ),
            &snapshot,
            expect!["bound to n1"],
        );
        check(
            &pod("p", json!({"tolerations": [{"operator": "Exists"}]})),
            &snapshot,
            expect!["bound to n1"],
        );
    }

    #[test]
    fn toleration_matching_rules() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let toleration =
            |value: serde_json::Value| -> Toleration { serde_json::from_value(value).unwrap() };
        assert!(toleration_tolerates_taint(
            &toleration(json!({"key": "k", "value": "v"})),
            &taint
        ));
        assert!(!toleration_tolerates_taint(
            &toleration(json!({"key": "k", "value": "w"})),
            &taint
        ));
        assert!(toleration_tolerates_taint(
            &toleration(json!({"key": "k", "operator": "Exists"})),
            &taint
        ));
        assert!(!toleration_tolerates_taint(
            &toleration(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(!toleration_tolerates_taint(
            &toleration(json!({"operator": "Equal"})),
            &taint
        ));
    }

    #[test]
    fn unknown_ready_condition_implies_the_unreachable_taint() {
        let snapshot = cluster(vec![node(
            "n1",
            "1",
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        )]);
        check(
            &pod("p", json!({})),
            &snapshot,
            expect!["0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."],
        );
    }

    #[test]
    fn required_node_affinity_operators() {
        let snapshot = cluster(vec![
            node(
                "n1",
                "4",
                json!({"metadata": {"labels": {"zone": "a", "gen": "3"}}}),
            ),
            node(
                "n2",
                "4",
                json!({"metadata": {"labels": {"zone": "b", "gen": "5"}}}),
            ),
            node("n3", "4", json!({"metadata": {"labels": {"zone": "c"}}})),
        ]);
        let with_expressions = |expressions: serde_json::Value| {
            pod(
                "p",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": expressions}]}}}}),
            )
        };
        check(
            &with_expressions(json!([{"key": "zone", "operator": "In", "values": ["b"]}])),
            &snapshot,
            expect!["bound to n2"],
        );
        check(
            &with_expressions(json!([{"key": "zone", "operator": "NotIn", "values": ["a", "b"]}])),
            &snapshot,
            expect!["bound to n3"],
        );
        check(
            &with_expressions(json!([{"key": "gen", "operator": "DoesNotExist"}])),
            &snapshot,
            expect!["bound to n3"],
        );
        check(
            &with_expressions(
                json!([{"key": "gen", "operator": "Exists"}, {"key": "gen", "operator": "Lt", "values": ["4"]}]),
            ),
            &snapshot,
            expect!["bound to n1"],
        );
        check(
            &with_expressions(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
            &snapshot,
            expect!["bound to n2"],
        );
        check(
            &with_expressions(json!([{"key": "zone", "operator": "In", "values": ["z"]}])),
            &snapshot,
            expect![
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
            ],
        );
        // Terms are ORed; fields select by name.
        let by_name = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}
            ]}}}}),
        );
        check(&by_name, &snapshot, expect!["bound to n3"]);
    }

    #[test]
    fn preferred_affinity_wins_over_small_resource_differences() {
        let snapshot = cluster(vec![
            node("n1", "4", json!({})),
            node("n2", "3", json!({"metadata": {"labels": {"fast": "yes"}}})),
        ]);
        let preferring = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "preference": {"matchExpressions": [{"key": "fast", "operator": "Exists"}]}}
            ]}}}),
        );
        check(&preferring, &snapshot, expect!["bound to n2"]);
    }

    #[test]
    fn replicas_of_one_controller_spread_across_nodes() {
        let mut snapshot = cluster(vec![
            node("n1", "4", json!({})),
            node("n2", "4", json!({})),
            node("n3", "4", json!({})),
        ]);
        let replica = |name: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs1", "controller": true}]},
                "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}
            }))
            .unwrap()
        };
        let mut placed = Vec::new();
        for index in 0..6 {
            let pod = replica(&format!("web-{index}"));
            let usage = PodUsage::from_pod(&pod);
            let node_name = schedule_pod(&pod, &usage, &snapshot).unwrap();
            snapshot.place_pod(format!("default/web-{index}"), &node_name, usage);
            placed.push(node_name);
        }
        expect![[r#"["n1", "n2", "n3", "n1", "n2", "n3"]"#]].assert_eq(&format!("{placed:?}"));
    }

    #[test]
    fn host_port_conflicts_exclude_a_node() {
        let mut snapshot = cluster(vec![node("n1", "4", json!({}))]);
        let with_port = |name: &str| {
            pod(
                name,
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
            )
        };
        let first = with_port("a");
        snapshot.place_pod("default/a".into(), "n1", PodUsage::from_pod(&first));
        check(
            &with_port("b"),
            &snapshot,
            expect!["0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."],
        );
    }

    #[test]
    fn pod_count_limit_applies() {
        let mut snapshot = cluster(vec![node(
            "n1",
            "4",
            json!({"status": {"allocatable": {"pods": "1"}}}),
        )]);
        snapshot.place_pod("default/a".into(), "n1", PodUsage::default());
        check(
            &pod("b", json!({})),
            &snapshot,
            expect!["0/1 nodes are available: 1 Too many pods."],
        );
    }

    #[test]
    fn no_nodes_at_all() {
        check(
            &pod("p", json!({})),
            &ClusterSnapshot::default(),
            expect!["no nodes available to schedule pods"],
        );
    }
}
