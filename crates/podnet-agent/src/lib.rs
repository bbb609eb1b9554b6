//! podnet-agent: the node agent (podnet's kubelet). It registers its Node,
//! heartbeats, runs the pods bound to it (sandbox network namespace through a
//! CNI plugin, containers through the runtime, probes, status), serves exec,
//! attach, port-forward and logs for the API server, and keeps the node's
//! dataplane (overlay) in line with the cluster. Pod lifecycle logic talks to
//! the kernel and runtime through the traits in `backend`, so it is testable
//! with fakes; `run` wires the real implementations.

pub mod agent;
pub mod backend;
pub mod dns;
pub mod mirror;
pub mod netpol;
pub mod network;
pub mod node;
pub mod pods;
pub mod probes;
pub mod proxy;
pub mod real;
pub mod service_account;
pub mod status;
pub mod streaming;
pub mod volumes;

pub use agent::{run, AgentArgs};

use std::path::{Path, PathBuf};

/// Everything the agent can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Api {
        action: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    /// A file or directory of the node could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The container runtime refused an operation.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Pod networking (netns, CNI) failed.
    #[error("network: {0}")]
    Network(String),
    /// A volume could not be prepared.
    #[error("volume: {0}")]
    Volume(String),
    /// The agent was started with unusable settings.
    #[error("configuration: {0}")]
    Config(String),
    /// Something internal went wrong (a worker thread panicked).
    #[error("internal: {0}")]
    Internal(String),
}

impl AgentError {
    pub fn api(action: &'static str) -> impl Fn(kube::Error) -> AgentError {
        move |source| AgentError::Api {
            action,
            source: Box::new(source),
        }
    }
    pub fn io(path: &Path, source: std::io::Error) -> AgentError {
        AgentError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
