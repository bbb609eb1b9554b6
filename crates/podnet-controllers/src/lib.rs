//! podnet-controllers keeps the cluster's desired state converging through the
//! Kubernetes API alone: it assigns pod CIDRs to nodes, schedules pods onto
//! nodes, empties and finalizes deleted namespaces, collects garbage along
//! ownerReferences and marks nodes whose agent went silent. Every controller is
//! a pure decision function over a snapshot of API objects (unit and snapshot
//! tested without a server) plus a thin loop that watches the API and applies
//! the decision; each is idempotent, so a restart from any state converges.

pub mod endpoints;
pub mod endpoints_controller;
pub mod endpointslice_mirroring;
pub mod events;
pub mod garbage_collector;
pub mod lb_ipam;
pub mod namespace_lifecycle;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod quantity;
pub mod scheduler;
pub mod workloads;
pub mod workloads_controller;

mod watch;

use std::time::Duration;

use ipnet::Ipv4Net;

/// Name under which the scheduler binds pods and records its events, as upstream.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Settings shared by all controllers; `Default` gives the kubeadm/flannel conventions.
#[derive(Clone, Debug)]
pub struct ControllersConfig {
    /// The cluster-wide pod network every node's pod CIDR is carved from.
    pub cluster_pod_cidr: Ipv4Net,
    /// Prefix length of each node's pod CIDR (24 gives 254 pods per node).
    pub node_pod_cidr_prefix_len: u8,
    /// The service network; node pod CIDRs must never overlap it.
    pub service_cidr: Ipv4Net,
    /// How long a node may go without a heartbeat (Lease renewal or Ready
    /// condition heartbeat) before it is marked Unknown and tainted unreachable.
    pub node_monitor_grace_period: Duration,
    /// How often node heartbeats are checked.
    pub node_monitor_period: Duration,
    /// Pods whose `spec.schedulerName` equals this are scheduled by this process.
    pub scheduler_name: String,
    /// Unschedulable pods are retried on every node or pod change, and at least this often.
    pub unschedulable_retry_period: Duration,
    /// A namespace that still has content is re-examined after this delay.
    pub namespace_requeue_period: Duration,
    /// How often the garbage collector re-discovers the API's resources
    /// (new CustomResourceDefinitions become visible at that pace).
    pub garbage_collector_rediscovery_period: Duration,
    /// Addresses handed to Services of type LoadBalancer (on the underlay).
    pub load_balancer_pool: Ipv4Net,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            cluster_pod_cidr: "10.244.0.0/16".parse().expect("literal cidr is valid"),
            node_pod_cidr_prefix_len: 24,
            service_cidr: "10.96.0.0/12".parse().expect("literal cidr is valid"),
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            unschedulable_retry_period: Duration::from_secs(30),
            namespace_requeue_period: Duration::from_secs(1),
            garbage_collector_rediscovery_period: Duration::from_secs(30),
            load_balancer_pool: lb_ipam::DEFAULT_POOL
                .parse()
                .expect("literal cidr is valid"),
        }
    }
}

impl ControllersConfig {
    /// Rejects settings no controller could work with, before anything starts.
    pub fn validate(&self) -> Result<(), ControllerError> {
        let cluster_prefix = self.cluster_pod_cidr.prefix_len();
        if self.node_pod_cidr_prefix_len < cluster_prefix || self.node_pod_cidr_prefix_len > 30 {
            return Err(ControllerError::InvalidConfig {
                reason: format!(
                    "node pod cidr prefix /{} must lie between the cluster pod cidr prefix /{} and /30",
                    self.node_pod_cidr_prefix_len, cluster_prefix
                ),
            });
        }
        if self.cluster_pod_cidr.contains(&self.service_cidr.network())
            || self.service_cidr.contains(&self.cluster_pod_cidr.network())
        {
            return Err(ControllerError::InvalidConfig {
                reason: format!(
                    "cluster pod cidr {} overlaps service cidr {}; choose disjoint ranges",
                    self.cluster_pod_cidr, self.service_cidr
                ),
            });
        }
        if self.node_monitor_period.is_zero() || self.node_monitor_grace_period.is_zero() {
            return Err(ControllerError::InvalidConfig {
                reason: "node monitor period and grace period must be greater than zero"
                    .to_string(),
            });
        }
        Ok(())
    }
}

/// Everything that can go wrong in podnet-controllers.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The configuration cannot work; nothing was started.
    #[error("invalid controllers configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A request to the API server failed.
    #[error("{action} failed: {source}; check that the api server is reachable and allows it")]
    Api {
        /// The request, naming the object, e.g. `bind pod default/web to node node1`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A resource quantity (such as a CPU request) is not a valid Kubernetes quantity.
    #[error("invalid quantity {quantity:?}: {reason}; write it like 250m, 2, 1.5Gi or 128Mi")]
    InvalidQuantity {
        /// The text as found in the object.
        quantity: String,
        /// Why it could not be parsed.
        reason: String,
    },
    /// A controller loop ended although it is meant to run forever.
    #[error("controller {controller} stopped: {reason}; restart the controllers process")]
    ControllerStopped {
        /// Which controller.
        controller: &'static str,
        /// Why it stopped.
        reason: String,
    },
}

impl ControllerError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        ControllerError::Api {
            action: action.into(),
            source,
        }
    }
}

/// True when the API answered with the given HTTP status code.
pub(crate) fn is_api_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Runs every controller until one of them stops, which they only do on a fatal error.
pub async fn run(client: kube::Client, config: ControllersConfig) -> Result<(), ControllerError> {
    config.validate()?;
    tokio::try_join!(
        node_ipam::run_node_ipam(client.clone(), config.clone()),
        scheduler::run_scheduler(client.clone(), config.clone()),
        namespace_lifecycle::run_namespace_lifecycle(client.clone(), config.clone()),
        garbage_collector::run_garbage_collector(client.clone(), config.clone()),
        endpoints_controller::run_endpoint_controllers(client.clone(), config.clone()),
        lb_ipam::run_lb_ipam(client.clone(), config.load_balancer_pool),
        endpointslice_mirroring::run_endpointslice_mirroring(client.clone()),
        workloads_controller::run_workload_controllers(client.clone(), config.clone()),
        node_lifecycle::run_node_lifecycle(client, config),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        ControllersConfig::default().validate().unwrap();
    }

    #[test]
    fn overlapping_service_cidr_is_rejected() {
        let config = ControllersConfig {
            service_cidr: "10.244.128.0/20".parse().unwrap(),
            ..ControllersConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("overlaps service cidr 10.244.128.0/20"),
            "{error}"
        );
    }

    #[test]
    fn node_prefix_shorter_than_cluster_prefix_is_rejected() {
        let config = ControllersConfig {
            node_pod_cidr_prefix_len: 8,
            ..ControllersConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
