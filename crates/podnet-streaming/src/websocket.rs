//! WebSocket transports: the channel protocols for exec and attach
//! (`v5.channel.k8s.io` and older), and a byte-stream adapter that carries
//! SPDY inside WebSocket binary messages for port-forward.

use std::sync::Arc;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use crate::protocol::{
    channel, decode_channel_message, encode_channel_message, ChannelMessage, RemoteCommandDialect,
    ResizeDecoder,
};
use crate::remotecommand::{run_remote_command, ClientChannels, RemoteCommandRequest};
use crate::StreamingBackend;

enum Outgoing {
    Channel(u8, Bytes),
    Close,
}

/// Serves one exec or attach over an upgraded WebSocket.
pub(crate) async fn serve_remote_command<B: StreamingBackend>(
    socket: WebSocket,
    protocol: String,
    backend: Arc<B>,
    request: RemoteCommandRequest,
) {
    let dialect = RemoteCommandDialect::for_protocol(&protocol);
    let (mut sink, mut messages) = socket.split();
    let (outgoing, mut outgoing_queue) = mpsc::channel::<Outgoing>(32);

    let writer = tokio::spawn(async move {
        while let Some(item) = outgoing_queue.recv().await {
            let result = match item {
                Outgoing::Channel(number, data) => {
                    let payload = encode_channel_message(number, &data, dialect);
                    let message = if dialect.base64 {
                        Message::Text(String::from_utf8(payload).expect("base64 is ascii").into())
                    } else {
                        Message::Binary(payload.into())
                    };
                    sink.send(message).await
                }
                Outgoing::Close => {
                    let _ = sink.send(normal_close()).await;
                    break;
                }
            };
            if result.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    // The kubelet announces a ready connection with an empty message on the
    // lowest channel it will write to.
    let first_channel = if request.stdio.stdout {
        channel::STDOUT
    } else if request.stdio.stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    let _ = outgoing
        .send(Outgoing::Channel(first_channel, Bytes::new()))
        .await;

    let (stdin_sender, stdin_receiver) = mpsc::channel::<Bytes>(16);
    let (resize_sender, resize_receiver) = mpsc::channel(4);
    let (client_gone_sender, mut client_gone) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut stdin_sender = Some(stdin_sender);
        let mut resize_decoder = ResizeDecoder::default();
        while let Some(Ok(message)) = messages.next().await {
            let payload: Bytes = match message {
                Message::Binary(data) => data,
                Message::Text(text) => Bytes::copy_from_slice(text.as_str().as_bytes()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            match decode_channel_message(&payload, dialect) {
                Some(ChannelMessage::Data(channel::STDIN, data)) => {
                    if let Some(sender) = &stdin_sender {
                        if !data.is_empty() && sender.send(data).await.is_err() {
                            stdin_sender = None;
                        }
                    }
                }
                Some(ChannelMessage::Data(channel::RESIZE, data)) => {
                    for size in resize_decoder.push(&data) {
                        let _ = resize_sender.send(size).await;
                    }
                }
                Some(ChannelMessage::Close(channel::STDIN)) => stdin_sender = None,
                _ => {}
            }
        }
        let _ = client_gone_sender.send(());
    });

    let (output_sender, mut output_receiver) = mpsc::channel::<(u8, Bytes)>(16);
    let forwarding_output = {
        let outgoing = outgoing.clone();
        tokio::spawn(async move {
            while let Some((number, data)) = output_receiver.recv().await {
                if outgoing
                    .send(Outgoing::Channel(number, data))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let channels = ClientChannels {
        stdin: request.stdio.stdin.then_some(stdin_receiver),
        resize: (request.stdio.tty && dialect.resize).then_some(resize_receiver),
        output: output_sender,
    };
    let run = run_remote_command(backend, request, channels);
    tokio::select! {
        report = run => {
            let _ = forwarding_output.await;
            let payload = report.encode(dialect);
            if !payload.is_empty() {
                let _ = outgoing.send(Outgoing::Channel(channel::ERROR, Bytes::from(payload))).await;
            }
            let _ = outgoing.send(Outgoing::Close).await;
        }
        _ = &mut client_gone => {
            tracing::debug!("websocket client went away before the command ended");
            let _ = outgoing.send(Outgoing::Close).await;
        }
    }
    drop(outgoing);
    let _ = writer.await;
    reader.abort();
}

/// Presents a WebSocket as a byte stream: binary messages in, binary
/// messages out. Used for SPDY tunnelled in WebSocket, where frames do not
/// line up with messages.
pub(crate) fn websocket_byte_stream(socket: WebSocket) -> DuplexStream {
    let (session_side, adapter_side) = tokio::io::duplex(64 * 1024);
    let (mut adapter_reader, mut adapter_writer) = tokio::io::split(adapter_side);
    let (mut sink, mut messages) = socket.split();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match adapter_reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buffer[..count])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Text(text) => Bytes::copy_from_slice(text.as_str().as_bytes()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if adapter_writer.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = adapter_writer.shutdown().await;
    });
    session_side
}

/// A close frame with status 1000: kubectl's WebSocket client treats a
/// close without a status (1005) as an error on every channel.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::NORMAL,
        reason: "".into(),
    }))
}
