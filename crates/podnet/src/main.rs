//! `podnet`: the one binary. Local clusters (`up`, `down`, `list`,
//! `kubeconfig`, `node exec`), the long-running parts (`server`, `agent`) and
//! tooling (`image`, `shim`).

mod api_gateway;
mod cluster;
mod daemon;
mod demo;
mod dns;
mod dns_addon;
mod kubeconfig;
mod lb_publisher;
mod node_exec;
mod paths;
mod readiness;
mod topology;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "podnet",
    version,
    about = "Kubernetes pod networking and storage, for real, on one machine or many"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bring up a local multi-node cluster (each node a network namespace).
    Up {
        #[arg(long, default_value = "podnet")]
        name: String,
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Overlay between nodes.
        #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "host-gw"])]
        backend: String,
        /// Service proxy dataplane.
        #[arg(long, default_value = "nftables", value_parser = ["nftables", "iptables"])]
        proxy_mode: String,
        /// CNI plugins the agents invoke: podnet's own, or the reference bridge + host-local.
        #[arg(long, default_value = "podnet", value_parser = ["podnet", "reference"])]
        cni: String,
        /// TX checksum offload (and with it TSO/GSO) on the nodes' VXLAN
        /// devices: auto = off on kernels older than 5.7, on otherwise.
        #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
        vxlan_tx_checksum_offload: String,
        /// How long to wait for the nodes to become Ready.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        wait: Duration,
        /// Do not merge a context into the user's kubeconfig.
        #[arg(long)]
        no_kubeconfig: bool,
        /// Upstream resolvers (IP or IP:PORT) for the cluster DNS pods;
        /// default: the nodes' resolv.conf.
        #[arg(long = "dns-upstream")]
        dns_upstreams: Vec<String>,
        /// Also serve every TCP port of each LoadBalancer Service on the
        /// host's 127.0.0.1:<port> (forwarded to its address on the underlay).
        #[arg(long)]
        publish_load_balancers: bool,
    },
    /// Remove a local cluster and everything it created.
    Down {
        #[arg(long, default_value = "podnet")]
        name: String,
    },
    /// List local clusters.
    List,
    /// Print a local cluster's kubeconfig.
    Kubeconfig {
        #[arg(long, default_value = "podnet")]
        name: String,
    },
    /// The seed demo on a running local cluster: pods on two nodes talking over the pod network.
    Demo {
        #[arg(long, default_value = "podnet")]
        name: String,
    },
    /// Commands on the nodes of a local cluster.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The API server (with the controllers and scheduler).
    Server {
        #[arg(long, default_value = "/var/lib/podnet/server")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        gateway: api_gateway::GatewayArgs,
        /// Serve the API only: no controllers, no scheduler (benchmarks,
        /// controllers run elsewhere).
        #[arg(long)]
        no_controllers: bool,
        /// Serve LoadBalancer Services' TCP ports on 127.0.0.1:<port>,
        /// connecting to their addresses from --advertise-netns.
        #[arg(long)]
        publish_load_balancers: bool,
    },
    /// The node agent (the kubelet, CNI runtime and node dataplane).
    Agent(podnet_agent::AgentArgs),
    /// The cluster DNS server (Kubernetes DNS spec 1.1.0, forwarding the rest).
    Dns(dns::DnsArgs),
    /// The image store.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Per-container supervisor started by the agent (internal).
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Run a command on a node: its network namespace and its view of
    /// /run/netns, /etc/cni/net.d, /var/lib/cni, /var/log/pods, /run/runc.
    Exec {
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop a node's agent and start it again (its pods keep running and
    /// are adopted).
    RestartAgent { node: String },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI layout or docker-archive tarball.
    Import { file: PathBuf },
    /// List images.
    Ls,
    /// Build one of the offline images (busybox, nginx, nicolaka/netshoot) now.
    Build { reference: String },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 30s, 2m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(value)),
        "ms" => Ok(Duration::from_millis(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("invalid duration {text:?}: use e.g. 30s, 2m")),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODNET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up {
            name,
            nodes,
            backend,
            proxy_mode,
            cni,
            vxlan_tx_checksum_offload,
            wait,
            no_kubeconfig,
            dns_upstreams,
            publish_load_balancers,
        } => cluster::up(&cluster::UpOptions {
            name,
            nodes,
            backend,
            proxy_mode,
            cni,
            vxlan_tx_checksum_offload,
            wait,
            merge_kubeconfig: !no_kubeconfig,
            dns_upstreams,
            publish_load_balancers,
        }),
        Command::Down { name } => cluster::down(&name),
        Command::List => cluster::list(),
        Command::Demo { name } => demo::run(&name),
        Command::Kubeconfig { name } => cluster::print_kubeconfig(&name),
        Command::Node {
            command: NodeCommand::Exec { node, command },
        } => {
            let cluster_name = cluster_of_node(&node)?;
            let paths = paths::ClusterPaths::new(&cluster_name);
            node_exec::exec_on_node(&paths.node(&node), &command)
        }
        Command::Node {
            command: NodeCommand::RestartAgent { node },
        } => {
            let cluster_name = cluster_of_node(&node)?;
            let pid = cluster::restart_agent(&cluster_name, &node)?;
            eprintln!("agent of node {node} restarted (pid {pid})");
            Ok(())
        }
        Command::Server {
            data_dir,
            listen,
            no_controllers,
            gateway,
            publish_load_balancers,
        } => {
            init_logging();
            let publish = match (publish_load_balancers, &gateway.advertise_netns) {
                (false, _) => None,
                (true, Some(netns)) => Some(netns.clone()),
                (true, None) => anyhow::bail!(
                    "--publish-load-balancers needs --advertise-netns: the namespace from which load balancer addresses are reached"
                ),
            };
            server::run(data_dir, listen, !no_controllers, gateway, publish)
        }
        Command::Agent(args) => {
            init_logging();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(podnet_agent::run(args))?;
            Ok(())
        }
        Command::Dns(args) => {
            init_logging();
            dns::run(args)
        }
        Command::Image { command } => image(command),
        Command::Shim { args } => {
            // Before any thread or async runtime starts: the shim forks.
            let args = podnet_runtime::ShimArgs::parse(args)?;
            podnet_runtime::shim_main(args)
        }
    }
}

/// Find which local cluster a node belongs to.
fn cluster_of_node(node: &str) -> Result<String> {
    let root = paths::clusters_root();
    for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        if entry.path().join("nodes").join(node).is_dir() {
            return Ok(entry.file_name().to_string_lossy().to_string());
        }
    }
    anyhow::bail!(
        "no local cluster has a node named {node:?} (see `podnet list` and `kubectl get nodes`)"
    )
}

mod server {
    use anyhow::{Context, Result};
    use std::path::PathBuf;

    /// The API server plus, once it answers, the controllers and the scheduler.
    pub fn run(
        data_dir: PathBuf,
        listen: std::net::SocketAddr,
        controllers: bool,
        gateway: crate::api_gateway::GatewayArgs,
        publish_load_balancers_from: Option<PathBuf>,
    ) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let server = podnet_apiserver::Server::open(podnet_apiserver::ServerConfig {
                data_dir,
                listen,
                extra_sans: gateway
                    .advertise_address
                    .map(|address| address.ip())
                    .into_iter()
                    .collect(),
            })
            .context("opening the API server")?;
            let upstream = server.local_addr();
            let server = match gateway.advertise_address {
                Some(address) => server.with_advertise_address(address),
                None => server,
            };
            if let (Some(address), Some(netns)) =
                (gateway.advertise_address, gateway.advertise_netns.clone())
            {
                tokio::spawn(async move {
                    if let Err(error) = crate::api_gateway::run(netns, address, upstream).await {
                        tracing::error!("{error:#}");
                    }
                });
            }
            let kubeconfig = server.kubeconfig_path();
            let serving = tokio::spawn(server.serve(shutdown_signal()));
            if !controllers {
                serving.await??;
                return Ok(());
            }
            let client = crate::readiness::client_from(&kubeconfig).await?;
            if let Some(netns) = publish_load_balancers_from {
                let client = client.clone();
                tokio::spawn(async move {
                    if let Err(error) = crate::lb_publisher::run(client, netns).await {
                        tracing::error!("load balancer publisher: {error:#}");
                    }
                });
            }
            let controllers = tokio::spawn(podnet_controllers::run(
                client,
                podnet_controllers::ControllersConfig::default(),
            ));
            tokio::select! {
                result = serving => { result??; }
                result = controllers => { result??; }
            }
            Ok(())
        })
    }

    async fn shutdown_signal() {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}

fn image(command: ImageCommand) -> Result<()> {
    let store = podnet_runtime::ImageStore::open(paths::images_root())?;
    match command {
        ImageCommand::Import { file } => {
            for reference in store.import_tar(&file)? {
                println!("imported {reference}");
            }
        }
        ImageCommand::Ls => {
            println!("{:<50} {:<20} SIZE", "IMAGE", "DIGEST");
            for image in store.list()? {
                let digest = image.manifest_digest.trim_start_matches("sha256:");
                println!(
                    "{:<50} {:<20} {:.1}MB",
                    image.reference,
                    &digest[..digest.len().min(12)],
                    image.size as f64 / 1_000_000.0
                );
            }
        }
        ImageCommand::Build { reference } => {
            let built = podnet_runtime::ensure_offline_image(&store, &reference)?;
            println!("{} {}", built.reference, built.manifest_digest);
        }
    }
    Ok(())
}
