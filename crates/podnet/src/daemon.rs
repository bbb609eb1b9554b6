//! Starting the cluster's long-running processes (server, agents) detached
//! from the terminal, and stopping them again by PID.

use anyhow::{bail, Context, Result};
use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Start `program args` in a new session with stdout/stderr appended to `log`,
/// record its PID in `pid_file` and return the PID.
pub fn spawn_detached(program: &Path, args: &[String], log: &Path, pid_file: &Path) -> Result<u32> {
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening log {}", log.display()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // SAFETY: setsid is async-signal-safe; it detaches the child from our terminal
    // so that it outlives `podnet up`.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {} {}", program.display(), args.join(" ")))?;
    let pid = child.id();
    fs::write(pid_file, pid.to_string())
        .with_context(|| format!("writing {}", pid_file.display()))?;
    Ok(pid)
}

/// The PID recorded in `pid_file`, if that process is still alive.
pub fn running_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

pub fn alive(pid: i32) -> bool {
    // A zombie child counts as gone.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Send SIGTERM, wait up to `grace`, then SIGKILL. Removes the pid file.
pub fn stop(pid_file: &Path, grace: Duration) -> Result<()> {
    if let Some(pid) = running_pid(pid_file) {
        stop_pid(pid, grace)?;
    }
    let _ = fs::remove_file(pid_file);
    Ok(())
}

pub fn stop_pid(pid: i32, grace: Duration) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap(pid);
        if !alive(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        reap(pid);
        if !alive(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("process {pid} did not exit after SIGKILL: check `ps -p {pid}`")
}

pub fn reap(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}
