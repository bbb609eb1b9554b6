//! LoadBalancer Services published on the host, for local clusters (opt-in:
//! `podnet up --publish-load-balancers`). LoadBalancer addresses live on the
//! cluster's underlay (172.18.255.0/24), which only the cluster's namespaces
//! can reach; with this on, every TCP port of a LoadBalancer Service that has
//! an address is also served on the host's `127.0.0.1:<port>`, each
//! connection copied to `<address>:<port>` through a socket made in the
//! underlay namespace (where the underlay routes the pool to the nodes and
//! their service proxy takes over). Nothing is added to the host's network
//! configuration: these are ordinary listening sockets on loopback.
//!
//! [`plan`] decides what is published (pure); [`run`] keeps listeners in
//! step with it as Services change.

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a host port leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `namespace/name` of the Service.
    pub service: String,
    /// The LoadBalancer address and the Service port.
    pub address: SocketAddrV4,
}

/// What should be published: host port → target, plus the ports that could
/// not be published because another Service already has that host port.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub published: BTreeMap<u16, Target>,
    pub conflicts: Vec<String>,
}

fn key(service: &Service) -> String {
    format!(
        "{}/{}",
        service.metadata.namespace.as_deref().unwrap_or("default"),
        service.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Every TCP port of every LoadBalancer Service with an IPv4 ingress
/// address, on the same port number. Services are taken in
/// `namespace/name` order, so when two want the same port the first keeps
/// it, whatever order they arrive in.
pub fn plan<'a>(services: impl IntoIterator<Item = &'a Service>) -> Plan {
    let mut sorted: Vec<&Service> = services
        .into_iter()
        .filter(|service| service.metadata.deletion_timestamp.is_none())
        .collect();
    sorted.sort_by_key(|service| key(service));
    let mut result = Plan::default();
    for service in sorted {
        let Some(spec) = &service.spec else { continue };
        if spec.type_.as_deref() != Some("LoadBalancer") {
            continue;
        }
        let address: Option<Ipv4Addr> = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|ingress| {
                ingress
                    .iter()
                    .find_map(|entry| entry.ip.as_deref()?.parse().ok())
            });
        let Some(address) = address else { continue };
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let name = key(service);
            match result.published.get(&number) {
                Some(holder) => result.conflicts.push(format!(
                    "{name} port {number}: 127.0.0.1:{number} already publishes {}",
                    holder.service
                )),
                None => {
                    result.published.insert(
                        number,
                        Target {
                            service: name,
                            address: SocketAddrV4::new(address, number),
                        },
                    );
                }
            }
        }
    }
    result
}

/// Connects to `address` from the network namespace at `netns` (the socket
/// is made there, on a short-lived thread, and keeps that namespace).
async fn connect_from(
    netns: &Path,
    address: SocketAddrV4,
) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.to_path_buf();
    let socket = tokio::task::spawn_blocking(move || {
        podnet_netlink::in_netns(&netns, tokio::net::TcpSocket::new_v4)
    })
    .await
    .map_err(std::io::Error::other)?
    .map_err(std::io::Error::other)??;
    socket.connect(SocketAddr::V4(address)).await
}

struct Listener {
    target: Target,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: tokio::net::TcpListener, target: Target, netns: Arc<Path>) {
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, service = %target.service, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let netns = netns.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let _ = inbound.set_nodelay(true);
            match connect_from(&netns, target.address).await {
                Ok(mut outbound) => {
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(error) => tracing::warn!(
                    %peer, %error, service = %target.service, address = %target.address,
                    "cannot reach the load balancer address from the underlay"
                ),
            }
        });
    }
}

/// Make the listeners match `wanted`: close what is no longer wanted or
/// points elsewhere, open what is missing (a port that cannot be bound is
/// reported and tried again on the next change).
async fn converge(running: &mut BTreeMap<u16, Listener>, wanted: &Plan, netns: &Arc<Path>) {
    running.retain(|port, listener| wanted.published.get(port) == Some(&listener.target));
    for (port, target) in &wanted.published {
        if running.contains_key(port) {
            continue;
        }
        match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, *port)).await {
            Ok(listener) => {
                tracing::info!(
                    port, service = %target.service, address = %target.address,
                    "published a load balancer on 127.0.0.1"
                );
                let task = tokio::spawn(serve(listener, target.clone(), netns.clone()));
                running.insert(
                    *port,
                    Listener {
                        target: target.clone(),
                        task,
                    },
                );
            }
            Err(error) => tracing::warn!(
                port, service = %target.service, %error,
                "cannot publish the load balancer on 127.0.0.1: free the port on the host or change the Service port"
            ),
        }
    }
    for conflict in &wanted.conflicts {
        tracing::warn!("not published: {conflict}");
    }
}

/// Watch Services and keep `127.0.0.1:<port>` listeners for their
/// LoadBalancer ports until the process ends.
pub async fn run(client: kube::Client, underlay_netns: PathBuf) -> Result<()> {
    // Fail at once when the namespace is missing, not at the first connection.
    podnet_netlink::open_netns(&underlay_netns)
        .context("the load balancer publisher cannot use the underlay namespace")?;
    let netns: Arc<Path> = underlay_netns.into();
    let (reader, writer) = reflector::store::<Service>();
    let api: kube::Api<Service> = kube::Api::all(client);
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    let notify = changed.clone();
    let watching = tokio::spawn(async move {
        // Driving the stream is what fills the store.
        while events.next().await.is_some() {
            notify.notify_one();
        }
    });
    reader
        .wait_until_ready()
        .await
        .context("the Service watch of the load balancer publisher ended before its first list")?;
    let mut running = BTreeMap::new();
    let mut last = None;
    loop {
        if watching.is_finished() {
            anyhow::bail!("the Service watch of the load balancer publisher ended");
        }
        let services = reader.state();
        let wanted = plan(services.iter().map(|service| service.as_ref()));
        // A port that could not be bound is tried again now and then.
        if last.as_ref() != Some(&wanted) || running.len() != wanted.published.len() {
            converge(&mut running, &wanted, &netns).await;
            last = Some(wanted);
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), changed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn service(
        namespace: &str,
        name: &str,
        type_: &str,
        ip: Option<&str>,
        ports: &[(i32, &str)],
    ) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": namespace, "name": name},
            "spec": {
                "type": type_,
                "ports": ports.iter().map(|(port, protocol)| serde_json::json!({"port": port, "protocol": protocol})).collect::<Vec<_>>(),
            },
            "status": {"loadBalancer": {"ingress": ip.map(|ip| vec![serde_json::json!({"ip": ip})]).unwrap_or_default()}},
        }))
        .unwrap()
    }

    #[test]
    fn publishes_tcp_ports_of_load_balancers_with_an_address_first_name_wins() {
        let services = vec![
            service(
                "web",
                "zeta",
                "LoadBalancer",
                Some("172.18.255.3"),
                &[(80, "TCP")],
            ),
            service(
                "web",
                "alpha",
                "LoadBalancer",
                Some("172.18.255.2"),
                &[(80, "TCP"), (53, "UDP"), (8443, "TCP")],
            ),
            service("web", "pending", "LoadBalancer", None, &[(9000, "TCP")]),
            service(
                "web",
                "plain",
                "ClusterIP",
                Some("172.18.255.9"),
                &[(9001, "TCP")],
            ),
        ];
        let result = plan(&services);
        let lines: Vec<String> = result
            .published
            .iter()
            .map(|(port, target)| {
                format!(
                    "127.0.0.1:{port} -> {} ({})",
                    target.address, target.service
                )
            })
            .chain(result.conflicts.iter().map(|c| format!("conflict: {c}")))
            .collect();
        expect![[r#"
            127.0.0.1:80 -> 172.18.255.2:80 (web/alpha)
            127.0.0.1:8443 -> 172.18.255.2:8443 (web/alpha)
            conflict: web/zeta port 80: 127.0.0.1:80 already publishes web/alpha"#]]
        .assert_eq(&lines.join("\n"));
        let mut reversed = services.clone();
        reversed.reverse();
        assert_eq!(plan(&reversed), result);
    }
}
