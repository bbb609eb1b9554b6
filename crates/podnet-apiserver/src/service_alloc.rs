//! Service address and port allocation, as upstream's service registry does
//! it synchronously on create and update: cluster IPs from the service CIDR,
//! node ports from 30000-32767 for NodePort and LoadBalancer services, and a
//! health-check node port for LoadBalancers with externalTrafficPolicy Local.
//!
//! The Service objects in the store are the allocation record: the in-memory
//! bitmaps are rebuilt from them when the server opens, so allocations survive
//! restarts without a second source of truth. A write first *reserves* what it
//! needs (all or nothing: a bad request reserves nothing), then either
//! commits (the store write succeeded; what the old object held and the new
//! one no longer does is released) or rolls back (the write failed).
//!
//! Like upstream, each range has a small static band at its start (the first
//! 256 cluster IPs, the first 86 node ports) that dynamic allocation only
//! uses once the rest is full, so addresses people pick by hand (10.96.0.10
//! for DNS) rarely collide with generated ones.

use crate::ApiError;
use podnet_model::validation::FieldCause;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// The service network (kubeadm's default).
pub const SERVICE_CIDR_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 0);
/// Prefix length of the service network.
pub const SERVICE_CIDR_PREFIX: u8 = 12;
/// The `kubernetes` service's address: the first of the service network.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// First node port.
pub const NODE_PORT_MIN: u16 = 30000;
/// Last node port.
pub const NODE_PORT_MAX: u16 = 32767;

/// Upstream's static band: `min(max(16, size / divisor), max)` at the range start.
fn static_band(size: u64, divisor: u64, max: u64) -> u64 {
    (size / divisor).clamp(16, max)
}

/// What one write reserved and, once it is committed, releases.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Newly reserved cluster IPs (released again on rollback).
    ips: Vec<u32>,
    /// Newly reserved node ports (released again on rollback).
    ports: Vec<u16>,
    /// Held by the old object and no longer by the new one (released on commit).
    release_ips: Vec<u32>,
    release_ports: Vec<u16>,
}

#[derive(Debug, Default)]
struct Taken {
    ips: HashSet<u32>,
    ports: HashSet<u16>,
}

/// Cluster IP and node port allocator for every Service of one server.
#[derive(Debug)]
pub struct ServiceAllocator {
    base: u32,
    /// Addresses in the range, network and broadcast included.
    size: u64,
    taken: Mutex<Taken>,
}

impl Default for ServiceAllocator {
    fn default() -> Self {
        ServiceAllocator {
            base: u32::from(SERVICE_CIDR_BASE),
            size: 1u64 << (32 - u32::from(SERVICE_CIDR_PREFIX)),
            taken: Mutex::new(Taken::default()),
        }
    }
}

/// A Service's type, `ClusterIP` when absent.
fn service_type(service: &Value) -> &str {
    service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn needs_node_ports(service: &Value) -> bool {
    match service_type(service) {
        "NodePort" => true,
        "LoadBalancer" => service
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn needs_health_check_port(service: &Value) -> bool {
    service_type(service) == "LoadBalancer"
        && service
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local")
}

/// The node ports a stored Service holds (ports and health check).
fn held_ports(service: &Value) -> Vec<u16> {
    let mut ports: Vec<u16> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| port.get("nodePort").and_then(Value::as_u64))
        .chain(
            service
                .pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_u64),
        )
        .filter_map(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn cluster_ip_text(service: &Value) -> &str {
    service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn invalid(name: &str, field: &str, value: &str, detail: &str) -> ApiError {
    ApiError::Invalid {
        group: String::new(),
        kind: "Service".into(),
        name: name.to_string(),
        causes: vec![FieldCause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {detail}"),
            field: field.to_string(),
        }],
    }
}

impl ServiceAllocator {
    /// The allocator of a server whose store holds `services` (every stored
    /// Service), with their addresses and ports marked taken.
    pub fn from_services<'a>(services: impl IntoIterator<Item = &'a Value>) -> ServiceAllocator {
        let allocator = ServiceAllocator::default();
        {
            let mut taken = allocator.taken.lock().expect("allocator lock");
            for service in services {
                if let Some(offset) = allocator.offset_of_text(cluster_ip_text(service)) {
                    taken.ips.insert(offset);
                }
                taken.ports.extend(held_ports(service));
            }
        }
        allocator
    }

    /// The offset of an address inside the range, if it is a usable one.
    fn offset_of_text(&self, text: &str) -> Option<u32> {
        let ip: Ipv4Addr = text.parse().ok()?;
        self.offset_of(ip)
    }

    fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let offset = u64::from(u32::from(ip)).checked_sub(u64::from(self.base))?;
        (offset >= 1 && offset < self.size - 1).then_some(offset as u32)
    }

    fn address(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }

    fn range_text(&self) -> String {
        format!(
            "{}/{}",
            Ipv4Addr::from(self.base),
            32 - self.size.trailing_zeros()
        )
    }

    /// Whether an address is currently allocated (for tests and the repair view).
    pub fn ip_taken(&self, ip: Ipv4Addr) -> bool {
        self.offset_of(ip).is_some_and(|offset| {
            self.taken
                .lock()
                .expect("allocator lock")
                .ips
                .contains(&offset)
        })
    }

    /// Whether a node port is currently allocated.
    pub fn port_taken(&self, port: u16) -> bool {
        self.taken
            .lock()
            .expect("allocator lock")
            .ports
            .contains(&port)
    }

    /// Fill in and reserve what a new Service needs. `service` is defaulted
    /// and validated; on error nothing stays reserved.
    pub fn reserve_for_create(&self, service: &mut Value) -> Result<Reservation, ApiError> {
        self.reserve(service, None)
    }

    /// Fill in and reserve what an updated Service needs beyond what `old`
    /// holds; the reservation also records what `old` held and `new` drops.
    pub fn reserve_for_update(
        &self,
        service: &mut Value,
        old: &Value,
    ) -> Result<Reservation, ApiError> {
        self.reserve(service, Some(old))
    }

    fn reserve(&self, service: &mut Value, old: Option<&Value>) -> Result<Reservation, ApiError> {
        let name = service
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut taken = self.taken.lock().expect("allocator lock");
        let mut reservation = Reservation::default();
        let result = self.reserve_locked(&mut taken, service, old, &name, &mut reservation);
        if result.is_err() {
            for ip in &reservation.ips {
                taken.ips.remove(ip);
            }
            for port in &reservation.ports {
                taken.ports.remove(port);
            }
            return result.map(|_| Reservation::default());
        }
        Ok(reservation)
    }

    fn reserve_locked(
        &self,
        taken: &mut Taken,
        service: &mut Value,
        old: Option<&Value>,
        name: &str,
        reservation: &mut Reservation,
    ) -> Result<(), ApiError> {
        let old_ip = old.and_then(|old| self.offset_of_text(cluster_ip_text(old)));
        let old_ports = old.map(held_ports).unwrap_or_default();
        if !service.get("spec").is_some_and(Value::is_object) {
            service["spec"] = json!({});
        }

        // Cluster IP.
        let mut new_ip = None;
        if service_type(service) == "ExternalName" {
            if let Some(spec) = service["spec"].as_object_mut() {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        } else {
            let mut requested = cluster_ip_text(service).to_string();
            if requested.is_empty() {
                requested = service
                    .pointer("/spec/clusterIPs/0")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
            }
            if requested == "None" {
                service["spec"]["clusterIP"] = json!("None");
                service["spec"]["clusterIPs"] = json!(["None"]);
            } else if requested.is_empty() {
                let offset = self.allocate_ip(taken).ok_or_else(|| {
                    invalid(
                        name,
                        "spec.clusterIPs",
                        "[]string{}",
                        &format!(
                            "failed to allocate a serviceIP: range is full ({})",
                            self.range_text()
                        ),
                    )
                })?;
                reservation.ips.push(offset);
                new_ip = Some(offset);
            } else {
                let value = format!("[]string{{\"{requested}\"}}");
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    invalid(
                        name,
                        "spec.clusterIPs",
                        &value,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )
                })?;
                let offset = self.offset_of(ip).ok_or_else(|| {
                    invalid(
                        name,
                        "spec.clusterIPs",
                        &value,
                        &format!(
                            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                            self.range_text()
                        ),
                    )
                })?;
                if old_ip != Some(offset) {
                    if !taken.ips.insert(offset) {
                        return Err(invalid(
                            name,
                            "spec.clusterIPs",
                            &value,
                            &format!(
                                "failed to allocate IP {ip}: provided IP is already allocated"
                            ),
                        ));
                    }
                    reservation.ips.push(offset);
                }
                new_ip = Some(offset);
            }
            if let Some(offset) = new_ip {
                let text = self.address(offset).to_string();
                service["spec"]["clusterIP"] = json!(text);
                service["spec"]["clusterIPs"] = json!([text]);
            }
        }
        if let Some(old_ip) = old_ip {
            if new_ip != Some(old_ip) {
                reservation.release_ips.push(old_ip);
            }
        }

        // Node ports. Ports the old object held stay its own; a number may
        // serve several protocols of the same service (DNS on TCP and UDP).
        let mut kept: HashSet<u16> = HashSet::new();
        let claim = |taken: &mut Taken,
                     port: u16,
                     reservation: &mut Reservation,
                     kept: &mut HashSet<u16>|
         -> bool {
            if kept.contains(&port) {
                return true;
            }
            if old_ports.contains(&port) {
                kept.insert(port);
                return true;
            }
            if taken.ports.insert(port) {
                reservation.ports.push(port);
                kept.insert(port);
                return true;
            }
            false
        };
        let node_port_type = matches!(service_type(service), "NodePort" | "LoadBalancer");
        let wants_node_ports = needs_node_ports(service);
        let port_count = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        // Requested ports first, so a generated one never takes a number
        // another port of the same request names.
        for index in 0..port_count {
            let port = &mut service["spec"]["ports"][index];
            let requested = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .filter(|p| *p != 0);
            match requested {
                Some(number) if node_port_type => {
                    let number = u16::try_from(number).unwrap_or(0);
                    if !claim(taken, number, reservation, &mut kept) {
                        return Err(invalid(
                            name,
                            &format!("spec.ports[{index}].nodePort"),
                            &number.to_string(),
                            "provided port is already allocated",
                        ));
                    }
                }
                _ => {}
            }
        }
        for index in 0..port_count {
            let has_port = service["spec"]["ports"][index]
                .get("nodePort")
                .and_then(Value::as_u64)
                .is_some_and(|p| p != 0);
            if !node_port_type {
                if let Some(port) = service["spec"]["ports"][index].as_object_mut() {
                    port.remove("nodePort");
                }
                continue;
            }
            if has_port || !wants_node_ports {
                continue;
            }
            let number = self.allocate_port(taken).ok_or_else(|| {
                invalid(
                    name,
                    &format!("spec.ports[{index}].nodePort"),
                    "0",
                    &format!(
                        "failed to allocate a nodePort: range is full ({NODE_PORT_MIN}-{NODE_PORT_MAX})"
                    ),
                )
            })?;
            reservation.ports.push(number);
            kept.insert(number);
            service["spec"]["ports"][index]["nodePort"] = json!(number);
        }

        // Health-check node port.
        if needs_health_check_port(service) {
            match service
                .pointer("/spec/healthCheckNodePort")
                .and_then(Value::as_u64)
                .filter(|p| *p != 0)
            {
                Some(number) => {
                    let in_range =
                        (u64::from(NODE_PORT_MIN)..=u64::from(NODE_PORT_MAX)).contains(&number);
                    let number16 = u16::try_from(number).unwrap_or(0);
                    if !in_range {
                        return Err(invalid(
                            name,
                            "spec.healthCheckNodePort",
                            &number.to_string(),
                            &format!("provided port is not in the valid range. The range of valid ports is {NODE_PORT_MIN}-{NODE_PORT_MAX}"),
                        ));
                    }
                    // The health check needs a number of its own.
                    let used_by_ports = service
                        .pointer("/spec/ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .any(|p| p.get("nodePort").and_then(Value::as_u64) == Some(number));
                    if used_by_ports || !claim(taken, number16, reservation, &mut kept) {
                        return Err(invalid(
                            name,
                            "spec.healthCheckNodePort",
                            &number.to_string(),
                            "provided port is already allocated",
                        ));
                    }
                }
                None => {
                    let number = self.allocate_port(taken).ok_or_else(|| {
                        invalid(
                            name,
                            "spec.healthCheckNodePort",
                            "0",
                            "failed to allocate a nodePort: range is full",
                        )
                    })?;
                    reservation.ports.push(number);
                    kept.insert(number);
                    service["spec"]["healthCheckNodePort"] = json!(number);
                }
            }
        } else if let Some(spec) = service["spec"].as_object_mut() {
            spec.remove("healthCheckNodePort");
        }
        reservation.release_ports = old_ports
            .into_iter()
            .filter(|port| !kept.contains(port))
            .collect();
        Ok(())
    }

    /// A free address: random in the dynamic band, else the static band.
    fn allocate_ip(&self, taken: &mut Taken) -> Option<u32> {
        let usable = self.size - 2;
        let band = static_band(self.size, 16, 256).min(usable);
        let offset = pick_free(1 + band, usable - band, |o| taken.ips.contains(&(o as u32)))
            .or_else(|| pick_free(1, band, |o| taken.ips.contains(&(o as u32))))?
            as u32;
        taken.ips.insert(offset);
        Some(offset)
    }

    /// A free node port: random above the static band, else in it.
    fn allocate_port(&self, taken: &mut Taken) -> Option<u16> {
        let size = u64::from(NODE_PORT_MAX - NODE_PORT_MIN) + 1;
        let band = static_band(size, 32, 128);
        let start = u64::from(NODE_PORT_MIN);
        let port = pick_free(start + band, size - band, |p| {
            taken.ports.contains(&(p as u16))
        })
        .or_else(|| pick_free(start, band, |p| taken.ports.contains(&(p as u16))))?
            as u16;
        taken.ports.insert(port);
        Some(port)
    }

    /// Make a successful write's reservation final: release what the old
    /// object held and the new one does not.
    pub fn commit(&self, reservation: Reservation) {
        let mut taken = self.taken.lock().expect("allocator lock");
        for ip in reservation.release_ips {
            taken.ips.remove(&ip);
        }
        for port in reservation.release_ports {
            taken.ports.remove(&port);
        }
    }

    /// Undo a reservation whose write failed (or was a dry run).
    pub fn rollback(&self, reservation: Reservation) {
        let mut taken = self.taken.lock().expect("allocator lock");
        for ip in reservation.ips {
            taken.ips.remove(&ip);
        }
        for port in reservation.ports {
            taken.ports.remove(&port);
        }
    }

    /// A Service left the store: its address and ports are free again.
    pub fn release(&self, service: &Value) {
        let mut taken = self.taken.lock().expect("allocator lock");
        if let Some(offset) = self.offset_of_text(cluster_ip_text(service)) {
            taken.ips.remove(&offset);
        }
        for port in held_ports(service) {
            taken.ports.remove(&port);
        }
    }
}

/// On update, wipe what the old type needed and the new one does not, when
/// the request left it as it was (upstream's `dropTypeDependentFields`): the
/// cluster IP when switching to ExternalName, node ports when leaving
/// NodePort/LoadBalancer, the health-check port, externalTrafficPolicy, and
/// the load-balancer status. A value the request changed is left for
/// validation to judge.
pub fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let old_type = service_type(old).to_string();
    let new_type = service_type(new).to_string();
    if !new.get("spec").is_some_and(Value::is_object) {
        return;
    }
    let same = |new: &Value, pointer: &str| new.pointer(pointer) == old.pointer(pointer);
    let needs_cluster_ip = |t: &str| t != "ExternalName";
    if needs_cluster_ip(&old_type) && !needs_cluster_ip(&new_type) {
        let same_ips = same(new, "/spec/clusterIP") && same(new, "/spec/clusterIPs");
        let same_families = same(new, "/spec/ipFamilies");
        let same_policy = same(new, "/spec/ipFamilyPolicy");
        let spec = new["spec"].as_object_mut().expect("checked above");
        if same_ips {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if same_families {
            spec.remove("ipFamilies");
        }
        if same_policy {
            spec.remove("ipFamilyPolicy");
        }
    }
    let node_port_type = |t: &str| t == "NodePort" || t == "LoadBalancer";
    if node_port_type(&old_type) && !node_port_type(&new_type) {
        let node_ports = |service: &Value| -> Vec<Option<Value>> {
            service
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|port| port.get("nodePort").filter(|v| !v.is_null()).cloned())
                .collect()
        };
        let old_ports = node_ports(old);
        let new_ports = node_ports(new);
        // Same as upstream's sameNodePorts: every port the request carries
        // with a node port names one the old object had.
        let unchanged = new_ports
            .iter()
            .all(|port| port.is_none() || old_ports.contains(port));
        if unchanged {
            for port in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
                if let Some(port) = port.as_object_mut() {
                    port.remove("nodePort");
                }
            }
        }
    }
    let old_needs_hc = needs_health_check_port(old);
    if old_needs_hc && !needs_health_check_port(new) && same(new, "/spec/healthCheckNodePort") {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("healthCheckNodePort");
        }
    }
    if old_type == "LoadBalancer" && new_type != "LoadBalancer" {
        let same_allocate = same(new, "/spec/allocateLoadBalancerNodePorts");
        let same_class = same(new, "/spec/loadBalancerClass");
        if let Some(spec) = new["spec"].as_object_mut() {
            if same_allocate {
                spec.remove("allocateLoadBalancerNodePorts");
            }
            if same_class {
                spec.remove("loadBalancerClass");
            }
        }
        if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
            status.insert("loadBalancer".into(), json!({}));
        }
    }
    if node_port_type(&old_type)
        && !node_port_type(&new_type)
        && same(new, "/spec/externalTrafficPolicy")
    {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("externalTrafficPolicy");
        }
    }
}

/// A random free value in `start..start+count`, probing upward (wrapping)
/// from a random starting point so a full band is detected in one pass.
fn pick_free(start: u64, count: u64, is_taken: impl Fn(u64) -> bool) -> Option<u64> {
    if count == 0 {
        return None;
    }
    let first = rand::rng().random_range(0..count);
    (0..count)
        .map(|step| start + (first + step) % count)
        .find(|candidate| !is_taken(*candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn message(error: ApiError) -> String {
        match error {
            ApiError::Invalid { causes, .. } => causes
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }

    #[test]
    fn leaving_node_port_types_drops_what_only_they_needed() {
        let old = service(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 30500, "allocateLoadBalancerNodePorts": true,
            "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
            "ports": [{"port": 80, "nodePort": 31000}]}),
        );
        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&mut to_cluster_ip, &old);
        expect_test::expect![[r#"{"type":"ClusterIP","clusterIP":"10.96.5.5","ports":[{"port":80}],"clusterIPs":["10.96.5.5"]}"#]]
            .assert_eq(&to_cluster_ip["spec"].to_string());
        let mut to_external = old.clone();
        to_external["spec"]["type"] = json!("ExternalName");
        drop_type_dependent_fields(&mut to_external, &old);
        assert!(to_external["spec"].get("clusterIP").is_none());
        // A node port the request changed stays for validation to refuse.
        let mut changed = to_cluster_ip.clone();
        changed["spec"]["ports"][0]["nodePort"] = json!(31001);
        drop_type_dependent_fields(&mut changed, &old);
        assert_eq!(changed["spec"]["ports"][0]["nodePort"], 31001);
    }

    #[test]
    fn dynamic_addresses_avoid_the_static_band_and_never_repeat() {
        let allocator = ServiceAllocator::default();
        let mut seen = HashSet::new();
        for _ in 0..2000 {
            let mut svc = service(json!({"ports": [{"port": 80}]}));
            let reservation = allocator.reserve_for_create(&mut svc).unwrap();
            allocator.commit(reservation);
            let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
            assert_eq!(svc["spec"]["clusterIPs"], json!([ip.to_string()]));
            let offset = u32::from(ip) - u32::from(SERVICE_CIDR_BASE);
            assert!(offset > 256 && offset < (1 << 20) - 1, "{ip}");
            assert!(seen.insert(ip), "{ip} handed out twice");
        }
    }

    #[test]
    fn requested_addresses_are_honoured_once_and_checked_against_the_range() {
        let allocator = ServiceAllocator::default();
        let mut dns = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}));
        allocator.commit(allocator.reserve_for_create(&mut dns).unwrap());
        assert_eq!(dns["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        let mut again = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}));
        expect_test::expect![[r#"spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"#]]
            .assert_eq(&message(allocator.reserve_for_create(&mut again).unwrap_err()));
        let mut outside = service(json!({"clusterIP": "192.168.1.1", "ports": [{"port": 53}]}));
        expect_test::expect![[r#"spec.clusterIPs: Invalid value: []string{"192.168.1.1"}: failed to allocate IP 192.168.1.1: the provided IP (192.168.1.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"#]]
            .assert_eq(&message(allocator.reserve_for_create(&mut outside).unwrap_err()));
        let mut network = service(json!({"clusterIP": "10.96.0.0", "ports": [{"port": 53}]}));
        assert!(allocator.reserve_for_create(&mut network).is_err());
        allocator.release(&dns);
        assert!(!allocator.ip_taken("10.96.0.10".parse().unwrap()));
    }

    #[test]
    fn headless_and_external_name_services_get_no_address() {
        let allocator = ServiceAllocator::default();
        let mut headless = service(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        let reservation = allocator.reserve_for_create(&mut headless).unwrap();
        assert_eq!(reservation, Reservation::default());
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let mut external = service(json!({"type": "ExternalName", "externalName": "example.com"}));
        allocator.reserve_for_create(&mut external).unwrap();
        assert!(external["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn node_ports_are_allocated_requested_or_refused_all_or_nothing() {
        let allocator = ServiceAllocator::default();
        let mut first = service(json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 32023},
            {"name": "b", "port": 81},
        ]}));
        allocator.commit(allocator.reserve_for_create(&mut first).unwrap());
        let generated = first["spec"]["ports"][1]["nodePort"].as_u64().unwrap();
        assert!((30086..=32767).contains(&generated), "{generated}");
        assert!(allocator.port_taken(32023));

        // The second request asks for a free port and a taken one: refused,
        // and neither its address nor its free port stays reserved.
        let mut second = service(json!({"type": "NodePort", "ports": [
            {"name": "a", "port": 80, "nodePort": 30500},
            {"name": "b", "port": 81, "nodePort": 32023},
        ]}));
        expect_test::expect![
            "spec.ports[1].nodePort: Invalid value: 32023: provided port is already allocated"
        ]
        .assert_eq(&message(
            allocator.reserve_for_create(&mut second).unwrap_err(),
        ));
        assert!(!allocator.port_taken(30500));
        assert_eq!(allocator.taken.lock().unwrap().ips.len(), 1);

        // The same number for TCP and UDP of one service is fine.
        let mut dns = service(json!({"type": "NodePort", "ports": [
            {"name": "udp", "port": 53, "protocol": "UDP", "nodePort": 30053},
            {"name": "tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
        ]}));
        allocator.commit(allocator.reserve_for_create(&mut dns).unwrap());
    }

    #[test]
    fn updates_keep_own_ports_release_dropped_ones_and_roll_back_on_failure() {
        let allocator = ServiceAllocator::default();
        let mut old =
            service(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]}));
        allocator.commit(allocator.reserve_for_create(&mut old).unwrap());
        let ip = old["spec"]["clusterIP"].clone();

        // Unchanged: nothing new reserved.
        let mut same = old.clone();
        let reservation = allocator.reserve_for_update(&mut same, &old).unwrap();
        assert!(reservation.ips.is_empty() && reservation.ports.is_empty());
        allocator.commit(reservation);
        assert!(allocator.port_taken(31000));

        // To ClusterIP: the node port goes on commit, the address stays.
        let mut cluster_ip =
            service(json!({"type": "ClusterIP", "clusterIP": ip, "ports": [{"port": 80}]}));
        let reservation = allocator.reserve_for_update(&mut cluster_ip, &old).unwrap();
        allocator.rollback(reservation.clone());
        assert!(
            allocator.port_taken(31000),
            "a rollback keeps what the old object holds"
        );
        allocator.commit(reservation);
        assert!(!allocator.port_taken(31000));
        assert!(allocator.ip_taken(ip.as_str().unwrap().parse().unwrap()));

        // LoadBalancer with externalTrafficPolicy Local gets a health-check port.
        let mut lb = service(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "clusterIP": ip, "ports": [{"port": 80}]}),
        );
        let reservation = allocator.reserve_for_update(&mut lb, &cluster_ip).unwrap();
        assert_eq!(reservation.ports.len(), 2);
        allocator.commit(reservation);
        let health = lb["spec"]["healthCheckNodePort"].as_u64().unwrap() as u16;
        assert!(allocator.port_taken(health));
        let rebuilt = ServiceAllocator::from_services([&lb]);
        assert!(rebuilt.port_taken(health));
        assert!(rebuilt.ip_taken(ip.as_str().unwrap().parse().unwrap()));
    }
}
