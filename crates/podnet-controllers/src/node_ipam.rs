//! Node IPAM: gives every Node a pod CIDR (`spec.podCIDR` and `spec.podCIDRs`)
//! carved from the cluster pod network, the job of upstream's node-ipam
//! controller with the range allocator.
//!
//! There is no allocator state besides the Node objects themselves: the set of
//! taken ranges is recomputed from every Node's spec on each pass, so a restart
//! or a crash between allocations cannot hand out a range twice. Allocation
//! only starts once the full node list has been received for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};

use crate::events::{EventSource, EventType, Recorder};
use crate::watch::Informer;
use crate::{ControllerError, ControllersConfig};

/// What the planner needs to know about one Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePodCidrs {
    /// The Node's name.
    pub node_name: String,
    /// `spec.podCIDRs`, or `spec.podCIDR` when only that is set.
    pub pod_cidrs: Vec<String>,
}

impl NodePodCidrs {
    /// Extracts the relevant fields from a Node.
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let mut pod_cidrs = spec
            .and_then(|spec| spec.pod_cidrs.clone())
            .unwrap_or_default();
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(spec.and_then(|spec| spec.pod_cidr.clone()));
        }
        NodePodCidrs {
            node_name: node.metadata.name.clone().unwrap_or_default(),
            pod_cidrs,
        }
    }
}

/// One allocation to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCidrAssignment {
    /// The Node that gets it.
    pub node_name: String,
    /// The range.
    pub pod_cidr: Ipv4Net,
}

/// The outcome of one planning pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodCidrPlan {
    /// Nodes without a pod CIDR and the free range each should get.
    pub assignments: Vec<PodCidrAssignment>,
    /// Nodes without a pod CIDR for which no free range is left.
    pub nodes_without_free_range: Vec<String>,
}

/// Plans pod CIDRs for the nodes that have none, lowest free range first and
/// nodes in name order, so the outcome is deterministic. A range is taken if
/// any Node's pod CIDR overlaps it, whatever that Node's prefix length.
pub fn plan_pod_cidrs(
    nodes: &[NodePodCidrs],
    cluster_pod_cidr: Ipv4Net,
    node_prefix_len: u8,
) -> PodCidrPlan {
    let node_prefix_len = node_prefix_len.clamp(cluster_pod_cidr.prefix_len(), 32);
    let subnet_count: u64 = 1 << (node_prefix_len - cluster_pod_cidr.prefix_len());
    let cluster_base = u32::from(cluster_pod_cidr.network());
    let subnet_shift = 32 - u32::from(node_prefix_len);
    let index_of =
        |address: Ipv4Addr| u64::from((u32::from(address) - cluster_base) >> subnet_shift);

    let mut taken: BTreeSet<u64> = BTreeSet::new();
    let mut nodes_needing_a_range: Vec<&str> = Vec::new();
    for node in nodes {
        if node.pod_cidrs.is_empty() {
            nodes_needing_a_range.push(&node.node_name);
            continue;
        }
        for text in &node.pod_cidrs {
            let Ok(IpNet::V4(used)) = text.parse::<IpNet>() else {
                continue;
            };
            let used = used.trunc();
            let overlaps_cluster = cluster_pod_cidr.contains(&used.network())
                || used.contains(&cluster_pod_cidr.network());
            if !overlaps_cluster {
                continue;
            }
            // A range larger than the cluster network (or equal) takes everything.
            if used.prefix_len() <= cluster_pod_cidr.prefix_len() {
                taken.extend(0..subnet_count);
                continue;
            }
            let first = index_of(used.network());
            let last = index_of(used.broadcast());
            taken.extend(first..=last);
        }
    }
    nodes_needing_a_range.sort_unstable();
    nodes_needing_a_range.dedup();

    let mut plan = PodCidrPlan::default();
    let mut candidate_index: u64 = 0;
    for node_name in nodes_needing_a_range {
        while taken.contains(&candidate_index) {
            candidate_index += 1;
        }
        if candidate_index >= subnet_count {
            plan.nodes_without_free_range.push(node_name.to_string());
            continue;
        }
        let network = Ipv4Addr::from(cluster_base + ((candidate_index as u32) << subnet_shift));
        let pod_cidr =
            Ipv4Net::new(network, node_prefix_len).expect("prefix length was clamped to 32");
        taken.insert(candidate_index);
        plan.assignments.push(PodCidrAssignment {
            node_name: node_name.to_string(),
            pod_cidr,
        });
    }
    plan
}

/// The merge patch that writes an assignment. `podCIDR` is immutable once set,
/// so writing it on a Node that meanwhile got one is refused by the API server
/// rather than silently overwriting it.
pub fn pod_cidr_patch(assignment: &PodCidrAssignment) -> serde_json::Value {
    let cidr = assignment.pod_cidr.to_string();
    serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } })
}

/// Watches Nodes and assigns pod CIDRs until the process stops.
pub async fn run_node_ipam(
    client: Client,
    config: ControllersConfig,
) -> Result<(), ControllerError> {
    config.validate()?;
    let nodes_api: Api<Node> = Api::all(client.clone());
    let mut nodes = Informer::new(
        nodes_api.clone(),
        watcher::Config::default(),
        "nodes (node ipam)",
    );
    let recorder = Recorder::new(client, EventSource::component("node-ipam-controller"));
    // Assignments written but not yet seen back through the watch: they count
    // as taken so a quick second pass cannot give the same range away again.
    let mut written_not_yet_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut reported_exhausted: BTreeSet<String> = BTreeSet::new();
    while nodes.next_event().await.is_some() {
        if !nodes.synced() {
            continue;
        }
        let mut view: Vec<NodePodCidrs> = nodes
            .store()
            .state()
            .iter()
            .filter(|node| node.metadata.deletion_timestamp.is_none())
            .map(|node| NodePodCidrs::from_node(node))
            .collect();
        written_not_yet_seen.retain(|name, _| {
            view.iter()
                .any(|node| &node.node_name == name && node.pod_cidrs.is_empty())
        });
        for node in &mut view {
            if let Some(cidr) = written_not_yet_seen.get(&node.node_name) {
                node.pod_cidrs = vec![cidr.clone()];
            }
        }
        let plan = plan_pod_cidrs(
            &view,
            config.cluster_pod_cidr,
            config.node_pod_cidr_prefix_len,
        );
        for assignment in &plan.assignments {
            let patch = pod_cidr_patch(assignment);
            match nodes_api
                .patch(
                    &assignment.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %assignment.node_name, cidr = %assignment.pod_cidr, "assigned pod cidr");
                    written_not_yet_seen.insert(
                        assignment.node_name.clone(),
                        assignment.pod_cidr.to_string(),
                    );
                    reported_exhausted.remove(&assignment.node_name);
                }
                Err(error) => {
                    let error = ControllerError::api(
                        format!(
                            "assign pod cidr {} to node {}",
                            assignment.pod_cidr, assignment.node_name
                        ),
                        error,
                    );
                    tracing::warn!(%error, "pod cidr assignment failed; retrying on the next node change");
                }
            }
        }
        for node_name in &plan.nodes_without_free_range {
            if !reported_exhausted.insert(node_name.clone()) {
                continue;
            }
            let Some(node) = nodes
                .store()
                .state()
                .into_iter()
                .find(|node| node.metadata.name.as_ref() == Some(node_name))
            else {
                continue;
            };
            tracing::warn!(node = %node_name, cluster_cidr = %config.cluster_pod_cidr, "no free pod cidr left");
            recorder.publish(
                node.object_ref(&()),
                EventType::Warning,
                "CIDRNotAvailable",
                format!("Node {node_name} status is now: CIDRNotAvailable"),
            );
        }
    }
    Err(ControllerError::ControllerStopped {
        controller: "node-ipam",
        reason: "the node watch ended".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn node(name: &str, cidrs: &[&str]) -> NodePodCidrs {
        NodePodCidrs {
            node_name: name.to_string(),
            pod_cidrs: cidrs.iter().map(|cidr| cidr.to_string()).collect(),
        }
    }

    fn check(nodes: &[NodePodCidrs], cluster: &str, prefix: u8, expected: expect_test::Expect) {
        let plan = plan_pod_cidrs(nodes, cluster.parse().unwrap(), prefix);
        let mut rendered = String::new();
        for assignment in &plan.assignments {
            rendered.push_str(&format!(
                "{} <- {}\n",
                assignment.node_name, assignment.pod_cidr
            ));
        }
        for node_name in &plan.nodes_without_free_range {
            rendered.push_str(&format!("{node_name} <- exhausted\n"));
        }
        expected.assert_eq(&rendered);
    }

    #[test]
    fn fresh_cluster_gets_consecutive_ranges_in_name_order() {
        check(
            &[node("node2", &[]), node("node1", &[]), node("node3", &[])],
            "10.244.0.0/16",
            24,
            expect![[r#"
                node1 <- 10.244.0.0/24
                node2 <- 10.244.1.0/24
                node3 <- 10.244.2.0/24
            "#]],
        );
    }

    #[test]
    fn ranges_already_held_are_skipped_and_holes_are_reused() {
        check(
            &[
                node("a", &["10.244.0.0/24"]),
                node("b", &["10.244.2.0/24"]),
                node("c", &[]),
                node("d", &[]),
            ],
            "10.244.0.0/16",
            24,
            expect![[r#"
                c <- 10.244.1.0/24
                d <- 10.244.3.0/24
            "#]],
        );
    }

    #[test]
    fn foreign_prefix_lengths_block_every_overlapping_range() {
        // A node configured by hand with a /23 holds two /24s; a /25 holds one.
        check(
            &[
                node("a", &["10.244.0.0/23"]),
                node("b", &["10.244.2.128/25"]),
                node("c", &[]),
            ],
            "10.244.0.0/16",
            24,
            expect![[r#"
                c <- 10.244.3.0/24
            "#]],
        );
    }

    #[test]
    fn ranges_outside_the_cluster_network_and_ipv6_are_ignored() {
        check(
            &[
                node("a", &["10.99.0.0/24", "fd00::/64"]),
                node("b", &["garbage"]),
                node("c", &[]),
            ],
            "10.244.0.0/16",
            24,
            expect![[r#"
                c <- 10.244.0.0/24
            "#]],
        );
    }

    #[test]
    fn exhaustion_is_reported_per_node() {
        check(
            &[
                node("a", &["10.244.0.0/25"]),
                node("b", &[]),
                node("c", &[]),
            ],
            "10.244.0.0/24",
            25,
            expect![[r#"
                b <- 10.244.0.128/25
                c <- exhausted
            "#]],
        );
    }

    #[test]
    fn plan_is_stable_once_everything_is_assigned() {
        let plan = plan_pod_cidrs(
            &[node("a", &["10.244.0.0/24"])],
            "10.244.0.0/16".parse().unwrap(),
            24,
        );
        assert_eq!(plan, PodCidrPlan::default());
    }

    #[test]
    fn patch_sets_both_fields() {
        let patch = pod_cidr_patch(&PodCidrAssignment {
            node_name: "n".into(),
            pod_cidr: "10.244.7.0/24".parse().unwrap(),
        });
        expect![[r#"{"spec":{"podCIDR":"10.244.7.0/24","podCIDRs":["10.244.7.0/24"]}}"#]]
            .assert_eq(&patch.to_string());
    }
}
