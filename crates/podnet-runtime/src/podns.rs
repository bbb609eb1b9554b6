//! Pod-level IPC and UTS namespaces pinned as files (as CRI-O's `pinns`
//! does), so every container of a pod joins them by path and the hostname
//! survives container restarts. The network namespace is the agent's (it
//! is created with podnet-netlink).

use crate::error::{Result, RuntimeError};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::fs;
use std::path::{Path, PathBuf};

/// Paths of a pod's pinned namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedNamespaces {
    /// `<dir>/ipc`.
    pub ipc: PathBuf,
    /// `<dir>/uts`.
    pub uts: PathBuf,
}

/// Creates fresh IPC and UTS namespaces with `hostname` set and pins them
/// at `<dir>/ipc` and `<dir>/uts`. Idempotent: already pinned files are kept
/// (the hostname of an existing UTS namespace is not changed).
pub fn create_pod_ipc_uts(dir: &Path, hostname: &str) -> Result<PinnedNamespaces> {
    let pinned = PinnedNamespaces {
        ipc: dir.join("ipc"),
        uts: dir.join("uts"),
    };
    if is_namespace_file(&pinned.ipc) && is_namespace_file(&pinned.uts) {
        return Ok(pinned);
    }
    // Converge from a half-done attempt: drop whatever is there and start over.
    remove_pod_namespaces(dir)?;
    fs::create_dir_all(dir).map_err(|error| RuntimeError::Namespace {
        path: dir.to_path_buf(),
        reason: format!("cannot create the directory: {error}"),
    })?;
    for file in [&pinned.ipc, &pinned.uts] {
        fs::File::create(file).map_err(|error| RuntimeError::Namespace {
            path: file.clone(),
            reason: format!("cannot create the pin file: {error}"),
        })?;
    }
    let hostname = hostname.to_string();
    let targets = pinned.clone();
    // unshare(2) of IPC and UTS affects only the calling thread, so a
    // short-lived thread does it and the rest of the process is untouched.
    let outcome = std::thread::spawn(move || -> Result<()> {
        let failed = |path: &Path, reason: String| RuntimeError::Namespace {
            path: path.to_path_buf(),
            reason,
        };
        unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|errno| failed(&targets.uts, format!("unshare failed: {errno}")))?;
        nix::unistd::sethostname(&hostname).map_err(|errno| {
            failed(
                &targets.uts,
                format!("sethostname {hostname:?} failed: {errno}"),
            )
        })?;
        for (kind, target) in [("ipc", &targets.ipc), ("uts", &targets.uts)] {
            let source = format!("/proc/thread-self/ns/{kind}");
            mount(
                Some(source.as_str()),
                target.as_path(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|errno| failed(target, format!("bind-mounting {source} failed: {errno}")))?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| RuntimeError::Namespace {
        path: dir.to_path_buf(),
        reason: "the namespace thread panicked".to_string(),
    })?;
    if let Err(error) = outcome {
        let _ = remove_pod_namespaces(dir);
        return Err(error);
    }
    Ok(pinned)
}

/// Unpins and deletes `<dir>/ipc` and `<dir>/uts`; succeeds when they are
/// already gone, and keeps going past individual failures.
pub fn remove_pod_namespaces(dir: &Path) -> Result<()> {
    let mut first_error = None;
    for kind in ["ipc", "uts"] {
        let path = dir.join(kind);
        // Unmount until nothing is stacked there (a crash between retries
        // can leave more than one bind mount).
        while is_namespace_file(&path) {
            if let Err(errno) = umount2(&path, MntFlags::MNT_DETACH) {
                first_error.get_or_insert(RuntimeError::Mount {
                    action: "unmount pinned namespace",
                    target: path.clone(),
                    source: errno,
                });
                break;
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                first_error.get_or_insert(RuntimeError::Namespace {
                    path: path.clone(),
                    reason: format!("cannot delete the pin file: {error}"),
                });
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Whether `path` currently has an nsfs mount on it.
fn is_namespace_file(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|stats| stats.filesystem_type().0 == libc::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Reads the hostname inside a pinned UTS namespace (for tests and checks).
pub fn hostname_in(uts: &Path) -> Result<String> {
    let uts = uts.to_path_buf();
    std::thread::spawn(move || -> Result<String> {
        let file = fs::File::open(&uts).map_err(|error| RuntimeError::Namespace {
            path: uts.clone(),
            reason: format!("cannot open: {error}"),
        })?;
        // Entering a UTS namespace is also per-thread.
        nix::sched::setns(&file, CloneFlags::CLONE_NEWUTS).map_err(|errno| {
            RuntimeError::Namespace {
                path: uts.clone(),
                reason: format!("setns failed: {errno}"),
            }
        })?;
        Ok(nix::unistd::gethostname()
            .map_err(|errno| RuntimeError::Namespace {
                path: uts.clone(),
                reason: format!("gethostname failed: {errno}"),
            })?
            .to_string_lossy()
            .into_owned())
    })
    .join()
    .map_err(|_| RuntimeError::Namespace {
        path: PathBuf::new(),
        reason: "the namespace thread panicked".to_string(),
    })?
}
