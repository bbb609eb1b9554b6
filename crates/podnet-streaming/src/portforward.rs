//! Port-forward over SPDY (plain, or tunnelled in WebSocket): every local
//! connection of the client arrives as a pair of streams (error, data)
//! sharing a `requestID`; the data stream is relayed to a connection the
//! backend opens to the pod's port.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::protocol::parse_port;
use crate::remotecommand::STREAM_CREATION_TIMEOUT;
use crate::spdy::frame::rst_status;
use crate::spdy::{SpdySession, SpdyStream};
use crate::{PodRef, StreamingBackend};

/// After one direction of a forwarded connection ends, the other gets this
/// long to finish before both streams are closed (the grace containerd
/// gives, so that a client which closes without half-close does not keep
/// the pair open while the pod's server idles on keep-alive).
const OTHER_DIRECTION_GRACE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct PendingPair {
    error: Option<SpdyStream>,
    data: Option<SpdyStream>,
    first_seen: Option<Instant>,
}

/// Serves port-forward streams until the client closes the connection.
pub(crate) async fn serve_spdy<B: StreamingBackend>(
    mut session: SpdySession,
    backend: Arc<B>,
    pod: PodRef,
) {
    let mut pending: HashMap<String, PendingPair> = HashMap::new();
    let mut expiry_check = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stream = tokio::select! {
            stream = session.accept() => stream,
            _ = expiry_check.tick() => {
                expire_incomplete_pairs(&mut pending).await;
                continue;
            }
        };
        let Some(stream) = stream else { break };
        let port = stream.headers().get("port").unwrap_or("").to_string();
        let stream_type = stream.headers().get("streamtype").unwrap_or("").to_string();
        if parse_port(&port).is_err() || (stream_type != "error" && stream_type != "data") {
            tracing::debug!(
                port,
                stream_type,
                "refusing port-forward stream with bad headers"
            );
            stream.reset(rst_status::REFUSED_STREAM).await;
            continue;
        }
        let request_id = match stream.headers().get("requestid") {
            Some(id) if !id.is_empty() => id.to_string(),
            // Old clients send no request id: pair consecutive streams the
            // way the kubelet does (error stream id, data stream id - 2).
            _ if stream_type == "error" => stream.id().to_string(),
            _ => stream.id().saturating_sub(2).to_string(),
        };
        let pair = pending.entry(request_id.clone()).or_default();
        pair.first_seen.get_or_insert_with(Instant::now);
        let slot = if stream_type == "error" {
            &mut pair.error
        } else {
            &mut pair.data
        };
        if slot.is_some() {
            let message = format!("error processing stream for request {request_id}: {stream_type} stream already assigned");
            if let Some(error_stream) = &pair.error {
                let _ = error_stream.send(message.as_bytes()).await;
            }
            stream.reset(rst_status::PROTOCOL_ERROR).await;
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pending
                .remove(&request_id)
                .expect("the pair was just completed");
            let (Some(error), Some(data)) = (pair.error, pair.data) else {
                continue;
            };
            tokio::spawn(forward_pair(Arc::clone(&backend), pod.clone(), error, data));
        }
    }
    session.close().await;
}

async fn expire_incomplete_pairs(pending: &mut HashMap<String, PendingPair>) {
    let expired: Vec<String> = pending
        .iter()
        .filter(|(_, pair)| {
            pair.first_seen
                .is_some_and(|seen| seen.elapsed() > STREAM_CREATION_TIMEOUT)
        })
        .map(|(request_id, _)| request_id.clone())
        .collect();
    for request_id in expired {
        if let Some(pair) = pending.remove(&request_id) {
            if let Some(error) = pair.error {
                let message =
                    format!("timed out waiting for the data stream of request {request_id}");
                let _ = error.send(message.as_bytes()).await;
                let _ = error.finish().await;
            }
            if let Some(data) = pair.data {
                data.reset(rst_status::CANCEL).await;
            }
        }
    }
}

/// Relays one forwarded connection; failures are reported as text on the
/// error stream, which kubectl prints.
async fn forward_pair<B: StreamingBackend>(
    backend: Arc<B>,
    pod: PodRef,
    error: SpdyStream,
    data: SpdyStream,
) {
    let port = parse_port(data.headers().get("port").unwrap_or("")).unwrap_or(0);
    let connection = match backend.port_forward(pod.clone(), port).await {
        Ok(connection) => connection,
        Err(failure) => {
            let message = format!(
                "error forwarding port {port} to pod {}/{}: {failure}",
                pod.namespace, pod.name
            );
            tracing::debug!(message);
            let _ = error.send(message.as_bytes()).await;
            let _ = error.finish().await;
            let _ = data.finish().await;
            return;
        }
    };
    let (mut pod_reader, mut pod_writer) = tokio::io::split(connection);
    let (mut client_receiver, client_sender) = data.into_parts();

    let client_to_pod = async move {
        while let Some(chunk) = client_receiver.recv().await {
            if pod_writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if client_receiver.reset_status().is_none() {
            // Half-close: the pod's server sees end of request.
            let _ = pod_writer.shutdown().await;
        }
    };
    let data_sender = client_sender.clone();
    let pod_to_client = async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match pod_reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if data_sender.send(&buffer[..count]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = data_sender.finish().await;
    };
    tokio::pin!(client_to_pod);
    tokio::pin!(pod_to_client);
    tokio::select! {
        _ = &mut client_to_pod => {
            let _ = tokio::time::timeout(OTHER_DIRECTION_GRACE, &mut pod_to_client).await;
        }
        _ = &mut pod_to_client => {
            let _ = tokio::time::timeout(OTHER_DIRECTION_GRACE, &mut client_to_pod).await;
        }
    }
    let _ = client_sender.finish().await;
    let _ = error.finish().await;
}
