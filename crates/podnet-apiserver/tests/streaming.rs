//! Log and exec proxying to a node agent, here a small fake agent on a unix
//! socket that serves logs and echoes upgraded connections.

mod support;
use support::*;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn fake_agent(
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let seen = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if request.uri().path().starts_with("/containerLogs/") {
        return Ok(Response::builder()
            .header("Content-Type", "text/plain")
            .header("X-Seen-Path", &seen)
            .body(Full::new(Bytes::from(format!(
                "log line one\nseen {seen}\n"
            ))))
            .unwrap());
    }
    let protocol = request
        .headers()
        .get("upgrade")
        .cloned()
        .unwrap_or_else(|| http::HeaderValue::from_static("none"));
    let authorization_leaked = request.headers().contains_key("authorization");
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buffer = [0u8; 1024];
            while let Ok(n) = io.read(&mut buffer).await {
                if n == 0 || io.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Connection", "Upgrade")
        .header("Upgrade", protocol)
        .header("X-Seen-Path", &seen)
        .header("X-Authorization-Leaked", authorization_leaked.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap())
}

fn start_fake_agent(socket: std::path::PathBuf) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(async { tokio::net::UnixListener::bind(&socket).unwrap() });
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(fake_agent))
                    .with_upgrades()
                    .await;
            });
        }
    });
    runtime
}

#[test]
fn logs_and_exec_are_proxied_to_the_agent() {
    let server = TestServer::start();
    let socket = server.data_path().join("agent.sock");
    let _agent = start_fake_agent(socket.clone());
    let objects = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n  annotations:\n    podnet.io/agent-endpoint: unix://{}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    kubectl.kubernetes.io/default-container: app\nspec:\n  nodeName: node1\n  containers:\n  - name: sidecar\n    image: busybox\n  - name: app\n    image: nginx\n",
        socket.display()
    );
    server.ok_stdin(&["apply", "-f", "-"], &objects);

    let logs = server.ok(&["logs", "web", "--tail=5"]);
    assert!(logs.contains("log line one"), "{logs}");
    assert!(
        logs.contains("seen /containerLogs/default/web/app?"),
        "{logs}"
    );
    assert!(logs.contains("tailLines=5"), "{logs}");

    let token = server.token();
    let ca = std::fs::read(server.ca()).unwrap();
    let port = server.port;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (head, echoed) = runtime.block_on(async move {
        use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let request = format!(
            "GET /api/v1/namespaces/default/pods/web/exec?command=cat&container=sidecar&stdin=true HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: test-echo\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        tls.write_all(b"hello through the tunnel").await.unwrap();
        let mut echoed = vec![0u8; 24];
        tls.read_exact(&mut echoed).await.unwrap();
        (String::from_utf8(head).unwrap(), String::from_utf8(echoed).unwrap())
    });
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let head_lower = head.to_lowercase();
    assert!(
        head_lower.contains(
            "x-seen-path: /exec/default/web/sidecar?command=cat&container=sidecar&stdin=true"
        ),
        "{head}"
    );
    assert!(
        head_lower.contains("x-authorization-leaked: false"),
        "{head}"
    );
    assert_eq!(echoed, "hello through the tunnel");
}
