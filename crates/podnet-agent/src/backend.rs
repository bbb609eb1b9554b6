//! The agent's view of the node's kernel and runtime, behind traits so that
//! the pod lifecycle logic can be tested with recording fakes and so that the
//! runtime pieces (CNI plugins, runc) stay replaceable.

use std::path::PathBuf;
use std::time::Duration;

/// A pod sandbox: its namespaces and network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    /// `cni-<uuid>`, also the container id passed to CNI.
    pub id: String,
    pub netns_path: PathBuf,
    pub ipc_path: PathBuf,
    pub uts_path: PathBuf,
    pub ip: String,
    pub created: String,
}

/// What is needed to create a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub id: String,
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub hostname: String,
    /// Directory for the pod's files (pinned ipc/uts namespaces live here).
    pub pod_dir: PathBuf,
}

/// A container as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeContainer {
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub image_ref: String,
    pub image_id: String,
    pub state: RuntimeState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeState {
    Created,
    Running {
        started_at: jiff::Timestamp,
    },
    Exited {
        exit_code: i32,
        reason: String,
        started_at: Option<jiff::Timestamp>,
        finished_at: Option<jiff::Timestamp>,
    },
}

/// A resolved image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub reference: String,
    pub id: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub stop_signal: Option<String>,
}

/// One bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything needed to start one container attempt.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub image: ImageInfo,
    /// Resolved argv (command/args over entrypoint/cmd).
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub hostname: String,
    pub sandbox: Sandbox,
    pub mounts: Vec<Mount>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub memory_limit_bytes: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota_micros: Option<i64>,
    pub log_path: PathBuf,
}

/// The node's sandbox networking (netns + CNI) and namespaces.
pub trait SandboxBackend: Send + Sync + 'static {
    fn create(&self, request: &SandboxRequest) -> Result<Sandbox, String>;
    /// Idempotent: succeeds when parts or all of it are already gone.
    fn remove(&self, sandbox: &Sandbox) -> Result<(), String>;
    /// Release network attachments of sandboxes not in `valid` (CNI GC).
    fn garbage_collect(&self, valid: &[Sandbox]) -> Result<(), String>;
}

/// The container runtime.
pub trait ContainerBackend: Send + Sync + 'static {
    fn ensure_image(&self, reference: &str) -> Result<ImageInfo, String>;
    fn start(&self, launch: &ContainerLaunch) -> Result<String, String>;
    fn list(&self) -> Result<Vec<RuntimeContainer>, String>;
    /// The containers of one pod; runtimes that can should answer without
    /// looking at other pods' containers (a pod sync must not cost O(pods)).
    fn list_pod(&self, pod_uid: &str) -> Result<Vec<RuntimeContainer>, String> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|c| c.pod_uid == pod_uid)
            .collect())
    }
    fn stop(&self, id: &str, grace: Duration, signal: Option<&str>) -> Result<(), String>;
    /// Idempotent.
    fn remove(&self, id: &str) -> Result<(), String>;
    /// Runs a command in a running container to completion (exec probes):
    /// exit code and output, or an error (including a timeout).
    fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), String>;
}
