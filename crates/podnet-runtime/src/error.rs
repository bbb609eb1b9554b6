//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in podnet-runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A filesystem or process operation on a path failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An image reference does not follow the docker reference grammar.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The image is neither in the store nor one the offline builder knows.
    #[error("image {reference} is not present and cannot be built offline: import it with `podnet image import FILE`")]
    ImageNotPresent {
        /// The normalised reference.
        reference: String,
    },
    /// Stored image data (index, manifest, config or layer) is unreadable or inconsistent.
    #[error("image data {what} is corrupt: {reason}; remove it from the image store and import the image again")]
    ImageCorrupt {
        /// The blob, file or reference concerned.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tarball handed to `import_tar` is neither an OCI layout nor a docker archive.
    #[error("cannot import {path}: {reason}")]
    UnsupportedArchive {
        /// The archive path.
        path: PathBuf,
        /// Why it cannot be imported.
        reason: String,
    },
    /// The offline image builder could not assemble an image from host files.
    #[error("cannot build image {image} offline: {reason}")]
    OfflineBuild {
        /// The image being built.
        image: String,
        /// What is missing on the host (usually a package to install).
        reason: String,
    },
    /// JSON could not be encoded or decoded.
    #[error("invalid json in {what}: {source}")]
    Json {
        /// The file or document concerned.
        what: String,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// An external command (runc, ldd, ...) could not be run or failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its error output or exit status.
        reason: String,
    },
    /// No container with this id exists in the runtime's state directory.
    #[error("container {id} not found: it was removed or never created on this node")]
    ContainerNotFound {
        /// The container id.
        id: String,
    },
    /// The container spec cannot be turned into a runnable container.
    #[error("invalid spec for container {container}: {reason}")]
    InvalidSpec {
        /// `namespace/pod/container`.
        container: String,
        /// What is wrong.
        reason: String,
    },
    /// The container was prepared but its process could not be started.
    #[error("container {id} failed to start: {reason}")]
    StartFailed {
        /// The container id.
        id: String,
        /// runc's or the shim's explanation.
        reason: String,
    },
    /// A mount or unmount system call failed.
    #[error("failed to {action} {target}: {source}")]
    Mount {
        /// "mount overlay on", "unmount", "bind-mount namespace onto", ...
        action: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The errno.
        source: nix::Error,
    },
    /// Creating or entering a namespace failed.
    #[error("namespace operation failed for {path}: {reason}")]
    Namespace {
        /// The namespace file concerned.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The container's attach socket is unreachable or spoke garbage.
    #[error("cannot attach to container {id}: {reason}")]
    Attach {
        /// The container id.
        id: String,
        /// What failed.
        reason: String,
    },
    /// `podnet shim` was started with arguments it does not understand.
    #[error("invalid shim arguments: {reason}; usage: podnet shim CONTAINER_DIR")]
    InvalidShimArgs {
        /// What is wrong.
        reason: String,
    },
    /// A CRI log line does not have the `TIMESTAMP STREAM TAG CONTENT` shape.
    #[error("malformed cri log line in {path}: {reason}")]
    MalformedLog {
        /// The log file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Shorthand for building [`RuntimeError::Io`] in `map_err`.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io {
        action,
        path,
        source,
    }
}
