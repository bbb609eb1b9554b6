//! The API server as pods see it. Pods live in node network namespaces and
//! cannot reach the host's 127.0.0.1, so the server process also listens on
//! the underlay's gateway address inside the cluster's underlay namespace
//! (172.18.0.1:6443, the `kubernetes` Service's endpoint) and copies bytes to
//! and from its real listener. TLS passes through untouched: the server
//! certificate names the gateway address and 10.96.0.1.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bind `address` inside the network namespace at `netns`, waiting up to
/// `wait` for the namespace and the address to appear (`podnet up` creates
/// them while the server starts).
fn bind_in_netns(
    netns: &Path,
    address: SocketAddr,
    wait: Duration,
) -> Result<std::net::TcpListener> {
    let deadline = Instant::now() + wait;
    loop {
        let attempt = {
            let netns = netns.to_path_buf();
            // A short-lived thread enters the namespace; the socket keeps it.
            std::thread::spawn(move || -> Result<std::net::TcpListener> {
                let file = std::fs::File::open(&netns)
                    .with_context(|| format!("opening {}", netns.display()))?;
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {}", netns.display()))?;
                let listener = std::net::TcpListener::bind(address)
                    .with_context(|| format!("binding {address} in {}", netns.display()))?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
        };
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, "api gateway not bindable yet; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => {
                return Err(error.context(format!(
                    "the api gateway could not listen on {address}: check that {} exists and holds that address",
                    netns.display()
                )))
            }
        }
    }
}

/// Accept on `address` in `netns` and forward every connection to `upstream`
/// until the process ends.
pub async fn run(netns: PathBuf, address: SocketAddr, upstream: SocketAddr) -> Result<()> {
    let listener = tokio::task::spawn_blocking(move || {
        bind_in_netns(&netns, address, Duration::from_secs(120))
    })
    .await??;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(%address, %upstream, "api gateway listening in the underlay namespace");
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "api gateway accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            match tokio::net::TcpStream::connect(upstream).await {
                Ok(mut outbound) => {
                    let _ = outbound.set_nodelay(true);
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
                    {
                        tracing::debug!(%peer, %error, "api gateway connection ended");
                    }
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "api gateway cannot reach the api server")
                }
            }
        });
    }
}

/// `podnet server` options for the in-cluster address.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GatewayArgs {
    /// Address (ip:port) pods reach the API server at: the `kubernetes`
    /// Service's endpoint, added to the certificate's names.
    #[arg(long)]
    pub advertise_address: Option<SocketAddr>,
    /// Network namespace (a path like /run/netns/C-underlay) in which to
    /// listen on the advertise address, forwarding to the real listener.
    #[arg(long, requires = "advertise_address")]
    pub advertise_netns: Option<PathBuf>,
}
