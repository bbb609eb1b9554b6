//! The container runtime the agent drives: prepares the rootfs and bundle,
//! starts a shim per container, and implements list/status/stop/remove,
//! exec, attach and logs on top of the on-disk state the shim maintains.

use crate::bundle::{bundle_config, resolve_user, ContainerSpec, PodRef};
use crate::error::{io_error, Result, RuntimeError};
use crate::image::ImageStore;
use crate::logs::{write_log, LogOptions};
use crate::shim::frame;
use crate::state::{self, ContainerRecord, ExitRecord, StartedRecord};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A container id: 32 lowercase hex digits, also runc's id.
pub type ContainerId = String;

/// Where a node's runtime keeps its state and how it runs containers.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Per-node agent state (`<node root>/var/lib/podnet`); containers live in `containers/`.
    pub state_dir: PathBuf,
    /// runc's `--root` (`<state_dir>/runc`).
    pub runc_root: PathBuf,
    /// Pod log root (`<node root>/var/log/pods`).
    pub log_dir: PathBuf,
    /// The machine-wide image store.
    pub image_store: ImageStore,
    /// The podnet executable; shims run as `<podnet_binary> shim <container dir>`.
    pub podnet_binary: PathBuf,
    /// The runc executable (`runc` from `PATH` by default).
    pub runc_binary: PathBuf,
    /// cgroup parent for pods, e.g. `/podnet/<cluster>/<node>`.
    pub cgroup_parent: String,
}

impl RuntimeConfig {
    /// The layout ARCHITECTURE.md describes for a node rooted at `node_root`.
    pub fn for_node(
        node_root: &Path,
        image_store: ImageStore,
        podnet_binary: PathBuf,
    ) -> RuntimeConfig {
        let state_dir = node_root.join("var/lib/podnet");
        RuntimeConfig {
            runc_root: state_dir.join("runc"),
            log_dir: node_root.join("var/log/pods"),
            state_dir,
            image_store,
            podnet_binary,
            runc_binary: PathBuf::from("runc"),
            cgroup_parent: "/podnet".to_string(),
        }
    }
}

/// Lifecycle state of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ContainerState {
    /// Prepared but not (yet) running.
    Created,
    /// Its process is running.
    Running,
    /// Its process has exited; see the exit fields.
    Exited,
    /// The state files and runc disagree (e.g. the shim died).
    Unknown,
}

/// What the agent reports in a pod's containerStatuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerStatus {
    /// Container id.
    pub id: ContainerId,
    /// Owning pod.
    pub pod: PodRef,
    /// Container name.
    pub container_name: String,
    /// Restart count this container was created with.
    pub attempt: u32,
    /// Image reference.
    pub image: String,
    /// Image id (config digest).
    pub image_id: String,
    /// Current state.
    pub state: ContainerState,
    /// Host pid of the container's init while running.
    pub pid: Option<i32>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 start time.
    pub started_at: Option<String>,
    /// RFC 3339 exit time.
    pub finished_at: Option<String>,
    /// Exit code once exited.
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `Unknown` once exited.
    pub reason: Option<String>,
    /// Detail for the reason.
    pub message: Option<String>,
    /// CRI log file.
    pub log_path: PathBuf,
}

/// A process started by [`Runtime::exec`].
pub struct ExecProcess {
    /// Input, when requested (the TTY for TTY sessions).
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Output (all output for TTY sessions).
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Error output (`None` for TTY sessions).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    child: tokio::process::Child,
    pty_master: Option<OwnedFd>,
}

impl ExecProcess {
    /// Waits for the process and returns its exit code (128 + signal).
    pub async fn wait(&mut self) -> Result<i32> {
        let status = self
            .child
            .wait()
            .await
            .map_err(io_error("wait for exec process", "runc exec"))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Resizes the TTY (no-op for non-TTY sessions).
    pub fn resize(&self, columns: u16, rows: u16) -> Result<()> {
        if let Some(master) = &self.pty_master {
            set_window_size(master.as_raw_fd(), columns, rows)?;
            // runc forwards the size when it sees SIGWINCH on its terminal.
            if let Some(pid) = self.child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGWINCH,
                );
            }
        }
        Ok(())
    }
}

/// What to run in [`Runtime::exec`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Command and arguments.
    pub command: Vec<String>,
    /// Allocate a TTY.
    pub tty: bool,
    /// Connect stdin.
    pub stdin: bool,
    /// Initial TTY size (columns, rows).
    pub initial_size: Option<(u16, u16)>,
}

/// Output of an attach session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachOutput {
    /// Bytes from stdout (or the TTY).
    Stdout(Vec<u8>),
    /// Bytes from stderr.
    Stderr(Vec<u8>),
    /// The container exited with this code.
    Exited(i32),
}

/// Reading half of an attach session.
pub struct AttachReader {
    stream: tokio::net::unix::OwnedReadHalf,
}

/// Writing half of an attach session.
pub struct AttachWriter {
    stream: tokio::net::unix::OwnedWriteHalf,
}

impl AttachReader {
    /// Next output frame; `None` when the shim closed the session.
    pub async fn next(&mut self) -> Result<Option<AttachOutput>> {
        let mut header = [0u8; 5];
        if self.stream.read_exact(&mut header).await.is_err() {
            return Ok(None);
        }
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut payload = vec![0u8; length];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(io_error("read attach frame from", "attach.sock"))?;
        Ok(Some(match header[0] {
            frame::STDOUT => AttachOutput::Stdout(payload),
            frame::STDERR => AttachOutput::Stderr(payload),
            _ => AttachOutput::Exited(
                payload
                    .get(..4)
                    .map_or(-1, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            ),
        }))
    }
}

impl AttachWriter {
    async fn send(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let mut message = vec![kind];
        message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        message.extend_from_slice(payload);
        self.stream
            .write_all(&message)
            .await
            .map_err(io_error("write attach frame to", "attach.sock"))
    }

    /// Sends bytes to the container's stdin (ignored unless the spec has `stdin: true`).
    pub async fn write_stdin(&mut self, bytes: &[u8]) -> Result<()> {
        self.send(frame::STDIN, bytes).await
    }

    /// Closes the container's stdin (end-of-file on a TTY).
    pub async fn close_stdin(&mut self) -> Result<()> {
        self.send(frame::CLOSE_STDIN, &[]).await
    }

    /// Resizes a TTY container's terminal.
    pub async fn resize(&mut self, columns: u16, rows: u16) -> Result<()> {
        let mut payload = columns.to_be_bytes().to_vec();
        payload.extend_from_slice(&rows.to_be_bytes());
        self.send(frame::RESIZE, &payload).await
    }
}

/// The node's container runtime.
#[derive(Clone, Debug)]
pub struct Runtime {
    config: RuntimeConfig,
    /// What never changes about a container once its `container.json` is
    /// written, by id: listing reads each record from disk once instead of on
    /// every call. Filled lazily from the state directory, so a restarted
    /// agent converges from disk; entries go when the container is removed.
    records: Arc<Mutex<HashMap<ContainerId, Arc<RecordSummary>>>>,
}

/// The immutable part of a [`ContainerStatus`], from `container.json`.
#[derive(Clone, Debug)]
struct RecordSummary {
    pod: PodRef,
    container_name: String,
    attempt: u32,
    image: String,
    image_id: String,
    created_at: String,
    log_path: PathBuf,
}

impl RecordSummary {
    fn of(record: &ContainerRecord) -> RecordSummary {
        RecordSummary {
            pod: record.spec.pod.clone(),
            container_name: record.spec.container_name.clone(),
            attempt: record.spec.attempt,
            image: record.spec.image.reference.clone(),
            image_id: record.spec.image.config_digest.clone(),
            created_at: record.created_at.clone(),
            log_path: record.spec.log_path.clone(),
        }
    }
}

fn rootfs_of(container_dir: &Path) -> PathBuf {
    container_dir.join("bundle/rootfs")
}

/// Removes container directories that have no `container.json`: a process
/// that died between mounting a rootfs and writing the record left them, and
/// nothing else would ever find them (lists skip record-less directories as
/// "being created"). Called when a runtime starts, before it creates anything,
/// so no creation of its own can be in flight.
fn sweep_unrecorded_containers(containers: &Path) -> Result<()> {
    let entries = fs::read_dir(containers).map_err(io_error("read directory", containers))?;
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() || dir.join(state::RECORD_FILE).exists() {
            continue;
        }
        unmount_all(&rootfs_of(&dir))?;
        fs::remove_dir_all(&dir).map_err(io_error("delete", &dir))?;
    }
    Ok(())
}

impl Runtime {
    /// Creates the runtime's directories.
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        for dir in [
            config.state_dir.join("containers"),
            config.runc_root.clone(),
            config.log_dir.clone(),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        }
        sweep_unrecorded_containers(&config.state_dir.join("containers"))?;
        Ok(Runtime {
            config,
            records: Arc::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join("containers").join(id)
    }

    fn runc(&self) -> Command {
        let mut command = Command::new(&self.config.runc_binary);
        command.arg("--root").arg(&self.config.runc_root);
        command
    }

    /// Prepares the rootfs and bundle, starts the shim and returns once the
    /// container process runs. Blocking: call it from `spawn_blocking`. On
    /// failure everything prepared is removed again.
    pub fn create_and_start(&self, spec: ContainerSpec) -> Result<ContainerId> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match self.prepare_and_start(&id, spec) {
            Ok(()) => Ok(id),
            Err(error) => {
                let _ = self.remove(&id);
                Err(error)
            }
        }
    }

    fn prepare_and_start(&self, id: &str, spec: ContainerSpec) -> Result<()> {
        let started = std::time::Instant::now();
        let container_dir = self.container_dir(id);
        let rootfs = rootfs_of(&container_dir);
        for dir in [
            rootfs.clone(),
            container_dir.join("upper"),
            container_dir.join("work"),
        ] {
            fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        }
        if spec.image.layer_dirs.is_empty() {
            return Err(RuntimeError::InvalidSpec {
                container: spec.display_name(),
                reason: "the image has no layers".to_string(),
            });
        }
        // overlayfs lists the top layer first.
        let lower: Vec<String> = spec
            .image
            .layer_dirs
            .iter()
            .rev()
            .map(|dir| dir.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            container_dir.join("upper").display(),
            container_dir.join("work").display()
        );
        mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|source| RuntimeError::Mount {
            action: "mount overlay rootfs on",
            target: rootfs.clone(),
            source,
        })?;
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
        let group = fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
        let user = resolve_user(&spec, &passwd, &group)?;
        let cgroups_path = format!(
            "{}/pod{}/{}",
            self.config.cgroup_parent.trim_end_matches('/'),
            spec.pod.uid,
            id
        );
        // Containers keep the agent's own open-file limit, capped like containerd's.
        let nofile_limit = open_file_hard_limit().min(1_048_576);
        let config = bundle_config(&spec, &user, &cgroups_path, nofile_limit)?;
        state::write_json(&container_dir.join("bundle/config.json"), &config)?;
        if let Some(parent) = spec.log_path.parent() {
            fs::create_dir_all(parent).map_err(io_error("create log directory", parent))?;
        }
        let record = ContainerRecord {
            id: id.to_string(),
            stop_signal: spec
                .image
                .stop_signal
                .clone()
                .unwrap_or_else(|| "SIGTERM".to_string()),
            spec,
            created_at: state::now_rfc3339(),
            runc_root: self.config.runc_root.clone(),
            runc_binary: self.config.runc_binary.clone(),
            cgroups_path,
        };
        state::write_json(&container_dir.join(state::RECORD_FILE), &record)?;
        let shim_log_path = container_dir.join(state::SHIM_LOG_FILE);
        let shim_log =
            fs::File::create(&shim_log_path).map_err(io_error("create", &shim_log_path))?;
        let shim_log_copy = shim_log
            .try_clone()
            .map_err(io_error("duplicate", &shim_log_path))?;
        let prepared = started.elapsed();
        let status = Command::new(&self.config.podnet_binary)
            .arg("shim")
            .arg(&container_dir)
            .stdin(Stdio::null())
            .stdout(shim_log)
            .stderr(shim_log_copy)
            .status()
            .map_err(|error| RuntimeError::Command {
                command: format!(
                    "{} shim {}",
                    self.config.podnet_binary.display(),
                    container_dir.display()
                ),
                reason: error.to_string(),
            })?;
        tracing::debug!(
            container = id,
            prepare_ms = prepared.as_secs_f64() * 1000.0,
            shim_ms = (started.elapsed() - prepared).as_secs_f64() * 1000.0,
            "container start"
        );
        if !status.success() {
            let reason = fs::read_to_string(container_dir.join(state::START_ERROR_FILE))
                .or_else(|_| fs::read_to_string(&shim_log_path))
                .unwrap_or_else(|_| format!("the shim exited with {status}"));
            return Err(RuntimeError::StartFailed {
                id: id.to_string(),
                reason: reason.trim().to_string(),
            });
        }
        Ok(())
    }

    /// Every container in the state directory.
    pub fn list(&self) -> Result<Vec<ContainerStatus>> {
        self.list_matching(|_| true)
    }

    /// The containers of one pod (by pod uid). Costs a directory listing
    /// plus the state files of that pod's containers only, so syncing every
    /// pod of a node stays linear in the number of containers.
    pub fn list_pod(&self, pod_uid: &str) -> Result<Vec<ContainerStatus>> {
        self.list_matching(|summary| summary.pod.uid == pod_uid)
    }

    fn list_matching(
        &self,
        wanted: impl Fn(&RecordSummary) -> bool,
    ) -> Result<Vec<ContainerStatus>> {
        let containers = self.config.state_dir.join("containers");
        let entries = fs::read_dir(&containers).map_err(io_error("read directory", &containers))?;
        let ids: Vec<String> = entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().to_string())
            .collect();
        // Forget removed containers (also those removed by another process).
        {
            let present: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            self.records_lock()
                .retain(|id, _| present.contains(id.as_str()));
        }
        let mut statuses = Vec::new();
        for id in ids {
            let Ok(summary) = self.summary(&id) else {
                // Being created (no container.json yet) or unreadable.
                continue;
            };
            if !wanted(&summary) {
                continue;
            }
            if let Ok(status) = self.status_with(&id, &summary) {
                statuses.push(status);
            }
        }
        statuses.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(statuses)
    }

    fn records_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Arc<RecordSummary>>> {
        self.records
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The immutable facts of a container: from memory, else from its
    /// `container.json` (read once).
    fn summary(&self, id: &str) -> Result<Arc<RecordSummary>> {
        if let Some(summary) = self.records_lock().get(id) {
            return Ok(summary.clone());
        }
        let summary = Arc::new(RecordSummary::of(&self.record(id)?));
        self.records_lock().insert(id.to_string(), summary.clone());
        Ok(summary)
    }

    fn record(&self, id: &str) -> Result<ContainerRecord> {
        state::read_json(&self.container_dir(id).join(state::RECORD_FILE))?
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })
    }

    /// runc's view: `Some("running")`, `Some("stopped")`, ... or `None` when runc does not know it.
    fn runc_status(&self, id: &str) -> Option<String> {
        let output = self
            .runc()
            .arg("state")
            .arg(id)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        if !output.status.success() {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        value["status"].as_str().map(str::to_string)
    }

    /// Current status of one container.
    pub fn status(&self, id: &str) -> Result<ContainerStatus> {
        let summary = self.summary(id)?;
        self.status_with(id, &summary)
    }

    fn status_with(&self, id: &str, record: &RecordSummary) -> Result<ContainerStatus> {
        let container_dir = self.container_dir(id);
        let started: Option<StartedRecord> =
            state::read_json(&container_dir.join(state::STARTED_FILE))?;
        let exited: Option<ExitRecord> = state::read_json(&container_dir.join(state::EXIT_FILE))?;
        let state = match (&started, &exited) {
            (_, Some(_)) => ContainerState::Exited,
            (None, None) => ContainerState::Created,
            // The shim waits for the container's process and records its
            // exit, so a live shim means a running container (or one whose
            // exit is recorded in a moment). Checking it reads /proc only;
            // asking runc costs a process per container per call.
            (Some(_), None) if self.shim_alive(id) => ContainerState::Running,
            (Some(_), None) => match self.runc_status(id).as_deref() {
                Some("running") | Some("paused") => ContainerState::Running,
                _ => ContainerState::Unknown,
            },
        };
        Ok(ContainerStatus {
            id: id.to_string(),
            pod: record.pod.clone(),
            container_name: record.container_name.clone(),
            attempt: record.attempt,
            image: record.image.clone(),
            image_id: record.image_id.clone(),
            state,
            pid: started
                .as_ref()
                .filter(|_| state == ContainerState::Running)
                .map(|s| s.pid),
            created_at: record.created_at.clone(),
            started_at: started.map(|s| s.started_at),
            finished_at: exited.as_ref().map(|e| e.finished_at.clone()),
            exit_code: exited.as_ref().map(|e| e.exit_code),
            reason: exited.as_ref().map(|e| e.reason.clone()),
            message: exited.map(|e| e.message).filter(|m| !m.is_empty()),
            log_path: record.log_path.clone(),
        })
    }

    /// The shim's pid if it is still running (checked against its command
    /// line so a recycled pid is not mistaken for it).
    fn shim_pid(&self, id: &str) -> Option<i32> {
        let container_dir = self.container_dir(id);
        let pid: i32 = fs::read_to_string(container_dir.join(state::SHIM_PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let command_line = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let needle = container_dir.as_os_str().as_encoded_bytes();
        command_line
            .windows(needle.len())
            .any(|window| window == needle)
            .then_some(pid)
    }

    fn shim_alive(&self, id: &str) -> bool {
        self.shim_pid(id).is_some()
    }

    fn wait_for_exit(&self, id: &str, timeout: Duration) -> bool {
        let exit_file = self.container_dir(id).join(state::EXIT_FILE);
        let deadline = Instant::now() + timeout;
        loop {
            if exit_file.exists() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&self, id: &str, signal: &str) {
        let _ = self
            .runc()
            .arg("kill")
            .arg(id)
            .arg(signal)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops a container: its StopSignal (or SIGTERM), then SIGKILL after
    /// `grace`. Blocking. Returns the final status.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<ContainerStatus> {
        let record = self.record(id)?;
        let status = self.status(id)?;
        if matches!(
            status.state,
            ContainerState::Running | ContainerState::Unknown
        ) {
            if !grace.is_zero() {
                self.kill(id, &record.stop_signal);
            }
            if !self.wait_for_exit(id, grace) {
                self.kill(id, "SIGKILL");
                if !self.wait_for_exit(id, Duration::from_secs(10)) && !self.shim_alive(id) {
                    // The shim is gone, so nobody else will record the exit.
                    let _ = self
                        .runc()
                        .arg("delete")
                        .arg("--force")
                        .arg(id)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    state::write_json(
                        &self.container_dir(id).join(state::EXIT_FILE),
                        &ExitRecord {
                            exit_code: 137,
                            reason: "Unknown".to_string(),
                            message: "the container's shim was gone; the exit code is assumed"
                                .to_string(),
                            finished_at: state::now_rfc3339(),
                        },
                    )?;
                }
            }
        }
        self.status(id)
    }

    /// Removes a container: kills it if needed, unmounts its rootfs and
    /// deletes its state. Idempotent and converges from half-done removals.
    pub fn remove(&self, id: &str) -> Result<()> {
        let container_dir = self.container_dir(id);
        if !container_dir.exists() {
            return Ok(());
        }
        let record = self.record(id).ok();
        let _ = self
            .runc()
            .arg("delete")
            .arg("--force")
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Give the shim a moment to record the exit and leave on its own.
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Some(pid) = self.shim_pid(id) {
            if Instant::now() >= deadline {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let rootfs = rootfs_of(&container_dir);
        unmount_all(&rootfs)?;
        fs::remove_dir_all(&container_dir).map_err(io_error("delete", &container_dir))?;
        self.records_lock().remove(id);
        if let Some(record) = record {
            remove_empty_pod_cgroups(&record.cgroups_path);
        }
        Ok(())
    }

    /// Runs a command in a running container (`kubectl exec`).
    pub async fn exec(&self, id: &str, options: ExecOptions) -> Result<ExecProcess> {
        let status = self.status(id)?;
        if status.state != ContainerState::Running {
            return Err(RuntimeError::Command {
                command: format!("runc exec {id}"),
                reason: format!("container {id} is not running"),
            });
        }
        if options.command.is_empty() {
            return Err(RuntimeError::Command {
                command: format!("runc exec {id}"),
                reason: "no command given".to_string(),
            });
        }
        let mut command = tokio::process::Command::new(&self.config.runc_binary);
        command
            .arg("--root")
            .arg(&self.config.runc_root)
            .arg("exec");
        command.kill_on_drop(true);
        if options.tty {
            command.arg("--tty");
        }
        command.arg(id).args(&options.command);
        if options.tty {
            // runc exec --tty in the foreground copies between its own
            // terminal and the container's; ours is a pty whose master we keep.
            let pty = nix::pty::openpty(None, None).map_err(|errno| RuntimeError::Command {
                command: "openpty".to_string(),
                reason: errno.to_string(),
            })?;
            if let Some((columns, rows)) = options.initial_size {
                set_window_size(pty.master.as_raw_fd(), columns, rows)?;
            }
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(io_error("duplicate", "pty"));
            command.stdin(Stdio::from(dup(&pty.slave)?));
            command.stdout(Stdio::from(dup(&pty.slave)?));
            command.stderr(Stdio::from(dup(&pty.slave)?));
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn().map_err(|error| RuntimeError::Command {
                command: format!("runc exec --tty {id}"),
                reason: error.to_string(),
            })?;
            drop(pty.slave);
            let reader = tokio::fs::File::from_std(fs::File::from(dup(&pty.master)?));
            let writer = tokio::fs::File::from_std(fs::File::from(dup(&pty.master)?));
            Ok(ExecProcess {
                stdin: options
                    .stdin
                    .then(|| Box::pin(writer) as Pin<Box<dyn AsyncWrite + Send>>),
                stdout: Some(Box::pin(EioIsEof(reader))),
                stderr: None,
                child,
                pty_master: Some(pty.master),
            })
        } else {
            command
                .stdin(if options.stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().map_err(|error| RuntimeError::Command {
                command: format!("runc exec {id}"),
                reason: error.to_string(),
            })?;
            Ok(ExecProcess {
                stdin: child
                    .stdin
                    .take()
                    .map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>),
                stdout: child
                    .stdout
                    .take()
                    .map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>),
                stderr: child
                    .stderr
                    .take()
                    .map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>),
                child,
                pty_master: None,
            })
        }
    }

    /// Runs a command in a running container to completion (exec probes):
    /// its exit code and combined output (capped at 10 KiB), or an error when
    /// it cannot be started or outlives `timeout` (it is killed then).
    /// Blocking.
    pub fn exec_sync(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>)> {
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        let status = self.status(id)?;
        if status.state != ContainerState::Running {
            return Err(RuntimeError::Command {
                command: format!("runc exec {id}"),
                reason: format!("container {id} is not running"),
            });
        }
        if command.is_empty() {
            return Err(RuntimeError::Command {
                command: format!("runc exec {id}"),
                reason: "no command given".to_string(),
            });
        }
        let (mut reader, writer) = std::io::pipe().map_err(io_error("create pipe", "runc exec"))?;
        let writer_copy = writer
            .try_clone()
            .map_err(io_error("duplicate pipe", "runc exec"))?;
        let mut child = self
            .runc()
            .arg("exec")
            .arg(id)
            .args(command)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_copy)
            .spawn()
            .map_err(|error| RuntimeError::Command {
                command: format!("runc exec {id}"),
                reason: error.to_string(),
            })?;
        // The child holds the only write ends now: the reader sees EOF when it exits.
        let collector = std::thread::spawn(move || {
            let mut output = Vec::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                if output.len() < 10 * 1024 {
                    output.extend_from_slice(&buffer[..n]);
                }
            }
            output
        });
        let deadline = Instant::now() + timeout;
        let exit = loop {
            match child.try_wait() {
                Ok(Some(exit)) => break Some(exit),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(error) => {
                    return Err(RuntimeError::Command {
                        command: format!("runc exec {id}"),
                        reason: error.to_string(),
                    })
                }
            }
        };
        match exit {
            Some(exit) => {
                let output = collector.join().unwrap_or_default();
                let code = exit
                    .code()
                    .unwrap_or_else(|| 128 + exit.signal().unwrap_or(0));
                Ok((code, output))
            }
            None => {
                // runc forwards the signals it can catch to the process it
                // started; SIGKILL then ends runc itself.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                std::thread::sleep(Duration::from_millis(100));
                let _ = child.kill();
                let _ = child.wait();
                Err(RuntimeError::Command {
                    command: format!("runc exec {id} {}", command.join(" ")),
                    reason: format!("timed out after {}s", timeout.as_secs_f64()),
                })
            }
        }
    }

    /// Attaches to a running container's output (and stdin when the spec allows).
    pub async fn attach(&self, id: &str) -> Result<(AttachReader, AttachWriter)> {
        let container_dir = self.container_dir(id);
        if !container_dir.exists() {
            return Err(RuntimeError::ContainerNotFound { id: id.to_string() });
        }
        // Socket paths are limited to 108 bytes; going through an open
        // directory descriptor keeps the path short however deep the state dir is.
        let directory = fs::File::open(&container_dir).map_err(io_error("open", &container_dir))?;
        let short_path = format!(
            "/proc/self/fd/{}/{}",
            directory.as_raw_fd(),
            state::ATTACH_SOCKET
        );
        let stream = tokio::net::UnixStream::connect(&short_path)
            .await
            .map_err(|error| RuntimeError::Attach {
                id: id.to_string(),
                reason: format!("the container is not running or its shim is gone ({error})"),
            })?;
        drop(directory);
        let (read, write) = stream.into_split();
        Ok((
            AttachReader { stream: read },
            AttachWriter { stream: write },
        ))
    }

    /// Writes the container's log to `out` (`kubectl logs`); with
    /// `follow`, until the container exits.
    pub async fn logs<W: AsyncWrite + Unpin>(
        &self,
        id: &str,
        options: &LogOptions,
        out: &mut W,
    ) -> Result<()> {
        let record = self.record(id)?;
        let exit_file = self.container_dir(id).join(state::EXIT_FILE);
        let runtime = self.clone();
        let id = id.to_string();
        write_log(
            &record.spec.log_path,
            options,
            move || exit_file.exists() || !runtime.container_dir(&id).exists(),
            out,
        )
        .await
    }
}

/// Unmounts everything stacked on `target` (ignoring "not mounted").
fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..16 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(RuntimeError::Mount {
                    action: "unmount",
                    target: target.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Removes the pod-level cgroup directories runc leaves behind once the
/// pod's last container is gone (rmdir fails harmlessly while others remain).
fn remove_empty_pod_cgroups(cgroups_path: &str) {
    let Some(pod_path) = Path::new(cgroups_path.trim_start_matches('/')).parent() else {
        return;
    };
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = hierarchies.flatten().map(|h| h.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let _ = fs::remove_dir(root.join(pod_path));
    }
}

/// This process's hard RLIMIT_NOFILE.
fn open_file_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_max
}

/// Sets a terminal's size with TIOCSWINSZ.
pub(crate) fn set_window_size(fd: std::os::fd::RawFd, columns: u16, rows: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    let status = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) };
    if status != 0 {
        return Err(io_error("resize terminal", "pty")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// A pty master reports EIO once the other side is closed; readers expect EOF.
struct EioIsEof<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for EioIsEof<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(context, buffer) {
            std::task::Poll::Ready(Err(error)) if error.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
