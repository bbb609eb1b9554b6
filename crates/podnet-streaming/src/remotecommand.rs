//! The transport-independent part of exec and attach: moving bytes between
//! the client's channels and the process, and deciding what the error
//! channel reports.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::protocol::{channel, StatusReport};
use crate::{
    BoxedReader, BoxedWriter, ContainerRef, ProcessIo, StdioOptions, StreamingBackend,
    StreamingError, TerminalSize,
};

/// After the process exits, output still arriving is forwarded; an output
/// pipe idle this long is treated as finished, because a background child
/// may hold it open forever.
const OUTPUT_IDLE_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Bytes read from the process per message.
const OUTPUT_CHUNK: usize = 32 * 1024;

/// What an exec or attach request asks for.
#[derive(Debug, Clone)]
pub(crate) struct RemoteCommandRequest {
    /// The container.
    pub target: ContainerRef,
    /// The command for exec; `None` for attach.
    pub command: Option<Vec<String>>,
    /// The requested streams.
    pub stdio: StdioOptions,
}

/// The client-side ends a transport hands to [`run_remote_command`].
pub(crate) struct ClientChannels {
    /// Input from the client; the sender's drop is end of input.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// Terminal sizes from the client.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Output to the client, tagged with the channel (stdout or stderr).
    /// Dropped when all output is delivered.
    pub output: mpsc::Sender<(u8, Bytes)>,
}

/// Starts the process through the backend and runs it to the end, returning
/// the report for the error channel.
pub(crate) async fn run_remote_command<B: StreamingBackend>(
    backend: Arc<B>,
    request: RemoteCommandRequest,
    channels: ClientChannels,
) -> StatusReport {
    let started = match &request.command {
        Some(command) => {
            backend
                .exec(request.target.clone(), command.clone(), request.stdio)
                .await
        }
        None => backend.attach(request.target.clone(), request.stdio).await,
    };
    let process = match started {
        Ok(process) => process,
        Err(error) => {
            tracing::debug!(%error, container = ?request.target, "remote command did not start");
            return StatusReport::from_error(&error);
        }
    };
    match run_process(process, request.stdio, channels).await {
        // An attach session reports success however the container ended;
        // `kubectl run -i` reads the exit code from the pod status.
        Ok(_) if request.command.is_none() => StatusReport::Success,
        Ok(0) => StatusReport::Success,
        Ok(code) => StatusReport::ExitCode(code),
        Err(error) => StatusReport::from_error(&error),
    }
}

/// Connects the process's streams to the client's channels until the
/// process exits and its output is delivered.
async fn run_process(
    mut process: ProcessIo,
    stdio: StdioOptions,
    channels: ClientChannels,
) -> Result<i32, StreamingError> {
    let (exited_sender, exited) = watch::channel(false);

    let stdin_pump = match channels.stdin {
        Some(input) if stdio.stdin => Some(tokio::spawn(pump_stdin(input, process.stdin.take()))),
        _ => {
            // Closing the process's stdin tells it no input will come.
            drop(process.stdin.take());
            None
        }
    };
    let resize_pump = match (channels.resize, process.resizer.take()) {
        (Some(mut sizes), Some(resizer)) => Some(tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if let Err(error) = resizer.resize(size) {
                    tracing::debug!(%error, "terminal resize failed");
                }
            }
        })),
        _ => None,
    };
    let mut output_pumps = Vec::new();
    if let Some(stdout) = process.stdout.take() {
        let sink = stdio.stdout.then(|| channels.output.clone());
        output_pumps.push(tokio::spawn(pump_output(
            stdout,
            channel::STDOUT,
            sink,
            exited.clone(),
        )));
    }
    if let Some(stderr) = process.stderr.take() {
        let sink = stdio.stderr.then(|| channels.output.clone());
        output_pumps.push(tokio::spawn(pump_output(
            stderr,
            channel::STDERR,
            sink,
            exited.clone(),
        )));
    }
    drop(channels.output);

    let exit = process.exit.await;
    let _ = exited_sender.send(true);
    for pump in output_pumps {
        let _ = pump.await;
    }
    // Input that arrives after the end has nowhere to go.
    if let Some(pump) = stdin_pump {
        pump.abort();
    }
    if let Some(pump) = resize_pump {
        pump.abort();
    }
    exit
}

async fn pump_stdin(mut input: mpsc::Receiver<Bytes>, writer: Option<BoxedWriter>) {
    let Some(mut writer) = writer else {
        while input.recv().await.is_some() {}
        return;
    };
    while let Some(chunk) = input.recv().await {
        if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

async fn pump_output(
    mut reader: BoxedReader,
    channel_number: u8,
    sink: Option<mpsc::Sender<(u8, Bytes)>>,
    mut exited: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; OUTPUT_CHUNK];
    let mut process_exited = *exited.borrow();
    loop {
        let read = if process_exited {
            match tokio::time::timeout(OUTPUT_IDLE_AFTER_EXIT, reader.read(&mut buffer)).await {
                Ok(read) => read,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                read = reader.read(&mut buffer) => read,
                _ = exited.changed() => {
                    process_exited = true;
                    continue;
                }
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(count) => {
                if let Some(sink) = &sink {
                    if sink
                        .send((channel_number, Bytes::copy_from_slice(&buffer[..count])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    }
}

/// How long the client has to open all its streams, as the kubelet allows.
pub(crate) const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one exec or attach over a SPDY session: waits for the streams the
/// client announced (error, stdin, stdout, stderr, resize), runs the
/// command, reports on the error stream and closes the connection.
pub(crate) async fn serve_spdy<B: StreamingBackend>(
    mut session: crate::spdy::SpdySession,
    protocol: String,
    backend: Arc<B>,
    request: RemoteCommandRequest,
) {
    use crate::protocol::RemoteCommandDialect;
    let dialect = RemoteCommandDialect::for_protocol(&protocol);
    let stdio = request.stdio;
    let expected = 1
        + usize::from(stdio.stdin)
        + usize::from(stdio.stdout)
        + usize::from(stdio.stderr)
        + usize::from(stdio.tty && dialect.resize);

    let mut error_stream = None;
    let mut stdin_stream = None;
    let mut stdout_stream = None;
    let mut stderr_stream = None;
    let mut resize_stream = None;
    let mut received = 0;
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while received < expected {
        let stream = tokio::select! {
            stream = session.accept() => stream,
            _ = &mut deadline => {
                tracing::debug!("timed out waiting for client to create streams");
                session.close().await;
                return;
            }
        };
        let Some(stream) = stream else { return };
        let slot = match stream.headers().get("streamtype").unwrap_or("") {
            "error" => &mut error_stream,
            "stdin" => &mut stdin_stream,
            "stdout" => &mut stdout_stream,
            "stderr" => &mut stderr_stream,
            "resize" => &mut resize_stream,
            other => {
                tracing::debug!(stream_type = other, "ignoring spdy stream of unknown type");
                continue;
            }
        };
        *slot = Some(stream);
        received += 1;
    }

    let (stdin_sender, stdin_receiver) = mpsc::channel::<Bytes>(16);
    if let Some(stream) = stdin_stream {
        let (mut receiver, _sender) = stream.into_parts();
        tokio::spawn(async move {
            while let Some(chunk) = receiver.recv().await {
                if stdin_sender.send(chunk).await.is_err() {
                    break;
                }
            }
        });
    }
    let (resize_sender, resize_receiver) = mpsc::channel(4);
    if let Some(stream) = resize_stream {
        let (mut receiver, _sender) = stream.into_parts();
        tokio::spawn(async move {
            let mut decoder = crate::protocol::ResizeDecoder::default();
            while let Some(chunk) = receiver.recv().await {
                for size in decoder.push(&chunk) {
                    let _ = resize_sender.send(size).await;
                }
            }
        });
    }
    let stdout_sender = stdout_stream.map(|stream| stream.into_parts().1);
    let stderr_sender = stderr_stream.map(|stream| stream.into_parts().1);
    let (output_sender, mut output_receiver) = mpsc::channel::<(u8, Bytes)>(16);
    let forwarding_output = {
        let stdout_sender = stdout_sender.clone();
        let stderr_sender = stderr_sender.clone();
        tokio::spawn(async move {
            while let Some((number, data)) = output_receiver.recv().await {
                let target = if number == channel::STDOUT {
                    &stdout_sender
                } else {
                    &stderr_sender
                };
                if let Some(target) = target {
                    if target.send(&data).await.is_err() {
                        break;
                    }
                }
            }
        })
    };
    let channels = ClientChannels {
        stdin: stdio.stdin.then_some(stdin_receiver),
        resize: (stdio.tty && dialect.resize).then_some(resize_receiver),
        output: output_sender,
    };
    let closer = session.closer();
    let report = tokio::select! {
        report = run_remote_command(backend, request, channels) => report,
        _ = closer.wait_closed() => {
            tracing::debug!("spdy client went away before the command ended");
            return;
        }
    };
    let _ = forwarding_output.await;
    for sender in [&stdout_sender, &stderr_sender].into_iter().flatten() {
        let _ = sender.finish().await;
    }
    if let Some(error_stream) = error_stream {
        let payload = report.encode(dialect);
        if !payload.is_empty() {
            let _ = error_stream.send(&payload).await;
        }
        let _ = error_stream.finish().await;
    }
    session.close().await;
}
