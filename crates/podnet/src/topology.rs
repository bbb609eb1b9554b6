//! The "physical" layout of a local cluster: an underlay namespace holding an
//! L2 bridge, and one network namespace per node plugged into it with a veth.
//! Planned as a list of `ip` invocations (pure, snapshot-tested), then applied.
//! Every command names a namespace of ours: nothing touches the host's own.

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::process::Command;

/// MTU of the underlay links; the overlay uses this minus 50.
pub const UNDERLAY_MTU: u32 = 1500;
pub const UNDERLAY_BRIDGE: &str = "underlay0";
pub const UNDERLAY_PREFIX: u8 = 16;

/// One node's place on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAttachment {
    pub node_name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The veth end left in the underlay namespace.
    pub underlay_port: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyPlan {
    pub underlay_netns: String,
    pub nodes: Vec<NodeAttachment>,
}

/// The underlay's own address (on its bridge): where pods reach the API
/// server (`kubernetes` Service endpoint) in a local cluster.
pub const UNDERLAY_GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

/// Port of the API server's in-cluster listener on [`UNDERLAY_GATEWAY`].
pub const GATEWAY_API_PORT: u16 = 6443;

/// The underlay address of node number `index` (1-based): 172.18.0.(index+1).
pub fn node_ip(index: usize) -> Ipv4Addr {
    let host = index as u32 + 1;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 18, 0, 0)) + host)
}

pub fn plan(underlay_netns: &str, node_names: &[String]) -> TopologyPlan {
    TopologyPlan {
        underlay_netns: underlay_netns.to_string(),
        nodes: node_names
            .iter()
            .enumerate()
            .map(|(position, name)| NodeAttachment {
                node_name: name.clone(),
                netns: name.clone(),
                ip: node_ip(position + 1),
                underlay_port: format!("port{}", position + 1),
            })
            .collect(),
    }
}

fn ip(args: &str) -> Vec<String> {
    std::iter::once("ip".to_string())
        .chain(args.split_whitespace().map(str::to_string))
        .collect()
}

/// The `ip` commands that build the underlay (first) or add one node.
pub fn underlay_commands(plan: &TopologyPlan) -> Vec<Vec<String>> {
    let ns = &plan.underlay_netns;
    vec![
        ip(&format!("netns add {ns}")),
        ip(&format!("-n {ns} link set lo up")),
        ip(&format!("-n {ns} link add {UNDERLAY_BRIDGE} type bridge")),
        ip(&format!(
            "-n {ns} link set {UNDERLAY_BRIDGE} mtu {UNDERLAY_MTU} up"
        )),
        ip(&format!(
            "-n {ns} addr add {UNDERLAY_GATEWAY}/{UNDERLAY_PREFIX} dev {UNDERLAY_BRIDGE}"
        )),
    ]
}

pub fn node_commands(plan: &TopologyPlan, node: &NodeAttachment) -> Vec<Vec<String>> {
    let underlay = &plan.underlay_netns;
    let ns = &node.netns;
    vec![
        ip(&format!("netns add {ns}")),
        ip(&format!(
            "-n {underlay} link add {} mtu {UNDERLAY_MTU} type veth peer name eth0 netns {ns}",
            node.underlay_port
        )),
        ip(&format!(
            "-n {underlay} link set {} master {UNDERLAY_BRIDGE} up",
            node.underlay_port
        )),
        ip(&format!(
            "-n {ns} addr add {}/{UNDERLAY_PREFIX} dev eth0",
            node.ip
        )),
        ip(&format!("-n {ns} link set eth0 up")),
        ip(&format!("-n {ns} link set lo up")),
    ]
}

/// Routes in the underlay namespace to every node's pod CIDR via that node,
/// so replies from the API server's in-cluster listener (on the underlay's
/// own address) reach pods, which keep their source address.
pub fn underlay_pod_routes(
    plan: &TopologyPlan,
    pod_cidrs: &[(String, String)],
) -> Vec<Vec<String>> {
    let ns = &plan.underlay_netns;
    pod_cidrs
        .iter()
        .filter_map(|(node_name, cidr)| {
            let node = plan
                .nodes
                .iter()
                .find(|node| &node.node_name == node_name)?;
            Some(ip(&format!(
                "-n {ns} route replace {cidr} via {} dev {UNDERLAY_BRIDGE} proto 80",
                node.ip
            )))
        })
        .collect()
}

/// Apply [`underlay_pod_routes`].
pub fn apply_underlay_pod_routes(
    plan: &TopologyPlan,
    pod_cidrs: &[(String, String)],
) -> Result<()> {
    underlay_pod_routes(plan, pod_cidrs)
        .iter()
        .try_for_each(|command| run(command))
}

/// The LoadBalancer address pool routed from the underlay to every node,
/// one equal-cost next hop each (as a router in front of a cluster that
/// announces its load balancer addresses would): whichever node a
/// connection lands on, its service proxy takes it to an endpoint.
pub fn underlay_load_balancer_route(plan: &TopologyPlan, pool: &str) -> Vec<String> {
    let ns = &plan.underlay_netns;
    let hops: Vec<String> = plan
        .nodes
        .iter()
        .map(|node| format!("nexthop via {} dev {UNDERLAY_BRIDGE}", node.ip))
        .collect();
    ip(&format!(
        "-n {ns} route replace {pool} proto 80 {}",
        hops.join(" ")
    ))
}

/// Apply [`underlay_load_balancer_route`] for the controllers' default pool.
pub fn apply_underlay_load_balancer_route(plan: &TopologyPlan) -> Result<()> {
    run(&underlay_load_balancer_route(
        plan,
        podnet_controllers::lb_ipam::DEFAULT_POOL,
    ))
}

fn run(command: &[String]) -> Result<()> {
    let output = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .with_context(|| format!("running {}", command.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            command.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Build the underlay namespace and bridge.
pub fn apply_underlay(plan: &TopologyPlan) -> Result<()> {
    underlay_commands(plan)
        .iter()
        .try_for_each(|command| run(command))?;
    // The underlay is a plain switch with no firewall: frames between nodes
    // (every VXLAN packet) need not go through bridge netfilter, which would
    // otherwise run the IPv4 hooks for each of them. Without br_netfilter in
    // the kernel the keys do not exist and there is nothing to turn off.
    if std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        for key in [
            "net/bridge/bridge-nf-call-iptables",
            "net/bridge/bridge-nf-call-ip6tables",
            "net/bridge/bridge-nf-call-arptables",
        ] {
            write_sysctl_in(&plan.underlay_netns, key, "0")?;
        }
    }
    Ok(())
}

/// Create one node's namespace, plug it in and turn on forwarding.
pub fn apply_node(plan: &TopologyPlan, node: &NodeAttachment) -> Result<()> {
    node_commands(plan, node)
        .iter()
        .try_for_each(|command| run(command))?;
    write_sysctl_in(&node.netns, "net/ipv4/ip_forward", "1")
}

/// Write a sysctl inside a named namespace (a short-lived thread enters it).
pub fn write_sysctl_in(netns: &str, key: &str, value: &str) -> Result<()> {
    let path = format!("/run/netns/{netns}");
    let key = key.to_string();
    let value = value.to_string();
    std::thread::spawn(move || -> Result<()> {
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering {path}"))?;
        // /proc/sys/net resolves against the calling thread's network namespace.
        std::fs::write(format!("/proc/sys/{key}"), &value)
            .with_context(|| format!("setting {key}={value} in {path}"))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sysctl thread panicked"))?
}

/// Delete a named namespace if it exists (idempotent).
pub fn delete_netns(name: &str) -> Result<()> {
    if !std::path::Path::new("/run/netns").join(name).exists() {
        return Ok(());
    }
    run(&ip(&format!("netns del {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn two_node_plan() {
        let plan = plan("dev-underlay", &["dev-node1".into(), "dev-node2".into()]);
        let mut lines: Vec<String> = underlay_commands(&plan)
            .iter()
            .map(|c| c.join(" "))
            .collect();
        for node in &plan.nodes {
            lines.extend(node_commands(&plan, node).iter().map(|c| c.join(" ")));
        }
        expect![[r#"
            ip netns add dev-underlay
            ip -n dev-underlay link set lo up
            ip -n dev-underlay link add underlay0 type bridge
            ip -n dev-underlay link set underlay0 mtu 1500 up
            ip -n dev-underlay addr add 172.18.0.1/16 dev underlay0
            ip netns add dev-node1
            ip -n dev-underlay link add port1 mtu 1500 type veth peer name eth0 netns dev-node1
            ip -n dev-underlay link set port1 master underlay0 up
            ip -n dev-node1 addr add 172.18.0.2/16 dev eth0
            ip -n dev-node1 link set eth0 up
            ip -n dev-node1 link set lo up
            ip netns add dev-node2
            ip -n dev-underlay link add port2 mtu 1500 type veth peer name eth0 netns dev-node2
            ip -n dev-underlay link set port2 master underlay0 up
            ip -n dev-node2 addr add 172.18.0.3/16 dev eth0
            ip -n dev-node2 link set eth0 up
            ip -n dev-node2 link set lo up"#]]
        .assert_eq(&lines.join("\n"));
        let routes: Vec<String> = underlay_pod_routes(
            &plan,
            &[
                ("dev-node2".into(), "10.244.1.0/24".into()),
                ("elsewhere".into(), "10.244.9.0/24".into()),
            ],
        )
        .iter()
        .map(|c| c.join(" "))
        .collect();
        expect![[
            "ip -n dev-underlay route replace 10.244.1.0/24 via 172.18.0.3 dev underlay0 proto 80"
        ]]
        .assert_eq(&routes.join("\n"));
        expect![[
            "ip -n dev-underlay route replace 172.18.255.0/24 proto 80 nexthop via 172.18.0.2 dev underlay0 nexthop via 172.18.0.3 dev underlay0"
        ]]
        .assert_eq(&underlay_load_balancer_route(&plan, "172.18.255.0/24").join(" "));
    }
}
