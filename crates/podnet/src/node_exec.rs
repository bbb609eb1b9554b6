//! `podnet node exec NODE -- CMD`: run a command "on" a node of a local
//! cluster, the way `docker exec` enters a kind node. The command runs in the
//! node's network namespace and in a private mount namespace in which the
//! node's own directories are bind-mounted over the real paths, so `ip netns`
//! lists that node's pod sandboxes and `/sys/class/net` shows its links.

use crate::paths::NodePaths;
use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::ffi::CString;
use std::fs::{self, File};

/// Replace this process with `command` running on `node`. Returns only on error.
pub fn exec_on_node(node: &NodePaths, command: &[String]) -> Result<()> {
    if command.is_empty() {
        bail!(
            "no command given: use `podnet node exec {} -- CMD...`",
            node.name
        );
    }
    let netns = node.netns_path();
    let netns_file = File::open(&netns).with_context(|| {
        format!(
            "node {} has no network namespace at {}: is the cluster up? (`podnet list`)",
            node.name,
            netns.display()
        )
    })?;
    enter_node_view(node, &netns_file)?;
    let program = CString::new(command[0].clone())?;
    let args: Vec<CString> = command
        .iter()
        .map(|arg| CString::new(arg.as_str()))
        .collect::<Result<_, _>>()?;
    let error = nix::unistd::execvp(&program, &args).unwrap_err();
    bail!("running {} on node {}: {error}", command[0], node.name)
}

/// Switch the calling (single-threaded) process into the node's mount view and
/// network namespace.
pub fn enter_node_view(node: &NodePaths, netns_file: &File) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).context("unshare mount namespace")?;
    // Keep our mounts from propagating back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("making / a slave mount")?;
    for (source, target) in node.view_mounts() {
        fs::create_dir_all(&source).with_context(|| format!("creating {}", source.display()))?;
        fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
        mount(
            Some(&source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {} on {target}", source.display()))?;
    }
    setns(netns_file, CloneFlags::CLONE_NEWNET).context("entering the node's network namespace")?;
    // /sys shows the links of the namespace that mounted it: remount it here.
    let _ = umount2("/sys", MntFlags::MNT_DETACH);
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .context("mounting /sys for the node")?;
    Ok(())
}
