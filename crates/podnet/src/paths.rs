//! Where a local cluster keeps its state, and the names of its namespaces.

use std::path::{Path, PathBuf};

/// The root under which every local cluster lives (override: `PODNET_ROOT`).
pub fn clusters_root() -> PathBuf {
    match std::env::var_os("PODNET_ROOT") {
        Some(root) => PathBuf::from(root),
        None => PathBuf::from("/var/lib/podnet/clusters"),
    }
}

/// The shared image store (override: `PODNET_IMAGES`).
pub fn images_root() -> PathBuf {
    match std::env::var_os("PODNET_IMAGES") {
        Some(root) => PathBuf::from(root),
        None => PathBuf::from("/var/lib/podnet/images"),
    }
}

/// Paths and names of one local cluster.
#[derive(Debug, Clone)]
pub struct ClusterPaths {
    pub name: String,
    pub root: PathBuf,
}

impl ClusterPaths {
    pub fn new(name: &str) -> Self {
        ClusterPaths {
            name: name.to_string(),
            root: clusters_root().join(name),
        }
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
    pub fn server_dir(&self) -> PathBuf {
        self.root.join("server")
    }
    pub fn server_pid(&self) -> PathBuf {
        self.server_dir().join("server.pid")
    }
    pub fn server_log(&self) -> PathBuf {
        self.server_dir().join("server.log")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.server_dir().join("kubeconfig")
    }
    pub fn underlay_netns(&self) -> String {
        format!("{}-underlay", self.name)
    }
    pub fn node_name(&self, index: usize) -> String {
        format!("{}-node{}", self.name, index)
    }
    pub fn node(&self, node_name: &str) -> NodePaths {
        NodePaths {
            name: node_name.to_string(),
            root: self.root.join("nodes").join(node_name),
        }
    }
    /// The kubectl context name merged into the user's kubeconfig.
    pub fn context_name(&self) -> String {
        format!("podnet-{}", self.name)
    }
}

/// Paths of one node of a local cluster: the node's own filesystem view.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub name: String,
    pub root: PathBuf,
}

impl NodePaths {
    /// The node's network namespace, a named namespace in the host's /run/netns.
    pub fn netns_name(&self) -> String {
        self.name.clone()
    }
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(self.netns_name())
    }
    pub fn agent_pid(&self) -> PathBuf {
        self.root.join("agent.pid")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.root.join("agent.log")
    }
    /// Directories of the node view, bind-mounted over the real paths by `podnet node exec`:
    /// (path under the node root, path on a real node).
    pub fn view_mounts(&self) -> Vec<(PathBuf, &'static str)> {
        [
            ("run/netns", "/run/netns"),
            ("etc/cni/net.d", "/etc/cni/net.d"),
            ("var/lib/cni", "/var/lib/cni"),
            ("var/log/pods", "/var/log/pods"),
            ("run/runc", "/run/runc"),
        ]
        .into_iter()
        .map(|(relative, real)| (self.root.join(relative), real))
        .collect()
    }
}
