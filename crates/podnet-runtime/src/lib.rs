//! podnet-runtime runs a node's containers: an OCI image store with an
//! offline builder for `busybox`, `nginx` and `nicolaka/netshoot`, OCI
//! bundles generated as pure functions of a [`ContainerSpec`], runc driven
//! through a detached per-container shim (so containers survive agent
//! restarts), CRI-format logs, exec, attach and pinned pod IPC/UTS
//! namespaces.
//!
//! # How the agent uses it
//!
//! ```text
//! let images = ImageStore::open(ImageStore::DEFAULT_ROOT)?;
//! let image = ensure_offline_image(&images, "nginx")?;        // or images.resolve(..)
//! let pinned = create_pod_ipc_uts(&pod_dir, &pod_name)?;      // once per pod
//! let runtime = Runtime::new(RuntimeConfig::for_node(&node_root, images, podnet_exe))?;
//! let id = runtime.create_and_start(ContainerSpec { image, namespaces, mounts, .. })?; // blocking
//! runtime.status(&id)? / runtime.list()?
//! runtime.exec(&id, ExecOptions { .. }).await? -> ExecProcess { stdin, stdout, stderr, wait(), resize() }
//! runtime.attach(&id).await? -> (AttachReader, AttachWriter)
//! runtime.logs(&id, &LogOptions { .. }, &mut out).await?      // or write_log(path, ..) for a previous attempt
//! runtime.stop(&id, grace)?; runtime.remove(&id)?;            // blocking, idempotent
//! remove_pod_namespaces(&pod_dir)?;
//! ```
//!
//! `podnet shim DIR` must call [`shim_main`] with [`ShimArgs::parse`] before
//! any async runtime or other thread starts (it forks).
//!
//! Blocking calls (`create_and_start`, `stop`, `remove`, `ensure_offline_image`,
//! `ImageStore` methods) do file and process I/O; run them on
//! `tokio::task::spawn_blocking` from async code.
//!
//! Deliberately absent: pulling from registries, image garbage collection,
//! log rotation, seccomp/AppArmor profiles, pause/checkpoint.

mod bundle;
mod error;
mod image;
mod logs;
mod offline;
mod podns;
mod reference;
mod runtime;
mod shim;
mod state;

pub use bundle::{
    bundle_config, capabilities, process_args, process_env, resolve_user, BindMount, ContainerSpec,
    PodNamespaces, PodRef, ResolvedUser, Resources, Security, DEFAULT_CAPABILITIES,
};
pub use error::{Result, RuntimeError};
pub use image::{
    host_architecture, media_type, Descriptor, ImageConfig, ImageStore, ImageSummary,
    REF_NAME_ANNOTATION,
};
pub use logs::{
    container_log_path, format_log_entry, format_log_timestamp, parse_log_line, read_log,
    write_log, LogEntry, LogLineSplitter, LogOptions, LogStream,
};
pub use offline::{
    build_offline_image, ensure_offline_image, image_config_json, parse_ldd_output,
    plan_offline_image, podnet_image_reference, write_layer, OfflineImage, PlanEntry, RootfsPlan,
};
pub use podns::{create_pod_ipc_uts, hostname_in, remove_pod_namespaces, PinnedNamespaces};
pub use reference::{normalize_reference, ImageReference};
pub use runtime::{
    AttachOutput, AttachReader, AttachWriter, ContainerId, ContainerState, ContainerStatus,
    ExecOptions, ExecProcess, Runtime, RuntimeConfig,
};
pub use shim::{shim_main, ShimArgs};
pub use state::{ContainerRecord, ExitRecord, StartedRecord};
