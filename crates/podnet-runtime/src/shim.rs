//! The per-container shim (`podnet shim CONTAINER_DIR`).
//!
//! It detaches from the agent (fork, setsid, fork) so containers outlive
//! agent restarts, becomes the child subreaper so the container's init is
//! reparented to it, runs `runc run --detach`, copies the
//! container's output into the CRI log and to attached clients, feeds
//! stdin from attach clients, records the exit in `exit.json` and finally
//! runs `runc delete`. The first process only waits for the start to be
//! reported through a pipe, so `create_and_start` learns of failures.
//!
//! Attach protocol on `attach.sock`, every frame `kind: u8, length: u32 BE,
//! payload`: from the shim `1` stdout bytes, `2` stderr bytes, `3` exit
//! (payload: exit code as i32 BE); to the shim `0` stdin bytes, `1` close
//! stdin, `2` resize (payload: columns u16 BE, rows u16 BE).

use crate::error::{Result, RuntimeError};
use crate::logs::{append_log_entries, LogLineSplitter, LogStream};
use crate::state::{self, ContainerRecord, ExitRecord, StartedRecord};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// Arguments of `podnet shim`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimArgs {
    /// The container's state directory (`<state_dir>/containers/<id>`).
    pub container_dir: PathBuf,
}

impl ShimArgs {
    /// Parses the arguments that follow `shim` on the command line.
    pub fn parse(arguments: impl IntoIterator<Item = String>) -> Result<ShimArgs> {
        let arguments: Vec<String> = arguments.into_iter().collect();
        match arguments.as_slice() {
            [directory] if !directory.starts_with('-') => Ok(ShimArgs {
                container_dir: PathBuf::from(directory),
            }),
            _ => Err(RuntimeError::InvalidShimArgs {
                reason: format!("expected exactly one container directory, got {arguments:?}"),
            }),
        }
    }
}

/// Attach frame kinds (see the module documentation).
pub(crate) mod frame {
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const EXIT: u8 = 3;
    pub const STDIN: u8 = 0;
    pub const CLOSE_STDIN: u8 = 1;
    pub const RESIZE: u8 = 2;
}

/// Runs the shim and never returns. Must be called from a single-threaded
/// process (before any async runtime starts), because it forks.
pub fn shim_main(args: ShimArgs) -> ! {
    // SAFETY: pipe2 fills two descriptors we then own.
    let (report_read, report_write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pair) => pair,
        Err(errno) => {
            eprintln!("podnet shim: cannot create a pipe: {errno}");
            std::process::exit(1);
        }
    };
    // SAFETY: the process is single-threaded (documented requirement).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(report_write);
            let mut report = String::new();
            let _ = File::from(report_read).read_to_string(&mut report);
            if report == "ok" {
                std::process::exit(0);
            }
            let report = if report.is_empty() {
                "the shim exited before reporting".to_string()
            } else {
                report
            };
            eprintln!("{report}");
            std::process::exit(1);
        }
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(errno) => {
            eprintln!("podnet shim: fork failed: {errno}");
            std::process::exit(1);
        }
    }
    drop(report_read);
    let _ = nix::unistd::setsid();
    // SAFETY: still single-threaded in the first child.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(errno) => {
            let _ = File::from(report_write).write_all(format!("fork failed: {errno}").as_bytes());
            std::process::exit(1);
        }
    }
    let mut report = Some(File::from(report_write));
    let code = match run_shim(&args.container_dir, &mut report) {
        Ok(()) => 0,
        Err(error) => {
            let message = error.to_string();
            let _ = fs::write(args.container_dir.join(state::START_ERROR_FILE), &message);
            if let Some(mut report) = report.take() {
                let _ = report.write_all(message.as_bytes());
            }
            eprintln!("podnet shim: {message}");
            1
        }
    };
    std::process::exit(code)
}

/// Clients attached to the container's output.
#[derive(Default)]
struct AttachClients {
    streams: Mutex<Vec<UnixStream>>,
}

impl AttachClients {
    fn broadcast(&self, kind: u8, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 5);
        frame.push(kind);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        streams.retain_mut(|stream| stream.write_all(&frame).is_ok());
    }

    fn close_all(&self) {
        let mut streams = self
            .streams
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for stream in streams.drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Where attach input goes: a stdin pipe, or the console for TTY containers.
struct InputSink {
    writer: Mutex<Option<File>>,
    console: Option<Arc<OwnedFd>>,
    accepts_stdin: bool,
    stdin_once: bool,
}

fn runc(record: &ContainerRecord, container_dir: &Path) -> Command {
    let mut command = Command::new(&record.runc_binary);
    command
        .arg("--root")
        .arg(&record.runc_root)
        .arg("--log")
        .arg(container_dir.join(state::RUNC_LOG_FILE))
        .arg("--log-format")
        .arg("json");
    command
}

fn run_shim(container_dir: &Path, report: &mut Option<File>) -> Result<()> {
    std::env::set_current_dir(container_dir)
        .map_err(crate::error::io_error("enter", container_dir))?;
    fs::write(state::SHIM_PID_FILE, std::process::id().to_string()).map_err(
        crate::error::io_error("write", container_dir.join(state::SHIM_PID_FILE)),
    )?;
    let record: ContainerRecord = state::read_json(&container_dir.join(state::RECORD_FILE))?
        .ok_or_else(|| RuntimeError::InvalidShimArgs {
            reason: format!("{} has no {}", container_dir.display(), state::RECORD_FILE),
        })?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let spec = &record.spec;
    if let Some(parent) = spec.log_path.parent() {
        fs::create_dir_all(parent)
            .map_err(crate::error::io_error("create log directory", parent))?;
    }
    let log = Arc::new(Mutex::new(
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .map_err(crate::error::io_error("open log", &spec.log_path))?,
    ));
    let clients = Arc::new(AttachClients::default());
    let _ = fs::remove_file(state::ATTACH_SOCKET);
    let attach_listener = UnixListener::bind(state::ATTACH_SOCKET).map_err(
        crate::error::io_error("listen on", container_dir.join(state::ATTACH_SOCKET)),
    )?;

    // `runc run --detach` creates and starts in one runc process (one Go
    // start-up and one state round trip fewer than `create` + `start`).
    let mut run = runc(&record, container_dir);
    run.arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(container_dir.join("bundle"))
        .arg("--pid-file")
        .arg(container_dir.join(state::INIT_PID_FILE));
    let mut copiers: Vec<(LogStream, File)> = Vec::new();
    let sink;
    let console_master: Option<Arc<OwnedFd>>;
    let mut run_child;
    if spec.tty {
        let _ = fs::remove_file(state::CONSOLE_SOCKET);
        let console_listener = UnixListener::bind(state::CONSOLE_SOCKET).map_err(
            crate::error::io_error("listen on", container_dir.join(state::CONSOLE_SOCKET)),
        )?;
        run
            // runc resolves this after changing into the bundle directory;
            // a relative path keeps it under the 108-byte socket path limit.
            .arg("--console-socket")
            .arg(Path::new("..").join(state::CONSOLE_SOCKET))
            .arg(&record.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        run_child = spawn(&mut run, "runc run")?;
        let master = receive_console(&console_listener, &mut run_child).map_err(|error| {
            let reason = state::last_runc_error(container_dir).unwrap_or_else(|| error.to_string());
            RuntimeError::StartFailed {
                id: record.id.clone(),
                reason,
            }
        })?;
        let _ = fs::remove_file(state::CONSOLE_SOCKET);
        let master = Arc::new(master);
        let reader = File::from(master.try_clone().map_err(crate::error::io_error(
            "duplicate console of",
            container_dir,
        ))?);
        copiers.push((LogStream::Stdout, reader));
        let writer = File::from(master.try_clone().map_err(crate::error::io_error(
            "duplicate console of",
            container_dir,
        ))?);
        console_master = Some(master.clone());
        sink = InputSink {
            writer: Mutex::new(Some(writer)),
            console: console_master.clone(),
            accepts_stdin: spec.stdin,
            stdin_once: spec.stdin_once,
        };
    } else {
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let (stdin_for_container, stdin_writer): (Stdio, Option<File>) = if spec.stdin {
            let (read, write) = pipe()?;
            (Stdio::from(read), Some(File::from(write)))
        } else {
            (Stdio::null(), None)
        };
        run.arg(&record.id)
            .stdin(stdin_for_container)
            .stdout(Stdio::from(stdout_write))
            .stderr(Stdio::from(stderr_write));
        run_child = spawn(&mut run, "runc run")?;
        copiers.push((LogStream::Stdout, File::from(stdout_read)));
        copiers.push((LogStream::Stderr, File::from(stderr_read)));
        console_master = None;
        sink = InputSink {
            writer: Mutex::new(stdin_writer),
            console: None,
            accepts_stdin: spec.stdin,
            stdin_once: spec.stdin_once,
        };
    }
    // Our copies of the container's ends must go, or the pipes never reach EOF.
    drop(run);
    // Output copiers run before the container's first write could fill a
    // pipe, so nothing is lost or blocked.
    let (done_sender, done_receiver) = mpsc::channel::<()>();
    let copier_count = copiers.len();
    for (stream, source) in copiers {
        let log = log.clone();
        let clients = clients.clone();
        let done = done_sender.clone();
        std::thread::spawn(move || {
            copy_output(stream, source, &log, &clients);
            let _ = done.send(());
        });
    }
    drop(done_sender);
    let exited = run_child.wait().map_err(crate::error::io_error(
        "wait for runc run in",
        container_dir,
    ))?;
    if !exited.success() {
        let reason = state::last_runc_error(container_dir)
            .unwrap_or_else(|| format!("runc run exited with {exited}"));
        let _ = runc(&record, container_dir)
            .arg("delete")
            .arg("--force")
            .arg(&record.id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        return Err(RuntimeError::StartFailed {
            id: record.id.clone(),
            reason,
        });
    }
    let init_pid: i32 = fs::read_to_string(state::INIT_PID_FILE)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| RuntimeError::StartFailed {
            id: record.id.clone(),
            reason: "runc run wrote no pid file".to_string(),
        })?;

    let sink = Arc::new(sink);
    {
        let clients = clients.clone();
        let sink = sink.clone();
        std::thread::spawn(move || serve_attach(attach_listener, &clients, &sink));
    }

    state::write_json(
        &container_dir.join(state::STARTED_FILE),
        &StartedRecord {
            pid: init_pid,
            started_at: state::now_rfc3339(),
        },
    )?;
    if let Some(mut report) = report.take() {
        let _ = report.write_all(b"ok");
    }

    let exit_code = reap_until(init_pid);
    let oom_killed = oom_kill_count(&record.cgroups_path) > 0;
    // Let the copiers drain what the container wrote last; a process that
    // escaped with a copy of the pipe must not hold the shim forever.
    for _ in 0..copier_count {
        if done_receiver.recv_timeout(Duration::from_secs(2)).is_err() {
            break;
        }
    }
    drop(console_master);
    let reason = if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    state::write_json(
        &container_dir.join(state::EXIT_FILE),
        &ExitRecord {
            exit_code,
            reason: reason.to_string(),
            message: String::new(),
            finished_at: state::now_rfc3339(),
        },
    )?;
    clients.broadcast(frame::EXIT, &exit_code.to_be_bytes());
    clients.close_all();
    let _ = fs::remove_file(state::ATTACH_SOCKET);
    let _ = runc(&record, container_dir)
        .arg("delete")
        .arg("--force")
        .arg(&record.id)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = fs::remove_file(state::SHIM_PID_FILE);
    Ok(())
}

fn spawn(command: &mut Command, what: &str) -> Result<std::process::Child> {
    command.spawn().map_err(|error| RuntimeError::Command {
        command: what.to_string(),
        reason: error.to_string(),
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| RuntimeError::Command {
        command: "pipe2".to_string(),
        reason: errno.to_string(),
    })
}

/// Accepts runc's connection on the console socket and takes the pty
/// master it sends, giving up if runc exits without sending one.
fn receive_console(listener: &UnixListener, runc_run: &mut std::process::Child) -> Result<OwnedFd> {
    listener
        .set_nonblocking(true)
        .map_err(crate::error::io_error("configure", state::CONSOLE_SOCKET))?;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(status)) = runc_run.try_wait() {
                    return Err(RuntimeError::StartFailed {
                        id: String::new(),
                        reason: format!("runc run exited with {status} before sending the console"),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => {
                return Err(crate::error::io_error("accept on", state::CONSOLE_SOCKET)(
                    error,
                ))
            }
        }
    };
    stream
        .set_nonblocking(false)
        .map_err(crate::error::io_error("configure", state::CONSOLE_SOCKET))?;
    let mut name = [0u8; 4096];
    let mut io = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut io,
        Some(&mut space),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|errno| RuntimeError::StartFailed {
        id: String::new(),
        reason: format!("receiving the console from runc failed: {errno}"),
    })?;
    for control in message.cmsgs().map_err(|errno| RuntimeError::StartFailed {
        id: String::new(),
        reason: format!("reading the console message failed: {errno}"),
    })? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = control {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(RuntimeError::StartFailed {
        id: String::new(),
        reason: "runc sent no console descriptor".to_string(),
    })
}

fn copy_output(stream: LogStream, mut source: File, log: &Mutex<File>, clients: &AttachClients) {
    let mut splitter = LogLineSplitter::new(stream);
    let kind = match stream {
        LogStream::Stdout => frame::STDOUT,
        LogStream::Stderr => frame::STDERR,
    };
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let count = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            // A pty master reads EIO once the container side is closed.
            Err(_) => break,
        };
        let entries = splitter.push(&buffer[..count], jiff::Timestamp::now());
        if !entries.is_empty() {
            let mut file = log.lock().unwrap_or_else(|poison| poison.into_inner());
            let _ = append_log_entries(&mut file, &entries);
        }
        clients.broadcast(kind, &buffer[..count]);
    }
    if let Some(entry) = splitter.flush(jiff::Timestamp::now()) {
        let mut file = log.lock().unwrap_or_else(|poison| poison.into_inner());
        let _ = append_log_entries(&mut file, &[entry]);
    }
}

fn serve_attach(listener: UnixListener, clients: &Arc<AttachClients>, sink: &Arc<InputSink>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Ok(output) = stream.try_clone() else {
            continue;
        };
        clients
            .streams
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(output);
        let sink = sink.clone();
        std::thread::spawn(move || read_attach_input(stream, &sink));
    }
}

fn read_attach_input(mut stream: UnixStream, sink: &InputSink) {
    let mut header = [0u8; 5];
    while stream.read_exact(&mut header).is_ok() {
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if length > 1 << 20 {
            break;
        }
        let mut payload = vec![0u8; length];
        if stream.read_exact(&mut payload).is_err() {
            break;
        }
        match header[0] {
            frame::STDIN if sink.accepts_stdin => {
                let mut writer = sink
                    .writer
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                if let Some(file) = writer.as_mut() {
                    let _ = file.write_all(&payload);
                }
            }
            frame::CLOSE_STDIN if sink.accepts_stdin => {
                // A TTY has no separate stdin to close: send end-of-file instead.
                if sink.console.is_some() {
                    let mut writer = sink
                        .writer
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner());
                    if let Some(file) = writer.as_mut() {
                        let _ = file.write_all(&[4]);
                    }
                } else {
                    sink.writer
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .take();
                }
            }
            frame::RESIZE if payload.len() == 4 => {
                if let Some(console) = &sink.console {
                    let columns = u16::from_be_bytes([payload[0], payload[1]]);
                    let rows = u16::from_be_bytes([payload[2], payload[3]]);
                    let _ = crate::runtime::set_window_size(console.as_raw_fd(), columns, rows);
                }
            }
            _ => {}
        }
    }
    if sink.stdin_once && sink.console.is_none() {
        sink.writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
    }
}

/// Reaps children until the container's init exits; returns its exit code
/// (128 + signal for a signal death).
fn reap_until(init_pid: i32) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == init_pid => return code,
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid.as_raw() == init_pid => {
                return 128 + signal as i32
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::ECHILD) => {
                // init is not our child (should not happen with the subreaper
                // bit set); fall back to polling for it.
                while nix::sys::signal::kill(nix::unistd::Pid::from_raw(init_pid), None).is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return 255;
            }
            Err(_) => return 255,
        }
    }
}

/// How many OOM kills the container's memory cgroup saw (v1 or v2).
fn oom_kill_count(cgroups_path: &str) -> u64 {
    let relative = cgroups_path.trim_start_matches('/');
    let candidates = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(relative)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup")
                .join(relative)
                .join("memory.events"),
            "oom_kill ",
        ),
    ];
    for (path, key) in candidates {
        if let Ok(text) = fs::read_to_string(&path) {
            if let Some(count) = text
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|count| count.trim().parse().ok())
            {
                return count;
            }
        }
    }
    0
}
