//! The node's network: the CNI configuration the agent writes once the node
//! has a podCIDR, and the overlay reconciler that keeps the VXLAN device,
//! neighbours, FDB entries and routes in line with the other Nodes.

use crate::AgentError;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use podnet_netplan::overlay::{
    plan_overlay, vtep_mac_from_annotations, vxlan_notrack_script, OverlayBackend, OverlayInput,
    OverlayNode,
};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Which CNI plugins the agent invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniFlavour {
    /// podnet's own `podnet-cni` plugin.
    Podnet,
    /// The reference `bridge` + `host-local` plugins (containernetworking-plugins).
    Reference,
}

/// Pod MTU for a backend: VXLAN costs 50 bytes of encapsulation.
pub fn pod_mtu(backend: OverlayBackend, underlay_mtu: u32) -> u32 {
    match backend {
        OverlayBackend::Vxlan => underlay_mtu - podnet_netplan::overlay::VXLAN_OVERHEAD,
        OverlayBackend::HostGw => underlay_mtu,
    }
}

/// The conflist for this node (pure).
pub fn cni_conflist(
    flavour: CniFlavour,
    pod_cidr: Ipv4Net,
    mtu: u32,
    ipam_dir: &Path,
) -> serde_json::Value {
    let gateway = Ipv4Addr::from(u32::from(pod_cidr.network()) + 1);
    let plugin = match flavour {
        CniFlavour::Podnet => serde_json::json!({
            "type": "podnet-cni",
            "bridge": "cni0",
            "mtu": mtu,
            "hairpinMode": true,
            "isGateway": true,
            "ipam": {"subnet": pod_cidr.to_string(), "gateway": gateway.to_string(), "dataDir": ipam_dir},
        }),
        CniFlavour::Reference => serde_json::json!({
            "type": "bridge",
            "bridge": "cni0",
            "mtu": mtu,
            "hairpinMode": true,
            "isGateway": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr.to_string(), "gateway": gateway.to_string()}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir,
            },
        }),
    };
    serde_json::json!({"cniVersion": "1.0.0", "name": "podnet", "plugins": [plugin]})
}

/// Write the conflist atomically into the node's conf dir.
pub fn write_cni_config(
    conf_dir: &Path,
    conflist: &serde_json::Value,
) -> Result<PathBuf, AgentError> {
    std::fs::create_dir_all(conf_dir).map_err(|e| AgentError::io(conf_dir, e))?;
    let path = conf_dir.join("10-podnet.conflist");
    let temporary = conf_dir.join(".10-podnet.conflist.tmp");
    let text = serde_json::to_string_pretty(conflist).expect("conflist serialises");
    std::fs::write(&temporary, text).map_err(|e| AgentError::io(&temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| AgentError::io(&path, e))?;
    Ok(path)
}

/// The overlay view of a Node object.
pub fn overlay_node(node: &Node) -> OverlayNode {
    let name = node.metadata.name.clone().unwrap_or_default();
    let pod_cidr = node
        .spec
        .as_ref()
        .and_then(|spec| spec.pod_cidr.as_ref())
        .and_then(|cidr| cidr.parse().ok());
    let internal_ip = node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .and_then(|addresses| addresses.iter().find(|a| a.type_ == "InternalIP"))
        .and_then(|address| address.address.parse().ok());
    let vtep_mac = node
        .metadata
        .annotations
        .as_ref()
        .and_then(vtep_mac_from_annotations);
    OverlayNode {
        name,
        pod_cidr,
        internal_ip,
        vtep_mac,
    }
}

/// Keep the overlay of this node matching every Node, forever.
pub async fn run_overlay(
    nodes: Api<Node>,
    netns: PathBuf,
    this_node: String,
    backend: OverlayBackend,
    underlay_mtu: u32,
    vxlan_tx_checksum_offload: bool,
) -> Result<(), AgentError> {
    let (reader, writer) = reflector::store::<Node>();
    let stream = reflector(writer, watcher(nodes, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    futures::pin_mut!(stream);
    let mut last_input: Option<OverlayInput> = None;
    let mut last_notrack_script: Option<String> = None;
    while let Some(event) = stream.next().await {
        if let Err(error) = event {
            tracing::warn!("watching nodes for the overlay: {error}");
            continue;
        }
        let mut overlay_nodes: Vec<OverlayNode> = reader
            .state()
            .iter()
            .map(|node| overlay_node(node))
            .collect();
        overlay_nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let input = OverlayInput {
            this_node: this_node.clone(),
            backend,
            underlay_mtu,
            vxlan_tx_checksum_offload,
            nodes: overlay_nodes,
        };
        if last_input.as_ref() == Some(&input) {
            continue;
        }
        let plan = plan_overlay(&input);
        let notrack_script = vxlan_notrack_script(&plan);
        let notrack_changed = last_notrack_script.as_ref() != Some(&notrack_script);
        let netns = netns.clone();
        let script = notrack_script.clone();
        let applied = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let handle =
                podnet_netlink::NetlinkHandle::open_in(&netns).map_err(|e| e.to_string())?;
            let report = podnet_netlink::overlay::apply_overlay_plan(&handle, &plan)
                .map_err(|e| e.to_string())?;
            if notrack_changed {
                apply_nft_script(&netns, &script)?;
            }
            Ok(report)
        })
        .await
        .map_err(|e| AgentError::Internal(format!("overlay worker: {e}")))?;
        match applied {
            Ok(report) => {
                for line in &report.added {
                    tracing::info!("overlay: added {line}");
                }
                for line in &report.removed {
                    tracing::info!("overlay: removed {line}");
                }
                if notrack_changed {
                    tracing::info!("overlay: nftables table ip podnet-overlay written");
                }
                last_input = Some(input);
                last_notrack_script = Some(notrack_script);
            }
            Err(error) => tracing::warn!("applying the overlay plan: {error}"),
        }
    }
    Ok(())
}

/// `nft -f -` with `script` inside the node's namespace.
fn apply_nft_script(netns: &Path, script: &str) -> Result<(), String> {
    crate::proxy::run_in_netns(netns, "nft", &["-f", "-"], Some(script))
        .and_then(|output| {
            crate::proxy::checked(
                output,
                &format!("nft -f - (table ip podnet-overlay) in {}", netns.display()),
            )
        })
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn podnet_conflist() {
        let conflist = cni_conflist(
            CniFlavour::Podnet,
            "10.244.1.0/24".parse().unwrap(),
            1450,
            Path::new("/n/var/lib/cni/networks"),
        );
        expect![[r#"
            {
              "cniVersion": "1.0.0",
              "name": "podnet",
              "plugins": [
                {
                  "type": "podnet-cni",
                  "bridge": "cni0",
                  "mtu": 1450,
                  "hairpinMode": true,
                  "isGateway": true,
                  "ipam": {
                    "subnet": "10.244.1.0/24",
                    "gateway": "10.244.1.1",
                    "dataDir": "/n/var/lib/cni/networks"
                  }
                }
              ]
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&conflist).unwrap());
    }

    #[test]
    fn reference_conflist_uses_host_local() {
        let conflist = cni_conflist(
            CniFlavour::Reference,
            "10.244.2.0/24".parse().unwrap(),
            1500,
            Path::new("/d"),
        );
        assert_eq!(conflist["plugins"][0]["type"], "bridge");
        assert_eq!(conflist["plugins"][0]["ipam"]["type"], "host-local");
        assert_eq!(
            conflist["plugins"][0]["ipam"]["ranges"][0][0]["gateway"],
            "10.244.2.1"
        );
    }

    #[test]
    fn mtu_per_backend() {
        assert_eq!(pod_mtu(OverlayBackend::Vxlan, 1500), 1450);
        assert_eq!(pod_mtu(OverlayBackend::HostGw, 1500), 1500);
    }
}
