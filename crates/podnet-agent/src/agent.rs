//! Wiring of the agent: arguments, start-up order and the long-running loops
//! (heartbeat, overlay, pod workers, streaming server).

use crate::dns::{ClusterDns, ResolvConf};
use crate::network::{cni_conflist, pod_mtu, run_overlay, write_cni_config, CniFlavour};
use crate::node::{register, renew_lease, update_status, NodeIdentity};
use crate::pods::PodManager;
use crate::AgentError;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use podnet_netplan::overlay::{MacAddress, OverlayBackend, TxChecksumOffload};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `podnet agent` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The Node name to register.
    #[arg(long)]
    pub node_name: String,
    /// The node's own directory tree (run/netns, etc/cni/net.d, var/lib/cni, var/log/pods, ...).
    #[arg(long)]
    pub node_root: PathBuf,
    /// The node's network namespace (the agent itself stays in the host's).
    #[arg(long)]
    pub netns: PathBuf,
    /// The node's address on the underlay (its InternalIP).
    #[arg(long)]
    pub node_ip: String,
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "host-gw"])]
    pub backend: String,
    #[arg(long, default_value = "nftables", value_parser = ["nftables", "iptables"])]
    pub proxy_mode: String,
    /// The cluster's pod network (traffic from it is pod traffic to the service proxy).
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,
    /// The service network (ClusterIPs).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: ipnet::Ipv4Net,
    #[arg(long, default_value = "podnet", value_parser = ["podnet", "reference"])]
    pub cni: String,
    /// Directories searched for CNI plugins (default: next to this binary, /opt/cni/bin, /usr/lib/cni).
    #[arg(long)]
    pub cni_bin_dir: Vec<PathBuf>,
    /// The image store shared by clusters.
    #[arg(long, default_value = "/var/lib/podnet/images")]
    pub images: PathBuf,
    #[arg(long, default_value_t = 1500)]
    pub underlay_mtu: u32,
    /// TX checksum offload (and with it TSO/GSO) on the VXLAN device: `auto`
    /// is off on kernels older than 5.7, whose NAT of VXLAN packets broke
    /// offloaded checksums, and on otherwise.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub vxlan_tx_checksum_offload: String,
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
}

/// Paths of the node's own tree.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    pub root: PathBuf,
}

impl NodeLayout {
    pub fn pod_netns_dir(&self) -> PathBuf {
        self.root.join("run/netns")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.root.join("etc/cni/net.d")
    }
    pub fn cni_cache_dir(&self) -> PathBuf {
        self.root.join("var/lib/cni")
    }
    pub fn ipam_dir(&self) -> PathBuf {
        self.root.join("var/lib/cni/networks")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.root.join("var/log/pods")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("var/lib/podnet")
    }
    pub fn runc_root(&self) -> PathBuf {
        self.root.join("run/runc")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
}

async fn client_from(path: &std::path::Path) -> Result<kube::Client, AgentError> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| AgentError::Config(format!("reading kubeconfig {}: {e}", path.display())))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| AgentError::Config(format!("loading kubeconfig {}: {e}", path.display())))?;
    kube::Client::try_from(config).map_err(AgentError::api("build API client"))
}

fn default_plugin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
    {
        dirs.push(dir);
    }
    dirs.push(PathBuf::from("/opt/cni/bin"));
    dirs.push(PathBuf::from("/usr/lib/cni"));
    dirs
}

/// Keep the C allocator from giving every thread that ever allocated (tokio
/// workers, the blocking pool that runs runtime and CNI work) an arena of its
/// own: with one arena per thread the freed memory of a burst of pod starts
/// stays scattered over them and the agent's RSS grows with the thread count.
fn limit_allocator_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes glibc's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Run the agent until the process is stopped.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    limit_allocator_arenas();
    let layout = NodeLayout {
        root: args.node_root.clone(),
    };
    for dir in [
        layout.pod_netns_dir(),
        layout.cni_conf_dir(),
        layout.cni_cache_dir(),
        layout.log_dir(),
        layout.state_dir(),
        layout.runc_root(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
    }
    let backend = match args.backend.as_str() {
        "host-gw" => OverlayBackend::HostGw,
        _ => OverlayBackend::Vxlan,
    };
    let flavour = match args.cni.as_str() {
        "reference" => CniFlavour::Reference,
        _ => CniFlavour::Podnet,
    };
    let client = client_from(&args.kubeconfig).await?;
    // Pods' in-cluster credentials: the API server's token and CA beside the kubeconfig.
    if let (Some(dir), Some(api_ip)) = (args.kubeconfig.parent(), args.service_cidr.hosts().next())
    {
        crate::service_account::configure(dir, api_ip, 443);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let identity = NodeIdentity {
        name: args.node_name.clone(),
        internal_ip: args.node_ip.clone(),
        agent_endpoint: format!("unix://{}", layout.socket().display()),
        // Derived from the node name: stable across agent restarts without state.
        vtep_mac: MacAddress::derived_from(&args.node_name).to_string(),
        max_pods: args.max_pods,
    };
    tracing::info!(node = args.node_name, "registering node");
    let registered = register(&nodes, &identity, false).await?;

    // Streaming server first: exec/logs must work as soon as pods run.
    let plugin_dirs = if args.cni_bin_dir.is_empty() {
        default_plugin_dirs()
    } else {
        args.cni_bin_dir.clone()
    };
    let backends = crate::real::RealBackends::new(&args, &layout, plugin_dirs)?;
    let streaming_backend = Arc::new(crate::streaming::AgentStreaming::new(
        backends.runtime.clone(),
        layout.clone(),
        args.netns.clone(),
    ));
    let socket = layout.socket();
    tokio::spawn(async move {
        if let Err(error) =
            podnet_streaming::serve_unix(&socket, streaming_backend, std::future::pending()).await
        {
            tracing::error!("streaming server stopped: {error}");
        }
    });

    // Wait for a podCIDR from the IPAM controller, then configure CNI.
    let pod_cidr = wait_for_pod_cidr(&nodes, &args.node_name).await?;
    let mtu = pod_mtu(backend, args.underlay_mtu);
    let conflist = cni_conflist(flavour, pod_cidr, mtu, &layout.ipam_dir());
    write_cni_config(&layout.cni_conf_dir(), &conflist)?;
    tracing::info!(%pod_cidr, mtu, cni = args.cni, "CNI configuration written");

    let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let vxlan_tx_checksum_offload = TxChecksumOffload::parse(&args.vxlan_tx_checksum_offload)
        .unwrap_or(TxChecksumOffload::Auto)
        .enabled_for_kernel(&kernel_release);
    tracing::info!(
        setting = args.vxlan_tx_checksum_offload,
        kernel = kernel_release.trim(),
        on = vxlan_tx_checksum_offload,
        "VXLAN tx checksum offload"
    );
    tokio::spawn(run_overlay(
        nodes.clone(),
        args.netns.clone(),
        args.node_name.clone(),
        backend,
        args.underlay_mtu,
        vxlan_tx_checksum_offload,
    ));

    match args.node_ip.parse() {
        Ok(node_ip) => {
            let proxy = crate::proxy::ProxyConfig {
                netns: args.netns.clone(),
                node_name: args.node_name.clone(),
                node_ip,
                cluster_cidr: args.cluster_cidr,
                service_cidr: args.service_cidr,
                mode: match args.proxy_mode.as_str() {
                    "iptables" => podnet_netplan::services::ProxyMode::Iptables,
                    _ => podnet_netplan::services::ProxyMode::Nftables,
                },
                healthz_port: crate::proxy::HEALTHZ_PORT,
            };
            let proxy_client = client.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::proxy::run_proxy(proxy_client, proxy).await {
                    tracing::error!("service proxy stopped: {error}");
                }
            });
        }
        Err(_) => tracing::error!(
            node_ip = args.node_ip,
            "no service proxy: the node IP is not IPv4"
        ),
    }

    let mut current = update_status(&nodes, &identity, true, Some(&registered)).await?;
    tracing::info!(node = args.node_name, "node is Ready");
    let agent_started = jiff::Timestamp::now();
    let mirror_pods: Api<Pod> = Api::namespaced(client.clone(), crate::mirror::MIRROR_NAMESPACE);
    if let Err(error) = crate::mirror::ensure_mirror_pod(
        &mirror_pods,
        &args.node_name,
        &args.node_ip,
        agent_started,
    )
    .await
    {
        tracing::warn!("publishing the agent pod: {error}");
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let heartbeat_identity = identity.clone();
    let heartbeat_nodes = nodes.clone();
    let node_uid = registered.metadata.uid.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(10));
        loop {
            ticker.tick().await;
            if let Err(error) =
                renew_lease(&leases, &heartbeat_identity.name, node_uid.clone()).await
            {
                tracing::warn!("renewing the node lease: {error}");
            }
            match update_status(&heartbeat_nodes, &heartbeat_identity, true, Some(&current)).await {
                Ok(node) => current = node,
                Err(error) => tracing::warn!("posting node status: {error}"),
            }
            // Recreated if someone deleted it, as the kubelet does for mirror pods.
            if let Err(error) = crate::mirror::ensure_mirror_pod(
                &mirror_pods,
                &heartbeat_identity.name,
                &heartbeat_identity.internal_ip,
                agent_started,
            )
            .await
            {
                tracing::warn!("publishing the agent pod: {error}");
            }
        }
    });

    let node_resolv =
        ResolvConf::parse(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let manager = Arc::new(PodManager::new(
        args.node_name.clone(),
        args.node_ip.clone(),
        layout.state_dir(),
        layout.log_dir(),
        ClusterDns::default(),
        node_resolv,
        backends.sandboxes.clone(),
        backends.containers.clone(),
        Api::all(client.clone()),
    ));
    let netpol = crate::netpol::NetpolEngine::new(args.node_name.clone(), args.netns.clone());
    let _ = manager.netpol.set(netpol.clone());
    tokio::spawn(netpol.run(client.clone()));
    run_pod_workers(manager, client, args.node_name.clone()).await
}

async fn wait_for_pod_cidr(nodes: &Api<Node>, name: &str) -> Result<ipnet::Ipv4Net, AgentError> {
    loop {
        if let Some(node) = nodes
            .get_opt(name)
            .await
            .map_err(AgentError::api("get node"))?
        {
            if let Some(cidr) = node.spec.and_then(|spec| spec.pod_cidr) {
                return cidr.parse().map_err(|_| {
                    AgentError::Config(format!("node {name} has an invalid podCIDR {cidr:?}"))
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Watch the pods bound to this node and sync each on every change, plus a
/// periodic resync that notices container exits and expired back-offs.
async fn run_pod_workers(
    manager: Arc<PodManager>,
    client: kube::Client,
    node_name: String,
) -> Result<(), AgentError> {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let (reader, writer) = kube::runtime::reflector::store::<Pod>();
    // The pod workers never read managedFields: the cache keeps pods without them.
    let pod_events = watcher(pods, config).modify(|pod| {
        kube::ResourceExt::managed_fields_mut(pod).clear();
    });
    let stream = kube::runtime::reflector(writer, pod_events).default_backoff();
    futures::pin_mut!(stream);
    let (trigger_tx, mut trigger_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

    // Worker dispatcher: one sync at a time per pod (the manager serialises)
    // and at most one more queued: a queued sync reads the newest pod when it
    // starts, so further triggers meanwhile add nothing.
    manager.set_sync_trigger(trigger_tx.clone());
    // `Store::wait_until_ready` wakes only one waiter (a oneshot underneath),
    // so one task waits and tells the others through a watch channel.
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let ready_reader = reader.clone();
    tokio::spawn(async move {
        let _ = ready_reader.wait_until_ready().await;
        let _ = ready_tx.send(true);
    });
    let mut dispatcher_ready = ready_rx.clone();
    let mut resync_ready = ready_rx;
    let dispatcher_manager = manager.clone();
    let dispatcher_reader = reader.clone();
    tokio::spawn(async move {
        // Until the first list is in, "not in the store" does not mean deleted.
        let _ = dispatcher_ready.wait_for(|ready| *ready).await;
        let queued = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        while let Some(uid) = trigger_rx.recv().await {
            if !queued.lock().expect("queued syncs").insert(uid.clone()) {
                continue;
            }
            let manager = dispatcher_manager.clone();
            let reader = dispatcher_reader.clone();
            let queued = queued.clone();
            tokio::spawn(async move {
                let lookup = |uid: &str| {
                    queued.lock().expect("queued syncs").remove(uid);
                    reader
                        .state()
                        .into_iter()
                        .find(|p| p.metadata.uid.as_deref() == Some(uid))
                        .map(|p| (*p).clone())
                };
                if let Err(error) = manager.sync_latest(&uid, lookup).await {
                    tracing::warn!(pod = uid, "sync failed: {error}");
                }
            });
        }
    });

    // Periodic resync, and orphan clean-up (pods deleted while we were down).
    let resync_manager = manager.clone();
    let resync_reader = reader.clone();
    let resync_trigger = trigger_tx.clone();
    tokio::spawn(async move {
        let _ = resync_ready.wait_for(|ready| *ready).await;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let live: Vec<String> = resync_reader
                .state()
                .iter()
                .filter_map(|p| p.metadata.uid.clone())
                .collect();
            for uid in &live {
                let _ = resync_trigger.send(uid.clone());
            }
            for uid in resync_manager.known_pod_uids() {
                if !live.contains(&uid) {
                    let _ = resync_trigger.send(uid);
                }
            }
        }
    });

    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    let _ = trigger_tx.send(uid);
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.clone() {
                    let _ = trigger_tx.send(uid);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("watching pods: {error}"),
        }
    }
    Ok(())
}
