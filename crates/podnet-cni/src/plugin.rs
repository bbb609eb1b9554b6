//! The `podnet-cni` plugin: commands ADD, DEL, CHECK, STATUS, GC, VERSION.
//!
//! It runs in the node's network namespace (where the bridge lives) and
//! reaches into the pod's namespace through a netlink handle opened there.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use podnet_netlink::{BridgeSpec, NetlinkHandle, RouteSpec};
use serde_json::Value;

use crate::ipam::IpAllocator;
use crate::spec::{
    self, AddResult, PluginConfig, ResultInterface, ResultIp, RouteEntry, LATEST_VERSION,
};
use crate::CniError;

/// The CNI environment of one invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniEnvironment {
    /// `CNI_COMMAND`.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
    /// `CNI_ARGS`, parsed.
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`.
    pub path: Option<String>,
}

impl CniEnvironment {
    /// Reads the environment through `lookup` (std::env::var in the binary).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> CniEnvironment {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let args = non_empty("CNI_ARGS")
            .map(|text| {
                text.split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        CniEnvironment {
            command: non_empty("CNI_COMMAND").unwrap_or_default(),
            container_id: non_empty("CNI_CONTAINERID"),
            netns: non_empty("CNI_NETNS").map(PathBuf::from),
            ifname: non_empty("CNI_IFNAME"),
            args,
            path: non_empty("CNI_PATH"),
        }
    }

    fn require<'a>(&self, variable: &str, value: &'a Option<String>) -> Result<&'a str, CniError> {
        value
            .as_deref()
            .ok_or_else(|| CniError::InvalidEnvironment {
                variable: variable.to_string(),
                reason: format!("required for {} but not set", self.command),
            })
    }
}

/// Outcome of one invocation: what to print on stdout.
pub type PluginOutput = Option<Value>;

/// Runs one command. `stdin` is the network configuration.
pub fn run(environment: &CniEnvironment, stdin: &[u8]) -> Result<PluginOutput, CniError> {
    if environment.command == "VERSION" {
        let version = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|value| {
                value
                    .get("cniVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| LATEST_VERSION.to_string());
        return Ok(Some(spec::version_json(&version)));
    }
    let config: PluginConfig =
        serde_json::from_slice(stdin).map_err(|source| CniError::Decode {
            what: "the network configuration on stdin".to_string(),
            source,
        })?;
    spec::ensure_supported_version(&config.cni_version)?;
    match environment.command.as_str() {
        "ADD" => add(environment, &config).map(|result| Some(result.to_json(&config.cni_version))),
        "DEL" => delete(environment, &config).map(|()| None),
        "CHECK" => check(environment, &config).map(|()| None),
        "STATUS" => status(&config).map(|()| None),
        "GC" => garbage_collect(&config).map(|()| None),
        "" => Err(CniError::InvalidEnvironment {
            variable: "CNI_COMMAND".to_string(),
            reason: "not set; use ADD, DEL, CHECK, STATUS, GC or VERSION".to_string(),
        }),
        other => Err(CniError::InvalidEnvironment {
            variable: "CNI_COMMAND".to_string(),
            reason: format!("unknown command {other}; use ADD, DEL, CHECK, STATUS, GC or VERSION"),
        }),
    }
}

/// The host-side veth name of an attachment: `veth` + 8 hex digits derived
/// from (container id, ifname). Being deterministic lets DEL and GC find the
/// veth without a cached result and lets a retried ADD clean up a half-done
/// one.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    // FNV-1a, stable across releases.
    let mut hash: u32 = 0x811c9dc5;
    for byte in container_id.bytes().chain([0u8]).chain(ifname.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x01000193);
    }
    format!("veth{hash:08x}")
}

fn is_podnet_veth_name(name: &str) -> bool {
    name.len() == 12
        && name.starts_with("veth")
        && name[4..]
            .chars()
            .all(|character| character.is_ascii_hexdigit())
}

fn format_mac(mac: Option<[u8; 6]>) -> String {
    mac.map(|bytes| {
        bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    })
    .unwrap_or_default()
}

fn pod_routes(config: &PluginConfig) -> Vec<RouteEntry> {
    let gateway = config.ipam.gateway_address();
    config.ipam.routes.clone().unwrap_or_else(|| {
        vec![RouteEntry {
            dst: "0.0.0.0/0".parse().expect("valid default route"),
            gw: Some(IpAddr::V4(gateway)),
        }]
    })
}

fn add(environment: &CniEnvironment, config: &PluginConfig) -> Result<AddResult, CniError> {
    let container_id = environment.require("CNI_CONTAINERID", &environment.container_id)?;
    let ifname = environment.require("CNI_IFNAME", &environment.ifname)?;
    let netns = environment
        .netns
        .clone()
        .ok_or_else(|| CniError::InvalidEnvironment {
            variable: "CNI_NETNS".to_string(),
            reason: "required for ADD but not set".to_string(),
        })?;
    let allocator = IpAllocator::new(&config.name, &config.ipam)?;
    let node = NetlinkHandle::current()?;
    // The plugin is one short single-threaded process: entering the pod's
    // namespace on this thread is cheaper than a thread per namespace.
    let pod = NetlinkHandle::open_in_this_thread(&netns)?;
    if pod.link_by_name(ifname)?.is_some() {
        return Err(CniError::InterfaceExists {
            ifname: ifname.to_string(),
            netns: netns.display().to_string(),
        });
    }

    let gateway = config.ipam.gateway_address();
    let prefix_len = config.ipam.subnet.prefix_len();
    let bridge = node.ensure_bridge(&BridgeSpec {
        name: config.bridge.clone(),
        mtu: config.mtu,
        address: if config.is_gateway {
            Some(IpNet::V4(
                Ipv4Net::new(gateway, prefix_len).expect("prefix from a valid subnet"),
            ))
        } else {
            None
        },
    })?;
    if config.is_gateway && node.read_sysctl("net.ipv4.ip_forward")? != "1" {
        node.write_sysctl("net.ipv4.ip_forward", "1")?;
    }

    let ip = allocator.allocate(container_id, ifname)?;
    let host_veth = host_veth_name(container_id, ifname);
    match attach(
        &node, &pod, config, &netns, &bridge, &host_veth, ifname, ip, gateway,
    ) {
        Ok((host_link, pod_link)) => Ok(AddResult {
            interfaces: vec![
                ResultInterface {
                    name: bridge.name.clone(),
                    mac: format_mac(bridge.mac),
                    mtu: Some(bridge.mtu),
                    sandbox: None,
                },
                ResultInterface {
                    name: host_link.name.clone(),
                    mac: format_mac(host_link.mac),
                    mtu: Some(host_link.mtu),
                    sandbox: None,
                },
                ResultInterface {
                    name: pod_link.name.clone(),
                    mac: format_mac(pod_link.mac),
                    mtu: Some(pod_link.mtu),
                    sandbox: Some(netns.display().to_string()),
                },
            ],
            ips: vec![ResultIp {
                address: IpNet::V4(
                    Ipv4Net::new(ip, prefix_len).expect("prefix from a valid subnet"),
                ),
                gateway: Some(IpAddr::V4(gateway)),
                interface: Some(2),
            }],
            routes: pod_routes(config),
        }),
        Err(error) => {
            // Roll back so a failed ADD leaks neither an address nor a veth;
            // deleting the host end also removes the pod end.
            let _ = node.delete_link(&host_veth);
            let _ = allocator.release(container_id, ifname);
            Err(error)
        }
    }
}

/// Creates and configures the veth pair: the host end is created up and on
/// the bridge (hairpin set in the same batch), the pod end up inside the
/// pod's namespace; then the pod end gets its address and routes and `lo`
/// comes up, in a second batch. Six netlink round trips for the whole ADD.
#[allow(clippy::too_many_arguments)]
fn attach(
    node: &NetlinkHandle,
    pod: &NetlinkHandle,
    config: &PluginConfig,
    netns: &Path,
    bridge: &podnet_netlink::Link,
    host_veth: &str,
    ifname: &str,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<(podnet_netlink::Link, podnet_netlink::Link), CniError> {
    let create = || {
        node.create_veth_pair_on_bridge(
            host_veth,
            ifname,
            netns,
            config.mtu,
            bridge.index,
            config.hairpin_mode,
        )
    };
    let host_link = match create() {
        Ok(link) => link,
        // A veth of ours with this name is the remnant of an ADD that crashed
        // half-way (its pod end is gone, or we would have failed above).
        // Looked for only when the name is taken: a lookup per ADD costs.
        Err(podnet_netlink::NetlinkError::Kernel { source, .. })
            if source.raw_os_error() == Some(libc::EEXIST) =>
        {
            node.delete_link(host_veth)?;
            create()?
        }
        Err(error) => return Err(error.into()),
    };

    let prefix_len = config.ipam.subnet.prefix_len();
    let routes: Vec<RouteSpec> = pod_routes(config)
        .into_iter()
        .filter_map(|route| {
            let gateway_for_route = match route.gw {
                Some(IpAddr::V4(address)) => address,
                Some(IpAddr::V6(_)) => return None,
                None => gateway,
            };
            Some(RouteSpec {
                destination: route.dst,
                gateway: Some(gateway_for_route),
                // configure_link routes through the link it configures.
                device: None,
                onlink: false,
                scope_link: false,
                protocol: 4,
            })
        })
        .collect();
    let pod_link = pod.configure_link(
        ifname,
        IpNet::V4(Ipv4Net::new(ip, prefix_len).expect("valid prefix")),
        &routes,
    )?;
    Ok((host_link, pod_link))
}

fn delete(environment: &CniEnvironment, config: &PluginConfig) -> Result<(), CniError> {
    let container_id = environment.require("CNI_CONTAINERID", &environment.container_id)?;
    let ifname = environment.require("CNI_IFNAME", &environment.ifname)?;
    let allocator = IpAllocator::new(&config.name, &config.ipam)?;
    // Best effort in order; every step tolerates what is already gone, and
    // the reservation is released even if the links could not be touched.
    let mut first_error = None;
    // As the reference bridge plugin: delete the pod end inside the pod's
    // namespace (the kernel removes both ends, and the cost of that is the
    // same whichever end is named). One request each, no lookups: the host
    // end is normally gone with it, and is deleted by name for the case
    // where the pod's namespace is already gone.
    if let Some(netns) = environment
        .netns
        .as_deref()
        .filter(|path| podnet_netlink::is_netns(path))
    {
        if let Err(error) =
            NetlinkHandle::open_in_this_thread(netns).and_then(|pod| pod.delete_link(ifname))
        {
            first_error.get_or_insert(CniError::from(error));
        }
    }
    let host_veth = host_veth_name(container_id, ifname);
    if let Err(error) = NetlinkHandle::current().and_then(|node| node.delete_link(&host_veth)) {
        first_error.get_or_insert(CniError::from(error));
    }
    allocator.release(container_id, ifname)?;
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn check(environment: &CniEnvironment, config: &PluginConfig) -> Result<(), CniError> {
    let container_id = environment.require("CNI_CONTAINERID", &environment.container_id)?;
    let ifname = environment.require("CNI_IFNAME", &environment.ifname)?;
    let netns = environment
        .netns
        .clone()
        .ok_or_else(|| CniError::InvalidEnvironment {
            variable: "CNI_NETNS".to_string(),
            reason: "required for CHECK but not set".to_string(),
        })?;
    let failed = |reason: String| CniError::CheckFailed {
        container_id: container_id.to_string(),
        reason,
    };
    let prev_result = config
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::InvalidConfig {
            reason: "CHECK needs prevResult (the cached ADD result)".to_string(),
        })?;
    let allocator = IpAllocator::new(&config.name, &config.ipam)?;
    let reservation = allocator
        .reservations()?
        .into_iter()
        .find(|reservation| {
            reservation.container_id == container_id && reservation.ifname == ifname
        })
        .ok_or_else(|| CniError::UnknownContainer {
            container_id: container_id.to_string(),
            reason: format!("no IP reservation for interface {ifname}"),
        })?;
    let expected_addresses: Vec<IpNet> = prev_result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if !expected_addresses
        .iter()
        .any(|address| address.addr() == IpAddr::V4(reservation.ip))
    {
        return Err(failed(format!(
            "prevResult addresses {expected_addresses:?} do not include the reserved {}",
            reservation.ip
        )));
    }

    let pod = NetlinkHandle::open_in(&netns)?;
    let pod_link = pod.link_by_name(ifname)?.ok_or_else(|| {
        failed(format!(
            "interface {ifname} missing in netns {}",
            netns.display()
        ))
    })?;
    if !pod_link.is_up {
        return Err(failed(format!("interface {ifname} is down")));
    }
    let addresses = pod.list_addresses(ifname)?;
    for expected in &expected_addresses {
        if !addresses.contains(expected) {
            return Err(failed(format!("address {expected} missing on {ifname}")));
        }
    }
    let routes = pod.list_routes()?;
    for route in pod_routes(config) {
        let gateway = route
            .gw
            .unwrap_or(IpAddr::V4(config.ipam.gateway_address()));
        if !routes
            .iter()
            .any(|present| present.destination == route.dst && present.gateway == Some(gateway))
        {
            return Err(failed(format!(
                "route {} via {gateway} missing in the pod",
                route.dst
            )));
        }
    }
    let node = NetlinkHandle::current()?;
    let bridge = node
        .link_by_name(&config.bridge)?
        .ok_or_else(|| failed(format!("bridge {} missing", config.bridge)))?;
    let host_veth = host_veth_name(container_id, ifname);
    let host_link = node
        .link_by_name(&host_veth)?
        .ok_or_else(|| failed(format!("host veth {host_veth} missing")))?;
    if host_link.master_index != Some(bridge.index) {
        return Err(failed(format!(
            "host veth {host_veth} is not attached to {}",
            config.bridge
        )));
    }
    Ok(())
}

fn status(config: &PluginConfig) -> Result<(), CniError> {
    IpAllocator::new(&config.name, &config.ipam)?
        .check_usable()
        .map_err(|error| CniError::NotReady {
            reason: format!("ipam directory unusable: {error}"),
        })
}

fn garbage_collect(config: &PluginConfig) -> Result<(), CniError> {
    let valid = config.valid_attachments.clone().unwrap_or_default();
    let keep: Vec<(String, String)> = valid
        .iter()
        .map(|attachment| (attachment.container_id.clone(), attachment.ifname.clone()))
        .collect();
    let allocator = IpAllocator::new(&config.name, &config.ipam)?;
    allocator.release_all_except(&keep)?;

    // Host veths of attachments that are not valid any more (their pod
    // netns was kept alive by something else, or DEL never ran).
    let node = NetlinkHandle::current()?;
    let Some(bridge) = node.link_by_name(&config.bridge)? else {
        return Ok(());
    };
    let valid_names: Vec<String> = keep
        .iter()
        .map(|(container_id, ifname)| host_veth_name(container_id, ifname))
        .collect();
    for link in node.list_links()? {
        if link.master_index == Some(bridge.index)
            && link.kind.as_deref() == Some("veth")
            && is_podnet_veth_name(&link.name)
            && !valid_names.contains(&link.name)
        {
            node.delete_link(&link.name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_deterministic_and_recognisable() {
        let name = host_veth_name("abc", "eth0");
        assert_eq!(name, host_veth_name("abc", "eth0"));
        assert_ne!(name, host_veth_name("abc", "eth1"));
        assert_ne!(name, host_veth_name("abd", "eth0"));
        assert!(is_podnet_veth_name(&name));
        assert!(!is_podnet_veth_name("veth1234"));
        assert!(!is_podnet_veth_name("vethzzzzzzzz"));
    }

    #[test]
    fn environment_is_parsed_and_missing_variables_are_code_4() {
        let variables: BTreeMap<&str, &str> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_ARGS", "K8S_POD_NAME=web;K8S_POD_NAMESPACE=default"),
            ("CNI_NETNS", "/run/netns/x"),
        ]
        .into_iter()
        .collect();
        let environment =
            CniEnvironment::from_lookup(|name| variables.get(name).map(|value| value.to_string()));
        assert_eq!(environment.args["K8S_POD_NAME"], "web");
        let config = br#"{"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni","ipam":{"subnet":"10.244.1.0/24","dataDir":"/nonexistent"}}"#;
        let error = run(&environment, config).unwrap_err();
        assert_eq!(error.code(), 4);
        assert!(error.to_string().contains("CNI_CONTAINERID"));
    }

    #[test]
    fn bad_version_and_bad_json_map_to_spec_codes() {
        let environment = CniEnvironment {
            command: "ADD".to_string(),
            ..CniEnvironment::default()
        };
        let error = run(&environment, b"{not json").unwrap_err();
        assert_eq!(error.code(), 6);
        let config = br#"{"cniVersion":"9.9.9","name":"podnet","type":"podnet-cni","ipam":{"subnet":"10.244.1.0/24"}}"#;
        assert_eq!(run(&environment, config).unwrap_err().code(), 1);
        let version = run(
            &CniEnvironment {
                command: "VERSION".to_string(),
                ..CniEnvironment::default()
            },
            br#"{"cniVersion":"1.0.0"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(version["cniVersion"], "1.0.0");
    }
}
