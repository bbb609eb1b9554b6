//! Named network namespaces in any directory, and running code inside one.
//!
//! A namespace is kept alive by bind-mounting `/proc/thread-self/ns/net` of a
//! thread that unshared it onto a file, as `ip netns add` does; the directory
//! holding those files is made a mount point with shared propagation so the
//! bind mounts are visible from other mount namespaces (`podnet node exec`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::NetlinkError;

/// `f_type` of a file on nsfs, what a bind-mounted namespace file reports.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn netns_error(path: &Path, action: &'static str, source: io::Error) -> NetlinkError {
    NetlinkError::Netns {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// Makes `directory` exist and be a mount point with shared propagation
/// (bind-mounting it onto itself first if it is a plain directory).
pub fn ensure_netns_directory(directory: &Path) -> Result<(), NetlinkError> {
    std::fs::create_dir_all(directory)
        .map_err(|error| netns_error(directory, "create the netns directory", error))?;
    let make_shared = || {
        mount(
            None::<&str>,
            directory,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point yet.
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(directory),
                directory,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|errno| {
                netns_error(directory, "bind-mount the netns directory", errno.into())
            })?;
            make_shared().map_err(|errno| {
                netns_error(directory, "make the netns directory shared", errno.into())
            })
        }
        Err(errno) => Err(netns_error(
            directory,
            "make the netns directory shared",
            errno.into(),
        )),
    }
}

/// True when `path` is a bind-mounted network namespace file.
pub fn is_netns(path: &Path) -> bool {
    match nix::sys::statfs::statfs(path) {
        Ok(stat) => stat.filesystem_type().0 == NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Creates a new network namespace pinned at `path` (whose directory is made
/// a shared mount point). Fails if `path` already is a namespace.
pub fn create_netns(path: &Path) -> Result<(), NetlinkError> {
    let directory = path.parent().ok_or_else(|| {
        netns_error(
            path,
            "find the parent directory",
            io::ErrorKind::InvalidInput.into(),
        )
    })?;
    ensure_netns_directory(directory)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|error| netns_error(path, "create the netns file", error))?;
    // unshare() changes the calling thread only; a dedicated thread keeps the
    // caller's own namespace untouched and dies with the new one pinned.
    let pin_result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), NetlinkError> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| {
                    netns_error(path, "unshare a network namespace", errno.into())
                })?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| netns_error(path, "bind-mount the new netns", errno.into()))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(netns_error(
                    path,
                    "run the netns thread",
                    io::ErrorKind::Other.into(),
                ))
            })
    });
    if pin_result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pin_result
}

/// Creates the namespace at `path` unless it already exists.
pub fn ensure_netns(path: &Path) -> Result<(), NetlinkError> {
    if is_netns(path) {
        return Ok(());
    }
    // A plain file left by a crash between create and bind mount.
    if path.exists() {
        std::fs::remove_file(path)
            .map_err(|error| netns_error(path, "remove a stale netns file", error))?;
    }
    create_netns(path)
}

/// Unmounts and removes a namespace file; succeeds when it is already gone.
/// The namespace itself disappears once no process or socket uses it.
pub fn delete_netns(path: &Path) -> Result<(), NetlinkError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(errno) => return Err(netns_error(path, "unmount the netns", errno.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(netns_error(path, "remove the netns file", error)),
    }
}

/// Opens a namespace file (for setns or for moving links into it).
pub fn open_netns(path: &Path) -> Result<File, NetlinkError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| netns_error(path, "open the netns", error))
}

/// Switches the calling thread into the namespace `file` (opened from
/// `path`, which names it in errors).
pub(crate) fn enter_netns(file: &File, path: &Path) -> Result<(), NetlinkError> {
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|errno| netns_error(path, "enter the netns", errno.into()))
}

/// Runs `work` on a dedicated thread switched into the namespace at `path`;
/// sockets it opens stay in that namespace after it returns.
pub fn in_netns<T, F>(path: &Path, work: F) -> Result<T, NetlinkError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let netns_file = open_netns(path)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<T, NetlinkError> {
                enter_netns(&netns_file, path)?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(netns_error(
                    path,
                    "run work in the netns",
                    io::ErrorKind::Other.into(),
                ))
            })
    })
}

/// A namespace created for a test or a short-lived purpose, deleted on drop.
#[derive(Debug)]
pub struct OwnedNetns {
    path: PathBuf,
}

impl OwnedNetns {
    /// Creates the namespace at `path`.
    pub fn create(path: impl Into<PathBuf>) -> Result<OwnedNetns, NetlinkError> {
        let path = path.into();
        create_netns(&path)?;
        Ok(OwnedNetns { path })
    }

    /// Path of the namespace file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        let _ = delete_netns(&self.path);
    }
}

/// Undoes [`ensure_netns_directory`]: lazily unmounts the directory's self
/// bind mount (used when a node or test directory is torn down).
pub fn release_netns_directory(directory: &Path) -> Result<(), NetlinkError> {
    match umount2(directory, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(errno) => Err(netns_error(
            directory,
            "unmount the netns directory",
            errno.into(),
        )),
    }
}
