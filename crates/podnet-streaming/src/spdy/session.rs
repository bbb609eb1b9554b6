//! A SPDY/3.1 session: many streams multiplexed over one byte stream.
//!
//! One reader task decodes frames and routes them to streams; one writer task
//! owns the write half. Frames carrying header blocks are encoded under the
//! outbound lock, in the order they are queued, because the header
//! compression context is shared by the whole direction.
//!
//! Flow control: this side grants the peer window as the application
//! consumes data (WINDOW_UPDATE per stream and for the session). As a
//! sender it honours the peer's windows only once the peer shows that it
//! does flow control (a WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting):
//! the SPDY library inside every Kubernetes client never sends WINDOW_UPDATE,
//! so holding it to the 64 KiB default window would stall any exec that
//! prints more than 64 KiB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::frame::{
    decode_frame, encode_frame, rst_status, Frame, HeaderBlockCompressor, HeaderBlockDecompressor,
    HeaderList, DEFAULT_INITIAL_WINDOW, FLAG_FIN, SETTINGS_INITIAL_WINDOW_SIZE,
};
use crate::StreamingError;

/// Largest DATA payload this side sends in one frame.
const MAX_DATA_CHUNK: usize = 32 * 1024;

/// Frames queued for the writer before senders wait.
const OUTBOUND_QUEUE_FRAMES: usize = 64;

/// Which end of the connection this session is; it decides stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd-numbered streams (kubectl's side).
    Client,
    /// Opens even-numbered streams (the node's side).
    Server,
}

enum WriterMessage {
    Frame(Bytes),
    Shutdown,
}

enum InboundEvent {
    Data(Bytes),
    End,
    Reset(u32),
}

struct StreamEntry {
    inbound: mpsc::UnboundedSender<InboundEvent>,
    send_window: i64,
    local_finished: bool,
    remote_finished: bool,
    reset: bool,
    reply_waiter: Option<oneshot::Sender<Result<HeaderList, StreamingError>>>,
}

struct SessionState {
    streams: HashMap<u32, StreamEntry>,
    session_send_window: i64,
    initial_send_window: i64,
    peer_does_flow_control: bool,
    next_local_stream_id: u32,
    highest_peer_stream_id: u32,
    going_away: bool,
    closed: bool,
}

struct Outbound {
    compressor: HeaderBlockCompressor,
    queue: mpsc::Sender<WriterMessage>,
}

struct Shared {
    role: Role,
    state: Mutex<SessionState>,
    outbound: tokio::sync::Mutex<Outbound>,
    window_changed: Notify,
    session_unacknowledged_bytes: AtomicU64,
    stop_reading: watch::Sender<bool>,
    connection_closed: watch::Sender<bool>,
}

impl Shared {
    async fn send_frame(&self, frame: Frame) -> Result<(), StreamingError> {
        let mut outbound = self.outbound.lock().await;
        let bytes = encode_frame(&frame, &mut outbound.compressor)?;
        outbound
            .queue
            .send(WriterMessage::Frame(bytes))
            .await
            .map_err(|_| closed_connection_error())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn forget_stream_if_done(state: &mut SessionState, stream_id: u32) {
        if let Some(entry) = state.streams.get(&stream_id) {
            if entry.reset || (entry.local_finished && entry.remote_finished) {
                state.streams.remove(&stream_id);
            }
        }
    }
}

fn closed_connection_error() -> StreamingError {
    StreamingError::Protocol {
        message: "the spdy connection is closed".to_string(),
    }
}

/// A SPDY/3.1 session over any byte stream.
pub struct SpdySession {
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedReceiver<SpdyStream>,
}

impl SpdySession {
    /// Starts the reader and writer tasks on `io`.
    pub fn new<Io>(io: Io, role: Role) -> Self
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (queue, queue_receiver) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
        let (stop_reading, stop_reading_receiver) = watch::channel(false);
        let (connection_closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            role,
            state: Mutex::new(SessionState {
                streams: HashMap::new(),
                session_send_window: DEFAULT_INITIAL_WINDOW as i64,
                initial_send_window: DEFAULT_INITIAL_WINDOW as i64,
                peer_does_flow_control: false,
                next_local_stream_id: if role == Role::Client { 1 } else { 2 },
                highest_peer_stream_id: 0,
                going_away: false,
                closed: false,
            }),
            outbound: tokio::sync::Mutex::new(Outbound {
                compressor: HeaderBlockCompressor::new(),
                queue,
            }),
            window_changed: Notify::new(),
            session_unacknowledged_bytes: AtomicU64::new(0),
            stop_reading,
            connection_closed,
        });
        let (incoming_sender, incoming) = mpsc::unbounded_channel();
        tokio::spawn(run_writer(write_half, queue_receiver));
        tokio::spawn(run_reader(
            read_half,
            Arc::clone(&shared),
            incoming_sender,
            stop_reading_receiver,
        ));
        Self { shared, incoming }
    }

    /// The next stream the peer opened, already answered with SYN_REPLY;
    /// `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        self.incoming.recv().await
    }

    /// Opens a stream and waits for the peer's SYN_REPLY.
    pub async fn open(&self, headers: HeaderList) -> Result<SpdyStream, StreamingError> {
        let (reply_sender, reply_receiver) = oneshot::channel();
        let (inbound_sender, inbound_receiver) = mpsc::unbounded_channel();
        // Allocating the id and queueing the SYN_STREAM happen under the
        // outbound lock so stream ids reach the wire in increasing order.
        let mut outbound = self.shared.outbound.lock().await;
        let stream_id = {
            let mut state = self.shared.lock_state();
            if state.closed || state.going_away {
                return Err(closed_connection_error());
            }
            let stream_id = state.next_local_stream_id;
            state.next_local_stream_id += 2;
            let initial_send_window = state.initial_send_window;
            state.streams.insert(
                stream_id,
                StreamEntry {
                    inbound: inbound_sender,
                    send_window: initial_send_window,
                    local_finished: false,
                    remote_finished: false,
                    reset: false,
                    reply_waiter: Some(reply_sender),
                },
            );
            stream_id
        };
        let frame = Frame::SynStream {
            stream_id,
            associated_stream_id: 0,
            priority: 0,
            flags: 0,
            headers: headers.clone(),
        };
        let bytes = encode_frame(&frame, &mut outbound.compressor)?;
        outbound
            .queue
            .send(WriterMessage::Frame(bytes))
            .await
            .map_err(|_| closed_connection_error())?;
        drop(outbound);
        reply_receiver
            .await
            .map_err(|_| closed_connection_error())??;
        Ok(SpdyStream::new(
            stream_id,
            headers,
            inbound_receiver,
            Arc::clone(&self.shared),
        ))
    }

    /// A handle that can close the session while streams are in use.
    pub fn closer(&self) -> SessionCloser {
        SessionCloser {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Sends GOAWAY, flushes everything queued and closes the connection.
    pub async fn close(&self) {
        self.closer().close().await
    }

    /// Resolves once the connection is gone.
    pub async fn wait_closed(&self) {
        self.closer().wait_closed().await
    }
}

/// Closes a [`SpdySession`] from anywhere.
#[derive(Clone)]
pub struct SessionCloser {
    shared: Arc<Shared>,
}

impl SessionCloser {
    /// Sends GOAWAY, flushes everything queued and closes the connection.
    pub async fn close(&self) {
        let last_good_stream_id = {
            let mut state = self.shared.lock_state();
            if state.closed {
                return;
            }
            state.going_away = true;
            state.highest_peer_stream_id
        };
        let _ = self
            .shared
            .send_frame(Frame::GoAway {
                last_good_stream_id,
                status: 0,
            })
            .await;
        let outbound = self.shared.outbound.lock().await;
        let _ = outbound.queue.send(WriterMessage::Shutdown).await;
        drop(outbound);
        let _ = self.shared.stop_reading.send(true);
    }

    /// Resolves once the connection is gone (the peer closed it, it broke,
    /// or [`close`](Self::close) finished).
    pub async fn wait_closed(&self) {
        let mut closed = self.shared.connection_closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }
}

async fn run_writer<W: AsyncWrite>(write_half: W, mut queue: mpsc::Receiver<WriterMessage>) {
    tokio::pin!(write_half);
    while let Some(message) = queue.recv().await {
        let mut next = Some(message);
        // Batch whatever is already queued into one flush.
        while let Some(message) = next.take() {
            match message {
                WriterMessage::Frame(bytes) => {
                    if write_half.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                WriterMessage::Shutdown => {
                    let _ = write_half.flush().await;
                    let _ = write_half.shutdown().await;
                    return;
                }
            }
            next = queue.try_recv().ok();
        }
        if write_half.flush().await.is_err() {
            return;
        }
    }
    let _ = write_half.shutdown().await;
}

async fn run_reader<R: AsyncRead>(
    read_half: R,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<SpdyStream>,
    mut stop_reading: watch::Receiver<bool>,
) {
    tokio::pin!(read_half);
    let mut decompressor = HeaderBlockDecompressor::new();
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    'connection: loop {
        loop {
            match decode_frame(&mut buffer, &mut decompressor) {
                Ok(Some(frame)) => {
                    if handle_frame(frame, &shared, &incoming).await.is_err() {
                        break 'connection;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "closing spdy session after an undecodable frame");
                    let _ = shared
                        .send_frame(Frame::GoAway {
                            last_good_stream_id: 0,
                            status: 1,
                        })
                        .await;
                    break 'connection;
                }
            }
        }
        tokio::select! {
            read = read_half.read_buf(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = stop_reading.wait_for(|stop| *stop) => break,
        }
    }
    // The connection is gone: every stream sees end of input and waiting
    // senders wake up to fail.
    let mut state = shared.lock_state();
    state.closed = true;
    for (_, mut entry) in state.streams.drain() {
        if let Some(waiter) = entry.reply_waiter.take() {
            let _ = waiter.send(Err(closed_connection_error()));
        }
    }
    drop(state);
    shared.window_changed.notify_waiters();
    shared.connection_closed.send_replace(true);
}

async fn handle_frame(
    frame: Frame,
    shared: &Arc<Shared>,
    incoming: &mpsc::UnboundedSender<SpdyStream>,
) -> Result<(), StreamingError> {
    match frame {
        Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } => {
            let peer_parity = if shared.role == Role::Server { 1 } else { 0 };
            let (inbound_sender, inbound_receiver) = mpsc::unbounded_channel();
            let refusal = {
                let mut state = shared.lock_state();
                if stream_id % 2 != peer_parity || stream_id <= state.highest_peer_stream_id {
                    Some(rst_status::PROTOCOL_ERROR)
                } else if state.going_away {
                    Some(rst_status::REFUSED_STREAM)
                } else {
                    state.highest_peer_stream_id = stream_id;
                    let remote_finished = flags & FLAG_FIN != 0;
                    if remote_finished {
                        let _ = inbound_sender.send(InboundEvent::End);
                    }
                    let initial_send_window = state.initial_send_window;
                    state.streams.insert(
                        stream_id,
                        StreamEntry {
                            inbound: inbound_sender,
                            send_window: initial_send_window,
                            local_finished: false,
                            remote_finished,
                            reset: false,
                            reply_waiter: None,
                        },
                    );
                    None
                }
            };
            if let Some(status) = refusal {
                return shared
                    .send_frame(Frame::RstStream { stream_id, status })
                    .await;
            }
            // Reply before the application sees the stream, as the
            // Kubernetes SPDY server does: the client waits for the reply
            // before it opens its next stream.
            shared
                .send_frame(Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: HeaderList::new(),
                })
                .await?;
            let stream = SpdyStream::new(stream_id, headers, inbound_receiver, Arc::clone(shared));
            if incoming.send(stream).is_err() {
                tracing::debug!(
                    stream_id,
                    "spdy stream opened after the session stopped accepting"
                );
            }
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            let mut state = shared.lock_state();
            if let Some(entry) = state.streams.get_mut(&stream_id) {
                if let Some(waiter) = entry.reply_waiter.take() {
                    let _ = waiter.send(Ok(headers));
                }
                if flags & FLAG_FIN != 0 {
                    entry.remote_finished = true;
                    let _ = entry.inbound.send(InboundEvent::End);
                }
                Shared::forget_stream_if_done(&mut state, stream_id);
            }
        }
        Frame::Data {
            stream_id,
            flags,
            payload,
        } => {
            let mut state = shared.lock_state();
            match state.streams.get_mut(&stream_id) {
                Some(entry) if !entry.remote_finished => {
                    if !payload.is_empty() {
                        let _ = entry.inbound.send(InboundEvent::Data(payload));
                    }
                    if flags & FLAG_FIN != 0 {
                        entry.remote_finished = true;
                        let _ = entry.inbound.send(InboundEvent::End);
                        Shared::forget_stream_if_done(&mut state, stream_id);
                    }
                }
                // Data for a stream that was reset or already finished is
                // dropped: both sides may race a reset against data in
                // flight.
                _ => {}
            }
        }
        Frame::Headers {
            stream_id, flags, ..
        } => {
            if flags & FLAG_FIN != 0 {
                let mut state = shared.lock_state();
                if let Some(entry) = state.streams.get_mut(&stream_id) {
                    entry.remote_finished = true;
                    let _ = entry.inbound.send(InboundEvent::End);
                    Shared::forget_stream_if_done(&mut state, stream_id);
                }
            }
        }
        Frame::RstStream { stream_id, status } => {
            let mut state = shared.lock_state();
            if let Some(mut entry) = state.streams.remove(&stream_id) {
                entry.reset = true;
                let _ = entry.inbound.send(InboundEvent::Reset(status));
                if let Some(waiter) = entry.reply_waiter.take() {
                    let _ = waiter.send(Err(StreamingError::Protocol {
                        message: format!(
                            "the peer refused spdy stream {stream_id} (status {status})"
                        ),
                    }));
                }
            }
            drop(state);
            shared.window_changed.notify_waiters();
        }
        Frame::Settings { entries, .. } => {
            let mut state = shared.lock_state();
            for (_, id, value) in entries {
                if id == SETTINGS_INITIAL_WINDOW_SIZE {
                    let difference = value as i64 - state.initial_send_window;
                    state.initial_send_window = value as i64;
                    state.peer_does_flow_control = true;
                    for entry in state.streams.values_mut() {
                        entry.send_window += difference;
                    }
                }
            }
            drop(state);
            shared.window_changed.notify_waiters();
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut state = shared.lock_state();
            state.peer_does_flow_control = true;
            if stream_id == 0 {
                state.session_send_window += delta as i64;
            } else if let Some(entry) = state.streams.get_mut(&stream_id) {
                entry.send_window += delta as i64;
            }
            drop(state);
            shared.window_changed.notify_waiters();
        }
        Frame::Ping { id } => {
            // Pings from the peer carry the peer's parity; echo them.
            let peer_parity = if shared.role == Role::Server { 1 } else { 0 };
            if id % 2 == peer_parity {
                shared.send_frame(Frame::Ping { id }).await?;
            }
        }
        Frame::GoAway { .. } => {
            shared.lock_state().going_away = true;
        }
        Frame::Unknown { .. } => {}
    }
    Ok(())
}

/// One SPDY stream: headers, an inbound half and an outbound half.
pub struct SpdyStream {
    headers: HeaderList,
    receiver: SpdyStreamReceiver,
    sender: SpdyStreamSender,
}

impl SpdyStream {
    fn new(
        stream_id: u32,
        headers: HeaderList,
        inbound: mpsc::UnboundedReceiver<InboundEvent>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            headers,
            receiver: SpdyStreamReceiver {
                stream_id,
                inbound,
                shared: Arc::clone(&shared),
                unacknowledged_bytes: 0,
                reset_status: None,
                ended: false,
            },
            sender: SpdyStreamSender { stream_id, shared },
        }
    }

    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.sender.stream_id
    }

    /// The headers the opener sent.
    pub fn headers(&self) -> &HeaderList {
        &self.headers
    }

    /// Splits into halves usable from different tasks.
    pub fn into_parts(self) -> (SpdyStreamReceiver, SpdyStreamSender) {
        (self.receiver, self.sender)
    }

    /// See [`SpdyStreamReceiver::recv`].
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.receiver.recv().await
    }

    /// See [`SpdyStreamSender::send`].
    pub async fn send(&self, data: &[u8]) -> Result<(), StreamingError> {
        self.sender.send(data).await
    }

    /// See [`SpdyStreamSender::finish`].
    pub async fn finish(&self) -> Result<(), StreamingError> {
        self.sender.finish().await
    }

    /// See [`SpdyStreamSender::reset`].
    pub async fn reset(&self, status: u32) {
        self.sender.reset(status).await
    }
}

/// The inbound half of a [`SpdyStream`].
pub struct SpdyStreamReceiver {
    stream_id: u32,
    inbound: mpsc::UnboundedReceiver<InboundEvent>,
    shared: Arc<Shared>,
    unacknowledged_bytes: u32,
    reset_status: Option<u32>,
    ended: bool,
}

impl SpdyStreamReceiver {
    /// The next chunk of data; `None` once the peer finished the stream,
    /// reset it, or the connection closed.
    pub async fn recv(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        match self.inbound.recv().await {
            Some(InboundEvent::Data(data)) => {
                self.acknowledge(data.len()).await;
                Some(data)
            }
            Some(InboundEvent::Reset(status)) => {
                self.reset_status = Some(status);
                self.ended = true;
                None
            }
            Some(InboundEvent::End) | None => {
                self.ended = true;
                None
            }
        }
    }

    /// The RST_STREAM status if the peer reset the stream.
    pub fn reset_status(&self) -> Option<u32> {
        self.reset_status
    }

    /// Grants the peer window for what the application consumed, in
    /// batches of half a window so updates stay rare.
    async fn acknowledge(&mut self, consumed: usize) {
        let threshold = DEFAULT_INITIAL_WINDOW / 2;
        self.unacknowledged_bytes += consumed as u32;
        if self.unacknowledged_bytes >= threshold {
            let delta = std::mem::take(&mut self.unacknowledged_bytes);
            let _ = self
                .shared
                .send_frame(Frame::WindowUpdate {
                    stream_id: self.stream_id,
                    delta,
                })
                .await;
        }
        let session_total = self
            .shared
            .session_unacknowledged_bytes
            .fetch_add(consumed as u64, Ordering::SeqCst)
            + consumed as u64;
        if session_total >= threshold as u64 {
            let delta = self
                .shared
                .session_unacknowledged_bytes
                .swap(0, Ordering::SeqCst);
            if delta > 0 {
                let _ = self
                    .shared
                    .send_frame(Frame::WindowUpdate {
                        stream_id: 0,
                        delta: delta as u32,
                    })
                    .await;
            }
        }
    }
}

/// The outbound half of a [`SpdyStream`]; clones share the stream.
#[derive(Clone)]
pub struct SpdyStreamSender {
    stream_id: u32,
    shared: Arc<Shared>,
}

impl SpdyStreamSender {
    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.stream_id
    }

    /// Sends `data` in DATA frames, waiting for window when the peer does
    /// flow control.
    pub async fn send(&self, mut data: &[u8]) -> Result<(), StreamingError> {
        while !data.is_empty() {
            let allowed = self.reserve_window(data.len().min(MAX_DATA_CHUNK)).await?;
            let (chunk, rest) = data.split_at(allowed);
            self.shared
                .send_frame(Frame::Data {
                    stream_id: self.stream_id,
                    flags: 0,
                    payload: Bytes::copy_from_slice(chunk),
                })
                .await?;
            data = rest;
        }
        Ok(())
    }

    /// Waits until some window is open and takes up to `wanted` bytes of it.
    async fn reserve_window(&self, wanted: usize) -> Result<usize, StreamingError> {
        loop {
            let notified = self.shared.window_changed.notified();
            {
                let mut state = self.shared.lock_state();
                if state.closed {
                    return Err(closed_connection_error());
                }
                let peer_does_flow_control = state.peer_does_flow_control;
                let session_window = state.session_send_window;
                let entry = match state.streams.get_mut(&self.stream_id) {
                    Some(entry) if !entry.reset && !entry.local_finished => entry,
                    _ => {
                        return Err(StreamingError::Protocol {
                            message: format!(
                                "spdy stream {} is closed or was reset by the peer",
                                self.stream_id
                            ),
                        })
                    }
                };
                if !peer_does_flow_control {
                    return Ok(wanted);
                }
                let available = entry.send_window.min(session_window);
                if available > 0 {
                    let granted = (available as usize).min(wanted);
                    entry.send_window -= granted as i64;
                    state.session_send_window -= granted as i64;
                    return Ok(granted);
                }
            }
            // Waiting for WINDOW_UPDATE; a timeout re-checks in case a
            // notification raced the check above.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Ends this side of the stream (an empty DATA frame with FLAG_FIN).
    pub async fn finish(&self) -> Result<(), StreamingError> {
        {
            let mut state = self.shared.lock_state();
            match state.streams.get_mut(&self.stream_id) {
                Some(entry) if !entry.local_finished && !entry.reset => entry.local_finished = true,
                // Already finished or gone: finishing twice is harmless.
                _ => return Ok(()),
            }
            Shared::forget_stream_if_done(&mut state, self.stream_id);
        }
        self.shared
            .send_frame(Frame::Data {
                stream_id: self.stream_id,
                flags: FLAG_FIN,
                payload: Bytes::new(),
            })
            .await
    }

    /// Aborts the stream in both directions.
    pub async fn reset(&self, status: u32) {
        let was_open = self
            .shared
            .lock_state()
            .streams
            .remove(&self.stream_id)
            .is_some();
        if was_open {
            let _ = self
                .shared
                .send_frame(Frame::RstStream {
                    stream_id: self.stream_id,
                    status,
                })
                .await;
        }
    }
}
