//! Pod workers: make the node's sandboxes and containers match the pods bound
//! to it, and report their status. Every sync is idempotent and converges
//! from whatever is on disk and in the runtime, including half-done work left
//! by a crash or an agent restart (running containers are adopted, not
//! restarted).

use crate::backend::{
    ContainerBackend, ContainerLaunch, ImageInfo, Mount, RuntimeContainer, RuntimeState, Sandbox,
    SandboxBackend, SandboxRequest,
};
use crate::dns::{pod_hostname, pod_hosts_file, pod_resolv_conf, ClusterDns, ResolvConf};
use crate::probes::{ProbeEvent, ProbeKind, ProbePlan, ProbeSink, ProbeTarget, Prober};
use crate::status::{pod_status, ContainerObservation, ObservedState, PodObservation, Terminated};
use crate::AgentError;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use podnet_controllers::events::{EventSource, EventType, Recorder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Shared state of the pod workers.
pub struct PodManager {
    pub node_name: String,
    pub host_ip: String,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub cluster_dns: ClusterDns,
    pub node_resolv: ResolvConf,
    pub sandboxes: Arc<dyn SandboxBackend>,
    pub containers: Arc<dyn ContainerBackend>,
    pub pods_api: Api<Pod>,
    /// Per-pod serialisation of syncs.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PodMemory>>>>,
    /// Liveness, readiness and startup probe workers and their results.
    pub prober: Prober,
    /// Events about pods (`kubectl describe pod`), reported as the kubelet.
    events: Recorder,
    /// Asks the pod workers to sync a pod (by uid) soon; set by the agent loop.
    sync_trigger: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
    /// NetworkPolicy engine: a pod's rules are programmed before its containers start.
    pub netpol: std::sync::OnceLock<Arc<crate::netpol::NetpolEngine>>,
    /// Bounds how many syncs create sandboxes or start containers at once.
    /// A sync keeps its slot until it ends, and slots are handed out in
    /// request order, so a burst of new pods starts in arrival order and
    /// each pod finishes early instead of all of them sharing the CPU and
    /// finishing together.
    start_slots: Arc<tokio::sync::Semaphore>,
}

/// A sync's hold on one of [`PodManager`]'s start slots, taken the first
/// time the sync needs to create something.
type StartSlot = Option<tokio::sync::OwnedSemaphorePermit>;

/// How many syncs may create sandboxes and start containers at once: enough
/// to overlap the waits of one (runc, CNI plugin processes) with the work of
/// another, few enough that the node's cores are not shared by every pod of a
/// burst.
fn start_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(2)
        .clamp(2, 16)
}

/// What a pod worker remembers between syncs (not needed for correctness
/// after a restart: everything is re-derived from disk and the runtime).
#[derive(Default)]
pub struct PodMemory {
    last_status: Option<serde_json::Value>,
    /// The attempt (by container name) whose exit reset the restart back-off
    /// (it had run long enough); the back-off grows with attempts after it.
    backoff_reset_at: HashMap<String, u32>,
    /// The attempt (by container name) a BackOff event was last sent for.
    backoff_announced: HashMap<String, u32>,
    image_errors: HashMap<String, String>,
}

/// A container that ran this long before exiting restarts without back-off
/// (twice the maximum back-off, as the kubelet).
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

fn pod_key(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl PodManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_name: String,
        host_ip: String,
        state_dir: PathBuf,
        log_dir: PathBuf,
        cluster_dns: ClusterDns,
        node_resolv: ResolvConf,
        sandboxes: Arc<dyn SandboxBackend>,
        containers: Arc<dyn ContainerBackend>,
        pods_api: Api<Pod>,
    ) -> Self {
        PodManager {
            events: Recorder::new(
                pods_api.clone().into_client(),
                EventSource {
                    component: "kubelet".to_string(),
                    host: Some(node_name.clone()),
                },
            ),
            node_name,
            host_ip,
            state_dir,
            log_dir,
            cluster_dns,
            node_resolv,
            sandboxes,
            containers,
            pods_api,
            locks: Mutex::new(HashMap::new()),
            prober: Prober::default(),
            sync_trigger: Mutex::new(None),
            netpol: std::sync::OnceLock::new(),
            start_slots: Arc::new(tokio::sync::Semaphore::new(start_parallelism())),
        }
    }

    /// Takes a start slot for this sync unless it already holds one.
    async fn take_start_slot(&self, slot: &mut StartSlot) {
        if slot.is_none() {
            *slot = self.start_slots.clone().acquire_owned().await.ok();
        }
    }

    /// Where probe workers and other background work ask for a pod sync.
    pub fn set_sync_trigger(&self, trigger: tokio::sync::mpsc::UnboundedSender<String>) {
        *self.sync_trigger.lock().expect("sync trigger") = Some(trigger);
    }

    fn request_sync(&self, uid: &str) {
        if let Some(trigger) = self.sync_trigger.lock().expect("sync trigger").as_ref() {
            let _ = trigger.send(uid.to_string());
        }
    }

    /// Records an Event about `pod` (or one of its containers) in the background.
    fn event(
        &self,
        pod: &ObjectReference,
        container: Option<&str>,
        event_type: EventType,
        reason: &str,
        message: String,
    ) {
        let mut involved = pod.clone();
        if let Some(container) = container {
            involved.field_path = Some(format!("spec.containers{{{container}}}"));
        }
        let recorder = self.events.clone();
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(error) = recorder
                .record(&involved, event_type, &reason, &message)
                .await
            {
                tracing::debug!("recording event {reason}: {error}");
            }
        });
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.state_dir.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    fn lock_for(&self, uid: &str) -> Arc<tokio::sync::Mutex<PodMemory>> {
        self.locks
            .lock()
            .expect("locks")
            .entry(uid.to_string())
            .or_default()
            .clone()
    }

    fn forget(&self, uid: &str) {
        self.locks.lock().expect("locks").remove(uid);
    }

    /// The sandbox recorded on disk for a pod, if any.
    pub fn load_sandbox(&self, uid: &str) -> Option<Sandbox> {
        let text = std::fs::read_to_string(self.pod_dir(uid).join("sandbox.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Pod uids that have state on this node.
    pub fn known_pod_uids(&self) -> Vec<String> {
        std::fs::read_dir(self.pods_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Bring one pod to its desired state.
    pub async fn sync(self: &Arc<Self>, pod: Pod) -> Result<(), AgentError> {
        let uid = pod_key(&pod);
        // The agent's own mirror pod only reports; it has nothing to run.
        if uid.is_empty() || crate::mirror::is_mirror_pod(&pod) {
            return Ok(());
        }
        let lock = self.lock_for(&uid);
        let mut memory = lock.lock().await;
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(&uid, Some(&pod)).await?;
            drop(memory);
            self.forget(&uid);
            return Ok(());
        }
        self.sync_running(&pod, &mut memory).await
    }

    /// Sync the pod with this uid as it is when its turn comes: `lookup`
    /// gives the newest object (`None`: gone from the API, so torn down).
    pub async fn sync_latest(
        self: &Arc<Self>,
        uid: &str,
        lookup: impl FnOnce(&str) -> Option<Pod>,
    ) -> Result<(), AgentError> {
        let lock = self.lock_for(uid);
        let mut memory = lock.lock().await;
        let pod = lookup(uid);
        tracing::debug!(pod = uid, found = pod.is_some(), "sync");
        match pod {
            Some(pod) if crate::mirror::is_mirror_pod(&pod) => Ok(()),
            Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                self.sync_running(&pod, &mut memory).await
            }
            pod => {
                self.terminate(uid, pod.as_ref()).await?;
                drop(memory);
                self.forget(uid);
                Ok(())
            }
        }
    }

    /// Tear down a pod that is gone from the API (or being deleted).
    pub async fn terminate(
        self: &Arc<Self>,
        uid: &str,
        pod: Option<&Pod>,
    ) -> Result<(), AgentError> {
        let grace = pod
            .and_then(|p| p.metadata.deletion_grace_period_seconds)
            .or_else(|| {
                pod.and_then(|p| p.spec.as_ref())
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30)
            .max(0) as u64;
        let containers = self.containers.clone();
        let uid_owned = uid.to_string();
        let stop_signals: HashMap<String, Option<String>> = HashMap::new();
        blocking(move || {
            let ours: Vec<RuntimeContainer> = containers
                .list_pod(&uid_owned)
                .map_err(AgentError::Runtime)?;
            // Stop in parallel so the grace period is not multiplied.
            let handles: Vec<_> = ours
                .iter()
                .filter(|c| {
                    matches!(
                        c.state,
                        RuntimeState::Running { .. } | RuntimeState::Created
                    )
                })
                .map(|c| {
                    let containers = containers.clone();
                    let id = c.id.clone();
                    let signal = stop_signals.get(&c.name).cloned().flatten();
                    std::thread::spawn(move || {
                        containers.stop(&id, Duration::from_secs(grace), signal.as_deref())
                    })
                })
                .collect();
            for handle in handles {
                if let Ok(Err(error)) = handle.join() {
                    tracing::warn!("stopping a container of pod {uid_owned}: {error}");
                }
            }
            for container in &ours {
                containers
                    .remove(&container.id)
                    .map_err(AgentError::Runtime)?;
            }
            Ok(())
        })
        .await?;
        if let Some(sandbox) = self.load_sandbox(uid) {
            let sandboxes = self.sandboxes.clone();
            blocking(move || sandboxes.remove(&sandbox).map_err(AgentError::Network)).await?;
        }
        self.prober.retain(uid, &[]);
        // Logs go with the pod, as the kubelet removes them.
        if let Ok(entries) = std::fs::read_dir(&self.log_dir) {
            let suffix = format!("_{uid}");
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().ends_with(&suffix) {
                    let path = entry.path();
                    if let Err(error) = std::fs::remove_dir_all(&path) {
                        tracing::warn!("removing pod logs {}: {error}", path.display());
                    }
                }
            }
        }
        let pod_dir = self.pod_dir(uid);
        crate::volumes::remove_pod_volumes(&pod_dir)?;
        match std::fs::remove_dir_all(&pod_dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(AgentError::io(&pod_dir, error)),
        }
        if let Some(pod) = pod {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_string()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.pods_api_for(pod).delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(error) => return Err(AgentError::api("finish pod deletion")(error)),
            }
        }
        tracing::info!(pod = uid, "pod torn down");
        Ok(())
    }

    fn pods_api_for(&self, pod: &Pod) -> Api<Pod> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.pods_api.clone().into_client(), namespace)
    }

    async fn ensure_sandbox(&self, pod: &Pod, slot: &mut StartSlot) -> Result<Sandbox, AgentError> {
        let uid = pod_key(pod);
        if let Some(sandbox) = self.load_sandbox(&uid) {
            return Ok(sandbox);
        }
        // A new sandbox: the pod's files that do not depend on its IP are
        // written on another thread meanwhile (the pass after the sandbox
        // then finds them in place and only writes `hosts`).
        let early_files = self.write_files_without_ip_early(pod);
        let created = self.create_sandbox(pod, uid, slot).await;
        // Its errors come back from that pass, which repeats it.
        let _ = early_files.await;
        created
    }

    async fn create_sandbox(
        &self,
        pod: &Pod,
        uid: String,
        slot: &mut StartSlot,
    ) -> Result<Sandbox, AgentError> {
        self.take_start_slot(slot).await;
        let pod_dir = self.pod_dir(&uid);
        std::fs::create_dir_all(&pod_dir).map_err(|e| AgentError::io(&pod_dir, e))?;
        // Record the intended sandbox id before creating anything, so a crash
        // in the middle leaves a name the next sync can clean up.
        let intent = pod_dir.join("sandbox-intent");
        let id = match std::fs::read_to_string(&intent) {
            Ok(previous) => {
                // A half-created sandbox from before: remove its remains first.
                let previous = previous.trim().to_string();
                let stale = Sandbox {
                    id: previous.clone(),
                    netns_path: PathBuf::new(),
                    ipc_path: pod_dir.join("ns/ipc"),
                    uts_path: pod_dir.join("ns/uts"),
                    ip: String::new(),
                    created: String::new(),
                };
                let sandboxes = self.sandboxes.clone();
                blocking(move || sandboxes.remove(&stale).map_err(AgentError::Network)).await?;
                new_sandbox_id()
            }
            Err(_) => new_sandbox_id(),
        };
        std::fs::write(&intent, &id).map_err(|e| AgentError::io(&intent, e))?;
        let request = SandboxRequest {
            id,
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: uid.clone(),
            hostname: pod_hostname(pod),
            pod_dir: pod_dir.clone(),
        };
        let sandboxes = self.sandboxes.clone();
        let sandbox =
            blocking(move || sandboxes.create(&request).map_err(AgentError::Network)).await?;
        let record = pod_dir.join("sandbox.json");
        let text = serde_json::to_string_pretty(&sandbox).expect("sandbox serialises");
        let temporary = pod_dir.join("sandbox.json.tmp");
        std::fs::write(&temporary, text).map_err(|e| AgentError::io(&temporary, e))?;
        std::fs::rename(&temporary, &record).map_err(|e| AgentError::io(&record, e))?;
        let _ = std::fs::remove_file(&intent);
        Ok(sandbox)
    }

    /// Writes, on a blocking thread, what [`PodManager::write_pod_files`]
    /// and the volumes write that does not need the pod's IP.
    fn write_files_without_ip_early(
        &self,
        pod: &Pod,
    ) -> tokio::task::JoinHandle<Result<(), AgentError>> {
        let pod = pod.clone();
        let pod_dir = self.pod_dir(&pod_key(&pod));
        let resolv = pod_resolv_conf(&pod, &self.node_resolv, &self.cluster_dns).render();
        tokio::task::spawn_blocking(move || {
            write_files_without_ip(&pod_dir.join("etc"), &pod, &resolv)?;
            crate::volumes::prepare_volumes(&pod, &pod_dir).map(|_| ())
        })
    }

    fn write_pod_files(
        &self,
        pod: &Pod,
        sandbox: &Sandbox,
    ) -> Result<(PathBuf, PathBuf, PathBuf), AgentError> {
        let dir = self.pod_dir(&pod_key(pod)).join("etc");
        let resolv = pod_resolv_conf(pod, &self.node_resolv, &self.cluster_dns).render();
        let (resolv, hostname) = write_files_without_ip(&dir, pod, &resolv)?;
        let hosts = dir.join("hosts");
        write_if_changed(&hosts, &pod_hosts_file(pod, &sandbox.ip, &self.cluster_dns))?;
        Ok((hosts, resolv, hostname))
    }

    async fn sync_running(
        self: &Arc<Self>,
        pod: &Pod,
        memory: &mut PodMemory,
    ) -> Result<(), AgentError> {
        let uid = pod_key(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut observation = PodObservation {
            host_ip: self.host_ip.clone(),
            start_time: Some(
                pod.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
                    .unwrap_or_else(jiff::Timestamp::now),
            ),
            ..Default::default()
        };
        // Held from the first creation step to the end of this sync.
        let mut slot: StartSlot = None;
        // Where a pod start's time goes (debug log `pod start phases`).
        let mut phases = StartPhases::new();
        let sandbox = match self.ensure_sandbox(pod, &mut slot).await {
            Ok(sandbox) => sandbox,
            Err(error) => {
                observation.sandbox_error = Some(format!("failed to create pod sandbox: {error}"));
                for container in &spec.containers {
                    observation.containers.push(waiting(
                        container,
                        "ContainerCreating",
                        Some(error.to_string()),
                    ));
                }
                self.report(pod, &observation, memory).await?;
                return Err(error);
            }
        };
        phases.mark("sandbox");
        observation.sandbox_ready = true;
        observation.pod_ip = Some(sandbox.ip.clone());
        if let Some(netpol) = self.netpol.get() {
            netpol.admit_pod(pod, &sandbox.ip).await?;
        }
        phases.mark("netpol");
        let (hosts, resolv, hostname) = self.write_pod_files(pod, &sandbox)?;
        let volume_mounts = crate::volumes::prepare_volumes(pod, &self.pod_dir(&uid))?;
        phases.mark("files");

        // A few small state files of this pod's containers: read in place
        // rather than on a blocking-pool thread (every pod is resynced each
        // second, and a thread per concurrent sync only costs memory).
        let ours: Vec<RuntimeContainer> = self
            .containers
            .list_pod(&uid)
            .map_err(AgentError::Runtime)?;

        let context = LaunchContext {
            pod,
            sandbox: &sandbox,
            hosts: &hosts,
            resolv: &resolv,
            hostname: &hostname,
            volume_mounts: &volume_mounts,
        };
        // Init containers run one at a time, in order, each to success.
        let mut init_done = true;
        for container in spec.init_containers.iter().flatten() {
            if !init_done {
                observation
                    .init_containers
                    .push(waiting(container, "PodInitializing", None));
                continue;
            }
            let latest = latest_attempt(&ours, &container.name);
            let init_policy = if restart_policy == "Always" {
                "OnFailure"
            } else {
                restart_policy.as_str()
            };
            let observed = self
                .drive_container(
                    container,
                    latest,
                    &ours,
                    init_policy,
                    &context,
                    memory,
                    &mut slot,
                )
                .await;
            if !matches!(&observed.state, ObservedState::Terminated(t) if t.exit_code == 0) {
                init_done = false;
            }
            observation.init_containers.push(observed);
        }
        for container in &spec.containers {
            if !init_done {
                observation
                    .containers
                    .push(waiting(container, "PodInitializing", None));
                continue;
            }
            let latest = latest_attempt(&ours, &container.name);
            let observed = self
                .drive_container(
                    container,
                    latest,
                    &ours,
                    &restart_policy,
                    &context,
                    memory,
                    &mut slot,
                )
                .await;
            observation.containers.push(observed);
        }
        let running: Vec<String> = ours
            .iter()
            .filter(|c| matches!(c.state, RuntimeState::Running { .. }))
            .map(|c| c.id.clone())
            .collect();
        phases.mark("containers");
        // Creation is done; the status write does not need a slot.
        let created = slot.is_some();
        drop(slot);
        self.prober.retain(&uid, &running);
        self.remove_old_attempts(pod, &ours).await;
        let reported = self.report(pod, &observation, memory).await;
        phases.mark("status");
        if created {
            tracing::debug!(pod = uid, phases = %phases, "pod start phases");
        }
        reported
    }

    /// Start, restart or leave one container, and say what it looks like.
    #[allow(clippy::too_many_arguments)]
    async fn drive_container(
        self: &Arc<Self>,
        container: &Container,
        latest: Option<&RuntimeContainer>,
        all: &[RuntimeContainer],
        restart_policy: &str,
        context: &LaunchContext<'_>,
        memory: &mut PodMemory,
        slot: &mut StartSlot,
    ) -> ContainerObservation {
        let pod_ref = pod_reference(context.pod);
        let should_start = match latest.map(|c| &c.state) {
            None => true,
            Some(RuntimeState::Running { .. }) | Some(RuntimeState::Created) => false,
            Some(RuntimeState::Exited { exit_code, .. }) => match restart_policy {
                "Always" => true,
                "OnFailure" => *exit_code != 0,
                _ => false,
            },
        };
        let mut observed = match latest {
            Some(current) => observe(container, current, all),
            None => waiting(container, "ContainerCreating", None),
        };
        if !should_start {
            if let (ObservedState::Running { started_at }, Some(current)) =
                (&observed.state, latest)
            {
                let (started, ready) = self.drive_probes(container, current, *started_at, context);
                observed.started = started;
                observed.ready = ready;
            }
            return observed;
        }
        let attempt = latest.map(|c| c.attempt + 1).unwrap_or(0);
        if let Some(previous) = latest {
            // A restart: honour the back-off, counted from the exit.
            if let RuntimeState::Exited {
                started_at,
                finished_at,
                ..
            } = &previous.state
            {
                if let (Some(started), Some(finished)) = (started_at, finished_at) {
                    let ran = finished.duration_since(*started).unsigned_abs();
                    if ran >= BACKOFF_RESET_AFTER {
                        memory
                            .backoff_reset_at
                            .insert(container.name.clone(), previous.attempt);
                    }
                }
                let reset_at = memory
                    .backoff_reset_at
                    .get(&container.name)
                    .copied()
                    .unwrap_or(0);
                let delay = crate::status::restart_delay(previous.attempt.saturating_sub(reset_at));
                let finished = finished_at.unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let elapsed = jiff::Timestamp::now()
                    .duration_since(finished)
                    .unsigned_abs();
                if elapsed < delay {
                    let pod_name = context.pod.metadata.name.as_deref().unwrap_or("");
                    let pod_namespace = context.pod.metadata.namespace.as_deref().unwrap_or("");
                    if memory
                        .backoff_announced
                        .insert(container.name.clone(), previous.attempt)
                        != Some(previous.attempt)
                    {
                        self.event(
                            &pod_ref,
                            Some(&container.name),
                            EventType::Warning,
                            "BackOff",
                            format!(
                                "Back-off restarting failed container {} in pod {pod_name}_{pod_namespace}({})",
                                container.name,
                                pod_key(context.pod)
                            ),
                        );
                    }
                    return ContainerObservation {
                        state: ObservedState::Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: Some(format!(
                                "back-off {}s restarting failed container={} pod={pod_name}_{pod_namespace}({})",
                                delay.as_secs(),
                                container.name,
                                pod_key(context.pod)
                            )),
                        },
                        last_terminated: terminated_of(previous),
                        ..observed
                    };
                }
            }
        }
        let image_reference = container.image.clone().unwrap_or_default();
        let containers = self.containers.clone();
        let reference = image_reference.clone();
        let image = match blocking(move || {
            containers
                .ensure_image(&reference)
                .map_err(AgentError::Runtime)
        })
        .await
        {
            Ok(image) => {
                memory.image_errors.remove(&container.name);
                image
            }
            Err(error) => {
                let message = format!("Failed to pull image \"{image_reference}\": {error}");
                let seen_before = memory
                    .image_errors
                    .insert(container.name.clone(), message.clone())
                    .is_some();
                self.event(
                    &pod_ref,
                    Some(&container.name),
                    EventType::Warning,
                    if seen_before { "BackOff" } else { "Failed" },
                    if seen_before {
                        format!("Back-off pulling image \"{image_reference}\"")
                    } else {
                        message.clone()
                    },
                );
                return ContainerObservation {
                    state: ObservedState::Waiting {
                        reason: if seen_before {
                            "ImagePullBackOff"
                        } else {
                            "ErrImagePull"
                        }
                        .into(),
                        message: Some(if seen_before {
                            format!("Back-off pulling image \"{image_reference}\": {error}")
                        } else {
                            message
                        }),
                    },
                    last_terminated: latest.and_then(terminated_of),
                    ..observed
                };
            }
        };
        // After the image: a sync that did not create the sandbox does not
        // hold a slot while an image is being built.
        self.take_start_slot(slot).await;
        let launch = build_launch(container, attempt, image, context, &self.log_dir);
        let containers = self.containers.clone();
        match blocking(move || containers.start(&launch).map_err(AgentError::Runtime)).await {
            Ok(id) => {
                tracing::info!(container = container.name, id, "started container");
                self.event(
                    &pod_ref,
                    Some(&container.name),
                    EventType::Normal,
                    "Started",
                    format!("Started container {}", container.name),
                );
                let has_startup = container.startup_probe.is_some();
                ContainerObservation {
                    container_id: Some(format!("podnet://{id}")),
                    state: ObservedState::Running {
                        started_at: jiff::Timestamp::now(),
                    },
                    last_terminated: latest.and_then(terminated_of),
                    restart_count: attempt as i32,
                    ready: container.readiness_probe.is_none() && !has_startup,
                    started: !has_startup,
                    ..observed
                }
            }
            Err(error) => {
                self.event(
                    &pod_ref,
                    Some(&container.name),
                    EventType::Warning,
                    "Failed",
                    format!("Error: {error}"),
                );
                observed.state = ObservedState::Waiting {
                    reason: "CreateContainerError".into(),
                    message: Some(error.to_string()),
                };
                observed
            }
        }
    }

    /// Keeps probe workers running for a running container and says whether
    /// it has started (startup probe) and is ready (readiness probe).
    fn drive_probes(
        self: &Arc<Self>,
        container: &Container,
        current: &RuntimeContainer,
        started_at: jiff::Timestamp,
        context: &LaunchContext<'_>,
    ) -> (bool, bool) {
        let mut plans = Vec::new();
        let mut kinds = Vec::new();
        for plan in ProbePlan::all_for(container) {
            match plan {
                Ok(plan) => {
                    kinds.push(plan.kind);
                    plans.push(plan);
                }
                Err(message) => {
                    tracing::warn!(container = container.name, "{message}");
                    // A probe that cannot run never succeeds.
                    kinds.push(if message.starts_with("Startup") {
                        ProbeKind::Startup
                    } else if message.starts_with("Readiness") {
                        ProbeKind::Readiness
                    } else {
                        ProbeKind::Liveness
                    });
                }
            }
        }
        if kinds.is_empty() {
            return (true, true);
        }
        let results = self.prober.results(&current.id);
        let started = !kinds.contains(&ProbeKind::Startup) || results.started == Some(true);
        let ready =
            started && (!kinds.contains(&ProbeKind::Readiness) || results.ready == Some(true));
        if !plans.is_empty() {
            let age = jiff::Timestamp::now()
                .duration_since(started_at)
                .unsigned_abs();
            let target = ProbeTarget {
                pod_uid: current.pod_uid.clone(),
                container_id: current.id.clone(),
                container_name: container.name.clone(),
                pod_ip: context.sandbox.ip.clone(),
                netns: context.sandbox.netns_path.clone(),
                started_at: std::time::Instant::now()
                    .checked_sub(age)
                    .unwrap_or_else(std::time::Instant::now),
            };
            self.prober.ensure(
                &target,
                &plans,
                self.containers.clone(),
                self.probe_sink(context.pod),
            );
        }
        (started, ready)
    }

    /// What probe workers of `pod` report goes to events, status syncs and
    /// (liveness/startup failures) container kills.
    fn probe_sink(self: &Arc<Self>, pod: &Pod) -> ProbeSink {
        let manager: Weak<PodManager> = Arc::downgrade(self);
        let pod_ref = pod_reference(pod);
        let pod_grace = Duration::from_secs(
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64,
        );
        Arc::new(move |uid: &str, id: &str, name: &str, event: ProbeEvent| {
            let Some(this) = manager.upgrade() else {
                return;
            };
            match event {
                ProbeEvent::Changed => this.request_sync(uid),
                ProbeEvent::Unhealthy { kind, message } => this.event(
                    &pod_ref,
                    Some(name),
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.title()),
                ),
                ProbeEvent::Kill { kind, grace } => {
                    this.event(
                        &pod_ref,
                        Some(name),
                        EventType::Normal,
                        "Killing",
                        format!(
                            "Container {name} failed {} probe, will be restarted",
                            kind.title().to_lowercase()
                        ),
                    );
                    let grace = grace.unwrap_or(pod_grace);
                    let containers = this.containers.clone();
                    let (id, uid) = (id.to_string(), uid.to_string());
                    let manager = manager.clone();
                    tokio::spawn(async move {
                        let stop_id = id.clone();
                        let stopped = tokio::task::spawn_blocking(move || {
                            containers.stop(&stop_id, grace, None)
                        })
                        .await;
                        if let Ok(Err(error)) = stopped {
                            tracing::warn!(container = id, "killing after a failed probe: {error}");
                        }
                        if let Some(this) = manager.upgrade() {
                            this.request_sync(&uid);
                        }
                    });
                }
            }
        })
    }

    /// Removes attempts older than the previous one of each container (the
    /// previous one stays for `lastState` and `kubectl logs --previous`), with
    /// their log files.
    async fn remove_old_attempts(&self, pod: &Pod, ours: &[RuntimeContainer]) {
        let stale: Vec<RuntimeContainer> = ours
            .iter()
            .filter(|c| matches!(c.state, RuntimeState::Exited { .. }))
            .filter(|c| {
                latest_attempt(ours, &c.name).is_some_and(|latest| c.attempt + 1 < latest.attempt)
            })
            .cloned()
            .collect();
        if stale.is_empty() {
            return;
        }
        let containers = self.containers.clone();
        let log_dir = self.pod_log_dir(pod);
        let _ = blocking(move || {
            for container in stale {
                if let Err(error) = containers.remove(&container.id) {
                    tracing::warn!(container = container.id, "removing an old attempt: {error}");
                    continue;
                }
                let log = log_dir
                    .join(&container.name)
                    .join(format!("{}.log", container.attempt));
                let _ = std::fs::remove_file(log);
            }
            Ok(())
        })
        .await;
    }

    fn pod_log_dir(&self, pod: &Pod) -> PathBuf {
        self.log_dir.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod_key(pod)
        ))
    }

    async fn report(
        &self,
        pod: &Pod,
        observation: &PodObservation,
        memory: &mut PodMemory,
    ) -> Result<(), AgentError> {
        let status = pod_status(
            pod,
            observation,
            pod.status.as_ref(),
            jiff::Timestamp::now(),
        );
        let mut value = serde_json::to_value(&status).expect("status serialises");
        // Transition times make every status look new: compare without them.
        let comparable = strip_times(&value);
        if memory.last_status.as_ref() == Some(&comparable) {
            return Ok(());
        }
        if let Some(object) = value.as_object_mut() {
            object.retain(|_, v| !v.is_null());
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({ "status": value });
        match self
            .pods_api_for(pod)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                memory.last_status = Some(comparable);
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(AgentError::api("update pod status")(error)),
        }
    }
}

/// Milliseconds spent in each step of a sync, for the debug log; when that
/// log is off (the normal case, with every pod synced each second) it
/// records nothing.
struct StartPhases {
    last: Option<std::time::Instant>,
    spent: Vec<(&'static str, f64)>,
}

impl StartPhases {
    fn new() -> StartPhases {
        StartPhases {
            last: tracing::enabled!(tracing::Level::DEBUG).then(std::time::Instant::now),
            spent: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        if let Some(last) = &mut self.last {
            let now = std::time::Instant::now();
            self.spent
                .push((phase, (now - *last).as_secs_f64() * 1000.0));
            *last = now;
        }
    }
}

impl std::fmt::Display for StartPhases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, (phase, ms)) in self.spent.iter().enumerate() {
            let separator = if index == 0 { "" } else { " " };
            write!(f, "{separator}{phase}={ms:.1}ms")?;
        }
        Ok(())
    }
}

struct LaunchContext<'a> {
    pod: &'a Pod,
    sandbox: &'a Sandbox,
    hosts: &'a Path,
    resolv: &'a Path,
    hostname: &'a Path,
    volume_mounts: &'a HashMap<String, PathBuf>,
}

fn strip_times(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(key, _)| !matches!(key.as_str(), "lastTransitionTime" | "lastProbeTime"))
                .map(|(key, v)| (key.clone(), strip_times(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(strip_times).collect())
        }
        other => other.clone(),
    }
}

/// Writes the pod's files in `etc` that do not depend on its IP
/// (`resolv.conf` with the text `resolv`, and `hostname`) and returns their
/// paths.
fn write_files_without_ip(
    etc: &Path,
    pod: &Pod,
    resolv: &str,
) -> Result<(PathBuf, PathBuf), AgentError> {
    std::fs::create_dir_all(etc).map_err(|e| AgentError::io(etc, e))?;
    let resolv_path = etc.join("resolv.conf");
    write_if_changed(&resolv_path, resolv)?;
    let hostname = etc.join("hostname");
    write_if_changed(&hostname, &format!("{}\n", pod_hostname(pod)))?;
    Ok((resolv_path, hostname))
}

fn new_sandbox_id() -> String {
    format!("cni-{}", uuid::Uuid::new_v4())
}

fn write_if_changed(path: &Path, content: &str) -> Result<(), AgentError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|e| AgentError::io(path, e))
}

/// An ObjectReference to a pod, for events.
fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// How an exited attempt ended (`lastState.terminated`).
fn terminated_of(container: &RuntimeContainer) -> Option<Terminated> {
    match &container.state {
        RuntimeState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => Some(Terminated {
            exit_code: *exit_code,
            signal: None,
            reason: reason.clone(),
            message: None,
            started_at: *started_at,
            finished_at: *finished_at,
            container_id: Some(format!("podnet://{}", container.id)),
        }),
        _ => None,
    }
}

fn latest_attempt<'a>(all: &'a [RuntimeContainer], name: &str) -> Option<&'a RuntimeContainer> {
    all.iter()
        .filter(|c| c.name == name)
        .max_by_key(|c| c.attempt)
}

fn waiting(container: &Container, reason: &str, message: Option<String>) -> ContainerObservation {
    ContainerObservation {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: String::new(),
        container_id: None,
        state: ObservedState::Waiting {
            reason: reason.into(),
            message,
        },
        last_terminated: None,
        restart_count: 0,
        ready: false,
        started: false,
    }
}

fn observe(
    container: &Container,
    current: &RuntimeContainer,
    all: &[RuntimeContainer],
) -> ContainerObservation {
    let previous = all
        .iter()
        .filter(|c| c.name == current.name && c.attempt + 1 == current.attempt)
        .find_map(|c| match &c.state {
            RuntimeState::Exited {
                exit_code,
                reason,
                started_at,
                finished_at,
            } => Some(Terminated {
                exit_code: *exit_code,
                signal: None,
                reason: reason.clone(),
                message: None,
                started_at: *started_at,
                finished_at: *finished_at,
                container_id: Some(format!("podnet://{}", c.id)),
            }),
            _ => None,
        });
    let state = match &current.state {
        RuntimeState::Created => ObservedState::Waiting {
            reason: "ContainerCreating".into(),
            message: None,
        },
        RuntimeState::Running { started_at } => ObservedState::Running {
            started_at: *started_at,
        },
        RuntimeState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => ObservedState::Terminated(Terminated {
            exit_code: *exit_code,
            signal: None,
            reason: reason.clone(),
            message: None,
            started_at: *started_at,
            finished_at: *finished_at,
            container_id: Some(format!("podnet://{}", current.id)),
        }),
    };
    ContainerObservation {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: current.image_id.clone(),
        container_id: Some(format!("podnet://{}", current.id)),
        state,
        last_terminated: previous,
        restart_count: current.attempt as i32,
        ready: false,
        started: true,
    }
}

/// The argv of a container by Kubernetes rules: `command` replaces the
/// image's entrypoint (and drops its cmd), `args` replaces the cmd.
pub fn resolve_argv(container: &Container, image: &ImageInfo) -> Vec<String> {
    let env: HashMap<String, String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    let expand = |arg: &String| expand_vars(arg, &env);
    match (&container.command, &container.args) {
        (Some(command), Some(args)) => command.iter().chain(args.iter()).map(expand).collect(),
        (Some(command), None) => command.iter().map(expand).collect(),
        (None, Some(args)) => image
            .entrypoint
            .iter()
            .cloned()
            .chain(args.iter().map(expand))
            .collect(),
        (None, None) => image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect(),
    }
}

/// `$(VAR)` expansion as the kubelet does it; `$$(VAR)` escapes.
pub fn expand_vars(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let tail = &rest[position..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(") {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.get(name) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&tail[..end + 3]),
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str(tail);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn build_launch(
    container: &Container,
    attempt: u32,
    image: ImageInfo,
    context: &LaunchContext<'_>,
    log_dir: &Path,
) -> ContainerLaunch {
    let pod = context.pod;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod_key(pod);
    let mut env: Vec<String> = image.env.clone();
    env.extend(crate::service_account::pod_env());
    let mut env_map: HashMap<String, String> = HashMap::new();
    for variable in container.env.iter().flatten() {
        let value = variable
            .value
            .clone()
            .map(|v| expand_vars(&v, &env_map))
            .or_else(|| crate::volumes::field_ref_value(pod, context.sandbox, variable))
            .unwrap_or_default();
        env_map.insert(variable.name.clone(), value.clone());
        env.retain(|existing| existing.split('=').next() != Some(variable.name.as_str()));
        env.push(format!("{}={value}", variable.name));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", pod_hostname(pod)));
    }
    let mut mounts = vec![
        Mount {
            source: context.hosts.to_path_buf(),
            destination: "/etc/hosts".into(),
            read_only: false,
        },
        Mount {
            source: context.resolv.to_path_buf(),
            destination: "/etc/resolv.conf".into(),
            read_only: false,
        },
        Mount {
            source: context.hostname.to_path_buf(),
            destination: "/etc/hostname".into(),
            read_only: false,
        },
    ];
    for volume_mount in container.volume_mounts.iter().flatten() {
        if let Some(source) = context.volume_mounts.get(&volume_mount.name) {
            let source = match &volume_mount.sub_path {
                Some(sub) if !sub.is_empty() => {
                    let path = source.join(sub);
                    let _ = std::fs::create_dir_all(&path);
                    path
                }
                _ => source.clone(),
            };
            mounts.push(Mount {
                source,
                destination: volume_mount.mount_path.clone(),
                read_only: volume_mount.read_only.unwrap_or(false),
            });
        }
    }
    if let Some(source) = context
        .volume_mounts
        .get(crate::service_account::VOLUME_NAME)
    {
        if !mounts
            .iter()
            .any(|m| m.destination == crate::service_account::MOUNT_PATH)
        {
            mounts.push(Mount {
                source: source.clone(),
                destination: crate::service_account::MOUNT_PATH.into(),
                read_only: true,
            });
        }
    }
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let requests = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let memory_limit_bytes = limits
        .get("memory")
        .and_then(|q| crate::volumes::parse_quantity_bytes(&q.0));
    let cpu_request = requests
        .get("cpu")
        .or(limits.get("cpu"))
        .and_then(|q| crate::volumes::parse_cpu_millis(&q.0));
    let cpu_limit = limits
        .get("cpu")
        .and_then(|q| crate::volumes::parse_cpu_millis(&q.0));
    ContainerLaunch {
        pod_namespace: namespace.clone(),
        pod_name: name.clone(),
        pod_uid: uid.clone(),
        name: container.name.clone(),
        attempt,
        argv: resolve_argv(container, &image),
        env,
        working_dir: container
            .working_dir
            .clone()
            .or_else(|| image.working_dir.clone()),
        hostname: pod_hostname(pod),
        sandbox: context.sandbox.clone(),
        mounts,
        tty: container.tty.unwrap_or(false),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        memory_limit_bytes,
        cpu_shares: cpu_request.map(|millis| (millis * 1024 / 1000).max(2)),
        cpu_quota_micros: cpu_limit.map(|millis| (millis * 100) as i64),
        log_path: log_dir
            .join(format!("{namespace}_{name}_{uid}"))
            .join(&container.name)
            .join(format!("{attempt}.log")),
        image,
    }
}

/// Run blocking runtime work off the async threads.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AgentError::Internal(format!("worker thread failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageInfo {
        ImageInfo {
            reference: "docker.io/library/nginx:latest".into(),
            id: "sha256:1".into(),
            entrypoint: vec!["/docker-entrypoint.sh".into()],
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            env: vec![],
            working_dir: None,
            stop_signal: None,
        }
    }

    fn container(yaml: &str) -> Container {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        assert_eq!(
            resolve_argv(&container("name: a"), &image()),
            vec!["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
        assert_eq!(
            resolve_argv(&container("name: a\ncommand: [sleep, '10']"), &image()),
            vec!["sleep", "10"]
        );
        assert_eq!(
            resolve_argv(&container("name: a\nargs: [nginx, -T]"), &image()),
            vec!["/docker-entrypoint.sh", "nginx", "-T"]
        );
        assert_eq!(
            resolve_argv(&container("name: a\ncommand: [echo]\nargs: ['$(GREETING) $$(X)']\nenv: [{name: GREETING, value: hi}]"), &image()),
            vec!["echo", "hi $(X)"]
        );
    }

    #[test]
    fn unknown_variables_stay_as_written() {
        let env = HashMap::new();
        assert_eq!(expand_vars("$(NOPE) and $HOME", &env), "$(NOPE) and $HOME");
    }
}
