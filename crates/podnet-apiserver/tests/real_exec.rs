//! The real kubectl's exec, logs and port-forward through the API server's
//! proxy to the node streaming server (podnet-streaming) on a unix socket,
//! with a backend that runs host processes and dials 127.0.0.1.

mod support;
use support::*;

use podnet_streaming::{
    AsyncReadWrite, BoxedReader, BoxedWriter, ContainerRef, LogOptions, PodRef, ProcessIo,
    StdioOptions, StreamingBackend, StreamingError,
};
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct HostBackend;

impl StreamingBackend for HostBackend {
    async fn exec(
        &self,
        _: ContainerRef,
        command: Vec<String>,
        _: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        let mut child = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| StreamingError::Backend {
                message: e.to_string(),
            })?;
        Ok(ProcessIo {
            stdin: child.stdin.take().map(|p| Box::new(p) as BoxedWriter),
            stdout: child.stdout.take().map(|p| Box::new(p) as BoxedReader),
            stderr: child.stderr.take().map(|p| Box::new(p) as BoxedReader),
            resizer: None,
            exit: Box::pin(async move {
                let status = child.wait().await.map_err(|e| StreamingError::Backend {
                    message: e.to_string(),
                })?;
                Ok(status.code().unwrap_or(128))
            }),
        })
    }

    async fn attach(
        &self,
        target: ContainerRef,
        options: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        self.exec(target, vec!["cat".into()], options).await
    }

    async fn port_forward(
        &self,
        _: PodRef,
        port: u16,
    ) -> Result<Box<dyn AsyncReadWrite>, StreamingError> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|source| StreamingError::Io {
                action: "connecting".into(),
                source,
            })?;
        Ok(Box::new(stream))
    }

    async fn logs(
        &self,
        target: ContainerRef,
        _: LogOptions,
    ) -> Result<BoxedReader, StreamingError> {
        Ok(Box::new(std::io::Cursor::new(
            format!(
                "log of {}/{}/{}\n",
                target.namespace, target.pod, target.container
            )
            .into_bytes(),
        )))
    }
}

struct Agent {
    runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = &self.runtime;
    }
}

fn start_agent(socket: std::path::PathBuf) -> Agent {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let ready = socket.clone();
    runtime.spawn(async move {
        podnet_streaming::serve_unix(socket, Arc::new(HostBackend), async {
            let _ = signal.await;
        })
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Agent {
        runtime,
        shutdown: Some(shutdown),
    }
}

fn setup() -> (TestServer, Agent) {
    let server = TestServer::start();
    let socket = server.data_path().join("agent.sock");
    let agent = start_agent(socket.clone());
    server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n  annotations:\n    podnet.io/agent-endpoint: unix://{}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  nodeName: node1\n  containers: [{{name: app, image: busybox}}]\n",
            socket.display()
        ),
    );
    let (code, body) = server.curl(
        "PATCH",
        "/api/v1/namespaces/default/pods/web/status",
        Some(&server.token()),
        Some((
            "application/merge-patch+json",
            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
        )),
    );
    assert_eq!(code, 200, "{body}");
    (server, agent)
}

#[test]
fn exec_and_logs_with_websocket_and_spdy_clients() {
    let (server, _agent) = setup();
    for binary in [KUBECTL, KUBECTL_127, KUBECTL_133] {
        let out = server.ok_with(binary, &["exec", "web", "--", "echo", "hello from exec"]);
        assert_eq!(out, "hello from exec\n", "{binary}");
        let failed = server.kubectl_with(binary, &["exec", "web", "--", "sh", "-c", "exit 3"]);
        assert_eq!(
            failed.status.code(),
            Some(3),
            "{binary}: {}",
            String::from_utf8_lossy(&failed.stderr)
        );
        let logs = server.ok_with(binary, &["logs", "web"]);
        assert_eq!(logs, "log of default/web/app\n", "{binary}");
    }
    let echoed = server.ok_stdin(&["exec", "-i", "web", "--", "cat"], "through stdin\n");
    assert_eq!(echoed, "through stdin\n");
}

#[test]
fn port_forward_reaches_the_pod_port() {
    let (server, _agent) = setup();
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut connection, _)) = target.accept() {
            let mut buffer = [0u8; 64];
            let n = connection.read(&mut buffer).unwrap_or(0);
            let _ = connection.write_all(&buffer[..n]);
        }
    });
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local_port = local.local_addr().unwrap().port();
    drop(local);
    let mut child = server
        .command(
            KUBECTL,
            &[
                "port-forward",
                "pod/web",
                &format!("{local_port}:{target_port}"),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut reply = String::new();
    while Instant::now() < deadline {
        if let Ok(mut connection) = std::net::TcpStream::connect(("127.0.0.1", local_port)) {
            connection
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            connection.write_all(b"ping").unwrap();
            let mut buffer = [0u8; 4];
            if connection.read_exact(&mut buffer).is_ok() {
                reply = String::from_utf8_lossy(&buffer).into_owned();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        reply,
        "ping",
        "port-forward stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
