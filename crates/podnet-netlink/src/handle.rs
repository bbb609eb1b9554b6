//! A netlink handle bound to one network namespace.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{
    AddressMessageBuilder, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    LinkVxlan, RouteMessageBuilder,
};

use crate::socket::NetlinkSocket;
use crate::{ethtool, netns, NetlinkError, Result};

/// A link as read from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// MAC address, when the link has one.
    pub mac: Option<[u8; 6]>,
    /// Administratively up.
    pub is_up: bool,
    /// Index of the bridge (or other controller) it is attached to.
    pub master_index: Option<u32>,
    /// Link kind (`veth`, `bridge`, `vxlan`, ...), `None` for physical/lo.
    pub kind: Option<String>,
    /// For VXLAN links: (VNI, local IP, UDP port).
    pub vxlan: Option<(u32, Option<Ipv4Addr>, Option<u16>)>,
}

/// A route as read from the kernel (main table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination (0.0.0.0/0 for the default route).
    pub destination: IpNet,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub output_index: Option<u32>,
    /// `onlink` flag.
    pub onlink: bool,
    /// Scope is `link`.
    pub scope_link: bool,
    /// Routing protocol number (who installed it).
    pub protocol: u8,
}

/// A route to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub destination: IpNet,
    /// Next hop, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output device, if it must be pinned.
    pub device: Option<String>,
    /// Trust the gateway to be on the link even without a covering subnet.
    pub onlink: bool,
    /// Scope `link` (directly reachable, no gateway).
    pub scope_link: bool,
    /// Routing protocol number; podnet's overlay uses
    /// [`NetlinkHandle::PODNET_ROUTE_PROTOCOL`] to recognise its own routes.
    pub protocol: u8,
}

impl RouteSpec {
    /// A plain route to `destination` via `gateway` (protocol `static`).
    pub fn via(destination: IpNet, gateway: Ipv4Addr) -> RouteSpec {
        RouteSpec {
            destination,
            gateway: Some(gateway),
            device: None,
            onlink: false,
            scope_link: false,
            protocol: 4,
        }
    }
}

/// A neighbour (ARP) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub index: u32,
    /// IP address.
    pub ip: IpAddr,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// NUD permanent.
    pub permanent: bool,
}

/// A bridge-family forwarding database entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntryState {
    /// Interface index.
    pub index: u32,
    /// MAC address.
    pub mac: [u8; 6],
    /// VXLAN remote (dst) IP.
    pub destination: Option<IpAddr>,
    /// NUD permanent.
    pub permanent: bool,
}

/// A bridge to ensure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Bridge name.
    pub name: String,
    /// MTU, if it must be set.
    pub mtu: Option<u32>,
    /// Address to put on the bridge (the pod gateway).
    pub address: Option<IpNet>,
}

/// A VXLAN device to ensure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Device name.
    pub name: String,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Tunnel source address.
    pub local_ip: Ipv4Addr,
    /// UDP destination port.
    pub port: u16,
    /// MTU.
    pub mtu: u32,
    /// Fixed MAC address.
    pub mac: [u8; 6],
    /// Address on the device.
    pub address: Option<IpNet>,
    /// TX checksum offload wanted on the device (off also turns off its
    /// TSO/GSO, which depend on it).
    pub tx_checksum_offload: bool,
}

/// A blocking netlink handle bound to one network namespace. The socket is
/// opened inside the namespace, so every request acts there whatever thread
/// later uses the handle.
pub struct NetlinkHandle {
    socket: NetlinkSocket,
    netns_path: Option<PathBuf>,
    netns_label: String,
}

fn mac_from(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

fn is_errno(error: &io::Error, errno: i32) -> bool {
    error.raw_os_error() == Some(errno)
}

impl NetlinkHandle {
    /// Protocol number podnet stamps on the routes it manages (shown by
    /// `ip route` as `proto 80`), so stale ones can be told from others'.
    pub const PODNET_ROUTE_PROTOCOL: u8 = 80;

    /// Opens a handle in the calling thread's current namespace.
    pub fn current() -> Result<NetlinkHandle> {
        let socket = NetlinkSocket::open().map_err(|source| NetlinkError::Socket {
            netns: "(current)".to_string(),
            source,
        })?;
        Ok(NetlinkHandle {
            socket,
            netns_path: None,
            netns_label: "(current)".to_string(),
        })
    }

    /// Opens a handle in the namespace pinned at `netns_path`.
    pub fn open_in(netns_path: &Path) -> Result<NetlinkHandle> {
        Self::opened_in(
            netns_path,
            netns::in_netns(netns_path, NetlinkSocket::open)?,
        )
    }

    /// Opens a handle in the namespace pinned at `netns_path` by switching
    /// the calling thread there and back (no helper thread). Meant for
    /// short single-threaded processes such as CNI plugins, where a thread
    /// per namespace costs more than the netlink work itself. If switching
    /// back fails the thread stays in the other namespace, so the error
    /// must end the process.
    pub fn open_in_this_thread(netns_path: &Path) -> Result<NetlinkHandle> {
        let own_path = Path::new("/proc/thread-self/ns/net");
        let own = netns::open_netns(own_path)?;
        let target = netns::open_netns(netns_path)?;
        netns::enter_netns(&target, netns_path)?;
        let opened = NetlinkSocket::open();
        netns::enter_netns(&own, own_path)?;
        Self::opened_in(netns_path, opened)
    }

    /// The handle for a socket opened inside the namespace at `netns_path`.
    fn opened_in(netns_path: &Path, opened: io::Result<NetlinkSocket>) -> Result<NetlinkHandle> {
        let label = netns_path.display().to_string();
        let socket = opened.map_err(|source| NetlinkError::Socket {
            netns: label.clone(),
            source,
        })?;
        Ok(NetlinkHandle {
            socket,
            netns_path: Some(netns_path.to_path_buf()),
            netns_label: label,
        })
    }

    /// The namespace path, `None` for the current one.
    pub fn netns_path(&self) -> Option<&Path> {
        self.netns_path.as_deref()
    }

    fn kernel_error(&self, object: String, action: &str, source: io::Error) -> NetlinkError {
        NetlinkError::Kernel {
            object,
            netns: self.netns_label.clone(),
            action: action.to_string(),
            source,
        }
    }

    /// Runs `work` with the calling thread inside this handle's namespace
    /// (for ioctls and /proc/sys, which follow the thread's namespace).
    fn run_in_namespace<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T> {
        match &self.netns_path {
            Some(path) => netns::in_netns(path, work),
            None => Ok(work()),
        }
    }

    // ---------------------------------------------------------------- links

    /// Lists every link.
    pub fn list_links(&self) -> Result<Vec<Link>> {
        let answers = self
            .socket
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .map_err(|source| self.kernel_error("links".to_string(), "list", source))?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(message) => Some(parse_link(&message)),
                _ => None,
            })
            .collect())
    }

    /// Finds a link by name.
    pub fn link_by_name(&self, name: &str) -> Result<Option<Link>> {
        let request = LinkUnspec::new_with_name(name).build();
        match self
            .socket
            .request(RouteNetlinkMessage::GetLink(request), 0)
        {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(message) => Some(parse_link(&message)),
                _ => None,
            })),
            Err(error) if is_errno(&error, libc::ENODEV) => Ok(None),
            Err(source) => Err(self.kernel_error(format!("link {name}"), "look up", source)),
        }
    }

    /// Finds a link by name or fails with [`NetlinkError::LinkNotFound`].
    pub fn require_link(&self, name: &str) -> Result<Link> {
        self.link_by_name(name)?
            .ok_or_else(|| NetlinkError::LinkNotFound {
                name: name.to_string(),
                netns: self.netns_label.clone(),
            })
    }

    /// Deletes a link by name in one request (no lookup first);
    /// `Ok(false)` when it did not exist.
    pub fn delete_link(&self, name: &str) -> Result<bool> {
        let message = LinkUnspec::new_with_name(name).build();
        match self
            .socket
            .request(RouteNetlinkMessage::DelLink(message), 0)
        {
            Ok(_) => Ok(true),
            Err(error) if is_errno(&error, libc::ENODEV) => Ok(false),
            Err(source) => Err(self.kernel_error(format!("link {name}"), "delete", source)),
        }
    }

    fn set_link(&self, name: &str, action: &str, message: LinkMessage) -> Result<()> {
        self.socket
            .request(RouteNetlinkMessage::SetLink(message), 0)
            .map(|_| ())
            .map_err(|source| self.kernel_error(format!("link {name}"), action, source))
    }

    /// Sets a link administratively up.
    pub fn set_link_up(&self, name: &str) -> Result<()> {
        let link = self.require_link(name)?;
        if link.is_up {
            return Ok(());
        }
        self.set_link(
            name,
            "set up",
            LinkUnspec::new_with_index(link.index).up().build(),
        )
    }

    /// Sets a link's MTU.
    pub fn set_link_mtu(&self, name: &str, mtu: u32) -> Result<()> {
        let link = self.require_link(name)?;
        if link.mtu == mtu {
            return Ok(());
        }
        self.set_link(
            name,
            &format!("set mtu {mtu}"),
            LinkUnspec::new_with_index(link.index).mtu(mtu).build(),
        )
    }

    /// Sets a link's MAC address.
    pub fn set_link_mac(&self, name: &str, mac: [u8; 6]) -> Result<()> {
        let link = self.require_link(name)?;
        if link.mac == Some(mac) {
            return Ok(());
        }
        self.set_link(
            name,
            "set mac address",
            LinkUnspec::new_with_index(link.index)
                .address(mac.to_vec())
                .build(),
        )
    }

    /// Attaches a link to a bridge.
    pub fn set_link_master(&self, name: &str, master: &str) -> Result<()> {
        let link = self.require_link(name)?;
        let master_link = self.require_link(master)?;
        if link.master_index == Some(master_link.index) {
            return Ok(());
        }
        self.set_link(
            name,
            &format!("attach to {master}"),
            LinkUnspec::new_with_index(link.index)
                .controller(master_link.index)
                .build(),
        )
    }

    /// Moves a link into another namespace, renaming it on the way.
    pub fn move_link_to_netns(
        &self,
        name: &str,
        target_netns: &Path,
        new_name: Option<&str>,
    ) -> Result<()> {
        let link = self.require_link(name)?;
        let target = netns::open_netns(target_netns)?;
        let mut builder = LinkUnspec::new_with_index(link.index).setns_by_fd(target.as_raw_fd());
        if let Some(new_name) = new_name {
            builder = builder.name(new_name.to_string());
        }
        self.set_link(
            name,
            &format!("move to netns {}", target_netns.display()),
            builder.build(),
        )
    }

    /// Creates a veth pair: `host_name` here, `peer_name` directly inside
    /// `peer_netns` (so no other name is ever visible there), both with `mtu`.
    pub fn create_veth_pair(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_netns: &Path,
        mtu: Option<u32>,
    ) -> Result<()> {
        let target = netns::open_netns(peer_netns)?;
        let message = veth_message(host_name, peer_name, &target, mtu, None);
        self.socket
            .request(
                RouteNetlinkMessage::NewLink(message),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(
                    format!(
                        "veth {host_name} (peer {peer_name} in {})",
                        peer_netns.display()
                    ),
                    "create",
                    source,
                )
            })
    }

    /// Creates a veth pair in one batch of requests and returns the host
    /// end: `host_name` here, already up and attached to the bridge with
    /// index `master_index` (hairpin mode on the port if asked), and
    /// `peer_name` directly inside `peer_netns` (down); both with
    /// `mtu`. An error from the creation itself is reported as
    /// [`NetlinkError::Kernel`] with the kernel's errno (`EEXIST` when a
    /// name is taken).
    pub fn create_veth_pair_on_bridge(
        &self,
        host_name: &str,
        peer_name: &str,
        peer_netns: &Path,
        mtu: Option<u32>,
        master_index: u32,
        hairpin: bool,
    ) -> Result<Link> {
        let target = netns::open_netns(peer_netns)?;
        // The peer cannot be created up: veth refuses to open an end whose
        // peer is not linked yet (ENOTCONN). configure_link brings it up.
        let create = veth_message(host_name, peer_name, &target, mtu, Some(master_index));
        let mut batch = vec![(
            RouteNetlinkMessage::NewLink(create),
            NLM_F_CREATE | NLM_F_EXCL,
        )];
        if hairpin {
            // Port options travel in IFLA_INFO_SLAVE_DATA of an RTM_NEWLINK;
            // addressed by name, so it needs no lookup of the new index.
            batch.push((
                RouteNetlinkMessage::NewLink(
                    LinkBridgePort::new(0).name(host_name).hairpin(true).build(),
                ),
                0,
            ));
        }
        batch.push((
            RouteNetlinkMessage::GetLink(LinkUnspec::new_with_name(host_name).build()),
            0,
        ));
        let mut outcomes = self
            .socket
            .request_batch(batch)
            .map_err(|source| self.kernel_error(format!("veth {host_name}"), "create", source))?
            .into_iter();
        let object = format!(
            "veth {host_name} (peer {peer_name} in {})",
            peer_netns.display()
        );
        outcomes
            .next()
            .expect("creation outcome")
            .map_err(|source| self.kernel_error(object.clone(), "create", source))?;
        if hairpin {
            outcomes
                .next()
                .expect("hairpin outcome")
                .map_err(|source| {
                    self.kernel_error(
                        format!("bridge port {host_name}"),
                        "set hairpin mode",
                        source,
                    )
                })?;
        }
        let answers = outcomes
            .next()
            .expect("lookup outcome")
            .map_err(|source| self.kernel_error(object.clone(), "look up", source))?;
        answers
            .into_iter()
            .find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(message) => Some(parse_link(&message)),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::LinkNotFound {
                name: host_name.to_string(),
                netns: self.netns_label.clone(),
            })
    }

    /// Gives link `name` its address and routes (their device is `name`
    /// whatever `device` says) and brings it and `lo` up, in one batch of
    /// requests after one lookup; returns the link as looked up. Fails if
    /// the address is already present.
    pub fn configure_link(&self, name: &str, address: IpNet, routes: &[RouteSpec]) -> Result<Link> {
        let link = self.require_link(name)?;
        let mut batch = vec![
            (
                RouteNetlinkMessage::NewAddress(self.address_message(link.index, address)),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            // Up before the routes: the kernel refuses a gateway route on a
            // link that is down.
            (
                RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(link.index).up().build()),
                0,
            ),
        ];
        for route in routes {
            let message = self.route_message(route, Some(link.index))?;
            batch.push((
                RouteNetlinkMessage::NewRoute(message),
                NLM_F_CREATE | NLM_F_REPLACE,
            ));
        }
        batch.push((
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_name("lo").up().build()),
            0,
        ));
        let outcomes = self
            .socket
            .request_batch(batch)
            .map_err(|source| self.kernel_error(format!("link {name}"), "configure", source))?;
        let mut outcomes = outcomes.into_iter();
        outcomes
            .next()
            .expect("address outcome")
            .map_err(|source| {
                self.kernel_error(format!("address {address} on {name}"), "add", source)
            })?;
        outcomes
            .next()
            .expect("link up outcome")
            .map_err(|source| self.kernel_error(format!("link {name}"), "set up", source))?;
        for route in routes {
            outcomes.next().expect("route outcome").map_err(|source| {
                self.kernel_error(Self::route_object(route), "replace", source)
            })?;
        }
        outcomes
            .next()
            .expect("loopback outcome")
            .map_err(|source| self.kernel_error("link lo".to_string(), "set up", source))?;
        Ok(link)
    }

    /// Makes a bridge exist, up, with the given MTU and address.
    pub fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<Link> {
        match self.link_by_name(&spec.name)? {
            Some(link) if link.kind.as_deref() != Some("bridge") => {
                return Err(NetlinkError::WrongLinkKind {
                    name: spec.name.clone(),
                    netns: self.netns_label.clone(),
                    actual: link.kind.unwrap_or_else(|| "physical".to_string()),
                    expected: "bridge".to_string(),
                })
            }
            Some(link)
                if spec.mtu.is_none_or(|mtu| mtu == link.mtu)
                    && link.is_up
                    && match spec.address {
                        Some(address) => self.list_addresses_of(&link)?.contains(&address),
                        None => true,
                    } =>
            {
                // The common case (every ADD after the first): one lookup
                // and one address dump, nothing to change.
                return Ok(link);
            }
            Some(_) => {}
            None => {
                let mut builder = LinkBridge::new(&spec.name);
                if let Some(mtu) = spec.mtu {
                    builder = builder.mtu(mtu);
                }
                match self.socket.request(
                    RouteNetlinkMessage::NewLink(builder.build()),
                    NLM_F_CREATE | NLM_F_EXCL,
                ) {
                    // EEXIST: created concurrently by another ADD; fine.
                    Ok(_) => {}
                    Err(error) if is_errno(&error, libc::EEXIST) => {}
                    Err(source) => {
                        return Err(self.kernel_error(
                            format!("bridge {}", spec.name),
                            "create",
                            source,
                        ))
                    }
                }
            }
        }
        if let Some(mtu) = spec.mtu {
            self.set_link_mtu(&spec.name, mtu)?;
        }
        if let Some(address) = spec.address {
            self.ensure_address(&spec.name, address)?;
        }
        self.set_link_up(&spec.name)?;
        self.require_link(&spec.name)
    }

    /// Turns hairpin mode on or off on a bridge port (pod → own service).
    pub fn set_bridge_port_hairpin(&self, name: &str, hairpin: bool) -> Result<()> {
        let link = self.require_link(name)?;
        // Port options travel in IFLA_INFO_SLAVE_DATA, which the kernel only
        // reads from RTM_NEWLINK (as `ip link set type bridge_slave` does).
        let message = LinkBridgePort::new(link.index).hairpin(hairpin).build();
        self.socket
            .request(RouteNetlinkMessage::NewLink(message), 0)
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(format!("bridge port {name}"), "set hairpin mode", source)
            })
    }

    /// Makes a VXLAN device match `spec` (recreating it if its identity —
    /// VNI, local IP, port — differs), up, with TX checksum offload as
    /// `spec` says.
    pub fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<Link> {
        if let Some(link) = self.link_by_name(&spec.name)? {
            let wanted_identity = (spec.vni, Some(spec.local_ip), Some(spec.port));
            if link.kind.as_deref() != Some("vxlan") || link.vxlan != Some(wanted_identity) {
                self.delete_link(&spec.name)?;
            }
        }
        if self.link_by_name(&spec.name)?.is_none() {
            let message = LinkVxlan::new(&spec.name, spec.vni)
                .local(spec.local_ip)
                .port(spec.port)
                .learning(false)
                .mtu(spec.mtu)
                .address(spec.mac.to_vec())
                .build();
            self.socket
                .request(
                    RouteNetlinkMessage::NewLink(message),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
                .map_err(|source| {
                    self.kernel_error(format!("vxlan {}", spec.name), "create", source)
                })?;
        }
        self.set_link_mtu(&spec.name, spec.mtu)?;
        self.set_link_mac(&spec.name, spec.mac)?;
        if let Some(address) = spec.address {
            self.ensure_address(&spec.name, address)?;
        }
        self.set_tx_checksum_offload(&spec.name, spec.tx_checksum_offload)?;
        self.set_link_up(&spec.name)?;
        self.require_link(&spec.name)
    }

    /// Turns TX checksum offload on or off on a link (`ethtool -K NAME tx
    /// on|off`); nothing is written when it already is that way.
    pub fn set_tx_checksum_offload(&self, name: &str, on: bool) -> Result<()> {
        // One visit to the namespace for the read and the write.
        self.run_in_namespace(|| {
            if ethtool::tx_checksum_offload_enabled(name)? == on {
                return Ok(());
            }
            ethtool::set_tx_checksum_offload(name, on)
        })?
        .map_err(|source| {
            self.kernel_error(
                format!("link {name}"),
                if on {
                    "turn tx checksum offload on"
                } else {
                    "turn tx checksum offload off"
                },
                source,
            )
        })
    }

    /// Reads whether TX checksum offload is on.
    pub fn tx_checksum_offload_enabled(&self, name: &str) -> Result<bool> {
        self.run_in_namespace(|| ethtool::tx_checksum_offload_enabled(name))?
            .map_err(|source| {
                self.kernel_error(format!("link {name}"), "read tx checksum offload", source)
            })
    }

    // ------------------------------------------------------------ addresses

    fn address_message(&self, link_index: u32, address: IpNet) -> AddressMessage {
        match address {
            IpNet::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(link_index)
                .address(v4.addr(), v4.prefix_len())
                .build(),
            IpNet::V6(v6) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(link_index)
                .address(v6.addr(), v6.prefix_len())
                .build(),
        }
    }

    /// Adds an address (fails if present).
    pub fn add_address(&self, name: &str, address: IpNet) -> Result<()> {
        let link = self.require_link(name)?;
        self.socket
            .request(
                RouteNetlinkMessage::NewAddress(self.address_message(link.index, address)),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(format!("address {address} on {name}"), "add", source)
            })
    }

    /// Adds or replaces an address.
    pub fn replace_address(&self, name: &str, address: IpNet) -> Result<()> {
        let link = self.require_link(name)?;
        self.socket
            .request(
                RouteNetlinkMessage::NewAddress(self.address_message(link.index, address)),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(format!("address {address} on {name}"), "replace", source)
            })
    }

    /// Removes an address; `Ok(false)` when absent.
    pub fn delete_address(&self, name: &str, address: IpNet) -> Result<bool> {
        let link = self.require_link(name)?;
        match self.socket.request(
            RouteNetlinkMessage::DelAddress(self.address_message(link.index, address)),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(error) if is_errno(&error, libc::EADDRNOTAVAIL) => Ok(false),
            Err(source) => {
                Err(self.kernel_error(format!("address {address} on {name}"), "delete", source))
            }
        }
    }

    /// Adds an address unless the link already has it.
    pub fn ensure_address(&self, name: &str, address: IpNet) -> Result<()> {
        if self.list_addresses(name)?.contains(&address) {
            return Ok(());
        }
        self.replace_address(name, address)
    }

    /// Lists the addresses of a link.
    pub fn list_addresses(&self, name: &str) -> Result<Vec<IpNet>> {
        let link = self.require_link(name)?;
        self.list_addresses_of(&link)
    }

    fn list_addresses_of(&self, link: &Link) -> Result<Vec<IpNet>> {
        let name = &link.name;
        let answers = self
            .socket
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
            .map_err(|source| self.kernel_error(format!("addresses of {name}"), "list", source))?;
        let mut addresses = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewAddress(message) = answer else {
                continue;
            };
            if message.header.index != link.index {
                continue;
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the
            // peer on point-to-point links, so prefer the former.
            let local = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
            let address = local.or_else(|| {
                message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
            });
            if let Some(ip) = address {
                if let Ok(net) = IpNet::new(ip, message.header.prefix_len) {
                    addresses.push(net);
                }
            }
        }
        Ok(addresses)
    }

    // --------------------------------------------------------------- routes

    /// The message for `spec`; its output interface is `device_index` when
    /// given, else `spec.device` looked up by name.
    fn route_message(&self, spec: &RouteSpec, device_index: Option<u32>) -> Result<RouteMessage> {
        let IpNet::V4(destination) = spec.destination else {
            return Err(self.kernel_error(
                format!("route {}", spec.destination),
                "build",
                io::Error::new(io::ErrorKind::Unsupported, "only IPv4 routes are supported"),
            ));
        };
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.addr(), destination.prefix_len())
            .protocol(RouteProtocol::from(spec.protocol));
        if let Some(gateway) = spec.gateway {
            builder = builder.gateway(gateway);
        }
        if let Some(index) = device_index {
            builder = builder.output_interface(index);
        } else if let Some(device) = &spec.device {
            builder = builder.output_interface(self.require_link(device)?.index);
        }
        if spec.onlink {
            builder = builder.onlink();
        }
        if spec.scope_link {
            builder = builder.scope(RouteScope::Link);
        }
        Ok(builder.build())
    }

    fn route_object(spec: &RouteSpec) -> String {
        let mut text = format!("route {}", spec.destination);
        if let Some(gateway) = spec.gateway {
            text.push_str(&format!(" via {gateway}"));
        }
        if let Some(device) = &spec.device {
            text.push_str(&format!(" dev {device}"));
        }
        text
    }

    /// Adds a route (fails if present).
    pub fn add_route(&self, spec: &RouteSpec) -> Result<()> {
        let message = self.route_message(spec, None)?;
        self.socket
            .request(
                RouteNetlinkMessage::NewRoute(message),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map(|_| ())
            .map_err(|source| self.kernel_error(Self::route_object(spec), "add", source))
    }

    /// Adds or replaces a route.
    pub fn replace_route(&self, spec: &RouteSpec) -> Result<()> {
        let message = self.route_message(spec, None)?;
        self.socket
            .request(
                RouteNetlinkMessage::NewRoute(message),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map(|_| ())
            .map_err(|source| self.kernel_error(Self::route_object(spec), "replace", source))
    }

    /// Deletes the route to `destination` in the main table; `Ok(false)`
    /// when there was none.
    pub fn delete_route(&self, destination: IpNet) -> Result<bool> {
        let IpNet::V4(v4) = destination else {
            return Ok(false);
        };
        let mut message = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(v4.addr(), v4.prefix_len())
            .build();
        // Match any protocol and scope: delete by destination only.
        message.header.protocol = RouteProtocol::Unspec;
        message.header.scope = RouteScope::NoWhere;
        match self
            .socket
            .request(RouteNetlinkMessage::DelRoute(message), 0)
        {
            Ok(_) => Ok(true),
            Err(error) if is_errno(&error, libc::ESRCH) => Ok(false),
            Err(source) => Err(self.kernel_error(format!("route {destination}"), "delete", source)),
        }
    }

    /// Lists the IPv4 routes of the main table.
    pub fn list_routes(&self) -> Result<Vec<Route>> {
        let mut request = RouteMessage::default();
        request.header.address_family = AddressFamily::Inet;
        let answers = self
            .socket
            .dump(RouteNetlinkMessage::GetRoute(request))
            .map_err(|source| self.kernel_error("routes".to_string(), "list", source))?;
        let mut routes = Vec::new();
        for answer in answers {
            let RouteNetlinkMessage::NewRoute(message) = answer else {
                continue;
            };
            let table = message
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    RouteAttribute::Table(table) => Some(*table),
                    _ => None,
                })
                .unwrap_or(u32::from(message.header.table));
            // Only the main table (254) and unicast routes concern pod networking.
            if table != 254 || message.header.kind != RouteType::Unicast {
                continue;
            }
            let mut destination_ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let mut gateway = None;
            let mut output_index = None;
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                        destination_ip = IpAddr::V4(*ip)
                    }
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                        gateway = Some(IpAddr::V4(*ip))
                    }
                    RouteAttribute::Oif(index) => output_index = Some(*index),
                    _ => {}
                }
            }
            let Ok(destination) =
                IpNet::new(destination_ip, message.header.destination_prefix_length)
            else {
                continue;
            };
            routes.push(Route {
                destination,
                gateway,
                output_index,
                onlink: message.header.flags.contains(RouteFlags::Onlink),
                scope_link: message.header.scope == RouteScope::Link,
                protocol: u8::from(message.header.protocol),
            });
        }
        Ok(routes)
    }

    // ----------------------------------------------------------- neighbours

    fn neighbour_message(index: u32, ip: Ipv4Addr, mac: Option<[u8; 6]>) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message.header.kind = RouteType::Unspec;
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        if let Some(mac) = mac {
            message
                .attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        message
    }

    /// Adds a permanent neighbour entry (fails if present).
    pub fn add_permanent_neighbour(&self, device: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        let link = self.require_link(device)?;
        self.socket
            .request(
                RouteNetlinkMessage::NewNeighbour(Self::neighbour_message(
                    link.index,
                    ip,
                    Some(mac),
                )),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(format!("neighbour {ip} on {device}"), "add", source)
            })
    }

    /// Adds or replaces a permanent neighbour entry.
    pub fn replace_permanent_neighbour(
        &self,
        device: &str,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<()> {
        let link = self.require_link(device)?;
        self.socket
            .request(
                RouteNetlinkMessage::NewNeighbour(Self::neighbour_message(
                    link.index,
                    ip,
                    Some(mac),
                )),
                NLM_F_CREATE | NLM_F_REPLACE,
            )
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(format!("neighbour {ip} on {device}"), "replace", source)
            })
    }

    /// Deletes a neighbour entry; `Ok(false)` when absent.
    pub fn delete_neighbour(&self, device: &str, ip: Ipv4Addr) -> Result<bool> {
        let link = self.require_link(device)?;
        match self.socket.request(
            RouteNetlinkMessage::DelNeighbour(Self::neighbour_message(link.index, ip, None)),
            0,
        ) {
            Ok(_) => Ok(true),
            Err(error) if is_errno(&error, libc::ENOENT) => Ok(false),
            Err(source) => {
                Err(self.kernel_error(format!("neighbour {ip} on {device}"), "delete", source))
            }
        }
    }

    /// Lists the IPv4 neighbour entries of a link.
    pub fn list_neighbours(&self, device: &str) -> Result<Vec<Neighbour>> {
        let link = self.require_link(device)?;
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Inet;
        let answers = self
            .socket
            .dump(RouteNetlinkMessage::GetNeighbour(request))
            .map_err(|source| {
                self.kernel_error(format!("neighbours of {device}"), "list", source)
            })?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewNeighbour(message)
                    if message.header.ifindex == link.index =>
                {
                    let ip = message
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                                Some(IpAddr::V4(*ip))
                            }
                            _ => None,
                        })?;
                    let mac = message
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            NeighbourAttribute::LinkLayerAddress(bytes) => mac_from(bytes),
                            _ => None,
                        });
                    Some(Neighbour {
                        index: message.header.ifindex,
                        ip,
                        mac,
                        permanent: message.header.state == NeighbourState::Permanent,
                    })
                }
                _ => None,
            })
            .collect())
    }

    // ------------------------------------------------------------------ fdb

    fn fdb_message(index: u32, mac: [u8; 6], destination: Option<Ipv4Addr>) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        // NTF_SELF: the entry belongs to the device's own table (the VXLAN
        // FDB), not to a bridge it might be enslaved to.
        message.header.flags = NeighbourFlags::Own;
        message.header.kind = RouteType::Unspec;
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        if let Some(destination) = destination {
            message
                .attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                    destination,
                )));
        }
        message
    }

    fn fdb_request(
        &self,
        device: &str,
        mac: [u8; 6],
        destination: Option<Ipv4Addr>,
        flags: u16,
        action: &str,
        delete: bool,
    ) -> Result<()> {
        let link = self.require_link(device)?;
        let message = Self::fdb_message(link.index, mac, destination);
        let request = if delete {
            RouteNetlinkMessage::DelNeighbour(message)
        } else {
            RouteNetlinkMessage::NewNeighbour(message)
        };
        self.socket
            .request(request, flags)
            .map(|_| ())
            .map_err(|source| {
                self.kernel_error(
                    format!("fdb {} on {device}", crate::overlay::format_mac(mac)),
                    action,
                    source,
                )
            })
    }

    /// Appends an FDB entry (several remotes per MAC are allowed).
    pub fn append_fdb(&self, device: &str, mac: [u8; 6], destination: Ipv4Addr) -> Result<()> {
        self.fdb_request(
            device,
            mac,
            Some(destination),
            NLM_F_CREATE | NLM_F_APPEND,
            "append",
            false,
        )
    }

    /// Adds or replaces the FDB entry of `mac`.
    pub fn replace_fdb(&self, device: &str, mac: [u8; 6], destination: Ipv4Addr) -> Result<()> {
        self.fdb_request(
            device,
            mac,
            Some(destination),
            NLM_F_CREATE | NLM_F_REPLACE,
            "replace",
            false,
        )
    }

    /// Deletes an FDB entry; `Ok(false)` when absent.
    pub fn delete_fdb(
        &self,
        device: &str,
        mac: [u8; 6],
        destination: Option<Ipv4Addr>,
    ) -> Result<bool> {
        match self.fdb_request(device, mac, destination, 0, "delete", true) {
            Ok(()) => Ok(true),
            Err(NetlinkError::Kernel { source, .. }) if is_errno(&source, libc::ENOENT) => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Lists the FDB entries of a link.
    pub fn list_fdb(&self, device: &str) -> Result<Vec<FdbEntryState>> {
        let link = self.require_link(device)?;
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Bridge;
        let answers = self
            .socket
            .dump(RouteNetlinkMessage::GetNeighbour(request))
            .map_err(|source| self.kernel_error(format!("fdb of {device}"), "list", source))?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewNeighbour(message)
                    if message.header.ifindex == link.index =>
                {
                    let mac = message
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            NeighbourAttribute::LinkLayerAddress(bytes) => mac_from(bytes),
                            _ => None,
                        })?;
                    let destination =
                        message
                            .attributes
                            .iter()
                            .find_map(|attribute| match attribute {
                                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                                    Some(IpAddr::V4(*ip))
                                }
                                // In bridge-family answers the parser cannot tell the family
                                // of NDA_DST and leaves the raw bytes.
                                NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                                    <[u8; 4]>::try_from(bytes.as_slice())
                                        .ok()
                                        .map(|octets| IpAddr::V4(Ipv4Addr::from(octets)))
                                }
                                _ => None,
                            });
                    Some(FdbEntryState {
                        index: message.header.ifindex,
                        mac,
                        destination,
                        permanent: message.header.state == NeighbourState::Permanent,
                    })
                }
                _ => None,
            })
            .collect())
    }

    // --------------------------------------------------------------- sysctl

    /// Writes a sysctl (dotted key, e.g. `net.ipv4.ip_forward`) inside this
    /// handle's namespace: /proc/sys/net follows the writer's namespace.
    pub fn write_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run_in_namespace(|| std::fs::write(&path, value))?
            .map_err(|source| NetlinkError::Sysctl {
                key: key.to_string(),
                value: value.to_string(),
                netns: self.netns_label.clone(),
                source,
            })
    }

    /// Reads a sysctl inside this handle's namespace.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run_in_namespace(|| std::fs::read_to_string(&path))?
            .map(|text| text.trim().to_string())
            .map_err(|source| NetlinkError::Sysctl {
                key: key.to_string(),
                value: "(read)".to_string(),
                netns: self.netns_label.clone(),
                source,
            })
    }
}

fn parse_link(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        mtu: 0,
        mac: None,
        is_up: message.header.flags.contains(LinkFlags::Up),
        master_index: None,
        kind: None,
        vxlan: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(bytes) => link.mac = mac_from(bytes),
            LinkAttribute::Controller(index) => link.master_index = Some(*index),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(vxlan_infos)) => {
                            let mut vni = 0;
                            let mut local = None;
                            let mut port = None;
                            for vxlan_info in vxlan_infos {
                                match vxlan_info {
                                    InfoVxlan::Id(id) => vni = *id,
                                    InfoVxlan::Local(ip) => local = Some(*ip),
                                    InfoVxlan::Port(value) => port = Some(*value),
                                    _ => {}
                                }
                            }
                            link.vxlan = Some((vni, local, port));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// The RTM_NEWLINK creating veth `host_name` here and `peer_name` directly
/// in the namespace open as `peer_netns`, both with `mtu`; with
/// `master_index`, the host end is on that bridge and up.
fn veth_message(
    host_name: &str,
    peer_name: &str,
    peer_netns: &std::fs::File,
    mtu: Option<u32>,
    master_index: Option<u32>,
) -> LinkMessage {
    let mut peer = LinkUnspec::new_with_name(peer_name).setns_by_fd(peer_netns.as_raw_fd());
    let mut builder = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_name.to_string());
    if let Some(master_index) = master_index {
        builder = builder.controller(master_index).up();
    }
    if let Some(mtu) = mtu {
        peer = peer.mtu(mtu);
        builder = builder.mtu(mtu);
    }
    builder
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build()
}
