//! The real backends: pod sandboxes made of a network namespace in the node's
//! own netns directory, pinned IPC/UTS namespaces and a CNI ADD; containers
//! run by podnet-runtime (runc through a detached shim).

use crate::agent::{AgentArgs, NodeLayout};
use crate::backend::{
    ContainerBackend, ContainerLaunch, ImageInfo, RuntimeContainer, RuntimeState, Sandbox,
    SandboxBackend, SandboxRequest,
};
use crate::AgentError;
use podnet_runtime::{ContainerState, ImageStore, Runtime, RuntimeConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Both backends, sharing one runtime.
pub struct RealBackends {
    pub runtime: Arc<Runtime>,
    pub sandboxes: Arc<dyn SandboxBackend>,
    pub containers: Arc<dyn ContainerBackend>,
}

impl RealBackends {
    pub fn new(
        args: &AgentArgs,
        layout: &NodeLayout,
        plugin_dirs: Vec<PathBuf>,
    ) -> Result<RealBackends, AgentError> {
        let images =
            ImageStore::open(&args.images).map_err(|e| AgentError::Runtime(e.to_string()))?;
        let podnet_binary = std::env::current_exe()
            .map_err(|e| AgentError::Config(format!("locating the podnet binary: {e}")))?;
        let mut config = RuntimeConfig::for_node(&layout.root, images.clone(), podnet_binary);
        // `podnet node exec N -- runc list` shows the node's containers at runc's default root.
        config.runc_root = layout.runc_root();
        config.cgroup_parent = format!("/podnet/{}", args.node_name);
        let runtime =
            Arc::new(Runtime::new(config).map_err(|e| AgentError::Runtime(e.to_string()))?);
        let cni = podnet_cni::CniInvoker::new(
            plugin_dirs,
            layout.cni_conf_dir(),
            layout.cni_cache_dir(),
            Some(args.netns.clone()),
        );
        let sandboxes = Arc::new(NodeSandboxes {
            netns_dir: layout.pod_netns_dir(),
            cni,
        });
        let containers = Arc::new(RuntimeContainers {
            runtime: runtime.clone(),
            images,
        });
        Ok(RealBackends {
            runtime,
            sandboxes,
            containers,
        })
    }
}

/// Sandboxes: netns + CNI + pinned IPC/UTS.
pub struct NodeSandboxes {
    netns_dir: PathBuf,
    cni: podnet_cni::CniInvoker,
}

impl NodeSandboxes {
    /// The pod's network namespace with `lo` up and the CNI ADD; returns
    /// the pod's IPv4 address.
    fn create_network(
        &self,
        request: &SandboxRequest,
        netns_path: &std::path::Path,
        started: std::time::Instant,
    ) -> Result<std::net::Ipv4Addr, String> {
        podnet_netlink::ensure_netns_directory(&self.netns_dir).map_err(|e| e.to_string())?;
        podnet_netlink::create_netns(netns_path).map_err(|e| e.to_string())?;
        let handle =
            podnet_netlink::NetlinkHandle::open_in(netns_path).map_err(|e| e.to_string())?;
        handle.set_link_up("lo").map_err(|e| e.to_string())?;
        let args = vec![
            ("K8S_POD_NAMESPACE".to_string(), request.namespace.clone()),
            ("K8S_POD_NAME".to_string(), request.pod_name.clone()),
            ("K8S_POD_UID".to_string(), request.pod_uid.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".to_string(), request.id.clone()),
        ];
        let namespace_done = started.elapsed();
        let result = self
            .cni
            .add(&request.id, netns_path, "eth0", &args)
            .map_err(|e| {
                format!(
                    "CNI ADD for pod {}/{}: {e}",
                    request.namespace, request.pod_name
                )
            })?;
        tracing::debug!(
            sandbox = request.id,
            netns_ms = namespace_done.as_secs_f64() * 1000.0,
            cni_add_ms = (started.elapsed() - namespace_done).as_secs_f64() * 1000.0,
            "sandbox network created"
        );
        first_ipv4(&result).ok_or_else(|| {
            format!(
                "CNI ADD for pod {}/{} returned no IPv4 address",
                request.namespace, request.pod_name
            )
        })
    }
}

impl SandboxBackend for NodeSandboxes {
    fn create(&self, request: &SandboxRequest) -> Result<Sandbox, String> {
        let netns_path = self.netns_dir.join(&request.id);
        let started = std::time::Instant::now();
        let result = std::thread::scope(|scope| -> Result<Sandbox, String> {
            // The pinned IPC and UTS namespaces do not depend on the network:
            // made on another thread while the network namespace and the
            // CNI ADD are under way.
            let pinning = scope.spawn(|| {
                podnet_runtime::create_pod_ipc_uts(&request.pod_dir.join("ns"), &request.hostname)
                    .map_err(|e| e.to_string())
            });
            let network = self.create_network(request, &netns_path, started);
            let pinned = pinning
                .join()
                .map_err(|_| "pinning the pod's IPC and UTS namespaces panicked".to_string())??;
            let ip = network?;
            Ok(Sandbox {
                id: request.id.clone(),
                netns_path: netns_path.clone(),
                ipc_path: pinned.ipc,
                uts_path: pinned.uts,
                ip: ip.to_string(),
                created: jiff::Timestamp::now().to_string(),
            })
        });
        if result.is_err() {
            // Leave nothing behind: no IP, no veth, no namespace.
            let _ = self.cni.del(&request.id, Some(&netns_path), "eth0", &[]);
            let _ = podnet_netlink::delete_netns(&netns_path);
            let _ = podnet_runtime::remove_pod_namespaces(&request.pod_dir.join("ns"));
        }
        result
    }

    fn remove(&self, sandbox: &Sandbox) -> Result<(), String> {
        let netns_path = self.netns_dir.join(&sandbox.id);
        let mut errors = Vec::new();
        let netns = netns_path.exists().then_some(netns_path.as_path());
        if let Err(error) = self.cni.del(&sandbox.id, netns, "eth0", &[]) {
            errors.push(format!("CNI DEL: {error}"));
        }
        if let Err(error) = podnet_netlink::delete_netns(&netns_path) {
            errors.push(format!("deleting {}: {error}", netns_path.display()));
        }
        if let Some(dir) = sandbox.ipc_path.parent() {
            if let Err(error) = podnet_runtime::remove_pod_namespaces(dir) {
                errors.push(format!("removing pinned namespaces: {error}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn garbage_collect(&self, valid: &[Sandbox]) -> Result<(), String> {
        let attachments: Vec<podnet_cni::Attachment> = valid
            .iter()
            .map(|s| podnet_cni::Attachment {
                container_id: s.id.clone(),
                ifname: "eth0".to_string(),
            })
            .collect();
        self.cni.gc(&attachments).map_err(|e| e.to_string())
    }
}

/// The first IPv4 address of a CNI result (`ips[].address` is a CIDR).
fn first_ipv4(result: &serde_json::Value) -> Option<std::net::Ipv4Addr> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let address = ip["address"].as_str()?;
        address.split('/').next()?.parse().ok()
    })
}

/// Containers through podnet-runtime.
pub struct RuntimeContainers {
    runtime: Arc<Runtime>,
    images: ImageStore,
}

fn parse_time(text: &Option<String>) -> Option<jiff::Timestamp> {
    text.as_deref().and_then(|t| t.parse().ok())
}

/// The agent's view of a runtime container status.
fn runtime_container(status: podnet_runtime::ContainerStatus) -> RuntimeContainer {
    let state = match status.state {
        ContainerState::Created => RuntimeState::Created,
        ContainerState::Running => RuntimeState::Running {
            started_at: parse_time(&status.started_at).unwrap_or_else(jiff::Timestamp::now),
        },
        ContainerState::Exited => RuntimeState::Exited {
            exit_code: status.exit_code.unwrap_or(-1),
            reason: status.reason.clone().unwrap_or_else(|| {
                if status.exit_code == Some(0) {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string()
            }),
            started_at: parse_time(&status.started_at),
            finished_at: parse_time(&status.finished_at),
        },
        ContainerState::Unknown => RuntimeState::Exited {
            exit_code: 137,
            reason: "ContainerStatusUnknown".to_string(),
            started_at: parse_time(&status.started_at),
            finished_at: parse_time(&status.finished_at),
        },
    };
    RuntimeContainer {
        id: status.id,
        pod_uid: status.pod.uid,
        name: status.container_name,
        attempt: status.attempt,
        image_ref: status.image,
        image_id: status.image_id,
        state,
    }
}

impl ContainerBackend for RuntimeContainers {
    fn ensure_image(&self, reference: &str) -> Result<ImageInfo, String> {
        let config = match self.images.resolve(reference).map_err(|e| e.to_string())? {
            Some(config) => config,
            None => podnet_runtime::ensure_offline_image(&self.images, reference)
                .map_err(|e| e.to_string())?,
        };
        Ok(ImageInfo {
            reference: config.reference.clone(),
            id: config.config_digest.clone(),
            entrypoint: config.entrypoint.clone(),
            cmd: config.cmd.clone(),
            env: config.env.clone(),
            working_dir: (!config.working_dir.is_empty()).then(|| config.working_dir.clone()),
            stop_signal: config.stop_signal.clone(),
        })
    }

    fn start(&self, launch: &ContainerLaunch) -> Result<String, String> {
        let image = self
            .images
            .resolve(&launch.image.reference)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "image {} disappeared from the store",
                    launch.image.reference
                )
            })?;
        let spec = podnet_runtime::ContainerSpec {
            pod: podnet_runtime::PodRef {
                namespace: launch.pod_namespace.clone(),
                name: launch.pod_name.clone(),
                uid: launch.pod_uid.clone(),
            },
            container_name: launch.name.clone(),
            attempt: launch.attempt,
            image,
            command: launch.argv.clone(),
            args: Vec::new(),
            env: launch
                .env
                .iter()
                .map(|entry| match entry.split_once('=') {
                    Some((key, value)) => (key.to_string(), value.to_string()),
                    None => (entry.clone(), String::new()),
                })
                .collect(),
            working_dir: launch.working_dir.clone(),
            hostname: launch.hostname.clone(),
            namespaces: podnet_runtime::PodNamespaces {
                network: Some(launch.sandbox.netns_path.clone()),
                ipc: Some(launch.sandbox.ipc_path.clone()),
                uts: Some(launch.sandbox.uts_path.clone()),
            },
            mounts: launch
                .mounts
                .iter()
                .map(|mount| podnet_runtime::BindMount {
                    container_path: mount.destination.clone(),
                    host_path: mount.source.clone(),
                    read_only: mount.read_only,
                })
                .collect(),
            resources: podnet_runtime::Resources {
                cpu_shares: launch.cpu_shares,
                cpu_quota: launch.cpu_quota_micros,
                cpu_period: launch.cpu_quota_micros.map(|_| 100_000),
                memory_limit_bytes: launch.memory_limit_bytes,
                oom_score_adj: None,
            },
            security: Default::default(),
            tty: launch.tty,
            stdin: launch.stdin,
            stdin_once: launch.stdin_once,
            log_path: launch.log_path.clone(),
        };
        self.runtime
            .create_and_start(spec)
            .map_err(|e| e.to_string())
    }

    fn list(&self) -> Result<Vec<RuntimeContainer>, String> {
        let statuses = self.runtime.list().map_err(|e| e.to_string())?;
        Ok(statuses.into_iter().map(runtime_container).collect())
    }

    fn list_pod(&self, pod_uid: &str) -> Result<Vec<RuntimeContainer>, String> {
        let statuses = self.runtime.list_pod(pod_uid).map_err(|e| e.to_string())?;
        Ok(statuses.into_iter().map(runtime_container).collect())
    }

    fn stop(&self, id: &str, grace: Duration, _signal: Option<&str>) -> Result<(), String> {
        self.runtime
            .stop(id, grace)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn remove(&self, id: &str) -> Result<(), String> {
        self.runtime.remove(id).map_err(|e| e.to_string())
    }

    fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), String> {
        self.runtime
            .exec_sync(id, command, timeout)
            .map_err(|e| e.to_string())
    }
}
