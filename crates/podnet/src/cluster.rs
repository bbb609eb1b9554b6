//! `podnet up`, `down`, `list`, `kubeconfig`: local clusters made of network
//! namespaces on this machine.

use crate::daemon;
use crate::kubeconfig;
use crate::paths::{clusters_root, ClusterPaths};
use crate::topology;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `podnet up` recorded about a cluster (cluster.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub name: String,
    pub nodes: Vec<NodeState>,
    pub backend: String,
    pub proxy_mode: String,
    pub api_port: u16,
    pub created: String,
    /// `podnet up --publish-load-balancers`.
    #[serde(default)]
    pub publish_load_balancers: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub ip: String,
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub name: String,
    pub nodes: usize,
    pub backend: String,
    pub proxy_mode: String,
    pub cni: String,
    /// `auto`, `on` or `off`, passed to every agent.
    pub vxlan_tx_checksum_offload: String,
    pub wait: Duration,
    pub merge_kubeconfig: bool,
    pub dns_upstreams: Vec<String>,
    pub publish_load_balancers: bool,
}

impl ClusterState {
    pub fn load(paths: &ClusterPaths) -> Result<ClusterState> {
        let text = fs::read_to_string(paths.state_file()).with_context(|| {
            format!("cluster {} does not exist (see `podnet list`)", paths.name)
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", paths.state_file().display()))
    }
}

/// Progress lines with the elapsed time, like kind's.
struct Progress {
    start: Instant,
    step: Instant,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            step: Instant::now(),
        }
    }
    fn begin(&mut self, what: &str) {
        self.step = Instant::now();
        eprint!(" • {what} ...");
    }
    fn done(&mut self) {
        eprintln!(
            " ok ({} ms, {} ms total)",
            self.step.elapsed().as_millis(),
            self.start.elapsed().as_millis()
        );
    }
}

fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        bail!("invalid cluster name {name:?}: use 1-20 lowercase letters, digits or '-'");
    }
    Ok(())
}

/// 6443 when it is free, else a free port the kernel picks. Another `podnet
/// up` may take the same port before our server binds it: `up` then starts
/// the server again on a fresh port (see [`start_server`]).
fn pick_api_port(prefer_default: bool) -> Result<u16> {
    if prefer_default && std::net::TcpListener::bind("127.0.0.1:6443").is_ok() {
        return Ok(6443);
    }
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn server_args(paths: &ClusterPaths, state: &ClusterState) -> Vec<String> {
    let api_port = state.api_port;
    let mut args = vec![
        "server".to_string(),
        "--data-dir".to_string(),
        paths.server_dir().display().to_string(),
        "--listen".to_string(),
        format!("127.0.0.1:{api_port}"),
        "--advertise-address".to_string(),
        format!(
            "{}:{}",
            topology::UNDERLAY_GATEWAY,
            topology::GATEWAY_API_PORT
        ),
        "--advertise-netns".to_string(),
        format!("/run/netns/{}", paths.underlay_netns()),
    ];
    if state.publish_load_balancers {
        args.push("--publish-load-balancers".to_string());
    }
    args
}

/// Wait until the server has written its kubeconfig. When the server died
/// first because its port was taken meanwhile (a concurrent `podnet up`),
/// start it again on a fresh port and record that port in the state file.
fn start_server_and_wait(
    paths: &ClusterPaths,
    state: &mut ClusterState,
    binary: &Path,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut restarts = 0;
    loop {
        let pid = daemon::running_pid(&paths.server_pid());
        let server_alive = || {
            pid.is_some_and(|pid| {
                daemon::reap(pid);
                daemon::alive(pid)
            })
        };
        match wait_for_server(paths, deadline, server_alive) {
            ServerWait::Ready => return Ok(()),
            ServerWait::Exited(log) if log.contains("in use") && restarts < 5 => {
                restarts += 1;
                state.api_port = pick_api_port(false)?;
                fs::write(paths.state_file(), serde_json::to_string_pretty(&state)?)?;
                daemon::spawn_detached(
                    binary,
                    &server_args(paths, state),
                    &paths.server_log(),
                    &paths.server_pid(),
                )?;
            }
            ServerWait::Exited(log) => bail!(
                "the API server exited before writing {}; last lines of {}:\n{}",
                paths.kubeconfig().display(),
                paths.server_log().display(),
                last_lines(&log, 20)
            ),
            ServerWait::TimedOut(log) => bail!(
                "{} did not appear within {timeout:?}; last lines of {}:\n{}",
                paths.kubeconfig().display(),
                paths.server_log().display(),
                last_lines(&log, 20)
            ),
        }
    }
}

/// How waiting for the server's kubeconfig ended (with the server log).
enum ServerWait {
    Ready,
    Exited(String),
    TimedOut(String),
}

fn wait_for_server(
    paths: &ClusterPaths,
    deadline: Instant,
    server_alive: impl Fn() -> bool,
) -> ServerWait {
    let log = || fs::read_to_string(paths.server_log()).unwrap_or_default();
    loop {
        if paths.kubeconfig().exists() {
            return ServerWait::Ready;
        }
        if !server_alive() {
            return ServerWait::Exited(log());
        }
        if Instant::now() >= deadline {
            return ServerWait::TimedOut(log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

fn own_binary() -> Result<PathBuf> {
    std::env::current_exe().context("locating the podnet binary")
}

/// Bring a cluster up. On failure everything created so far is removed again.
pub fn up(options: &UpOptions) -> Result<()> {
    validate_name(&options.name)?;
    if options.nodes == 0 || options.nodes > 50 {
        bail!("--nodes must be between 1 and 50 (got {})", options.nodes);
    }
    let paths = ClusterPaths::new(&options.name);
    if paths.state_file().exists() {
        bail!(
            "cluster {} already exists: use it, or remove it first with `podnet down --name {}`",
            options.name,
            options.name
        );
    }
    let result = up_inner(options, &paths);
    if result.is_err() {
        eprintln!(
            " ✗ bringing up cluster {} failed: removing what was created",
            options.name
        );
        if let Err(error) = down_paths(&paths) {
            eprintln!("   cleanup also failed: {error:#}");
        }
    }
    result
}

fn up_inner(options: &UpOptions, paths: &ClusterPaths) -> Result<()> {
    let mut progress = Progress::new();
    eprintln!(
        "Creating cluster {:?} with {} nodes ({} overlay)",
        options.name, options.nodes, options.backend
    );
    fs::create_dir_all(paths.server_dir())?;
    let node_names: Vec<String> = (1..=options.nodes)
        .map(|index| paths.node_name(index))
        .collect();
    let plan = topology::plan(&paths.underlay_netns(), &node_names);
    let api_port = pick_api_port(true)?;
    let mut state = ClusterState {
        name: options.name.clone(),
        nodes: plan
            .nodes
            .iter()
            .map(|node| NodeState {
                name: node.node_name.clone(),
                ip: node.ip.to_string(),
            })
            .collect(),
        backend: options.backend.clone(),
        proxy_mode: options.proxy_mode.clone(),
        api_port,
        created: jiff::Timestamp::now().to_string(),
        publish_load_balancers: options.publish_load_balancers,
    };
    fs::write(paths.state_file(), serde_json::to_string_pretty(&state)?)?;

    let binary = own_binary()?;
    progress.begin(&format!("Starting the API server on 127.0.0.1:{api_port}"));
    let server_args = server_args(paths, &state);
    daemon::spawn_detached(
        &binary,
        &server_args,
        &paths.server_log(),
        &paths.server_pid(),
    )?;
    progress.done();

    progress.begin("Creating the underlay and node network namespaces");
    topology::apply_underlay(&plan)?;
    for node in &plan.nodes {
        topology::apply_node(&plan, node)?;
    }
    progress.done();

    progress.begin("Waiting for the API server");
    start_server_and_wait(paths, &mut state, &binary, options.wait)?;
    progress.done();

    progress.begin("Starting node agents");
    for node in &plan.nodes {
        let node_paths = paths.node(&node.node_name);
        fs::create_dir_all(&node_paths.root)?;
        let args = vec![
            "agent".to_string(),
            "--node-name".to_string(),
            node.node_name.clone(),
            "--node-root".to_string(),
            node_paths.root.display().to_string(),
            "--netns".to_string(),
            node_paths.netns_path().display().to_string(),
            "--node-ip".to_string(),
            node.ip.to_string(),
            "--kubeconfig".to_string(),
            paths.kubeconfig().display().to_string(),
            "--backend".to_string(),
            options.backend.clone(),
            "--proxy-mode".to_string(),
            options.proxy_mode.clone(),
            "--cni".to_string(),
            options.cni.clone(),
            "--vxlan-tx-checksum-offload".to_string(),
            options.vxlan_tx_checksum_offload.clone(),
        ];
        // Kept so `podnet node restart-agent` starts it again the same way.
        fs::write(
            node_paths.root.join("agent.args"),
            serde_json::to_string(&args)?,
        )?;
        daemon::spawn_detached(
            &binary,
            &args,
            &node_paths.agent_log(),
            &node_paths.agent_pid(),
        )?;
    }
    progress.done();

    progress.begin("Waiting for every node to be Ready");
    crate::readiness::wait_nodes_ready(&paths.kubeconfig(), &node_names, options.wait)?;
    let pod_cidrs = crate::readiness::node_pod_cidrs(&paths.kubeconfig())?;
    topology::apply_underlay_pod_routes(&plan, &pod_cidrs)?;
    topology::apply_underlay_load_balancer_route(&plan)?;
    progress.done();

    progress.begin("Installing cluster DNS (kube-system/coredns, kube-dns at 10.96.0.10)");
    crate::dns_addon::install(
        &paths.kubeconfig(),
        &podnet_runtime::podnet_image_reference(),
        &options.dns_upstreams,
    )?;
    progress.done();

    if options.merge_kubeconfig {
        let target = kubeconfig::merge(&paths.kubeconfig(), &paths.context_name())?;
        eprintln!(
            "Cluster {:?} is up in {} ms. kubectl context {:?} is now current ({}).",
            options.name,
            progress.start.elapsed().as_millis(),
            paths.context_name(),
            target.display()
        );
    } else {
        eprintln!(
            "Cluster {:?} is up in {} ms.",
            options.name,
            progress.start.elapsed().as_millis()
        );
    }
    eprintln!();
    eprintln!("  kubectl get nodes -o wide");
    eprintln!("  kubectl run web --image=nginx && kubectl get pods -o wide");
    eprintln!("  podnet node exec {} -- ip netns", node_names[0]);
    eprintln!("  podnet down --name {}", options.name);
    Ok(())
}

/// Stop a node's agent (SIGTERM, by its recorded PID; a dead one is fine)
/// and start it again with the arguments `podnet up` gave it. Its pods keep
/// running and are adopted by the new agent.
pub fn restart_agent(cluster: &str, node: &str) -> Result<u32> {
    let paths = ClusterPaths::new(cluster);
    let node_paths = paths.node(node);
    let args_file = node_paths.root.join("agent.args");
    let args: Vec<String> =
        serde_json::from_str(&fs::read_to_string(&args_file).with_context(|| {
            format!(
                "reading {}: the node was created by an older podnet; recreate the cluster",
                args_file.display()
            )
        })?)
        .with_context(|| format!("parsing {}", args_file.display()))?;
    daemon::stop(&node_paths.agent_pid(), Duration::from_secs(5))?;
    let binary = std::env::current_exe().context("locating the podnet binary")?;
    daemon::spawn_detached(
        &binary,
        &args,
        &node_paths.agent_log(),
        &node_paths.agent_pid(),
    )
}

/// Remove a cluster and everything it created.
pub fn down(name: &str) -> Result<()> {
    validate_name(name)?;
    let paths = ClusterPaths::new(name);
    if !paths.root.exists() {
        bail!("cluster {name} does not exist (see `podnet list`)");
    }
    down_paths(&paths)?;
    eprintln!("Cluster {name:?} removed.");
    Ok(())
}

/// Tear down in dependency order, collecting errors and carrying on, so a
/// half-built or half-removed cluster is removed completely.
fn down_paths(paths: &ClusterPaths) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    let mut note = |result: Result<()>| {
        if let Err(error) = result {
            errors.push(format!("{error:#}"));
        }
    };
    let node_names: Vec<String> = match ClusterState::load(paths) {
        Ok(state) => state.nodes.into_iter().map(|node| node.name).collect(),
        Err(_) => list_node_dirs(paths),
    };
    // 1. Agents first, so nothing recreates what is being removed.
    for node in &node_names {
        note(daemon::stop(
            &paths.node(node).agent_pid(),
            Duration::from_secs(5),
        ));
    }
    // 2. Every process still inside one of the cluster's namespaces (containers,
    //    shims' children) is killed: collect the namespaces' identities first.
    let mut namespace_ids = Vec::new();
    for node in &node_names {
        let node_paths = paths.node(node);
        namespace_ids.extend(netns_id(&node_paths.netns_path()));
        namespace_ids.extend(pod_namespace_ids(&node_paths.root.join("run/netns")));
    }
    namespace_ids.extend(netns_id(
        &Path::new("/run/netns").join(paths.underlay_netns()),
    ));
    for node in &node_names {
        note(remove_runc_containers(
            &paths.node(node).root.join("run/runc"),
        ));
    }
    note(kill_processes_in(&namespace_ids));
    // 3. The server.
    note(daemon::stop(&paths.server_pid(), Duration::from_secs(5)));
    // 4. Mounts under the cluster root (rootfs overlays, pinned namespaces), deepest first.
    note(unmount_under(&paths.root));
    // 5. Node and underlay namespaces.
    for node in &node_names {
        note(topology::delete_netns(&paths.node(node).netns_name()));
    }
    note(topology::delete_netns(&paths.underlay_netns()));
    // 6. Cgroups runc may have left, the state, and the kubeconfig context.
    note(remove_cgroups(&node_names));
    note(
        fs::remove_dir_all(&paths.root)
            .or_else(ignore_not_found)
            .context("removing the cluster state"),
    );
    note(kubeconfig::remove(&paths.context_name()));
    if errors.is_empty() {
        Ok(())
    } else {
        bail!(
            "removing cluster {} left problems:\n  {}",
            paths.name,
            errors.join("\n  ")
        )
    }
}

fn ignore_not_found(error: std::io::Error) -> std::io::Result<()> {
    if error.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(error)
    }
}

fn list_node_dirs(paths: &ClusterPaths) -> Vec<String> {
    fs::read_dir(paths.root.join("nodes"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// (device, inode) identifying a network namespace file.
fn netns_id(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

fn pod_namespace_ids(dir: &Path) -> Vec<(u64, u64)> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| netns_id(&entry.path()))
                .collect()
        })
        .unwrap_or_default()
}

fn kill_processes_in(namespace_ids: &[(u64, u64)]) -> Result<()> {
    if namespace_ids.is_empty() {
        return Ok(());
    }
    let me = std::process::id() as i32;
    for _ in 0..50 {
        let mut found = false;
        for entry in fs::read_dir("/proc")?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Some(id) = netns_id(&entry.path().join("ns/net")) else {
                continue;
            };
            if namespace_ids.contains(&id) && daemon::alive(pid) {
                found = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if !found {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("processes in the cluster's namespaces survived SIGKILL: check `ip netns pids`")
}

fn remove_runc_containers(runc_root: &Path) -> Result<()> {
    if !runc_root.exists() {
        return Ok(());
    }
    let output = std::process::Command::new("runc")
        .arg("--root")
        .arg(runc_root)
        .args(["list", "-q"])
        .output()
        .context("running runc list")?;
    for id in String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(runc_root)
            .args(["delete", "--force", id])
            .output();
    }
    Ok(())
}

/// Unmount every mount point under `root`, deepest first.
pub fn unmount_under(root: &Path) -> Result<()> {
    let root = root.to_string_lossy().to_string();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let mut targets: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4))
        .map(unescape_mount_path)
        .filter(|target| target == &root || target.starts_with(&format!("{root}/")))
        .collect();
    targets.sort_by_key(|target| std::cmp::Reverse(target.len()));
    targets.dedup();
    for target in targets {
        let _ = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    Ok(())
}

fn unescape_mount_path(raw: &str) -> String {
    raw.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The agents put containers under `/podnet/<node>` in every controller.
fn remove_cgroups(node_names: &[String]) -> Result<()> {
    for controller in fs::read_dir("/sys/fs/cgroup")?.flatten() {
        for node in node_names {
            let dir = controller.path().join("podnet").join(node);
            if dir.exists() {
                remove_cgroup_tree(&dir);
            }
        }
    }
    Ok(())
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// `podnet list`: one line per cluster.
pub fn list() -> Result<()> {
    let root = clusters_root();
    let mut names: Vec<String> = fs::read_dir(&root)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    if names.is_empty() {
        eprintln!("No clusters (create one with `podnet up`).");
        return Ok(());
    }
    println!(
        "{:<16} {:<6} {:<8} {:<10} {:<22} STATE",
        "NAME", "NODES", "BACKEND", "PROXY", "API"
    );
    for name in names {
        let paths = ClusterPaths::new(&name);
        match ClusterState::load(&paths) {
            Ok(state) => {
                let running = daemon::running_pid(&paths.server_pid()).is_some();
                println!(
                    "{:<16} {:<6} {:<8} {:<10} {:<22} {}",
                    state.name,
                    state.nodes.len(),
                    state.backend,
                    state.proxy_mode,
                    format!("127.0.0.1:{}", state.api_port),
                    if running { "running" } else { "stopped" }
                );
            }
            Err(_) => println!("{name:<16} ?      ?        ?          ?                      broken (podnet down --name {name})"),
        }
    }
    Ok(())
}

/// `podnet kubeconfig`: print the cluster's kubeconfig.
pub fn print_kubeconfig(name: &str) -> Result<()> {
    let paths = ClusterPaths::new(name);
    let text = fs::read_to_string(paths.kubeconfig()).with_context(|| {
        format!("cluster {name} has no kubeconfig (is it up? see `podnet list`)")
    })?;
    print!("{text}");
    Ok(())
}
