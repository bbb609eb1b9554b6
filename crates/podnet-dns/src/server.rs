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
use crate::fast::{self, ReplyCache};
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

/// What the UDP path did with one query.
pub enum UdpStep {
    /// The reply is in the output buffer.
    Reply,
    /// Nothing to send.
    Nothing,
    /// Needs the upstream: finish with [`Handler::finish`].
    Upstream(Box<(Message, Outcome)>),
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
        self.step(bytes, tcp)
    }

    /// [`Handler::start`] for UDP through `cache` (one per thread): a
    /// cached reply, or the slow path, whose snapshot-only replies are
    /// cached. Does not count the query (the caller counts per batch).
    pub fn start_udp(
        &self,
        bytes: &[u8],
        cache: &mut ReplyCache,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> UdpStep {
        let snapshot = self.snapshot.load();
        cache.track(&snapshot);
        if let Some(shape) = fast::shape(bytes) {
            if cache.lookup(bytes, shape, out) {
                return UdpStep::Reply;
            }
            // Answer the case-folded request once and keep the bytes.
            cache.folded_request(bytes, scratch);
            if let Ok(request) = wire::parse(scratch) {
                if let Outcome::Reply(response) = answer(&request, &snapshot) {
                    let encoded = wire::encode(response, limit(&request, false));
                    cache.insert(&encoded);
                    out.clear();
                    out.extend_from_slice(&encoded);
                    fast::patch(bytes, shape, out);
                    return UdpStep::Reply;
                }
            }
        }
        drop(snapshot);
        match self.step(bytes, false) {
            Step::Done(Some(reply)) => {
                *out = reply;
                UdpStep::Reply
            }
            Step::Done(None) => UdpStep::Nothing,
            Step::Upstream(pending) => UdpStep::Upstream(pending),
        }
    }

    fn step(&self, bytes: &[u8], tcp: bool) -> Step {
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
            Outcome::Forward => {
                // A cached upstream answer needs no trip to the runtime.
                let cached = request
                    .queries
                    .first()
                    .and_then(|query| self.forwarder.cached(query));
                match cached {
                    Some(upstream) => Step::Done(Some(wire::encode(
                        forwarded(&request, upstream),
                        limit(&request, tcp),
                    ))),
                    None => Step::Upstream(Box::new((request, Outcome::Forward))),
                }
            }
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
                    Ok(upstream) => forwarded(request, upstream),
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

/// The reply to `request` carrying the upstream's answer.
fn forwarded(request: &Message, upstream: Message) -> Message {
    let mut response = response_to(request, upstream.metadata.response_code);
    response.metadata.recursion_available = upstream.metadata.recursion_available;
    response.metadata.authoritative = upstream.metadata.authoritative;
    response.metadata.authentic_data = upstream.metadata.authentic_data;
    response.answers = upstream.answers;
    response.authorities = upstream.authorities;
    response.additionals = upstream.additionals;
    response
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
    let mut batch = mmsg::Batch::new();
    let mut cache = ReplyCache::new(fast::DEFAULT_CAPACITY);
    let mut scratch = Vec::with_capacity(512);
    while !stop.load(Ordering::Relaxed) {
        let received = match batch.receive(&socket) {
            Ok(count) => count,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                // Idle: let go of an old snapshot.
                cache.track(&handler.snapshot.load());
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "UDP receive failed");
                continue;
            }
        };
        handler
            .queries
            .fetch_add(received as u64, Ordering::Relaxed);
        for index in 0..received {
            let (request, reply) = batch.message(index);
            match handler.start_udp(request, &mut cache, &mut scratch, reply) {
                UdpStep::Reply => batch.answer(index),
                UdpStep::Nothing => {}
                UdpStep::Upstream(pending) => {
                    let Some(peer) = batch.peer(index) else {
                        continue;
                    };
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
        batch.send(&socket);
    }
}

/// Batched datagram I/O: `recvmmsg` takes up to [`mmsg::BATCH`] queries in
/// one call (blocking for the first only) and `sendmmsg` sends the replies
/// in one call, so a loaded server makes two system calls per batch instead
/// of two per query.
mod mmsg {
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    pub const BATCH: usize = 32;
    /// Largest query taken whole (larger ones arrive cut and get FORMERR).
    const DATAGRAM: usize = 4096;

    pub struct Batch {
        buffers: Vec<u8>,
        lengths: [usize; BATCH],
        peers: Box<[libc::sockaddr_storage; BATCH]>,
        peer_lengths: [libc::socklen_t; BATCH],
        replies: Vec<Vec<u8>>,
        /// Indexes of messages with a reply to send.
        answered: Vec<usize>,
    }

    impl Batch {
        pub fn new() -> Batch {
            Batch {
                buffers: vec![0; BATCH * DATAGRAM],
                lengths: [0; BATCH],
                // SAFETY: all-zero bytes are a valid sockaddr_storage.
                peers: Box::new(unsafe { std::mem::zeroed() }),
                peer_lengths: [0; BATCH],
                replies: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
                answered: Vec::with_capacity(BATCH),
            }
        }

        /// Wait for at least one datagram and take what is queued (up to
        /// BATCH). Honours the socket's read timeout.
        pub fn receive(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
            self.answered.clear();
            // SAFETY: zeroed iovec/mmsghdr are valid; every pointer set
            // below points into buffers owned by `self` that outlive the
            // call, with the lengths of those buffers.
            let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (index, (iovec, header)) in iovecs.iter_mut().zip(headers.iter_mut()).enumerate() {
                iovec.iov_base = self.buffers[index * DATAGRAM..].as_mut_ptr().cast();
                iovec.iov_len = DATAGRAM;
                header.msg_hdr.msg_name =
                    (&mut self.peers[index] as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: see above; the kernel writes at most the given lengths.
            let count = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    headers.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if count < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let count = count as usize;
            for (index, header) in headers.iter().enumerate().take(count) {
                self.lengths[index] = (header.msg_len as usize).min(DATAGRAM);
                self.peer_lengths[index] = header.msg_hdr.msg_namelen;
            }
            Ok(count)
        }

        /// The request `index` and the buffer for its reply.
        pub fn message(&mut self, index: usize) -> (&[u8], &mut Vec<u8>) {
            let start = index * DATAGRAM;
            (
                &self.buffers[start..start + self.lengths[index]],
                &mut self.replies[index],
            )
        }

        /// Send the reply buffer of `index` with the next [`Batch::send`].
        pub fn answer(&mut self, index: usize) {
            self.answered.push(index);
        }

        /// The sender of message `index`.
        pub fn peer(&self, index: usize) -> Option<SocketAddr> {
            let storage = &self.peers[index];
            match storage.ss_family as libc::c_int {
                libc::AF_INET => {
                    // SAFETY: the family says this storage holds a sockaddr_in.
                    let v4: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const _) };
                    Some(SocketAddr::V4(SocketAddrV4::new(
                        u32::from_be(v4.sin_addr.s_addr).into(),
                        u16::from_be(v4.sin_port),
                    )))
                }
                libc::AF_INET6 => {
                    // SAFETY: the family says this storage holds a sockaddr_in6.
                    let v6: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const _) };
                    Some(SocketAddr::V6(SocketAddrV6::new(
                        v6.sin6_addr.s6_addr.into(),
                        u16::from_be(v6.sin6_port),
                        v6.sin6_flowinfo,
                        v6.sin6_scope_id,
                    )))
                }
                _ => None,
            }
        }

        /// Send every answered reply to its sender. A datagram the kernel
        /// refuses is skipped (as a lost reply), the rest still go.
        pub fn send(&mut self, socket: &UdpSocket) {
            let count = self.answered.len();
            if count == 0 {
                return;
            }
            // SAFETY: as in `receive`; the pointers reference replies and
            // peer addresses owned by `self`, unchanged during the call.
            let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (slot, &index) in self.answered.iter().enumerate() {
                let reply = &mut self.replies[index];
                iovecs[slot].iov_base = reply.as_mut_ptr().cast();
                iovecs[slot].iov_len = reply.len();
                let header = &mut headers[slot].msg_hdr;
                header.msg_name = (&mut self.peers[index] as *mut libc::sockaddr_storage).cast();
                header.msg_namelen = self.peer_lengths[index];
                header.msg_iov = &mut iovecs[slot];
                header.msg_iovlen = 1;
            }
            let mut sent = 0;
            while sent < count {
                // SAFETY: headers[sent..count] are initialised above.
                let result = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        headers[sent..].as_mut_ptr(),
                        (count - sent) as libc::c_uint,
                        0,
                    )
                };
                if result <= 0 {
                    let error = std::io::Error::last_os_error();
                    if error.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    tracing::debug!(%error, "UDP send failed");
                    sent += 1;
                } else {
                    sent += result as usize;
                }
            }
            self.answered.clear();
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
