//! Waiting, from outside, until a cluster's nodes report Ready.

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use std::path::Path;
use std::time::{Duration, Instant};

/// A kube client for the kubeconfig at `path`.
pub async fn client_from(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    kube::Client::try_from(config).context("building the API client")
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .map(|conditions| {
            conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
        })
        .unwrap_or(false)
}

pub fn wait_nodes_ready(kubeconfig: &Path, names: &[String], timeout: Duration) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = client_from(kubeconfig).await?;
        let nodes: Api<Node> = Api::all(client);
        let deadline = Instant::now() + timeout;
        let mut last_problem = String::from("no answer yet");
        while Instant::now() < deadline {
            match nodes.list(&ListParams::default()).await {
                Ok(list) => {
                    let missing: Vec<&String> = names
                        .iter()
                        .filter(|name| {
                            !list
                                .items
                                .iter()
                                .any(|node| node.metadata.name.as_deref() == Some(name.as_str()) && is_ready(node))
                        })
                        .collect();
                    if missing.is_empty() {
                        return Ok(());
                    }
                    last_problem = format!("not Ready yet: {missing:?}");
                }
                Err(error) => last_problem = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("nodes were not Ready within {timeout:?} ({last_problem}); see the agent logs under the cluster's nodes/ directory")
    })
}

/// Every node's name and pod CIDR (nodes without one are left out).
pub fn node_pod_cidrs(kubeconfig: &Path) -> Result<Vec<(String, String)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let nodes: Api<Node> = Api::all(client_from(kubeconfig).await?);
        let list = nodes
            .list(&ListParams::default())
            .await
            .context("listing nodes for their pod CIDRs")?;
        Ok(list
            .items
            .iter()
            .filter_map(|node| {
                let cidr = node.spec.as_ref()?.pod_cidr.clone()?;
                Some((node.metadata.name.clone()?, cidr))
            })
            .collect())
    })
}
