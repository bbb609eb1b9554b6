//! podnet-dns: the cluster DNS server. It implements the Kubernetes
//! DNS-based service discovery specification (schema 1.1.0) for the cluster
//! zone from API watches held in memory, and forwards every other name to
//! upstream resolvers with a cache. Layout: `snapshot` (compact facts and the
//! immutable indexed view, pure), `answer` (query + snapshot → response,
//! pure), `wire` (parsing, sizing, truncation), `forward` (upstream + cache),
//! `server` (UDP threads on SO_REUSEPORT sockets, TCP), `watch` (the API).

pub mod answer;
pub mod fast;
pub mod forward;
pub mod health;
pub mod server;
pub mod snapshot;
pub mod watch;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

pub use answer::{answer, Outcome};
pub use forward::{ForwardConfig, Forwarder};
pub use server::{Handler, ServerHandle};
pub use snapshot::{Snapshot, World};

/// Every failure of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{0}")]
    Bind(String),
    #[error("{0}")]
    Upstream(String),
    #[error("kubernetes client: {0}")]
    Client(String),
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    pub zone: String,
    pub ttl: u32,
    /// UDP sockets (and threads) bound with SO_REUSEPORT.
    pub udp_sockets: usize,
    pub forward: ForwardConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            zone: "cluster.local".into(),
            ttl: 5,
            udp_sockets: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            forward: ForwardConfig::default(),
        }
    }
}

/// A kube client from an explicit kubeconfig, or in-cluster configuration
/// (KUBERNETES_SERVICE_HOST/PORT and the service account files).
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, DnsError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                DnsError::Client(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| DnsError::Client(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::incluster().map_err(|e| {
            DnsError::Client(format!(
                "in-cluster configuration: {e} (outside a pod pass --kubeconfig)"
            ))
        })?,
    };
    kube::Client::try_from(config).map_err(|e| DnsError::Client(e.to_string()))
}

/// Start serving (SERVFAIL for the zone until the first sync) and watch the
/// API through `client`. Returns the running server; the watch runs as a task.
pub async fn start(
    config: &DnsConfig,
    client: kube::Client,
) -> Result<(ServerHandle, tokio::task::JoinHandle<()>), DnsError> {
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::unsynced(
        &config.zone,
        config.ttl,
    )));
    let forwarder = Arc::new(Forwarder::new(config.forward.clone()));
    let handler = Arc::new(Handler::new(snapshot.clone(), forwarder));
    let server = server::serve(config.listen, config.udp_sockets, handler).await?;
    let watch = tokio::spawn(watch::run(
        client,
        snapshot,
        config.zone.clone(),
        config.ttl,
    ));
    Ok((server, watch))
}

/// Give memory the allocator holds but no longer uses back to the kernel.
/// Building a snapshot frees the previous one and its temporaries; glibc
/// keeps such pages mapped (they count as resident), so without this the
/// server's resident size reflects its peak rather than its data.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Parse `IP` or `IP:PORT` (port 53 by default).
pub fn parse_upstream(text: &str) -> Result<SocketAddr, DnsError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            DnsError::Upstream(format!(
                "upstream {text:?} is not IP or IP:PORT (e.g. 192.0.2.53 or 192.0.2.53:5353)"
            ))
        })
}

/// Default upstream timeout as a Duration (for CLI defaults).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);

#[cfg(test)]
mod answer_tests;
