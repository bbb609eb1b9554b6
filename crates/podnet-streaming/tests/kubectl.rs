//! The real kubectl against the streaming server: a small front on
//! 127.0.0.1 answers kubectl's pod lookup and passes the upgrade requests,
//! rewritten to the kubelet-style paths, byte for byte to the unix socket,
//! as the API server's proxy does. kubectl 1.27 speaks SPDY, 1.33 speaks
//! WebSocket (and SPDY tunnelled in WebSocket for port-forward).
//!
//! The kubectl binaries live in /usr/lib/google-cloud-sdk/bin; a version
//! that is not installed is reported and skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podnet_streaming::{
    AsyncReadWrite, BoxedReader, BoxedWriter, ContainerRef, LogOptions, PodRef, ProcessIo,
    StdioOptions, StreamingBackend, StreamingError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};

struct ProcessBackend;

impl StreamingBackend for ProcessBackend {
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
            .map_err(|error| StreamingError::Backend {
                message: error.to_string(),
            })?;
        Ok(ProcessIo {
            stdin: child.stdin.take().map(|pipe| Box::new(pipe) as BoxedWriter),
            stdout: child
                .stdout
                .take()
                .map(|pipe| Box::new(pipe) as BoxedReader),
            stderr: child
                .stderr
                .take()
                .map(|pipe| Box::new(pipe) as BoxedReader),
            resizer: None,
            exit: Box::pin(async move {
                let status = child
                    .wait()
                    .await
                    .map_err(|error| StreamingError::Backend {
                        message: error.to_string(),
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
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|source| StreamingError::Io {
                action: "connecting".into(),
                source,
            })?;
        Ok(Box::new(stream))
    }

    async fn logs(&self, _: ContainerRef, _: LogOptions) -> Result<BoxedReader, StreamingError> {
        Ok(Box::new(std::io::Cursor::new(b"log line\n".to_vec())))
    }
}

const POD_JSON: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","uid":"0f1d2c3b-0000-4000-8000-000000000001"},"spec":{"containers":[{"name":"app","image":"busybox"}]},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;

const API_VERSIONS_JSON: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#;
const API_GROUPS_JSON: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const API_RESOURCES_JSON: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;

/// Answers the pod GET and relays everything under the pod's subresources
/// to the unix socket with the path rewritten.
async fn start_front(socket_path: PathBuf, upgrades_seen: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let socket_path = socket_path.clone();
            let upgrades_seen = Arc::clone(&upgrades_seen);
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let request_line = head.lines().next().unwrap_or("").to_string();
                let mut parts = request_line.split(' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                // Discovery, then api/v1/namespaces/{ns}/pods/{pod}[/{subresource}].
                let canned = match (method, path) {
                    ("GET", "/api") => Some(API_VERSIONS_JSON),
                    ("GET", "/apis") => Some(API_GROUPS_JSON),
                    ("GET", "/api/v1") => Some(API_RESOURCES_JSON),
                    ("GET", _) if segments.len() == 6 => Some(POD_JSON),
                    _ => None,
                };
                if let Some(body) = canned {
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = client.write_all(response.as_bytes()).await;
                    return;
                }
                if segments.len() != 7 {
                    let _ = client
                        .write_all(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let (namespace, pod, subresource) = (segments[3], segments[5], segments[6]);
                let container = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("container="))
                    .unwrap_or("app")
                    .to_string();
                let new_path = match subresource {
                    "exec" => format!("/exec/{namespace}/{pod}/{container}?{query}"),
                    "attach" => format!("/attach/{namespace}/{pod}/{container}?{query}"),
                    "portforward" => format!("/portForward/{namespace}/{pod}?{query}"),
                    _ => return,
                };
                let upgrade = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("upgrade")
                            .then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                upgrades_seen
                    .lock()
                    .unwrap()
                    .push(format!("{subresource} {upgrade}"));
                let rewritten = head.replacen(target, &new_path, 1);
                let Ok(mut agent) = UnixStream::connect(&socket_path).await else {
                    return;
                };
                if agent.write_all(rewritten.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
            });
        }
    });
    port
}

struct Harness {
    kubeconfig: PathBuf,
    cache: PathBuf,
    upgrades_seen: Arc<Mutex<Vec<String>>>,
    _directory: tempfile::TempDir,
}

async fn harness() -> Harness {
    let directory = tempfile::tempdir().unwrap();
    let socket_path = directory.path().join("agent.sock");
    tokio::spawn(podnet_streaming::serve_unix(
        socket_path.clone(),
        Arc::new(ProcessBackend),
        std::future::pending(),
    ));
    for _ in 0..100 {
        if UnixStream::connect(&socket_path).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let upgrades_seen = Arc::new(Mutex::new(Vec::new()));
    let port = start_front(socket_path, Arc::clone(&upgrades_seen)).await;
    let kubeconfig = directory.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\nusers:\n- name: u\n  user: {{}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let cache = directory.path().join("cache");
    Harness {
        kubeconfig,
        cache,
        upgrades_seen,
        _directory: directory,
    }
}

fn kubectl_binary(version: &str) -> Option<PathBuf> {
    let path = Path::new("/usr/lib/google-cloud-sdk/bin").join(format!("kubectl.{version}"));
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "kubectl {version} is not installed at {}: skipped",
            path.display()
        );
        None
    }
}

async fn kubectl(
    harness: &Harness,
    binary: &Path,
    args: &[&str],
    stdin: &[u8],
) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(binary)
        .args(args)
        .env("KUBECONFIG", &harness.kubeconfig)
        .env("KUBECACHEDIR", &harness.cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn check_exec(version: &str, expected_upgrade: &str) {
    let Some(binary) = kubectl_binary(version) else {
        return;
    };
    let harness = harness().await;
    let (code, stdout, stderr) = kubectl(
        &harness,
        &binary,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        b"",
    )
    .await;
    assert_eq!(code, 3, "stdout {stdout:?} stderr {stderr:?}");
    assert_eq!(stdout, "out\n");
    assert!(stderr.contains("err\n"), "{stderr}");
    let (code, stdout, stderr) = kubectl(
        &harness,
        &binary,
        &["exec", "-i", "web", "--", "cat"],
        b"piped input\n",
    )
    .await;
    assert_eq!(
        (code, stdout.as_str()),
        (0, "piped input\n"),
        "stderr {stderr:?}"
    );
    let seen = harness.upgrades_seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|upgrade| upgrade.eq_ignore_ascii_case(&format!("exec {expected_upgrade}"))),
        "{seen:?}"
    );
}

async fn check_port_forward(version: &str, expected_upgrade: &str) {
    let Some(binary) = kubectl_binary(version) else {
        return;
    };
    let harness = harness().await;
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = connection.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    let local_port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut forwarder = tokio::process::Command::new(&binary)
        .args([
            "port-forward",
            "pod/web",
            &format!("{local_port}:{echo_port}"),
        ])
        .env("KUBECONFIG", &harness.kubeconfig)
        .env("KUBECACHEDIR", &harness.cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut connection = None;
    for _ in 0..100 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", local_port)).await {
            connection = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut connection = connection.expect("kubectl port-forward listens");
    for round in 0..3 {
        let message = format!("round {round} through kubectl port-forward");
        connection.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(10), connection.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    drop(connection);
    let _ = forwarder.start_kill();
    let _ = forwarder.wait().await;
    let seen = harness.upgrades_seen.lock().unwrap().clone();
    assert!(seen.iter().any(|upgrade| upgrade.eq_ignore_ascii_case(&format!("portforward {expected_upgrade}"))), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_exec_over_spdy() {
    check_exec("1.27", "SPDY/3.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_exec_over_websocket() {
    check_exec("1.33", "websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_port_forward_over_spdy() {
    check_port_forward("1.27", "SPDY/3.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_port_forward_over_websocket_tunnel() {
    check_port_forward("1.33", "websocket").await;
}
