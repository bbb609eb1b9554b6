//! podnet-cni: pod networking through the Container Network Interface 1.1.
//! The library holds the `podnet-cni` plugin (a Linux bridge, a veth per pod,
//! host-local style IP allocation, ADD/DEL/CHECK/STATUS/GC/VERSION) and the
//! runtime side that the node agent uses to invoke any CNI plugin chain, like
//! libcni: conflist loading, prevResult chaining and the result cache.
//!
//! The plugin runs inside the node's network namespace (the invoker enters it
//! before exec) and uses netlink directly, never spawning `ip`.

pub mod invoker;
pub mod ipam;
pub mod plugin;
pub mod spec;

use std::io;
use std::path::PathBuf;

pub use invoker::{Attachment, CniConfigList, CniInvoker};

/// Everything that can fail in the plugin or the invoker. [`CniError::code`]
/// maps each to the CNI error code the spec prescribes.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The requested cniVersion is not one this plugin speaks.
    #[error("incompatible CNI version {version}: supported versions are {supported}")]
    IncompatibleVersion {
        /// The version asked for.
        version: String,
        /// The versions supported, comma separated.
        supported: String,
    },
    /// A required environment variable is missing or malformed.
    #[error("environment variable {variable}: {reason}")]
    InvalidEnvironment {
        /// Variable name, e.g. `CNI_IFNAME`.
        variable: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("{object}: cannot {action}: {source}")]
    Io {
        /// The path or object.
        object: String,
        /// What was being done.
        action: String,
        /// The OS error.
        source: io::Error,
    },
    /// The configuration or a result could not be parsed.
    #[error("cannot decode {what}: {source} (check the JSON)")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The network configuration is invalid.
    #[error("invalid network configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// CHECK found no attachment for the container.
    #[error("unknown container {container_id}: {reason}")]
    UnknownContainer {
        /// Container id.
        container_id: String,
        /// What was not found.
        reason: String,
    },
    /// Every address of the range is reserved.
    #[error("no IP addresses available in range set: {range} (release leaked reservations with GC or widen the subnet)")]
    AddressesExhausted {
        /// The range, e.g. `10.244.1.2-10.244.1.254`.
        range: String,
    },
    /// ADD found the interface already in the container.
    #[error("interface {ifname} already exists in netns {netns} (run DEL first)")]
    InterfaceExists {
        /// Interface name.
        ifname: String,
        /// Netns path.
        netns: String,
    },
    /// CHECK found the attachment different from the cached result.
    #[error("check failed for container {container_id}: {reason}")]
    CheckFailed {
        /// Container id.
        container_id: String,
        /// What differs.
        reason: String,
    },
    /// A kernel operation failed.
    #[error(transparent)]
    Netlink(#[from] podnet_netlink::NetlinkError),
    /// The plugin is not ready to ADD (STATUS).
    #[error("plugin not ready: {reason}")]
    NotReady {
        /// Why.
        reason: String,
    },
    /// The invoker found no plugin executable.
    #[error("plugin {plugin} not found in {searched:?} (install it or fix CNI_PATH)")]
    PluginNotFound {
        /// Plugin type.
        plugin: String,
        /// Directories searched.
        searched: Vec<PathBuf>,
    },
    /// A plugin run by the invoker failed.
    #[error("plugin {plugin} {command} failed with code {code}: {message}")]
    PluginFailed {
        /// Plugin type.
        plugin: String,
        /// CNI command.
        command: String,
        /// CNI error code.
        code: u32,
        /// The plugin's message (and details).
        message: String,
    },
    /// No network configuration in the conf dir.
    #[error(
        "no network configuration (*.conflist) in {directory} (write one or fix the conf dir)"
    )]
    NoConfig {
        /// The directory searched.
        directory: PathBuf,
    },
}

impl CniError {
    /// The CNI error code (spec table; 100+ are podnet-specific).
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } => 1,
            CniError::UnknownContainer { .. } => 3,
            CniError::InvalidEnvironment { .. } => 4,
            CniError::Io { .. } => 5,
            CniError::Decode { .. } => 6,
            CniError::InvalidConfig { .. } | CniError::NoConfig { .. } => 7,
            CniError::NotReady { .. } => 50,
            CniError::AddressesExhausted { .. } => 100,
            CniError::InterfaceExists { .. } => 101,
            CniError::CheckFailed { .. } => 102,
            CniError::Netlink(_) => 103,
            CniError::PluginNotFound { .. } => 104,
            CniError::PluginFailed { code, .. } => *code,
        }
    }

    pub(crate) fn io(object: impl std::fmt::Display, action: &str, source: io::Error) -> CniError {
        CniError::Io {
            object: object.to_string(),
            action: action.to_string(),
            source,
        }
    }
}
