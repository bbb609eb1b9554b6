//! The agent's side of exec, attach, port-forward and logs: it maps the API
//! server's (namespace, pod, container) to the runtime's containers and the
//! pod's network namespace; podnet-streaming speaks the wire protocols.

use crate::agent::NodeLayout;
use crate::backend::Sandbox;
use podnet_runtime::{ContainerState, ContainerStatus, ExecOptions, Runtime};
use podnet_streaming::{
    AsyncReadWrite, BoxedReader, ContainerRef, LogOptions, PodRef, ProcessIo, StdioOptions,
    StreamingBackend, StreamingError, TerminalResizer, TerminalSize,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct AgentStreaming {
    runtime: Arc<Runtime>,
    layout: NodeLayout,
}

impl AgentStreaming {
    pub fn new(runtime: Arc<Runtime>, layout: NodeLayout, _node_netns: PathBuf) -> Self {
        AgentStreaming { runtime, layout }
    }

    /// The newest attempt of a container (running ones first).
    fn find(
        &self,
        target: &ContainerRef,
        previous: bool,
    ) -> Result<ContainerStatus, StreamingError> {
        let runtime = self.runtime.clone();
        let mut matching: Vec<ContainerStatus> = runtime
            .list()
            .map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?
            .into_iter()
            .filter(|c| {
                c.pod.namespace == target.namespace
                    && c.pod.name == target.pod
                    && c.container_name == target.container
            })
            .collect();
        matching.sort_by_key(|c| c.attempt);
        if previous {
            matching.pop();
        }
        let chosen = matching.pop();
        chosen.ok_or_else(|| StreamingError::NotFound {
            what: format!(
                "container {} in pod {}/{} is not running on this node{}",
                target.container,
                target.namespace,
                target.pod,
                if previous {
                    " (no previous attempt)"
                } else {
                    ""
                }
            ),
        })
    }

    fn pod_netns(&self, pod: &PodRef) -> Result<PathBuf, StreamingError> {
        let uid = self
            .runtime
            .list()
            .map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?
            .into_iter()
            .find(|c| c.pod.namespace == pod.namespace && c.pod.name == pod.name)
            .map(|c| c.pod.uid)
            .ok_or_else(|| StreamingError::NotFound {
                what: format!(
                    "pod {}/{} has no containers on this node",
                    pod.namespace, pod.name
                ),
            })?;
        let record = self
            .layout
            .state_dir()
            .join("pods")
            .join(&uid)
            .join("sandbox.json");
        let text = std::fs::read_to_string(&record).map_err(|e| StreamingError::NotFound {
            what: format!("pod {}/{} has no sandbox ({e})", pod.namespace, pod.name),
        })?;
        let sandbox: Sandbox =
            serde_json::from_str(&text).map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?;
        Ok(sandbox.netns_path)
    }
}

struct ExecResizer {
    process: Arc<Mutex<Option<podnet_runtime::ExecProcess>>>,
}

impl TerminalResizer for ExecResizer {
    fn resize(&self, size: TerminalSize) -> Result<(), StreamingError> {
        if let Some(process) = self.process.lock().expect("exec process").as_ref() {
            process
                .resize(size.width, size.height)
                .map_err(|e| StreamingError::Backend {
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

impl StreamingBackend for AgentStreaming {
    async fn exec(
        &self,
        target: ContainerRef,
        command: Vec<String>,
        options: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        let container = self.find(&target, false)?;
        if container.state != ContainerState::Running {
            return Err(StreamingError::NotFound {
                what: format!(
                    "container {} is not running (state {:?})",
                    target.container, container.state
                ),
            });
        }
        let mut process = self
            .runtime
            .exec(
                &container.id,
                ExecOptions {
                    command,
                    tty: options.tty,
                    stdin: options.stdin,
                    initial_size: None,
                },
            )
            .await
            .map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?;
        let stdin = process
            .stdin
            .take()
            .map(|w| Box::new(w) as podnet_streaming::BoxedWriter);
        let stdout = process.stdout.take().map(|r| Box::new(r) as BoxedReader);
        let stderr = process.stderr.take().map(|r| Box::new(r) as BoxedReader);
        let shared = Arc::new(Mutex::new(Some(process)));
        let waiter = shared.clone();
        let exit = Box::pin(async move {
            let mut process = waiter
                .lock()
                .expect("exec process")
                .take()
                .expect("exec process present");
            let code = process.wait().await.map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            });
            code
        });
        Ok(ProcessIo {
            stdin,
            stdout,
            stderr,
            resizer: options
                .tty
                .then(|| Box::new(ExecResizer { process: shared }) as Box<dyn TerminalResizer>),
            exit,
        })
    }

    async fn attach(
        &self,
        target: ContainerRef,
        options: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        let container = self.find(&target, false)?;
        let (mut reader, mut writer) =
            self.runtime
                .attach(&container.id)
                .await
                .map_err(|e| StreamingError::Backend {
                    message: e.to_string(),
                })?;
        let (stdout_tx, stdout_rx) = tokio::io::duplex(64 * 1024);
        let (stderr_tx, stderr_rx) = tokio::io::duplex(64 * 1024);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<i32>();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut stdout_tx, mut stderr_tx) = (stdout_tx, stderr_tx);
            let mut exit_tx = Some(exit_tx);
            while let Ok(Some(output)) = reader.next().await {
                match output {
                    podnet_runtime::AttachOutput::Stdout(bytes) => {
                        let _ = stdout_tx.write_all(&bytes).await;
                    }
                    podnet_runtime::AttachOutput::Stderr(bytes) => {
                        let _ = stderr_tx.write_all(&bytes).await;
                    }
                    podnet_runtime::AttachOutput::Exited(code) => {
                        if let Some(tx) = exit_tx.take() {
                            let _ = tx.send(code);
                        }
                        break;
                    }
                }
            }
        });
        let stdin = if options.stdin {
            let (stdin_tx, mut stdin_rx) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    match stdin_rx.read(&mut buffer).await {
                        Ok(0) | Err(_) => {
                            let _ = writer.close_stdin().await;
                            break;
                        }
                        Ok(n) => {
                            if writer.write_stdin(&buffer[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            Some(Box::new(stdin_tx) as podnet_streaming::BoxedWriter)
        } else {
            None
        };
        Ok(ProcessIo {
            stdin,
            stdout: Some(Box::new(stdout_rx)),
            stderr: (!options.tty).then(|| Box::new(stderr_rx) as BoxedReader),
            resizer: None,
            exit: Box::pin(async move { Ok(exit_rx.await.unwrap_or(0)) }),
        })
    }

    async fn port_forward(
        &self,
        pod: PodRef,
        port: u16,
    ) -> Result<Box<dyn AsyncReadWrite>, StreamingError> {
        let netns = self.pod_netns(&pod)?;
        let stream = tokio::task::spawn_blocking(move || {
            podnet_netlink::in_netns(&netns, move || {
                std::net::TcpStream::connect(("127.0.0.1", port))
            })
        })
        .await
        .map_err(|e| StreamingError::Backend {
            message: e.to_string(),
        })?
        .map_err(|e| StreamingError::Backend {
            message: e.to_string(),
        })?
        .map_err(|e| StreamingError::Backend {
            message: format!(
                "connecting to port {port} of pod {}/{}: {e}",
                pod.namespace, pod.name
            ),
        })?;
        stream
            .set_nonblocking(true)
            .map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?;
        let stream =
            tokio::net::TcpStream::from_std(stream).map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?;
        Ok(Box::new(stream))
    }

    async fn logs(
        &self,
        target: ContainerRef,
        options: LogOptions,
    ) -> Result<BoxedReader, StreamingError> {
        if target.namespace == crate::mirror::MIRROR_NAMESPACE
            && target.pod.starts_with("podnet-")
            && target.container == crate::mirror::MIRROR_CONTAINER
        {
            return Ok(agent_log(self.layout.root.join("agent.log"), options));
        }
        let container = self.find(&target, options.previous)?;
        let runtime_options = podnet_runtime::LogOptions {
            tail_lines: options.tail_lines.map(|n| n as usize),
            since: options.since_seconds.map(|seconds| {
                jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds as i64)
            }),
            timestamps: options.timestamps,
            follow: options.follow && !options.previous,
            limit_bytes: options.limit_bytes,
        };
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let runtime = self.runtime.clone();
        tokio::spawn(async move {
            let _ = runtime
                .logs(&container.id, &runtime_options, &mut writer)
                .await;
        });
        Ok(Box::new(reader))
    }
}

/// The agent's own log (plain text, written by the process supervisor) for
/// `kubectl logs -n kube-system podnet-<node>`: tail and follow.
fn agent_log(path: PathBuf, options: LogOptions) -> BoxedReader {
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let text = tokio::fs::read(&path).await.unwrap_or_default();
        let mut start = 0;
        if let Some(tail) = options.tail_lines {
            let lines: Vec<usize> = text
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i)
                .collect();
            if lines.len() > tail as usize {
                start = lines[lines.len() - tail as usize - 1] + 1;
            }
        }
        if writer.write_all(&text[start..]).await.is_err() {
            return;
        }
        if !options.follow {
            return;
        }
        // Follow: keep the file open and read only what is appended.
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Ok(mut file) = tokio::fs::File::open(&path).await else {
            return;
        };
        if file
            .seek(std::io::SeekFrom::Start(text.len() as u64))
            .await
            .is_err()
        {
            return;
        }
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match file.read(&mut buffer).await {
                Ok(0) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                Ok(n) => {
                    if writer.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    Box::new(reader)
}
