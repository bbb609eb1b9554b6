//! podnet-netlink: namespace-aware network configuration for podnet. It
//! creates and enters named network namespaces kept in any directory, and
//! offers a synchronous netlink handle bound to one namespace for links
//! (veth, bridge, vxlan), addresses, routes, neighbours and FDB entries, plus
//! the few ethtool and sysctl knobs pod networking needs. The overlay applier
//! makes a namespace match a `podnet-netplan` overlay plan.
//!
//! Requests are built with the `rtnetlink` message builders and sent over a
//! blocking socket of our own: the CNI plugin stays a small, fast process with
//! no async runtime, and the agent calls in from blocking tasks.

mod ethtool;
mod handle;
pub mod netns;
pub mod nftables;
pub mod overlay;
mod socket;

use std::io;
use std::path::PathBuf;

pub use handle::{
    BridgeSpec, FdbEntryState, Link, Neighbour, NetlinkHandle, Route, RouteSpec, VxlanSpec,
};
pub use netns::{
    create_netns, delete_netns, ensure_netns, ensure_netns_directory, in_netns, is_netns,
    open_netns, release_netns_directory, OwnedNetns,
};
pub use overlay::{apply_overlay_plan, OverlayApplyReport};

/// Everything that can go wrong configuring a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A namespace file could not be created, entered, mounted or removed.
    #[error(
        "netns {path}: cannot {action}: {source} (is podnet running as root with /proc mounted?)"
    )]
    Netns {
        /// The namespace file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The netlink socket could not be opened or used.
    #[error("netlink socket in netns {netns}: {source}")]
    Socket {
        /// The namespace the socket belongs to.
        netns: String,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel rejected a request on an object.
    #[error("{object} in netns {netns}: cannot {action}: {source}")]
    Kernel {
        /// The object, e.g. `link cni0` or `route 10.244.1.0/24`.
        object: String,
        /// The namespace.
        netns: String,
        /// What was being done.
        action: String,
        /// The kernel's error.
        source: io::Error,
    },
    /// A link that must exist does not.
    #[error("link {name} in netns {netns}: not found (create it first or check the name)")]
    LinkNotFound {
        /// Link name.
        name: String,
        /// The namespace.
        netns: String,
    },
    /// A link exists with the right name but the wrong kind.
    #[error("link {name} in netns {netns}: is a {actual} link, expected {expected} (delete it so it can be recreated)")]
    WrongLinkKind {
        /// Link name.
        name: String,
        /// The namespace.
        netns: String,
        /// Kind found.
        actual: String,
        /// Kind wanted.
        expected: String,
    },
    /// A sysctl inside a namespace could not be written.
    #[error("sysctl {key} in netns {netns}: cannot write {value}: {source}")]
    Sysctl {
        /// Sysctl key with dots, e.g. `net.ipv4.ip_forward`.
        key: String,
        /// Value being written.
        value: String,
        /// The namespace.
        netns: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = NetlinkError> = std::result::Result<T, E>;
