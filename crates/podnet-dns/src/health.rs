//! A tiny HTTP endpoint for probes: `/ready` answers 200 once the first sync
//! is done (503 before), `/health` answers 200 while the process runs, and
//! `/metrics` gives the query counter in Prometheus text form.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::server::Handler;
use crate::DnsError;

/// Serve the probe endpoints on `listen` until the task is dropped.
pub async fn serve(
    listen: SocketAddr,
    handler: Arc<Handler>,
) -> Result<tokio::task::JoinHandle<()>, DnsError> {
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        DnsError::Bind(format!(
            "binding the health endpoint {listen}: {e} (pick another --health-listen)"
        ))
    })?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                let read =
                    tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
                let Ok(Ok(length)) = read else { return };
                let request = String::from_utf8_lossy(&buffer[..length]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/ready" if handler.draining.load(Ordering::Relaxed) => (
                        "503 Service Unavailable",
                        "shutting down".to_string(),
                    ),
                    "/ready" if handler.snapshot.load().synced => ("200 OK", "OK".to_string()),
                    "/ready" => (
                        "503 Service Unavailable",
                        "waiting for the first sync with the API".to_string(),
                    ),
                    "/health" => ("200 OK", "OK".to_string()),
                    "/metrics" => (
                        "200 OK",
                        format!(
                            "# TYPE podnet_dns_queries_total counter\npodnet_dns_queries_total {}\n",
                            handler.queries.load(Ordering::Relaxed)
                        ),
                    ),
                    _ => ("404 Not Found", "not found".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    }))
}
