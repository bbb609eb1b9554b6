//! The service proxy: watches Services and EndpointSlices, resolves them for
//! this node with `podnet-netplan`'s planner and applies the incremental
//! batches inside the node's network namespace (incremental nftables batches
//! as one nf_tables netlink transaction, full ones with `nft -f -`, or
//! `iptables-restore --noflush` in iptables mode). Changes are debounced
//! briefly; the first batch (and the first after any failure) replaces the
//! whole ruleset, so a restarted agent converges from whatever is there while
//! established connections keep their conntrack NAT state. Also serves
//! kube-proxy's health check on the node IP, port 10256.

use crate::AgentError;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::Api;
use podnet_netlink::nftables::{NftBatch, NftSocket};
use podnet_netplan::services::{
    iptables, nft, resolve_service, Protocol, ProxyBatch, ProxyContext, ProxyEndpointSlice,
    ProxyMode, ProxyPlanner, ProxyService, ServicePortSpec, ServiceType, SliceEndpoint, SlicePort,
    DEFAULT_AFFINITY_TIMEOUT_SECONDS, SERVICE_NAME_LABEL,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Port of kube-proxy's health check server.
pub const HEALTHZ_PORT: u16 = 10256;
/// Quiet time after a change before the rules are written.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Longest a change waits while others keep arriving.
const MAX_DELAY: Duration = Duration::from_millis(100);

/// Everything the proxy needs to know about its node.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub netns: PathBuf,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub mode: ProxyMode,
    pub healthz_port: u16,
}

impl ProxyConfig {
    pub fn context(&self) -> ProxyContext {
        ProxyContext {
            node_name: self.node_name.clone(),
            node_ips: vec![self.node_ip],
            cluster_cidr: self.cluster_cidr,
            service_cidr: self.service_cidr,
            sctp: true,
        }
    }
}

/// The proxy's view of a Service.
pub fn proxy_service(service: &Service) -> Option<ProxyService> {
    let namespace = service.metadata.namespace.clone()?;
    let name = service.metadata.name.clone()?;
    let spec = service.spec.as_ref()?;
    let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        "ExternalName" => ServiceType::ExternalName,
        _ => ServiceType::ClusterIp,
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            Some(ServicePortSpec {
                name: port.name.clone().unwrap_or_default(),
                protocol: Protocol::parse(port.protocol.as_deref())?,
                port: u16::try_from(port.port).ok()?,
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
            })
        })
        .collect();
    let affinity_timeout_seconds =
        (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|config| config.client_ip.as_ref())
                .and_then(|client_ip| client_ip.timeout_seconds)
                .and_then(|seconds| u32::try_from(seconds).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
        });
    Some(ProxyService {
        namespace,
        name,
        labels: service.metadata.labels.clone().unwrap_or_default(),
        service_type,
        cluster_ip: spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()),
        ports,
        external_ips: spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
        load_balancer_ips: service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ingress| ingress.ip.as_deref().and_then(|ip| ip.parse().ok()))
            .collect(),
        affinity_timeout_seconds,
        internal_traffic_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_traffic_local: spec.external_traffic_policy.as_deref() == Some("Local"),
    })
}

/// The proxy's view of an EndpointSlice (IPv4 slices only).
pub fn proxy_slice(slice: &EndpointSlice) -> Option<ProxyEndpointSlice> {
    if slice.address_type != "IPv4" {
        return None;
    }
    let service_name = slice
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .clone();
    Some(ProxyEndpointSlice {
        namespace: slice.metadata.namespace.clone()?,
        name: slice.metadata.name.clone()?,
        service_name,
        ports: slice
            .ports
            .iter()
            .flatten()
            .filter_map(|port| {
                Some(SlicePort {
                    name: port.name.clone().unwrap_or_default(),
                    protocol: Protocol::parse(port.protocol.as_deref())?,
                    port: u16::try_from(port.port?).ok()?,
                })
            })
            .collect(),
        endpoints: slice
            .endpoints
            .iter()
            .map(|endpoint| {
                let conditions = endpoint.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                SliceEndpoint {
                    addresses: endpoint
                        .addresses
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect(),
                    ready,
                    serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                    node_name: endpoint.node_name.clone(),
                }
            })
            .collect(),
    })
}

/// Runs a program inside a network namespace (entered between fork and exec).
pub fn run_in_netns(
    netns: &Path,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, AgentError> {
    let namespace = std::fs::File::open(netns).map_err(|e| AgentError::io(netns, e))?;
    let raw_fd = namespace.as_raw_fd();
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls are allowed;
    // setns(2) is a plain system call on an inherited descriptor.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(raw_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        AgentError::Network(format!(
            "starting {program} in {}: {e} (is it installed? see scripts/install-deps.sh)",
            netns.display()
        ))
    })?;
    if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
        // Writing from another thread: the child may answer before reading all.
        let text = text.to_string();
        let writer = std::thread::spawn(move || pipe.write_all(text.as_bytes()));
        let output = child
            .wait_with_output()
            .map_err(|e| AgentError::Network(format!("waiting for {program}: {e}")))?;
        let _ = writer.join();
        drop(namespace);
        return Ok(output);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| AgentError::Network(format!("waiting for {program}: {e}")))?;
    drop(namespace);
    Ok(output)
}

/// The standard output of a command that succeeded, else its standard error
/// as the error of `what`.
pub(crate) fn checked(output: Output, what: &str) -> Result<String, AgentError> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    } else {
        Err(AgentError::Network(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Writes batches into one network namespace.
#[derive(Clone, Debug)]
pub struct ProxyApplier {
    pub netns: PathBuf,
    pub mode: ProxyMode,
    /// nf_tables socket kept open between incremental batches (shared by
    /// clones): the kernel flushes its deferred releases when one closes, so
    /// a socket per batch costs an RCU grace period per change.
    nf_socket: Arc<Mutex<Option<NftSocket>>>,
}

impl ProxyApplier {
    pub fn new(netns: PathBuf, mode: ProxyMode) -> ProxyApplier {
        ProxyApplier {
            netns,
            mode,
            nf_socket: Arc::new(Mutex::new(None)),
        }
    }

    /// Applies a translated batch on the kept socket, opening it when there
    /// is none or the namespace file names another namespace now; a socket
    /// that failed is dropped so the next batch opens a fresh one.
    fn apply_netlink(&self, batch: &NftBatch) -> Result<(), AgentError> {
        let mut guard = self.nf_socket.lock().expect("nf_tables socket lock");
        if !guard.as_ref().is_some_and(|socket| socket.is_current()) {
            *guard =
                Some(NftSocket::open(&self.netns).map_err(|error| {
                    AgentError::Network(format!("service proxy rules: {error}"))
                })?);
        }
        let socket = guard.as_ref().expect("socket opened above");
        let result = batch.apply_on(socket);
        if let Err(podnet_netlink::NetlinkError::Socket { .. }) = &result {
            *guard = None;
        }
        result.map_err(|error| AgentError::Network(format!("service proxy rules: {error}")))
    }

    /// One-time node set-up for the proxy, idempotent: the sysctls it relies
    /// on (inside the node's namespace only) and, when the node has no route
    /// covering the service network, one through the node's interface so
    /// that locally originated traffic to a ClusterIP gets as far as the
    /// output hook where it is translated.
    pub fn prepare_node(&self, node_ip: Ipv4Addr, service_cidr: Ipv4Net) -> Result<(), AgentError> {
        let mut sysctls = vec![
            ("net/ipv4/ip_forward", "1"),
            // Pod-to-pod replies on the same bridge must pass conntrack to be
            // un-NATed (the kernel's default, set explicitly).
            ("net/bridge/bridge-nf-call-iptables", "1"),
        ];
        if self.mode == ProxyMode::Iptables {
            // NodePorts on 127.0.0.1, as kube-proxy's iptables mode allows.
            sysctls.push(("net/ipv4/conf/all/route_localnet", "1"));
        }
        for (key, value) in sysctls {
            let path = format!("/proc/sys/{key}");
            let output = run_in_netns(
                &self.netns,
                "sh",
                &["-c", &format!("[ ! -e {path} ] || echo {value} > {path}")],
                None,
            )?;
            checked(output, &format!("setting {key}={value}"))?;
        }
        let probe = Ipv4Addr::from(u32::from(service_cidr.network()) + 1).to_string();
        let route = run_in_netns(&self.netns, "ip", &["route", "get", &probe], None)?;
        if !route.status.success() {
            let addresses = checked(
                run_in_netns(&self.netns, "ip", &["-j", "-4", "addr", "show"], None)?,
                "listing addresses",
            )?;
            let device = serde_json::from_str::<serde_json::Value>(&addresses)
                .ok()
                .and_then(|links| {
                    links.as_array()?.iter().find_map(|link| {
                        let has_ip = link["addr_info"].as_array()?.iter().any(|info| {
                            info["local"].as_str() == Some(node_ip.to_string().as_str())
                        });
                        has_ip.then(|| link["ifname"].as_str().map(str::to_string))?
                    })
                })
                .ok_or_else(|| {
                    AgentError::Network(format!(
                        "no interface holds the node address {node_ip}; pass the right --node-ip"
                    ))
                })?;
            checked(
                run_in_netns(
                    &self.netns,
                    "ip",
                    &[
                        "route",
                        "replace",
                        &service_cidr.to_string(),
                        "dev",
                        &device,
                        "src",
                        &node_ip.to_string(),
                    ],
                    None,
                )?,
                "adding the service network route",
            )?;
        }
        Ok(())
    }

    /// Chains of ours present in the kernel (iptables mode); in nftables
    /// mode the tables of ours, as `(table, "")`, so a full batch deletes
    /// those of an older layout.
    pub fn existing_chains(&self) -> Result<Vec<(String, String)>, AgentError> {
        if self.mode == ProxyMode::Nftables {
            let text = checked(
                run_in_netns(&self.netns, "nft", &["list", "tables", "ip"], None)?,
                "nft list tables",
            )?;
            return Ok(text
                .lines()
                .filter_map(|line| line.trim().strip_prefix("table ip "))
                .map(str::trim)
                .filter(|name| nft::is_proxy_table(name))
                .map(|name| (name.to_string(), String::new()))
                .collect());
        }
        let mut chains = Vec::new();
        for table in ["filter", "nat"] {
            let text = checked(
                run_in_netns(&self.netns, "iptables-save", &["-t", table], None)?,
                "iptables-save",
            )?;
            for line in text.lines() {
                if let Some(rest) = line.strip_prefix(':') {
                    if let Some(name) = rest.split_whitespace().next() {
                        if name.starts_with("KUBE-") {
                            chains.push((table.to_string(), name.to_string()));
                        }
                    }
                }
            }
        }
        Ok(chains)
    }

    /// Writes one batch, then deletes stale UDP conntrack entries.
    pub fn apply(&self, batch: &ProxyBatch) -> Result<(), AgentError> {
        self.apply_with(batch, true)
    }

    /// [`ProxyApplier::apply`], with the netlink path for incremental
    /// nftables batches turned off when `netlink` is false (every batch then
    /// goes through `nft -f`; benchmarks compare the two).
    pub fn apply_with(&self, batch: &ProxyBatch, netlink: bool) -> Result<(), AgentError> {
        if !batch.script.is_empty() {
            match self.mode {
                ProxyMode::Nftables => {
                    // Incremental batches go straight to the kernel as one
                    // netlink transaction: `nft -f` would first dump every
                    // chain of the namespace into its cache. Full batches
                    // (table declarations) and lines outside the translated
                    // subset use nft.
                    let fast = if batch.full || !netlink {
                        None
                    } else {
                        match NftBatch::from_script(&batch.script) {
                            Ok(translated) => Some(translated),
                            Err(line) => {
                                tracing::debug!("service proxy batch through nft -f for: {line}");
                                None
                            }
                        }
                    };
                    match fast {
                        Some(translated) => self.apply_netlink(&translated)?,
                        None => {
                            checked(
                                run_in_netns(
                                    &self.netns,
                                    "nft",
                                    &["-f", "-"],
                                    Some(&batch.script),
                                )?,
                                "nft -f (service proxy rules)",
                            )?;
                        }
                    }
                }
                ProxyMode::Iptables => {
                    checked(
                        run_in_netns(
                            &self.netns,
                            "iptables-restore",
                            &["--noflush", "-w"],
                            Some(&batch.script),
                        )?,
                        "iptables-restore (service proxy rules)",
                    )?;
                    if batch.full {
                        self.ensure_jumps()?;
                    }
                }
            }
        }
        for deletion in &batch.conntrack {
            let mut args = vec!["-D"];
            args.extend(deletion.args.iter().map(String::as_str));
            // Exit status 1 means "no entry matched": nothing to clean.
            if let Err(error) = run_in_netns(&self.netns, "conntrack", &args, None) {
                tracing::warn!("clearing stale UDP flows: {error}");
            }
        }
        Ok(())
    }

    fn ensure_jumps(&self) -> Result<(), AgentError> {
        for (table, chain, rule) in iptables::base_jumps() {
            let mut check = vec!["-w", "-t", table, "-C", chain];
            check.extend(rule.iter().copied());
            if run_in_netns(&self.netns, "iptables", &check, None)?
                .status
                .success()
            {
                continue;
            }
            let mut insert = vec!["-w", "-t", table, "-I", chain, "1"];
            insert.extend(rule.iter().copied());
            checked(
                run_in_netns(&self.netns, "iptables", &insert, None)?,
                &format!("iptables -t {table} -I {chain}"),
            )?;
        }
        Ok(())
    }
}

/// Objects as last seen, with the service → slices index.
#[derive(Default)]
struct Cache {
    services: BTreeMap<(String, String), ProxyService>,
    slices: BTreeMap<(String, String), ProxyEndpointSlice>,
    slices_by_service: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Cache {
    fn service_key_of_slice(slice: &ProxyEndpointSlice) -> (String, String) {
        (slice.namespace.clone(), slice.service_name.clone())
    }

    fn put_slice(&mut self, slice: ProxyEndpointSlice, dirty: &mut BTreeSet<(String, String)>) {
        let key = (slice.namespace.clone(), slice.name.clone());
        if let Some(old) = self.slices.remove(&key) {
            let service = Cache::service_key_of_slice(&old);
            if let Some(names) = self.slices_by_service.get_mut(&service) {
                names.remove(&old.name);
            }
            dirty.insert(service);
        }
        let service = Cache::service_key_of_slice(&slice);
        self.slices_by_service
            .entry(service.clone())
            .or_default()
            .insert(slice.name.clone());
        dirty.insert(service);
        self.slices.insert(key, slice);
    }

    fn remove_slice(
        &mut self,
        namespace: &str,
        name: &str,
        dirty: &mut BTreeSet<(String, String)>,
    ) {
        if let Some(old) = self
            .slices
            .remove(&(namespace.to_string(), name.to_string()))
        {
            let service = Cache::service_key_of_slice(&old);
            if let Some(names) = self.slices_by_service.get_mut(&service) {
                names.remove(&old.name);
            }
            dirty.insert(service);
        }
    }

    fn slices_of(&self, key: &(String, String)) -> Vec<&ProxyEndpointSlice> {
        self.slices_by_service
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|name| self.slices.get(&(key.0.clone(), name.clone())))
            .collect()
    }
}

/// Health as kube-proxy reports it.
#[derive(Debug)]
struct Health {
    last_updated: jiff::Timestamp,
    /// Oldest change not yet written.
    pending_since: Option<Instant>,
}

async fn serve_healthz(
    listener: tokio::net::TcpListener,
    health: Arc<Mutex<Health>>,
    node_name: String,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        let node_name = node_name.clone();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
            let (status, body) = {
                let health = health.lock().expect("health lock");
                let healthy = health
                    .pending_since
                    .is_none_or(|since| since.elapsed() < Duration::from_secs(10));
                let body = format!(
                    "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\",\"nodeName\": \"{}\",\"nodeHealthy\": {}}}",
                    health.last_updated,
                    jiff::Timestamp::now(),
                    node_name,
                    healthy
                );
                (
                    if healthy {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    },
                    body,
                )
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds a TCP listener inside a network namespace (a short-lived thread
/// enters it; the socket stays in that namespace).
fn listen_in_netns(
    netns: &Path,
    address: std::net::SocketAddr,
) -> Result<std::net::TcpListener, AgentError> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<std::net::TcpListener, AgentError> {
        let file = std::fs::File::open(&netns).map_err(|e| AgentError::io(&netns, e))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| AgentError::Network(format!("entering {}: {e}", netns.display())))?;
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| AgentError::Network(format!("listening on {address}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| AgentError::Network(format!("listening on {address}: {e}")))?;
        Ok(listener)
    })
    .join()
    .map_err(|_| AgentError::Internal("healthz listener thread panicked".into()))?
}

// Each event is moved once from the stream into the loop; boxing would only
// add an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Input {
    Service(Result<watcher::Event<Service>, watcher::Error>),
    Slice(Result<watcher::Event<EndpointSlice>, watcher::Error>),
}

/// Runs the proxy until the process stops.
pub async fn run_proxy(client: kube::Client, config: ProxyConfig) -> Result<(), AgentError> {
    let applier = ProxyApplier::new(config.netns.clone(), config.mode);
    {
        let applier = applier.clone();
        let (node_ip, service_cidr) = (config.node_ip, config.service_cidr);
        tokio::task::spawn_blocking(move || applier.prepare_node(node_ip, service_cidr))
            .await
            .map_err(|e| AgentError::Internal(format!("proxy set-up: {e}")))??;
    }
    let health = Arc::new(Mutex::new(Health {
        last_updated: jiff::Timestamp::now(),
        pending_since: Some(Instant::now()),
    }));
    match listen_in_netns(
        &config.netns,
        std::net::SocketAddr::from((config.node_ip, config.healthz_port)),
    )
    .and_then(|listener| {
        tokio::net::TcpListener::from_std(listener)
            .map_err(|e| AgentError::Network(format!("healthz listener: {e}")))
    }) {
        Ok(listener) => {
            tokio::spawn(serve_healthz(
                listener,
                health.clone(),
                config.node_name.clone(),
            ));
        }
        Err(error) => tracing::warn!("proxy health check not served: {error}"),
    }

    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client);
    let service_events = watcher(services, watcher::Config::default())
        .default_backoff()
        .map(Input::Service);
    let slice_events = watcher(slices, watcher::Config::default())
        .default_backoff()
        .map(Input::Slice);
    let events = futures::stream::select(service_events, slice_events);
    futures::pin_mut!(events);

    let mut planner = ProxyPlanner::new(config.mode, config.context());
    let mut cache = Cache::default();
    let mut relist_services: Option<BTreeMap<(String, String), ProxyService>> = None;
    let mut relist_slices: Option<Vec<ProxyEndpointSlice>> = None;
    let (mut services_synced, mut slices_synced) = (false, false);
    let mut dirty: BTreeSet<(String, String)> = BTreeSet::new();
    let mut first_dirty: Option<Instant> = None;
    let mut retry_at: Option<Instant> = None;
    loop {
        let deadline = match (first_dirty, retry_at) {
            (Some(first), _) if services_synced && slices_synced => {
                Some((first + MAX_DELAY).min(Instant::now() + DEBOUNCE))
            }
            (_, Some(retry)) => Some(retry),
            _ => None,
        };
        let next = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), events.next())
                .await
                .ok(),
            None => Some(events.next().await),
        };
        match next {
            Some(None) => return Ok(()),
            Some(Some(event)) => {
                let before = dirty.len();
                match event {
                    Input::Service(Ok(event)) => match event {
                        watcher::Event::Init => relist_services = Some(BTreeMap::new()),
                        watcher::Event::InitApply(service) => {
                            if let (Some(list), Some(service)) =
                                (relist_services.as_mut(), proxy_service(&service))
                            {
                                list.insert(
                                    (service.namespace.clone(), service.name.clone()),
                                    service,
                                );
                            }
                        }
                        watcher::Event::InitDone => {
                            let fresh = relist_services.take().unwrap_or_default();
                            dirty.extend(cache.services.keys().cloned());
                            dirty.extend(fresh.keys().cloned());
                            cache.services = fresh;
                            services_synced = true;
                        }
                        watcher::Event::Apply(service) => {
                            if let Some(service) = proxy_service(&service) {
                                let key = (service.namespace.clone(), service.name.clone());
                                cache.services.insert(key.clone(), service);
                                dirty.insert(key);
                            }
                        }
                        watcher::Event::Delete(service) => {
                            if let (Some(namespace), Some(name)) =
                                (service.metadata.namespace, service.metadata.name)
                            {
                                let key = (namespace, name);
                                cache.services.remove(&key);
                                dirty.insert(key);
                            }
                        }
                    },
                    Input::Slice(Ok(event)) => match event {
                        watcher::Event::Init => relist_slices = Some(Vec::new()),
                        watcher::Event::InitApply(slice) => {
                            if let (Some(list), Some(slice)) =
                                (relist_slices.as_mut(), proxy_slice(&slice))
                            {
                                list.push(slice);
                            }
                        }
                        watcher::Event::InitDone => {
                            let fresh = relist_slices.take().unwrap_or_default();
                            dirty.extend(cache.slices_by_service.keys().cloned());
                            cache.slices.clear();
                            cache.slices_by_service.clear();
                            for slice in fresh {
                                cache.put_slice(slice, &mut dirty);
                            }
                            slices_synced = true;
                        }
                        watcher::Event::Apply(slice) => match proxy_slice(&slice) {
                            Some(slice) => cache.put_slice(slice, &mut dirty),
                            None => {
                                if let (Some(namespace), Some(name)) =
                                    (&slice.metadata.namespace, &slice.metadata.name)
                                {
                                    cache.remove_slice(namespace, name, &mut dirty);
                                }
                            }
                        },
                        watcher::Event::Delete(slice) => {
                            if let (Some(namespace), Some(name)) =
                                (&slice.metadata.namespace, &slice.metadata.name)
                            {
                                cache.remove_slice(namespace, name, &mut dirty);
                            }
                        }
                    },
                    Input::Service(Err(error)) => tracing::warn!("watching services: {error}"),
                    Input::Slice(Err(error)) => tracing::warn!("watching endpointslices: {error}"),
                }
                if dirty.len() > before && first_dirty.is_none() {
                    first_dirty = Some(Instant::now());
                    health
                        .lock()
                        .expect("health lock")
                        .pending_since
                        .get_or_insert(Instant::now());
                }
                continue;
            }
            None => {}
        }
        // Quiet (or waited long enough): write what changed.
        if !(services_synced && slices_synced) {
            continue;
        }
        let context = planner.context().clone();
        for key in std::mem::take(&mut dirty) {
            let resolved = cache
                .services
                .get(&key)
                .map(|service| resolve_service(&context, service, &cache.slices_of(&key)));
            planner.set_service(&key.0, &key.1, resolved);
        }
        first_dirty = None;
        retry_at = None;
        if !planner.has_pending() {
            let mut health = health.lock().expect("health lock");
            health.pending_since = None;
            health.last_updated = jiff::Timestamp::now();
            continue;
        }
        let started = Instant::now();
        let existing = if planner.will_replace_all() {
            let applier = applier.clone();
            tokio::task::spawn_blocking(move || applier.existing_chains())
                .await
                .map_err(|e| AgentError::Internal(format!("proxy worker: {e}")))?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let batch = planner.plan(&existing);
        let applier_for_batch = applier.clone();
        let batch_for_apply = batch.clone();
        let applied =
            tokio::task::spawn_blocking(move || applier_for_batch.apply(&batch_for_apply))
                .await
                .map_err(|e| AgentError::Internal(format!("proxy worker: {e}")))?;
        match applied {
            Ok(()) => {
                tracing::info!(
                    services = batch.services_changed,
                    full = batch.full,
                    bytes = batch.script.len(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "service proxy rules written"
                );
                let mut health = health.lock().expect("health lock");
                health.pending_since = None;
                health.last_updated = jiff::Timestamp::now();
            }
            Err(error) => {
                tracing::warn!("writing service proxy rules (will rewrite all in 1s): {error}");
                planner.abandon();
                retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}
