//! The transports: several SO_REUSEPORT UDP sockets, each drained by its own
//! thread (cluster answers never leave it), and a TCP listener. Forwarded
//! queries run on the async runtime. Answers read the current snapshot
//! through an `ArcSwap`, so they never wait for the watcher.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::answer::{answer, response_to, Chase, Outcome};
use crate::forward::Forwarder;
use crate::snapshot::Snapshot;
use crate::wire;
use crate::DnsError;

/// Shared state of every transport.
pub struct Handler {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub forwarder: Arc<Forwarder>,
    /// Queries answered (any transport, any outcome).
    pub queries: AtomicU64,
    /// Shutting down: still answering, but /ready says no (lameduck).
    pub draining: AtomicBool,
}

/// The result of the synchronous part of handling one query.
pub enum Step {
    /// Send these bytes (or nothing).
    Done(Option<Vec<u8>>),
    /// Needs the upstream: finish with [`Handler::finish`].
    Upstream(Box<(Message, Outcome)>),
}

impl Handler {
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, forwarder: Arc<Forwarder>) -> Handler {
        Handler {
            snapshot,
            forwarder,
            queries: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        }
    }

    /// Answer from the snapshot if possible. `tcp` selects the size limit.
    pub fn start(&self, bytes: &[u8], tcp: bool) -> Step {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let request = match wire::parse(bytes) {
            Ok(request) => request,
            Err(reply) => return Step::Done(reply),
        };
        let snapshot = self.snapshot.load();
        match answer(&request, &snapshot) {
            Outcome::Reply(response) => {
                let limit = limit(&request, tcp);
                Step::Done(Some(wire::encode(response, limit)))
            }
            Outcome::Drop => Step::Done(None),
            outcome => Step::Upstream(Box::new((request, outcome))),
        }
    }

    /// Finish a query that needs the upstream.
    pub async fn finish(&self, request: &Message, outcome: Outcome, tcp: bool) -> Option<Vec<u8>> {
        let limit = limit(request, tcp);
        let response = match outcome {
            Outcome::Forward => {
                let query = request.queries.first()?;
                match self.forwarder.resolve(query).await {
                    Ok(upstream) => {
                        let mut response = response_to(request, upstream.metadata.response_code);
                        response.metadata.recursion_available =
                            upstream.metadata.recursion_available;
                        response.metadata.authoritative = upstream.metadata.authoritative;
                        response.metadata.authentic_data = upstream.metadata.authentic_data;
                        response.answers = upstream.answers;
                        response.authorities = upstream.authorities;
                        response.additionals = upstream.additionals;
                        response
                    }
                    Err(error) => {
                        tracing::debug!(%error, "forwarding failed");
                        response_to(request, ResponseCode::ServFail)
                    }
                }
            }
            Outcome::Chase(chase) => {
                let Chase {
                    mut reply,
                    target,
                    query_type,
                    nodata,
                } = *chase;
                let query = crate::forward::query(target, query_type);
                match self.forwarder.resolve(&query).await {
                    Ok(upstream) => {
                        reply.answers.extend(upstream.answers);
                        reply
                    }
                    Err(error) => {
                        tracing::debug!(%error, "resolving an ExternalName target failed");
                        nodata
                    }
                }
            }
            Outcome::Reply(response) => response,
            Outcome::Drop => return None,
        };
        Some(wire::encode(response, limit))
    }

    /// Both steps (for callers that do not care about the fast path).
    pub async fn handle(&self, bytes: &[u8], tcp: bool) -> Option<Vec<u8>> {
        match self.start(bytes, tcp) {
            Step::Done(reply) => reply,
            Step::Upstream(pending) => {
                let (request, outcome) = *pending;
                self.finish(&request, outcome, tcp).await
            }
        }
    }
}

fn limit(request: &Message, tcp: bool) -> usize {
    if tcp {
        65535
    } else {
        wire::udp_limit(request)
    }
}

/// A running server; dropping it stops it.
pub struct ServerHandle {
    pub udp_addr: SocketAddr,
    pub tcp_addr: SocketAddr,
    pub handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tcp_task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    /// Stop every transport and wait for the UDP threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.tcp_task.take() {
            task.abort();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reuse_port_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket)
}

/// Serve DNS on `listen` (UDP with `udp_sockets` sockets/threads, and TCP).
/// Port 0 picks a free port, the same for UDP and TCP when possible.
pub async fn serve(
    listen: SocketAddr,
    udp_sockets: usize,
    handler: Arc<Handler>,
) -> Result<ServerHandle, DnsError> {
    let bind_error = |what: &str, addr: SocketAddr, e: std::io::Error| {
        DnsError::Bind(format!(
            "binding {what} {addr}: {e} (is another DNS server running there? pick another --listen)"
        ))
    };
    let first = reuse_port_udp(listen).map_err(|e| bind_error("UDP", listen, e))?;
    let udp_addr = first
        .local_addr()
        .map_err(|e| bind_error("UDP", listen, e))?;
    let tcp = TcpListener::bind(udp_addr)
        .await
        .map_err(|e| bind_error("TCP", udp_addr, e))?;
    let tcp_addr = tcp
        .local_addr()
        .map_err(|e| bind_error("TCP", udp_addr, e))?;
    let mut sockets = vec![first];
    for _ in 1..udp_sockets.max(1) {
        sockets.push(reuse_port_udp(udp_addr).map_err(|e| bind_error("UDP", udp_addr, e))?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    for (index, socket) in sockets.into_iter().enumerate() {
        let socket = Arc::new(socket);
        let handler = handler.clone();
        let stop = stop.clone();
        let runtime = runtime.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("dns-udp-{index}"))
                .spawn(move || udp_loop(socket, handler, stop, runtime))
                .map_err(|e| DnsError::Bind(format!("starting a UDP thread: {e}")))?,
        );
    }
    let tcp_handler = handler.clone();
    let tcp_task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let handler = tcp_handler.clone();
            tokio::spawn(async move {
                let _ = tcp_connection(stream, handler).await;
            });
        }
    });
    Ok(ServerHandle {
        udp_addr,
        tcp_addr,
        handler,
        stop,
        threads,
        tcp_task: Some(tcp_task),
    })
}

fn udp_loop(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
) {
    let mut buffer = vec![0u8; 65535];
    while !stop.load(Ordering::Relaxed) {
        let (length, peer) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(error) => {
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        };
        match handler.start(&buffer[..length], false) {
            Step::Done(Some(reply)) => {
                let _ = socket.send_to(&reply, peer);
            }
            Step::Done(None) => {}
            Step::Upstream(pending) => {
                let (request, outcome) = *pending;
                let socket = socket.clone();
                let handler = handler.clone();
                runtime.spawn(async move {
                    if let Some(reply) = handler.finish(&request, outcome, false).await {
                        let _ = socket.send_to(&reply, peer);
                    }
                });
            }
        }
    }
}

async fn tcp_connection(
    mut stream: tokio::net::TcpStream,
    handler: Arc<Handler>,
) -> std::io::Result<()> {
    let idle = Duration::from_secs(10);
    loop {
        let length = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(length)) => length as usize,
            _ => return Ok(()),
        };
        let mut buffer = vec![0u8; length];
        match tokio::time::timeout(idle, stream.read_exact(&mut buffer)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(reply) = handler.handle(&buffer, true).await else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&(reply.len().min(65535) as u16).to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
