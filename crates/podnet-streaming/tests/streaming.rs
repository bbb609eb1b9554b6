//! End-to-end tests of the streaming server on a unix socket, driven by a
//! WebSocket client and by a SPDY client built on the crate's own session,
//! against a backend that runs real processes and a real TCP echo server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use podnet_streaming::spdy::{HeaderList, Role, SpdySession, SpdyStream};
use podnet_streaming::{
    AsyncReadWrite, BoxedReader, BoxedWriter, ContainerRef, LogOptions, PodRef, ProcessIo,
    StdioOptions, StreamingBackend, StreamingError, TerminalResizer, TerminalSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, UnixStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Runs commands with `tokio::process`, connects port-forwards to
/// 127.0.0.1, and serves logs from memory.
#[derive(Default)]
struct ProcessBackend {
    resizes: Arc<Mutex<Vec<TerminalSize>>>,
    log_targets: Mutex<Vec<(ContainerRef, LogOptions)>>,
    followed_log: Mutex<Option<DuplexStream>>,
}

struct RecordingResizer(Arc<Mutex<Vec<TerminalSize>>>);

impl TerminalResizer for RecordingResizer {
    fn resize(&self, size: TerminalSize) -> Result<(), StreamingError> {
        self.0.lock().unwrap().push(size);
        Ok(())
    }
}

fn io_error(action: &str) -> impl FnOnce(std::io::Error) -> StreamingError + '_ {
    move |source| StreamingError::Io {
        action: action.to_string(),
        source,
    }
}

impl ProcessBackend {
    fn spawn(
        &self,
        command: Vec<String>,
        options: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        let mut child = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| StreamingError::Backend {
                message: format!("starting {command:?}: {error}"),
            })?;
        let stdin = child.stdin.take().map(|pipe| Box::new(pipe) as BoxedWriter);
        let stdout = child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as BoxedReader);
        let stderr = child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as BoxedReader);
        let resizer = options.tty.then(|| {
            Box::new(RecordingResizer(Arc::clone(&self.resizes))) as Box<dyn TerminalResizer>
        });
        Ok(ProcessIo {
            stdin,
            stdout,
            stderr: if options.tty { None } else { stderr },
            resizer,
            exit: Box::pin(async move {
                let status = child
                    .wait()
                    .await
                    .map_err(io_error("waiting for the process"))?;
                Ok(status.code().unwrap_or(128))
            }),
        })
    }
}

impl StreamingBackend for ProcessBackend {
    async fn exec(
        &self,
        target: ContainerRef,
        command: Vec<String>,
        options: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        if target.container == "missing" {
            return Err(StreamingError::NotFound {
                what: format!("container {:?}", target.container),
            });
        }
        self.spawn(command, options)
    }

    async fn attach(
        &self,
        _target: ContainerRef,
        options: StdioOptions,
    ) -> Result<ProcessIo, StreamingError> {
        self.spawn(
            vec![
                "sh".into(),
                "-c".into(),
                "read line; echo attached:$line; exit 7".into(),
            ],
            options,
        )
    }

    async fn port_forward(
        &self,
        _pod: PodRef,
        port: u16,
    ) -> Result<Box<dyn AsyncReadWrite>, StreamingError> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(io_error("connecting to the pod port"))?;
        Ok(Box::new(stream))
    }

    async fn logs(
        &self,
        target: ContainerRef,
        options: LogOptions,
    ) -> Result<BoxedReader, StreamingError> {
        if target.container == "missing" {
            return Err(StreamingError::NotFound {
                what: format!("container {:?}", target.container),
            });
        }
        self.log_targets
            .lock()
            .unwrap()
            .push((target, options.clone()));
        let past = std::io::Cursor::new(b"line 1\nline 2\n".to_vec());
        if options.follow {
            let (writer_side, reader_side) = tokio::io::duplex(1024);
            *self.followed_log.lock().unwrap() = Some(writer_side);
            Ok(Box::new(past.chain(reader_side)))
        } else {
            Ok(Box::new(past))
        }
    }
}

struct TestServer {
    backend: Arc<ProcessBackend>,
    socket_path: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), StreamingError>>>,
    _directory: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let socket_path = directory.path().join("agent.sock");
        // A stale socket from an earlier run must not prevent binding.
        let stale = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
        drop(stale);
        let backend = Arc::new(ProcessBackend::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(podnet_streaming::serve_unix(
            socket_path.clone(),
            Arc::clone(&backend),
            async move {
                let _ = stopped.await;
            },
        ));
        for _ in 0..100 {
            if UnixStream::connect(&socket_path).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            backend,
            socket_path,
            stop: Some(stop),
            task: Some(task),
            _directory: directory,
        }
    }

    async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket_path).await.unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task.take().unwrap()).await;
    }
}

type WebSocketClient = tokio_tungstenite::WebSocketStream<UnixStream>;

async fn websocket(
    server: &TestServer,
    path_and_query: &str,
    protocol: &str,
) -> (WebSocketClient, Option<String>) {
    let mut request = format!("ws://localhost{path_and_query}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (socket, response) = tokio_tungstenite::client_async(request, server.connect().await)
        .await
        .unwrap();
    let selected = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|value| value.to_str().unwrap().to_string());
    (socket, selected)
}

/// Collects channel output until the server closes the WebSocket.
async fn collect_channels(socket: &mut WebSocketClient) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(10), socket.next()).await
    {
        match message {
            Ok(Message::Binary(data)) => frames.push((data[0], data[1..].to_vec())),
            Ok(Message::Close(frame)) => {
                // kubectl reports a close without status 1000 as an error.
                let code = frame.map(|frame| u16::from(frame.code));
                assert_eq!(
                    code,
                    Some(1000),
                    "the server must close with a normal status"
                );
                break;
            }
            Err(_) => break,
            Ok(_) => {}
        }
    }
    frames
}

fn channel_text(frames: &[(u8, Vec<u8>)], channel: u8) -> String {
    frames
        .iter()
        .filter(|(number, _)| *number == channel)
        .map(|(_, data)| String::from_utf8_lossy(data))
        .collect()
}

#[tokio::test]
async fn websocket_v5_exec_relays_stdin_output_and_exit_code() {
    let server = TestServer::start().await;
    let (mut socket, selected) = websocket(
        &server,
        "/exec/default/web/app?command=sh&command=-c&command=read+x%3B+echo+out:%24x%3B+echo+err:%24x+1%3E%262%3B+exit+3&stdin=true&stdout=true&stderr=true",
        "v5.channel.k8s.io, v4.channel.k8s.io",
    )
    .await;
    assert_eq!(selected.as_deref(), Some("v5.channel.k8s.io"));
    // The first message is the kubelet's empty readiness frame on stdout.
    match socket.next().await.unwrap().unwrap() {
        Message::Binary(data) => assert_eq!(&data[..], &[1]),
        other => panic!("unexpected first message {other:?}"),
    }
    socket
        .send(Message::Binary(Bytes::from_static(b"\x00hello\n")))
        .await
        .unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let frames = collect_channels(&mut socket).await;
    assert_eq!(channel_text(&frames, 1), "out:hello\n");
    assert_eq!(channel_text(&frames, 2), "err:hello\n");
    let status: serde_json::Value = serde_json::from_str(&channel_text(&frames, 3)).unwrap();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    server.stop().await;
}

#[tokio::test]
async fn websocket_v5_close_of_stdin_ends_input_and_success_is_reported() {
    let server = TestServer::start().await;
    let (mut socket, _) = websocket(
        &server,
        "/exec/default/web/app?command=cat&stdin=1&stdout=1",
        "v5.channel.k8s.io",
    )
    .await;
    socket
        .send(Message::Binary(Bytes::from_static(b"\x00line one\n")))
        .await
        .unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(b"\x00line two\n")))
        .await
        .unwrap();
    // Without the close message `cat` would wait for more input forever.
    socket
        .send(Message::Binary(Bytes::from_static(&[255, 0])))
        .await
        .unwrap();
    let frames = collect_channels(&mut socket).await;
    assert_eq!(channel_text(&frames, 1), "line one\nline two\n");
    assert_eq!(
        channel_text(&frames, 3),
        r#"{"metadata":{},"status":"Success"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn websocket_tty_resize_reaches_the_backend() {
    let server = TestServer::start().await;
    let (mut socket, _) = websocket(
        &server,
        "/exec/default/web/app?command=sh&command=-c&command=read+x%3B+echo+done&stdin=1&stdout=1&stderr=1&tty=1",
        "v4.channel.k8s.io",
    )
    .await;
    socket
        .send(Message::Binary(Bytes::from_static(
            b"\x04{\"Width\":120,\"Height\":40}",
        )))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket
        .send(Message::Binary(Bytes::from_static(b"\x00go\n")))
        .await
        .unwrap();
    let frames = collect_channels(&mut socket).await;
    assert_eq!(channel_text(&frames, 1), "done\n");
    assert!(
        frames.iter().all(|(channel, _)| *channel != 2),
        "a tty has no stderr channel"
    );
    assert_eq!(
        *server.backend.resizes.lock().unwrap(),
        vec![TerminalSize {
            width: 120,
            height: 40
        }]
    );
    server.stop().await;
}

#[tokio::test]
async fn websocket_exec_in_missing_container_reports_not_found_status() {
    let server = TestServer::start().await;
    let (mut socket, _) = websocket(
        &server,
        "/exec/default/web/missing?command=true&stdout=1",
        "v5.channel.k8s.io",
    )
    .await;
    let frames = collect_channels(&mut socket).await;
    let status: serde_json::Value = serde_json::from_str(&channel_text(&frames, 3)).unwrap();
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["code"], 404);
    server.stop().await;
}

#[tokio::test]
async fn websocket_attach_reports_success_whatever_the_exit_code() {
    let server = TestServer::start().await;
    let (mut socket, _) = websocket(
        &server,
        "/attach/default/web/app?stdin=true&stdout=true",
        "v5.channel.k8s.io",
    )
    .await;
    socket
        .send(Message::Binary(Bytes::from_static(b"\x00hi\n")))
        .await
        .unwrap();
    let frames = collect_channels(&mut socket).await;
    assert_eq!(channel_text(&frames, 1), "attached:hi\n");
    assert_eq!(
        channel_text(&frames, 3),
        r#"{"metadata":{},"status":"Success"}"#
    );
    server.stop().await;
}

/// Upgrades a unix connection to SPDY/3.1 the way client-go does and
/// returns the session and the negotiated protocol.
/// Opens a stream of the given `streamType`, as client-go does, and waits
/// for the server's reply.
async fn open_stream(session: &SpdySession, stream_type: &str) -> SpdyStream {
    session
        .open(HeaderList::from_pairs([("streamType", stream_type)]))
        .await
        .unwrap()
}

async fn spdy_upgrade(
    server: &TestServer,
    path_and_query: &str,
    protocols: &[&str],
) -> (SpdySession, String) {
    let mut connection = server.connect().await;
    let mut request = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("\r\n");
    connection.write_all(request.as_bytes()).await.unwrap();
    // The server sends nothing after the 101 until the client opens a
    // stream, so reading byte by byte up to the blank line is exact.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        connection.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
    let negotiated = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| value.trim().to_string())
        })
        .expect("the negotiated protocol header");
    (SpdySession::new(connection, Role::Client), negotiated)
}

async fn read_to_end(stream: &mut SpdyStream) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .unwrap()
    {
        all.extend_from_slice(&chunk);
    }
    all
}

#[tokio::test]
async fn spdy_exec_like_kubectl_1_27() {
    let server = TestServer::start().await;
    let (session, negotiated) = spdy_upgrade(
        &server,
        "/exec/default/web/app?command=sh&command=-c&command=cat%3B+echo+bye+1%3E%262%3B+exit+5&stdin=true&stdout=true&stderr=true",
        &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"],
    )
    .await;
    assert_eq!(negotiated, "v4.channel.k8s.io");
    // client-go opens error, stdin, stdout, stderr in this order, each
    // after the reply to the previous one.
    let mut error = open_stream(&session, "error").await;
    let stdin = open_stream(&session, "stdin").await;
    let mut stdout = open_stream(&session, "stdout").await;
    let mut stderr = open_stream(&session, "stderr").await;
    // More than the default 64 KiB window, to prove output is not stalled by
    // a client that never sends WINDOW_UPDATE.
    let big_input: Vec<u8> = (0..200_000u32)
        .map(|index| b'a' + (index % 26) as u8)
        .collect();
    stdin.send(&big_input).await.unwrap();
    stdin.finish().await.unwrap();
    let (stdout_bytes, stderr_bytes, error_bytes) = tokio::join!(
        read_to_end(&mut stdout),
        read_to_end(&mut stderr),
        read_to_end(&mut error)
    );
    assert!(
        stdout_bytes == big_input,
        "stdout had {} bytes",
        stdout_bytes.len()
    );
    assert_eq!(stderr_bytes, b"bye\n");
    let status: serde_json::Value = serde_json::from_slice(&error_bytes).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "5");
    tokio::time::timeout(Duration::from_secs(5), session.wait_closed())
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn spdy_exec_with_tty_resize_and_v3_plain_text_errors() {
    let server = TestServer::start().await;
    let (session, negotiated) = spdy_upgrade(
        &server,
        "/exec/default/web/app?command=sh&command=-c&command=read+x%3B+exit+2&stdin=1&stdout=1&tty=1",
        &["v3.channel.k8s.io", "v2.channel.k8s.io"],
    )
    .await;
    assert_eq!(negotiated, "v3.channel.k8s.io");
    let mut error = open_stream(&session, "error").await;
    let stdin = open_stream(&session, "stdin").await;
    let mut stdout = open_stream(&session, "stdout").await;
    let resize = open_stream(&session, "resize").await;
    resize.send(br#"{"Width":90,"Height":30}"#).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stdin.send(b"x\n").await.unwrap();
    let (_, error_bytes) = tokio::join!(read_to_end(&mut stdout), read_to_end(&mut error));
    assert_eq!(
        String::from_utf8(error_bytes).unwrap(),
        "command terminated with non-zero exit code: exit status 2"
    );
    assert_eq!(
        *server.backend.resizes.lock().unwrap(),
        vec![TerminalSize {
            width: 90,
            height: 30
        }]
    );
    server.stop().await;
}

#[tokio::test]
async fn spdy_upgrade_without_a_common_protocol_is_forbidden() {
    let server = TestServer::start().await;
    let mut connection = server.connect().await;
    connection
        .write_all(
            b"GET /exec/default/web/app?command=true&stdout=1 HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = vec![0u8; 4096];
    let read = connection.read(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response[..read]).to_lowercase();
    assert!(response.starts_with("http/1.1 403"), "{response}");
    assert!(response.contains("x-accept-stream-protocol-version: v4.channel.k8s.io"));
    server.stop().await;
}

async fn start_echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = connection.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    port
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// One forwarded connection as client-go's port forwarder makes it.
async fn forward_once(
    session: &SpdySession,
    port: u16,
    request_id: u32,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let headers = |stream_type: &str| {
        HeaderList::from_pairs([
            ("streamType", stream_type.to_string()),
            ("port", port.to_string()),
            ("requestID", request_id.to_string()),
        ])
    };
    let mut error = session.open(headers("error")).await.unwrap();
    // kubectl never writes to the error stream and closes its side at once.
    error.finish().await.unwrap();
    let mut data = session.open(headers("data")).await.unwrap();
    data.send(payload).await.unwrap();
    data.finish().await.unwrap();
    let (echoed, error_text) = tokio::join!(read_to_end(&mut data), read_to_end(&mut error));
    (echoed, error_text)
}

#[tokio::test]
async fn spdy_port_forward_relays_connections_and_reports_errors() {
    let server = TestServer::start().await;
    let echo_port = start_echo_server().await;
    let closed_port = free_port().await;
    let (session, negotiated) =
        spdy_upgrade(&server, "/portForward/default/web", &["portforward.k8s.io"]).await;
    assert_eq!(negotiated, "portforward.k8s.io");
    let (echoed, error_text) = forward_once(&session, echo_port, 0, b"ping over spdy").await;
    assert_eq!(echoed, b"ping over spdy");
    assert!(error_text.is_empty());
    // A second connection on the same session.
    let large: Vec<u8> = (0..300_000u32).map(|index| (index % 253) as u8).collect();
    let (echoed, _) = forward_once(&session, echo_port, 1, &large).await;
    assert!(echoed == large, "echoed {} bytes", echoed.len());
    let (_, error_text) = forward_once(&session, closed_port, 2, b"nobody listens").await;
    let error_text = String::from_utf8(error_text).unwrap();
    assert!(
        error_text.starts_with(&format!(
            "error forwarding port {closed_port} to pod default/web"
        )),
        "{error_text}"
    );
    session.close().await;
    server.stop().await;
}

#[tokio::test]
async fn websocket_tunnelled_spdy_port_forward_like_kubectl_1_31() {
    let server = TestServer::start().await;
    let echo_port = start_echo_server().await;
    let (socket, selected) = websocket(
        &server,
        &format!("/portForward/default/web?ports={echo_port}"),
        "SPDY/3.1+portforward.k8s.io",
    )
    .await;
    assert_eq!(selected.as_deref(), Some("SPDY/3.1+portforward.k8s.io"));
    let session = SpdySession::new(client_byte_stream(socket), Role::Client);
    let (echoed, error_text) = forward_once(&session, echo_port, 0, b"through the tunnel").await;
    assert_eq!(echoed, b"through the tunnel");
    assert!(error_text.is_empty());
    server.stop().await;
}

/// The client half of SPDY-in-WebSocket: bytes in binary messages.
fn client_byte_stream(socket: WebSocketClient) -> DuplexStream {
    let (session_side, adapter_side) = tokio::io::duplex(64 * 1024);
    let (mut adapter_reader, mut adapter_writer) = tokio::io::split(adapter_side);
    let (mut sink, mut messages) = socket.split();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(count) = adapter_reader.read(&mut buffer).await {
            if count == 0
                || sink
                    .send(Message::Binary(Bytes::copy_from_slice(&buffer[..count])))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            if let Message::Binary(data) = message {
                if adapter_writer.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
        let _ = adapter_writer.shutdown().await;
    });
    session_side
}

async fn http_get(
    server: &TestServer,
    path_and_query: &str,
) -> http::Response<hyper::body::Incoming> {
    let io = hyper_util::rt::TokioIo::new(server.connect().await);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path_and_query)
        .header("host", "localhost")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    sender.send_request(request).await.unwrap()
}

#[tokio::test]
async fn logs_stream_as_text_and_follow_keeps_streaming() {
    let server = TestServer::start().await;
    let response = http_get(
        &server,
        "/containerLogs/default/web/app?tailLines=10&timestamps=true",
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"line 1\nline 2\n");
    {
        let targets = server.backend.log_targets.lock().unwrap();
        assert_eq!(targets[0].0.container, "app");
        assert_eq!(targets[0].1.tail_lines, Some(10));
        assert!(targets[0].1.timestamps);
    }

    let mut response = http_get(&server, "/containerLogs/default/web/app?follow=true").await;
    let mut received = Vec::new();
    while received.len() < 14 {
        let frame = response.body_mut().frame().await.unwrap().unwrap();
        received.extend_from_slice(&frame.into_data().unwrap());
    }
    let mut writer = server.backend.followed_log.lock().unwrap().take().unwrap();
    writer.write_all(b"line 3\n").await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), response.body_mut().frame())
        .await
        .unwrap();
    assert_eq!(
        &frame.unwrap().unwrap().into_data().unwrap()[..],
        b"line 3\n"
    );
    drop(writer);

    let missing = http_get(&server, "/containerLogs/default/web/missing").await;
    assert_eq!(missing.status(), 404);
    let status: serde_json::Value =
        serde_json::from_slice(&missing.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    server.stop().await;
}

#[tokio::test]
async fn serve_unix_restricts_the_socket_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let mode = std::fs::metadata(&server.socket_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    server.stop().await;
}
