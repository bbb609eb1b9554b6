//! `podnet dns`: the cluster DNS server (podnet-dns) as a process, normally
//! run by the `coredns` Deployment in kube-system with in-cluster
//! configuration.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct DnsArgs {
    /// Kubeconfig to reach the API; without it the in-cluster configuration
    /// (KUBERNETES_SERVICE_HOST/PORT and the service account files) is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    zone: String,
    /// TTL of cluster records.
    #[arg(long, default_value_t = 5)]
    ttl: u32,
    /// Upstream resolvers for names outside the zone (IP or IP:PORT,
    /// repeatable). Default: the nameservers of --resolv-conf.
    #[arg(long = "upstream")]
    upstreams: Vec<String>,
    /// Where the default upstreams come from.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Deadline for one upstream exchange, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    upstream_timeout_ms: u64,
    /// UDP sockets/threads (SO_REUSEPORT); default: one per CPU.
    #[arg(long)]
    udp_sockets: Option<usize>,
    /// HTTP probe endpoint (/ready, /health, /metrics).
    #[arg(long)]
    health_listen: Option<SocketAddr>,
    /// After SIGTERM keep answering this long (milliseconds) while /ready
    /// reports not ready, so clients move to other replicas first.
    #[arg(long, default_value_t = 5000)]
    lameduck_ms: u64,
}

pub fn run(args: DnsArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut upstreams = Vec::new();
        for text in &args.upstreams {
            upstreams.push(podnet_dns::parse_upstream(text)?);
        }
        if upstreams.is_empty() {
            let text = std::fs::read_to_string(&args.resolv_conf).unwrap_or_default();
            upstreams = podnet_dns::forward::upstreams_from_resolv_conf(&text);
        }
        let mut config = podnet_dns::DnsConfig {
            listen: args.listen,
            zone: args.zone.clone(),
            ttl: args.ttl,
            ..Default::default()
        };
        if let Some(sockets) = args.udp_sockets {
            config.udp_sockets = sockets;
        }
        config.forward.upstreams = upstreams;
        config.forward.timeout = Duration::from_millis(args.upstream_timeout_ms);
        let client = podnet_dns::client(args.kubeconfig.as_deref()).await?;
        let (server, watch) = podnet_dns::start(&config, client)
            .await
            .context("starting the DNS server")?;
        tracing::info!(
            udp = %server.udp_addr,
            tcp = %server.tcp_addr,
            zone = %config.zone,
            upstreams = ?config.forward.upstreams,
            "podnet-dns serving"
        );
        let _health = match args.health_listen {
            Some(addr) => Some(podnet_dns::health::serve(addr, server.handler.clone()).await?),
            None => None,
        };
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = watch => {}
        }
        server
            .handler
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(lameduck_ms = args.lameduck_ms, "stopping: lameduck");
        tokio::time::sleep(Duration::from_millis(args.lameduck_ms)).await;
        Ok(())
    })
}
