//! LoadBalancer address allocation: Services of type LoadBalancer get an
//! address from a pool on the cluster's underlay (172.18.255.0/24 for local
//! clusters) in `status.loadBalancer.ingress`, which the node service proxies
//! then serve like an external IP. `spec.loadBalancerIP` is honoured when it
//! lies in the pool and is free; Services with a `loadBalancerClass` belong
//! to another implementation and are left alone. Addresses are released when
//! a Service stops being a LoadBalancer or is deleted (its status goes with
//! it). The decision is [`plan_load_balancer_ips`]; the loop only patches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::Client;

use crate::watch::Informer;
use crate::ControllerError;

/// Pool used when none is configured: the top /24 of the local clusters' underlay.
pub const DEFAULT_POOL: &str = "172.18.255.0/24";

/// What the allocator needs from one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbService {
    pub namespace: String,
    pub name: String,
    /// Type LoadBalancer with no `loadBalancerClass`.
    pub wants_address: bool,
    /// `spec.loadBalancerIP`, if any.
    pub requested: Option<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` now.
    pub current: Vec<Ipv4Addr>,
}

impl LbService {
    pub fn from_service(service: &Service) -> Option<LbService> {
        let spec = service.spec.as_ref()?;
        Some(LbService {
            namespace: service.metadata.namespace.clone()?,
            name: service.metadata.name.clone()?,
            wants_address: spec.type_.as_deref() == Some("LoadBalancer")
                && spec.load_balancer_class.is_none(),
            requested: spec
                .load_balancer_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok()),
            current: service
                .status
                .as_ref()
                .and_then(|status| status.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|ingress| ingress.ip.as_deref().and_then(|ip| ip.parse().ok()))
                .collect(),
        })
    }
}

/// One status change: `Some(ip)` to publish, `None` to clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbAssignment {
    pub namespace: String,
    pub name: String,
    pub address: Option<Ipv4Addr>,
}

/// Decides the status changes for all Services at once. Addresses already
/// published (and in the pool, not duplicated) stay; requested addresses are
/// taken when free; the rest get the lowest free address. Services that no
/// longer want one and still show a pool address are cleared. Services the
/// pool cannot serve are returned in the second list.
pub fn plan_load_balancer_ips(
    services: &[LbService],
    pool: Ipv4Net,
) -> (Vec<LbAssignment>, Vec<(String, String)>) {
    let usable =
        |ip: &Ipv4Addr| pool.contains(ip) && *ip != pool.network() && *ip != pool.broadcast();
    let mut taken: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut keep: BTreeMap<(String, String), Ipv4Addr> = BTreeMap::new();
    let mut sorted: Vec<&LbService> = services.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    // Addresses still shown by services being released stay taken until the
    // release is seen (the next pass hands them out).
    for service in sorted.iter().filter(|s| !s.wants_address) {
        taken.extend(service.current.iter().filter(|ip| usable(ip)));
    }
    for service in sorted.iter().filter(|s| s.wants_address) {
        if let Some(ip) = service.current.iter().find(|ip| usable(ip)) {
            let matches_request = service.requested.is_none_or(|requested| requested == *ip);
            if matches_request && taken.insert(*ip) {
                keep.insert((service.namespace.clone(), service.name.clone()), *ip);
            }
        }
    }
    let mut assignments = Vec::new();
    let mut exhausted = Vec::new();
    let mut free = pool.hosts().filter(|ip| usable(ip));
    for service in &sorted {
        let key = (service.namespace.clone(), service.name.clone());
        if !service.wants_address {
            if service.current.iter().any(&usable) {
                assignments.push(LbAssignment {
                    namespace: key.0,
                    name: key.1,
                    address: None,
                });
            }
            continue;
        }
        if keep.contains_key(&key) {
            continue;
        }
        let chosen = match service.requested {
            Some(requested) if usable(&requested) && !taken.contains(&requested) => Some(requested),
            Some(_) => None,
            None => free.by_ref().find(|ip| !taken.contains(ip)),
        };
        match chosen {
            Some(ip) => {
                taken.insert(ip);
                assignments.push(LbAssignment {
                    namespace: key.0,
                    name: key.1,
                    address: Some(ip),
                });
            }
            None => exhausted.push(key),
        }
    }
    (assignments, exhausted)
}

/// The status patch for one assignment.
pub fn status_patch(address: Option<Ipv4Addr>) -> serde_json::Value {
    match address {
        Some(ip) => serde_json::json!({
            "status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}
        }),
        None => serde_json::json!({"status": {"loadBalancer": {"ingress": null}}}),
    }
}

/// Watches Services and keeps LoadBalancer addresses assigned until the process stops.
pub async fn run_lb_ipam(client: Client, pool: Ipv4Net) -> Result<(), ControllerError> {
    let api: Api<Service> = Api::all(client.clone());
    let mut services = Informer::new(api, watcher::Config::default(), "services (lb ipam)");
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    while services.next_event().await.is_some() {
        if !services.synced() {
            continue;
        }
        let view: Vec<LbService> = services
            .store()
            .state()
            .iter()
            .filter_map(|service| LbService::from_service(service))
            .collect();
        let (assignments, exhausted) = plan_load_balancer_ips(&view, pool);
        for assignment in assignments {
            let namespaced: Api<Service> = Api::namespaced(client.clone(), &assignment.namespace);
            let patch = status_patch(assignment.address);
            if let Err(error) = namespaced
                .patch_status(
                    &assignment.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                let error = ControllerError::api(
                    format!(
                        "publish load balancer address of service {}/{}",
                        assignment.namespace, assignment.name
                    ),
                    error,
                );
                tracing::warn!(%error, "retrying on the next service change");
            } else {
                tracing::info!(service = %format!("{}/{}", assignment.namespace, assignment.name), address = ?assignment.address, "load balancer address");
            }
        }
        for key in exhausted {
            if reported.insert(key.clone()) {
                tracing::warn!(service = %format!("{}/{}", key.0, key.1), %pool, "no load balancer address available (pool exhausted or requested address taken or outside the pool)");
            }
        }
    }
    Err(ControllerError::ControllerStopped {
        controller: "lb-ipam",
        reason: "the service watch ended".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn svc(name: &str, wants: bool, requested: Option<&str>, current: &[&str]) -> LbService {
        LbService {
            namespace: "default".into(),
            name: name.into(),
            wants_address: wants,
            requested: requested.map(|ip| ip.parse().unwrap()),
            current: current.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn assigns_lowest_free_keeps_existing_honours_requests_and_releases() {
        let pool: Ipv4Net = "172.18.255.0/30".parse().unwrap();
        let services = vec![
            svc("a-kept", true, None, &["172.18.255.2"]),
            svc("b-new", true, None, &[]),
            svc("c-requested-taken", true, Some("172.18.255.2"), &[]),
            svc("d-no-longer", false, None, &["172.18.255.1"]),
            svc("e-outside", true, Some("10.0.0.1"), &[]),
            svc("f-none-left", true, None, &[]),
        ];
        let (assignments, exhausted) = plan_load_balancer_ips(&services, pool);
        expect![[r#"
            [
                LbAssignment {
                    namespace: "default",
                    name: "d-no-longer",
                    address: None,
                },
            ]
        "#]]
        .assert_debug_eq(&assignments);
        let names: Vec<&str> = exhausted.iter().map(|(_, n)| n.as_str()).collect();
        // b-new waits for d-no-longer's release to be seen (next pass).
        assert_eq!(
            names,
            vec!["b-new", "c-requested-taken", "e-outside", "f-none-left"]
        );
        let released: Vec<LbService> = services
            .into_iter()
            .map(|mut service| {
                if service.name == "d-no-longer" {
                    service.current.clear();
                }
                service
            })
            .collect();
        let (assignments, _) = plan_load_balancer_ips(&released, pool);
        assert_eq!(assignments[0].name, "b-new");
        assert_eq!(
            assignments[0].address,
            Some("172.18.255.1".parse().unwrap())
        );
    }

    #[test]
    fn duplicate_published_addresses_are_reassigned() {
        let pool: Ipv4Net = "172.18.255.0/24".parse().unwrap();
        let services = vec![
            svc("a", true, None, &["172.18.255.1"]),
            svc("b", true, None, &["172.18.255.1"]),
        ];
        let (assignments, _) = plan_load_balancer_ips(&services, pool);
        assert_eq!(assignments.len(), 1);
        assert_eq!(assignments[0].name, "b");
        assert_eq!(
            assignments[0].address,
            Some("172.18.255.2".parse().unwrap())
        );
    }
}
