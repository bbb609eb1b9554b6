//! The cluster's DNS data: compact facts taken from Services, EndpointSlices,
//! Pods and Namespaces (the [`World`]), and the immutable, indexed
//! [`Snapshot`] the answer path reads. Building a snapshot is pure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// A port of a Service or an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Lowercase port name ("" when unnamed).
    pub name: String,
    /// Lowercase protocol: tcp, udp or sctp.
    pub protocol: String,
    pub port: u16,
}

/// What DNS needs of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: String,
    pub name: String,
    /// Empty for headless services.
    pub cluster_ips: Vec<IpAddr>,
    pub external_name: Option<String>,
    pub ports: Vec<PortInfo>,
    pub publish_not_ready: bool,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub addresses: Vec<IpAddr>,
    pub hostname: Option<String>,
    pub ready: bool,
}

/// What DNS needs of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub namespace: String,
    pub service: String,
    pub endpoints: Vec<EndpointInfo>,
    pub ports: Vec<PortInfo>,
}

/// What DNS needs of a Pod with `hostname` and `subdomain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub hostname: String,
    pub subdomain: String,
    pub ips: Vec<IpAddr>,
    pub ready: bool,
}

/// Everything the watches have seen, keyed by `(namespace, name)`.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub namespaces: HashSet<String>,
    pub services: HashMap<(String, String), ServiceInfo>,
    pub slices: HashMap<(String, String), SliceInfo>,
    pub pods: HashMap<(String, String), PodInfo>,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The key under which a Service/EndpointSlice/Pod/Namespace is stored in [`World`].
pub fn object_key<K: kube::Resource>(object: &K) -> (String, String) {
    key(object.meta())
}

fn parse_ips<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    texts
        .into_iter()
        .filter_map(|text| text.parse().ok())
        .collect()
}

/// The DNS view of a Service.
pub fn service_info(service: &Service) -> ServiceInfo {
    let (namespace, name) = key(&service.metadata);
    let spec = service.spec.clone().unwrap_or_default();
    let mut cluster_ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => parse_ips(ips),
        _ => parse_ips(spec.cluster_ip.iter()),
    };
    cluster_ips.dedup();
    let external_name = match spec.type_.as_deref() {
        Some("ExternalName") => spec
            .external_name
            .clone()
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase()),
        _ => None,
    };
    ServiceInfo {
        namespace,
        name: name.to_ascii_lowercase(),
        cluster_ips: if external_name.is_some() {
            Vec::new()
        } else {
            cluster_ips
        },
        external_name,
        ports: spec
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                Some(PortInfo {
                    name: port.name.clone().unwrap_or_default().to_ascii_lowercase(),
                    protocol: port
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_ascii_lowercase(),
                    port: u16::try_from(port.port).ok()?,
                })
            })
            .collect(),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    }
}

/// The DNS view of an EndpointSlice (None when it names no service).
pub fn slice_info(slice: &EndpointSlice) -> Option<SliceInfo> {
    let (namespace, _) = key(&slice.metadata);
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .to_ascii_lowercase();
    Some(SliceInfo {
        namespace,
        service,
        endpoints: slice
            .endpoints
            .iter()
            .map(|endpoint| EndpointInfo {
                addresses: parse_ips(&endpoint.addresses),
                hostname: endpoint
                    .hostname
                    .clone()
                    .filter(|h| !h.is_empty())
                    .map(|h| h.to_ascii_lowercase()),
                // Unknown readiness is interpreted as ready (discovery/v1).
                ready: endpoint
                    .conditions
                    .as_ref()
                    .and_then(|c| c.ready)
                    .unwrap_or(true),
            })
            .collect(),
        ports: slice
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                Some(PortInfo {
                    name: port.name.clone().unwrap_or_default().to_ascii_lowercase(),
                    protocol: port
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "TCP".into())
                        .to_ascii_lowercase(),
                    port: u16::try_from(port.port?).ok()?,
                })
            })
            .collect(),
    })
}

/// The DNS view of a Pod (None unless it sets both hostname and subdomain).
pub fn pod_info(pod: &Pod) -> Option<PodInfo> {
    let (namespace, _) = key(&pod.metadata);
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.clone().filter(|h| !h.is_empty())?;
    let subdomain = spec.subdomain.clone().filter(|s| !s.is_empty())?;
    let status = pod.status.clone().unwrap_or_default();
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips = parse_ips(status.pod_ip.iter());
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Some(PodInfo {
        namespace,
        hostname: hostname.to_ascii_lowercase(),
        subdomain: subdomain.to_ascii_lowercase(),
        ips,
        ready,
    })
}

/// The name of a Namespace.
pub fn namespace_name(namespace: &Namespace) -> String {
    namespace.metadata.name.clone().unwrap_or_default()
}

/// How a service answers its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    External(Name),
}

/// One addressable endpoint of a service: `<label>.<svc>.<ns>.svc.<zone>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// The hostname, or the address with dashes (`10-244-1-5`).
    pub label: String,
    /// The slice's ports, shared by its endpoints.
    pub ports: Arc<[PortInfo]>,
}

impl Endpoint {
    /// `<label>.<service>`: built when answering rather than stored (one
    /// name per endpoint is most of a large snapshot otherwise). The label
    /// was checked when the snapshot was built.
    pub fn name_in(&self, service: &Name) -> Name {
        child(service, &self.label).unwrap_or_else(|| service.clone())
    }
}

/// A service as the answer path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// `<svc>.<ns>.svc.<zone>.`
    pub name: Name,
    pub kind: ServiceKind,
    pub ports: Vec<PortInfo>,
    /// Ready (or published) endpoints, ordered by address.
    pub endpoints: Vec<Endpoint>,
    /// `hostname` → addresses of pods whose `subdomain` is this service.
    pub pod_hosts: BTreeMap<String, Vec<IpAddr>>,
}

/// The immutable, indexed view the answer path reads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Lowercase, fully qualified (`cluster.local.`).
    pub zone: Name,
    pub ttl: u32,
    /// SOA serial: changes when the data changes.
    pub serial: u32,
    /// False until every watch has listed once: zone queries get SERVFAIL.
    pub synced: bool,
    pub namespaces: HashSet<String>,
    /// Keyed by `(namespace, service)`, both lowercase.
    pub services: HashMap<(String, String), ServiceEntry>,
    /// Reverse records: address → names.
    pub ptr: HashMap<IpAddr, Vec<Name>>,
    /// ClusterIPs of kube-system/kube-dns (for `ns.dns.<zone>` and NS glue).
    pub dns_ips: Vec<IpAddr>,
}

/// The address with dashes, as CoreDNS names endpoints without hostnames.
pub fn dashed(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

fn child(parent: &Name, label: &str) -> Option<Name> {
    parent.prepend_label(label).ok()
}

impl Snapshot {
    /// An empty snapshot for `zone` that answers SERVFAIL until synced.
    pub fn unsynced(zone: &str, ttl: u32) -> Snapshot {
        Snapshot {
            zone: zone_name(zone),
            ttl,
            serial: 0,
            synced: false,
            namespaces: HashSet::new(),
            services: HashMap::new(),
            ptr: HashMap::new(),
            dns_ips: Vec::new(),
        }
    }

    /// Index `world` for answering. Pure.
    pub fn build(world: &World, zone: &str, ttl: u32, serial: u32) -> Snapshot {
        let zone = zone_name(zone);
        let svc_zone = child(&zone, "svc").expect("svc.<zone> is a valid name");
        let mut services = HashMap::with_capacity(world.services.len());
        // A service address answers with the service only; other addresses
        // with every endpoint name they have (as CoreDNS).
        let mut ptr: HashMap<IpAddr, Vec<Name>> = HashMap::new();
        let mut endpoint_ptr: HashMap<IpAddr, Vec<Name>> = HashMap::new();
        let mut slices_by_service: HashMap<(&str, &str), Vec<&SliceInfo>> = HashMap::new();
        for slice in world.slices.values() {
            slices_by_service
                .entry((slice.namespace.as_str(), slice.service.as_str()))
                .or_default()
                .push(slice);
        }
        let mut pods_by_subdomain: HashMap<(&str, &str), Vec<&PodInfo>> = HashMap::new();
        for pod in world.pods.values() {
            pods_by_subdomain
                .entry((pod.namespace.as_str(), pod.subdomain.as_str()))
                .or_default()
                .push(pod);
        }
        for service in world.services.values() {
            let namespace = service.namespace.to_ascii_lowercase();
            let Some(name) = child(&svc_zone, &namespace).and_then(|ns| child(&ns, &service.name))
            else {
                continue;
            };
            let kind = if let Some(external) = &service.external_name {
                match Name::from_ascii(external) {
                    Ok(mut target) => {
                        target.set_fqdn(true);
                        ServiceKind::External(target)
                    }
                    Err(_) => continue,
                }
            } else if service.cluster_ips.is_empty() {
                ServiceKind::Headless
            } else {
                ServiceKind::ClusterIp(service.cluster_ips.clone())
            };
            if let ServiceKind::ClusterIp(ips) = &kind {
                for ip in ips {
                    ptr.entry(*ip).or_default().push(name.clone());
                }
            }
            let endpoint_ptr = &mut endpoint_ptr;
            let mut endpoints: Vec<Endpoint> = Vec::new();
            if !matches!(kind, ServiceKind::External(_)) {
                let key = (service.namespace.as_str(), service.name.as_str());
                for slice in slices_by_service.get(&key).into_iter().flatten() {
                    let ports: Arc<[PortInfo]> = slice.ports.clone().into();
                    for endpoint in &slice.endpoints {
                        if !(endpoint.ready || service.publish_not_ready) {
                            continue;
                        }
                        for ip in &endpoint.addresses {
                            let label = endpoint.hostname.clone().unwrap_or_else(|| dashed(ip));
                            if endpoints.iter().any(|e| e.ip == *ip && e.label == label) {
                                continue;
                            }
                            if child(&name, &label).is_none() {
                                continue;
                            }
                            endpoints.push(Endpoint {
                                ip: *ip,
                                label,
                                ports: ports.clone(),
                            });
                        }
                    }
                }
                endpoints.sort_by(|a, b| (a.ip, &a.label).cmp(&(b.ip, &b.label)));
                for endpoint in &endpoints {
                    endpoint_ptr
                        .entry(endpoint.ip)
                        .or_default()
                        .push(endpoint.name_in(&name));
                }
            }
            let mut pod_hosts: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
            if kind == ServiceKind::Headless {
                let key = (service.namespace.as_str(), service.name.as_str());
                for pod in pods_by_subdomain.get(&key).into_iter().flatten() {
                    if pod.ready || service.publish_not_ready {
                        let ips = pod_hosts.entry(pod.hostname.clone()).or_default();
                        ips.extend(pod.ips.iter().copied());
                        ips.sort();
                        ips.dedup();
                    }
                }
                pod_hosts.retain(|_, ips| !ips.is_empty());
            }
            services.insert(
                (namespace, service.name.clone()),
                ServiceEntry {
                    name,
                    kind,
                    ports: service.ports.clone(),
                    endpoints,
                    pod_hosts,
                },
            );
        }
        for (ip, names) in endpoint_ptr {
            ptr.entry(ip).or_insert(names);
        }
        for names in ptr.values_mut() {
            names.sort_by(|a, b| a.cmp_case(b));
            names.dedup();
        }
        let dns_ips = match services.get(&("kube-system".to_string(), "kube-dns".to_string())) {
            Some(ServiceEntry {
                kind: ServiceKind::ClusterIp(ips),
                ..
            }) => ips.clone(),
            _ => Vec::new(),
        };
        Snapshot {
            zone,
            ttl,
            serial,
            synced: true,
            namespaces: world
                .namespaces
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            services,
            ptr,
            dns_ips,
        }
    }
}

/// `cluster.local` → `cluster.local.` (lowercase, fully qualified).
pub fn zone_name(zone: &str) -> Name {
    let mut name = Name::from_ascii(zone.trim_end_matches('.'))
        .unwrap_or_else(|_| Name::from_ascii("cluster.local").expect("valid"))
        .to_lowercase();
    name.set_fqdn(true);
    name
}
