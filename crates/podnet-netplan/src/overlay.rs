//! Overlay planner: from this node and the list of all nodes, compute the
//! desired overlay state (flannel-compatible VXLAN or host-gw routes).
//!
//! The plan is a value. The applier in `podnet-netlink` makes one network
//! namespace match it, adding what is missing and removing stale entries of
//! ours; keeping the computation pure lets the exact kernel state be reviewed
//! in snapshot tests without root.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Name of the VXLAN device, the same as flannel's so that tools and docs
/// written for flannel clusters apply unchanged.
pub const VXLAN_DEVICE_NAME: &str = "flannel.1";
/// VXLAN network identifier shared by every node of a cluster.
pub const VXLAN_VNI: u32 = 1;
/// UDP port of the VXLAN tunnel (the Linux kernel's historical default,
/// used by flannel), not the IANA 4789.
pub const VXLAN_UDP_PORT: u16 = 8472;
/// Bytes of outer headers added by VXLAN over IPv4 (outer IP 20, UDP 8,
/// VXLAN 8, inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// Node annotation written by flannel carrying `{"VNIs":[1],"VtepMAC":"..."}`.
pub const FLANNEL_BACKEND_DATA_ANNOTATION: &str = "flannel.alpha.coreos.com/backend-data";
/// podnet's own node annotation carrying the VTEP MAC as plain text.
pub const PODNET_VTEP_MAC_ANNOTATION: &str = "podnet.io/vtep-mac";

/// First kernel (major, minor) whose NAT of UDP-tunnel packets keeps an
/// offloaded checksum right: the fix shipped in Linux 5.7 (Calico turns the
/// offload back on from there, projectcalico/calico#8746).
pub const VXLAN_TX_CHECKSUM_OFFLOAD_SAFE_FROM: (u32, u32) = (5, 7);

/// `--vxlan-tx-checksum-offload`: whether the VXLAN device may leave the
/// inner packets' checksums (and with them TCP segmentation) to offload.
///
/// flannel turns it off on every kernel: before 5.7, when an outer VXLAN
/// packet got NAT-ed (kube-proxy's masquerade mark survives encapsulation),
/// the kernel rewrote the outer UDP header without fixing the offloaded
/// checksum and receivers dropped the packets. Off also means the device has
/// no TSO/GSO, so every pod packet is segmented and checksummed in software
/// before encapsulation: an order of magnitude less throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxChecksumOffload {
    /// Off on kernels older than 5.7, on otherwise (the default).
    Auto,
    /// Always on.
    On,
    /// Always off (flannel's behaviour).
    Off,
}

impl TxChecksumOffload {
    /// Parses `auto`, `on` or `off`.
    pub fn parse(text: &str) -> Option<TxChecksumOffload> {
        match text {
            "auto" => Some(TxChecksumOffload::Auto),
            "on" => Some(TxChecksumOffload::On),
            "off" => Some(TxChecksumOffload::Off),
            _ => None,
        }
    }

    /// Whether the offload is on for a kernel release string (`uname -r`,
    /// e.g. `6.8.0-45-generic`). `auto` with a release it cannot read keeps
    /// the offload off, the choice that is safe on every kernel.
    pub fn enabled_for_kernel(self, kernel_release: &str) -> bool {
        match self {
            TxChecksumOffload::On => true,
            TxChecksumOffload::Off => false,
            TxChecksumOffload::Auto => kernel_version(kernel_release)
                .is_some_and(|version| version >= VXLAN_TX_CHECKSUM_OFFLOAD_SAFE_FROM),
        }
    }
}

/// (major, minor) of a kernel release string, `None` if it does not start
/// with `<major>.<minor>`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((major, minor.parse().ok()?))
}

/// How pod traffic between nodes is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayBackend {
    /// Encapsulate in VXLAN over the node network (works across L3).
    Vxlan,
    /// Route pod subnets straight to the node IPs (needs a shared L2).
    HostGw,
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive); `None` if malformed.
    pub fn parse(text: &str) -> Option<MacAddress> {
        let mut bytes = [0u8; 6];
        let mut parts = text.trim().split(':');
        for byte in &mut bytes {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(MacAddress(bytes))
    }

    /// A stable, locally administered unicast MAC derived from a seed (the
    /// node name), so a VTEP keeps its MAC across restarts even before it has
    /// been recorded on the Node object.
    pub fn derived_from(seed: &str) -> MacAddress {
        // FNV-1a: tiny, deterministic across releases (unlike std's hasher).
        let mut hash: u64 = 0xcbf29ce484222325;
        for byte in seed.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x100000001b3);
        }
        let b = hash.to_be_bytes();
        // 0x02 bit set = locally administered, 0x01 bit clear = unicast.
        MacAddress([(b[0] & 0xfe) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            formatter,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Reads a node's VTEP MAC from its annotations: podnet's own annotation
/// first, then flannel's backend data, so clusters migrated from flannel keep
/// working. `None` when neither is present or parsable.
pub fn vtep_mac_from_annotations(annotations: &BTreeMap<String, String>) -> Option<MacAddress> {
    if let Some(mac) = annotations
        .get(PODNET_VTEP_MAC_ANNOTATION)
        .and_then(|text| MacAddress::parse(text))
    {
        return Some(mac);
    }
    let backend_data = annotations.get(FLANNEL_BACKEND_DATA_ANNOTATION)?;
    let value: serde_json::Value = serde_json::from_str(backend_data).ok()?;
    MacAddress::parse(value.get("VtepMAC")?.as_str()?)
}

/// What the planner needs to know about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayNode {
    /// Node name.
    pub name: String,
    /// `spec.podCIDR`; `None` until the allocator assigned one.
    pub pod_cidr: Option<Ipv4Net>,
    /// The node's InternalIP (underlay address).
    pub internal_ip: Option<Ipv4Addr>,
    /// VTEP MAC from the node's annotations, if published yet.
    pub vtep_mac: Option<MacAddress>,
}

/// Input of [`plan_overlay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayInput {
    /// Name of the node being planned for (must be in `nodes`).
    pub this_node: String,
    /// Backend of the cluster.
    pub backend: OverlayBackend,
    /// MTU of the underlay interface (the VXLAN device gets 50 less).
    pub underlay_mtu: u32,
    /// TX checksum offload on the VXLAN device (resolved from
    /// [`TxChecksumOffload`] for the running kernel).
    pub vxlan_tx_checksum_offload: bool,
    /// Every node of the cluster, this one included.
    pub nodes: Vec<OverlayNode>,
}

/// The VXLAN device a node needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanDeviceSpec {
    /// Device name (`flannel.1`).
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// UDP destination port.
    pub port: u16,
    /// Device MTU (underlay − 50).
    pub mtu: u32,
    /// Source address of the tunnel (the node's InternalIP).
    pub local_ip: Ipv4Addr,
    /// Address on the device: the pod subnet's network address /32.
    pub address: Ipv4Net,
    /// The device's fixed MAC, the one other nodes put in their FDB.
    pub mac: MacAddress,
    /// TX checksum offload (and so TSO/GSO of pod packets) on the device.
    pub tx_checksum_offload: bool,
}

/// A permanent ARP entry: the remote VTEP's inner address → its MAC.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PermanentNeighbour {
    /// Device the entry lives on.
    pub device: String,
    /// Remote subnet's network address (the remote VTEP's inner address).
    pub ip: Ipv4Addr,
    /// Remote VTEP MAC.
    pub mac: MacAddress,
}

/// A forwarding-database entry on the VXLAN device: remote VTEP MAC → the
/// remote node's underlay IP.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FdbEntry {
    /// Device the entry lives on.
    pub device: String,
    /// Remote VTEP MAC.
    pub mac: MacAddress,
    /// Remote node's underlay IP.
    pub destination_ip: Ipv4Addr,
}

/// A route to a remote node's pod subnet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OverlayRoute {
    /// Remote pod subnet.
    pub destination: Ipv4Net,
    /// Next hop: remote VTEP inner address (vxlan) or remote node IP (host-gw).
    pub gateway: Ipv4Addr,
    /// Output device when it must be pinned (the VXLAN device).
    pub device: Option<String>,
    /// The gateway is not inside any subnet of the device: the kernel must
    /// trust it is reachable on the link.
    pub onlink: bool,
}

/// A node left out of the plan and why (it will be planned once its object
/// carries the missing field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedNode {
    /// Node name.
    pub name: String,
    /// What is missing.
    pub reason: String,
}

/// Desired overlay state of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayPlan {
    /// The VXLAN device, or `None` for host-gw (an existing one is removed).
    pub vxlan_device: Option<VxlanDeviceSpec>,
    /// Permanent neighbour entries on the VXLAN device.
    pub neighbours: Vec<PermanentNeighbour>,
    /// FDB entries on the VXLAN device.
    pub fdb_entries: Vec<FdbEntry>,
    /// Routes to remote pod subnets.
    pub routes: Vec<OverlayRoute>,
    /// Nodes that could not be planned yet.
    pub skipped_nodes: Vec<SkippedNode>,
}

/// nftables table (family `ip`) of the overlay: keeps this node's own VXLAN
/// packets out of connection tracking.
pub const VXLAN_NOTRACK_TABLE: &str = "podnet-overlay";

/// The `nft -f` script for [`VXLAN_NOTRACK_TABLE`]: with a VXLAN device, the
/// outer packets of the tunnel (UDP to port 8472 from this node's tunnel
/// address, or to it) are marked `notrack` before conntrack sees them;
/// without one the table is removed. Replaces the table whole, so applying
/// it converges from any state.
///
/// Why: every pod packet between nodes crosses the netfilter hooks twice,
/// inner and outer. The inner one must be tracked (NetworkPolicy's
/// `ct state`, Service NAT), the outer one never needs to be: tracking it
/// costs a conntrack lookup per packet on both nodes and, worse, lets NAT
/// rules see it (the service proxy's masquerade mark survives encapsulation,
/// the old cause of broken offloaded checksums on NAT-ed VXLAN packets).
/// Matching the tunnel address keeps pod traffic that happens to use UDP
/// 8472 (to a Service, to another pod) tracked.
pub fn vxlan_notrack_script(plan: &OverlayPlan) -> String {
    let mut script =
        format!("table ip {VXLAN_NOTRACK_TABLE} {{}}\ndelete table ip {VXLAN_NOTRACK_TABLE}\n");
    if let Some(device) = &plan.vxlan_device {
        let address = device.local_ip;
        let port = device.port;
        script.push_str(&format!(
            "table ip {VXLAN_NOTRACK_TABLE} {{\n\
             \tcomment \"VXLAN packets of this node skip conntrack\"\n\
             \tchain prerouting {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tip daddr {address} udp dport {port} notrack\n\
             \t}}\n\
             \tchain output {{\n\
             \t\ttype filter hook output priority raw; policy accept;\n\
             \t\tip saddr {address} udp dport {port} notrack\n\
             \t}}\n\
             }}\n"
        ));
    }
    script
}

/// Computes the overlay plan of `input.this_node`. This node itself must have
/// a podCIDR and an InternalIP for a VXLAN device to be planned; remote nodes
/// missing data are reported in `skipped_nodes` rather than failing the whole
/// plan, because one half-registered node must not cut off the others.
pub fn plan_overlay(input: &OverlayInput) -> OverlayPlan {
    let mut skipped_nodes = Vec::new();
    let this_node = input.nodes.iter().find(|node| node.name == input.this_node);

    let vxlan_device = match (input.backend, this_node) {
        (OverlayBackend::Vxlan, Some(node)) => match (node.pod_cidr, node.internal_ip) {
            (Some(pod_cidr), Some(internal_ip)) => Some(VxlanDeviceSpec {
                name: VXLAN_DEVICE_NAME.to_string(),
                vni: VXLAN_VNI,
                port: VXLAN_UDP_PORT,
                mtu: input.underlay_mtu.saturating_sub(VXLAN_OVERHEAD),
                local_ip: internal_ip,
                address: Ipv4Net::new(pod_cidr.network(), 32).expect("32 is a valid prefix"),
                mac: node
                    .vtep_mac
                    .unwrap_or_else(|| MacAddress::derived_from(&node.name)),
                tx_checksum_offload: input.vxlan_tx_checksum_offload,
            }),
            _ => None,
        },
        _ => None,
    };
    if this_node.is_none() {
        skipped_nodes.push(SkippedNode {
            name: input.this_node.clone(),
            reason: "this node is not in the node list".to_string(),
        });
    } else if input.backend == OverlayBackend::Vxlan && vxlan_device.is_none() {
        skipped_nodes.push(SkippedNode {
            name: input.this_node.clone(),
            reason: "this node has no podCIDR or InternalIP yet: no vxlan device".to_string(),
        });
    }

    let mut neighbours = Vec::new();
    let mut fdb_entries = Vec::new();
    let mut routes = Vec::new();
    let mut remote_nodes: Vec<&OverlayNode> = input
        .nodes
        .iter()
        .filter(|node| node.name != input.this_node)
        .collect();
    remote_nodes.sort_by(|a, b| a.name.cmp(&b.name));

    for node in remote_nodes {
        let (Some(pod_cidr), Some(internal_ip)) = (node.pod_cidr, node.internal_ip) else {
            skipped_nodes.push(SkippedNode {
                name: node.name.clone(),
                reason: "no podCIDR or InternalIP yet".to_string(),
            });
            continue;
        };
        match input.backend {
            OverlayBackend::HostGw => routes.push(OverlayRoute {
                destination: pod_cidr,
                gateway: internal_ip,
                device: None,
                onlink: false,
            }),
            OverlayBackend::Vxlan => {
                if vxlan_device.is_none() {
                    continue;
                }
                let Some(vtep_mac) = node.vtep_mac else {
                    skipped_nodes.push(SkippedNode {
                        name: node.name.clone(),
                        reason: "no VTEP MAC annotation yet".to_string(),
                    });
                    continue;
                };
                let remote_vtep_ip = pod_cidr.network();
                neighbours.push(PermanentNeighbour {
                    device: VXLAN_DEVICE_NAME.to_string(),
                    ip: remote_vtep_ip,
                    mac: vtep_mac,
                });
                fdb_entries.push(FdbEntry {
                    device: VXLAN_DEVICE_NAME.to_string(),
                    mac: vtep_mac,
                    destination_ip: internal_ip,
                });
                routes.push(OverlayRoute {
                    destination: pod_cidr,
                    gateway: remote_vtep_ip,
                    device: Some(VXLAN_DEVICE_NAME.to_string()),
                    onlink: true,
                });
            }
        }
    }

    OverlayPlan {
        vxlan_device,
        neighbours,
        fdb_entries,
        routes,
        skipped_nodes,
    }
}

impl fmt::Display for OverlayPlan {
    /// One line per kernel object, in `ip`/`bridge` command syntax, so a
    /// snapshot reads like what an operator would type.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(device) = &self.vxlan_device {
            writeln!(
                formatter,
                "link {} type vxlan id {} local {} dstport {} nolearning mtu {} address {}",
                device.name, device.vni, device.local_ip, device.port, device.mtu, device.mac
            )?;
            writeln!(
                formatter,
                "ethtool -K {} tx {}",
                device.name,
                if device.tx_checksum_offload {
                    "on"
                } else {
                    "off"
                }
            )?;
            writeln!(formatter, "addr {} dev {}", device.address, device.name)?;
        }
        for neighbour in &self.neighbours {
            writeln!(
                formatter,
                "neigh {} lladdr {} dev {} nud permanent",
                neighbour.ip, neighbour.mac, neighbour.device
            )?;
        }
        for entry in &self.fdb_entries {
            writeln!(
                formatter,
                "fdb {} dev {} dst {}",
                entry.mac, entry.device, entry.destination_ip
            )?;
        }
        for route in &self.routes {
            write!(
                formatter,
                "route {} via {}",
                route.destination, route.gateway
            )?;
            if let Some(device) = &route.device {
                write!(formatter, " dev {device}")?;
            }
            if route.onlink {
                write!(formatter, " onlink")?;
            }
            writeln!(formatter)?;
        }
        for skipped in &self.skipped_nodes {
            writeln!(formatter, "skipped {}: {}", skipped.name, skipped.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>, mac: Option<&str>) -> OverlayNode {
        OverlayNode {
            name: name.to_string(),
            pod_cidr: cidr.map(|text| text.parse().unwrap()),
            internal_ip: ip.map(|text| text.parse().unwrap()),
            vtep_mac: mac.map(|text| MacAddress::parse(text).unwrap()),
        }
    }

    fn three_nodes() -> Vec<OverlayNode> {
        vec![
            node(
                "node-0",
                Some("10.244.0.0/24"),
                Some("172.18.0.1"),
                Some("02:00:00:00:00:01"),
            ),
            node(
                "node-2",
                Some("10.244.2.0/24"),
                Some("172.18.0.3"),
                Some("02:00:00:00:00:03"),
            ),
            node(
                "node-1",
                Some("10.244.1.0/24"),
                Some("172.18.0.2"),
                Some("02:00:00:00:00:02"),
            ),
        ]
    }

    /// node-0's plan with the defaults: vxlan, underlay MTU 1500, offload on.
    fn vxlan_on_node_0(nodes: Vec<OverlayNode>) -> OverlayInput {
        OverlayInput {
            this_node: "node-0".to_string(),
            backend: OverlayBackend::Vxlan,
            underlay_mtu: 1500,
            vxlan_tx_checksum_offload: true,
            nodes,
        }
    }

    fn check(input: OverlayInput, expected: Expect) {
        expected.assert_eq(&plan_overlay(&input).to_string());
    }

    #[test]
    fn vxlan_plan_has_device_and_one_neighbour_fdb_route_per_remote_node() {
        check(
            vxlan_on_node_0(three_nodes()),
            expect![[r#"
                link flannel.1 type vxlan id 1 local 172.18.0.1 dstport 8472 nolearning mtu 1450 address 02:00:00:00:00:01
                ethtool -K flannel.1 tx on
                addr 10.244.0.0/32 dev flannel.1
                neigh 10.244.1.0 lladdr 02:00:00:00:00:02 dev flannel.1 nud permanent
                neigh 10.244.2.0 lladdr 02:00:00:00:00:03 dev flannel.1 nud permanent
                fdb 02:00:00:00:00:02 dev flannel.1 dst 172.18.0.2
                fdb 02:00:00:00:00:03 dev flannel.1 dst 172.18.0.3
                route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
                route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
            "#]],
        );
    }

    #[test]
    fn host_gw_plan_routes_via_node_ips_and_has_no_vxlan_device() {
        check(
            OverlayInput {
                this_node: "node-1".to_string(),
                backend: OverlayBackend::HostGw,
                underlay_mtu: 9000,
                vxlan_tx_checksum_offload: true,
                nodes: three_nodes(),
            },
            expect![[r#"
                route 10.244.0.0/24 via 172.18.0.1
                route 10.244.2.0/24 via 172.18.0.3
            "#]],
        );
    }

    #[test]
    fn incomplete_nodes_are_skipped_and_jumbo_underlay_gives_mtu_minus_50() {
        let mut nodes = three_nodes();
        nodes.push(node("node-3", None, Some("172.18.0.4"), None));
        nodes.push(node(
            "node-4",
            Some("10.244.4.0/24"),
            Some("172.18.0.5"),
            None,
        ));
        nodes[0].vtep_mac = None;
        check(
            OverlayInput {
                this_node: "node-0".to_string(),
                backend: OverlayBackend::Vxlan,
                underlay_mtu: 9000,
                vxlan_tx_checksum_offload: false,
                nodes,
            },
            expect![[r#"
                link flannel.1 type vxlan id 1 local 172.18.0.1 dstport 8472 nolearning mtu 8950 address e6:96:eb:c2:20:78
                ethtool -K flannel.1 tx off
                addr 10.244.0.0/32 dev flannel.1
                neigh 10.244.1.0 lladdr 02:00:00:00:00:02 dev flannel.1 nud permanent
                neigh 10.244.2.0 lladdr 02:00:00:00:00:03 dev flannel.1 nud permanent
                fdb 02:00:00:00:00:02 dev flannel.1 dst 172.18.0.2
                fdb 02:00:00:00:00:03 dev flannel.1 dst 172.18.0.3
                route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
                route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
                skipped node-3: no podCIDR or InternalIP yet
                skipped node-4: no VTEP MAC annotation yet
            "#]],
        );
    }

    #[test]
    fn node_without_pod_cidr_plans_no_vxlan_device() {
        let mut nodes = three_nodes();
        nodes[0].pod_cidr = None;
        check(
            vxlan_on_node_0(nodes),
            expect![[r#"
                skipped node-0: this node has no podCIDR or InternalIP yet: no vxlan device
            "#]],
        );
    }

    #[test]
    fn vxlan_notrack_script_matches_the_tunnel_address_or_removes_the_table() {
        let mut input = vxlan_on_node_0(three_nodes());
        expect![[r#"
            table ip podnet-overlay {}
            delete table ip podnet-overlay
            table ip podnet-overlay {
            	comment "VXLAN packets of this node skip conntrack"
            	chain prerouting {
            		type filter hook prerouting priority raw; policy accept;
            		ip daddr 172.18.0.1 udp dport 8472 notrack
            	}
            	chain output {
            		type filter hook output priority raw; policy accept;
            		ip saddr 172.18.0.1 udp dport 8472 notrack
            	}
            }
        "#]]
        .assert_eq(&vxlan_notrack_script(&plan_overlay(&input)));
        input.backend = OverlayBackend::HostGw;
        expect![[r#"
            table ip podnet-overlay {}
            delete table ip podnet-overlay
        "#]]
        .assert_eq(&vxlan_notrack_script(&plan_overlay(&input)));
    }

    #[test]
    fn tx_checksum_offload_auto_is_on_from_linux_5_7() {
        let auto = TxChecksumOffload::parse("auto").unwrap();
        for (release, expected) in [
            ("6.18.44-fc-v782", true),
            ("5.7.0", true),
            ("5.10.0-28-amd64", true),
            ("5.6.19", false),
            ("4.19.0-26-cloud-amd64", false),
            ("3.10.0-1160.el7.x86_64", false),
            ("10.1", true),
            ("garbage", false),
            ("", false),
        ] {
            assert_eq!(auto.enabled_for_kernel(release), expected, "{release}");
        }
        assert!(TxChecksumOffload::parse("on")
            .unwrap()
            .enabled_for_kernel("4.19.0"));
        assert!(!TxChecksumOffload::parse("off")
            .unwrap()
            .enabled_for_kernel("6.8.0"));
        assert_eq!(TxChecksumOffload::parse("yes"), None);
        assert_eq!(kernel_version("5.15.0-105-generic"), Some((5, 15)));
        assert_eq!(kernel_version("6.1+"), Some((6, 1)));
    }

    #[test]
    fn vtep_mac_is_read_from_podnet_or_flannel_annotation() {
        let mut annotations = BTreeMap::new();
        assert_eq!(vtep_mac_from_annotations(&annotations), None);
        annotations.insert(
            FLANNEL_BACKEND_DATA_ANNOTATION.to_string(),
            r#"{"VNIs":[1],"VtepMAC":"AA:bb:cc:dd:ee:0f"}"#.to_string(),
        );
        assert_eq!(
            vtep_mac_from_annotations(&annotations).map(|mac| mac.to_string()),
            Some("aa:bb:cc:dd:ee:0f".to_string())
        );
        annotations.insert(
            PODNET_VTEP_MAC_ANNOTATION.to_string(),
            "02:11:22:33:44:55".to_string(),
        );
        assert_eq!(
            vtep_mac_from_annotations(&annotations).map(|mac| mac.to_string()),
            Some("02:11:22:33:44:55".to_string())
        );
        assert_eq!(MacAddress::parse("02:11:22:33:44"), None);
        assert_eq!(MacAddress::parse("02:11:22:33:44:55:66"), None);
        assert_eq!(MacAddress::parse("zz:11:22:33:44:55"), None);
    }

    #[test]
    fn derived_vtep_mac_is_stable_local_unicast() {
        let mac = MacAddress::derived_from("node-0");
        assert_eq!(mac, MacAddress::derived_from("node-0"));
        assert_ne!(mac, MacAddress::derived_from("node-1"));
        assert_eq!(mac.0[0] & 0x03, 0x02);
    }
}
