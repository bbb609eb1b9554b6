//! Files under `<state_dir>/containers/<id>/` shared by the runtime (in the
//! agent) and the shim: the agent may restart at any time, so everything it
//! needs to know about a container is on disk.

use crate::bundle::ContainerSpec;
use crate::error::{io_error, Result, RuntimeError};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `container.json`: written once by `create_and_start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Container id (also the runc id).
    pub id: String,
    /// The spec the container was created from.
    pub spec: ContainerSpec,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// runc's `--root`.
    pub runc_root: PathBuf,
    /// The runc executable.
    pub runc_binary: PathBuf,
    /// cgroupsPath given to runc.
    pub cgroups_path: String,
    /// Signal `stop` sends first (the image's StopSignal or SIGTERM).
    pub stop_signal: String,
}

/// `started.json`: written by the shim once `runc run --detach` succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedRecord {
    /// Host pid of the container's init process.
    pub pid: i32,
    /// RFC 3339 start time.
    pub started_at: String,
}

/// `exit.json`: written by the shim (or by `stop` when the shim is gone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code; 128 + signal number for a signal death.
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled` or `Unknown`.
    pub reason: String,
    /// Extra detail, empty when none.
    pub message: String,
    /// RFC 3339 time the exit was observed.
    pub finished_at: String,
}

pub(crate) const RECORD_FILE: &str = "container.json";
pub(crate) const STARTED_FILE: &str = "started.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const START_ERROR_FILE: &str = "start-error";
pub(crate) const SHIM_PID_FILE: &str = "shim.pid";
pub(crate) const SHIM_LOG_FILE: &str = "shim.log";
pub(crate) const INIT_PID_FILE: &str = "init.pid";
pub(crate) const ATTACH_SOCKET: &str = "attach.sock";
pub(crate) const CONSOLE_SOCKET: &str = "console.sock";
pub(crate) const RUNC_LOG_FILE: &str = "runc.log";

/// Reads a JSON state file; `None` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RuntimeError::Json {
                    what: path.display().to_string(),
                    source,
                })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error("read", path)(error)),
    }
}

/// Writes a JSON state file atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| RuntimeError::Json {
        what: path.display().to_string(),
        source,
    })?;
    crate::image::write_file_atomically(path, &bytes)
}

/// Now, RFC 3339 with nanoseconds.
pub(crate) fn now_rfc3339() -> String {
    crate::logs::format_log_timestamp(jiff::Timestamp::now())
}

/// Last error message runc wrote to its `--log` file (JSON lines).
pub(crate) fn last_runc_error(container_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(container_dir.join(RUNC_LOG_FILE)).ok()?;
    text.lines().rev().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        (value["level"] == "error" || value["level"] == "fatal")
            .then(|| value["msg"].as_str().map(str::to_string))?
    })
}
