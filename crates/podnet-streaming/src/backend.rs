//! What the streaming server asks of the node: the [`StreamingBackend`]
//! trait and the values that cross it.

use std::future::Future;

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::StreamingError;

/// A pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// One container of a pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
}

/// Which standard streams the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StdioOptions {
    /// The client sends input.
    pub stdin: bool,
    /// The client wants standard output (the terminal's output with `tty`).
    pub stdout: bool,
    /// The client wants standard error (never with `tty`: a terminal has
    /// one output).
    pub stderr: bool,
    /// The process runs on a terminal.
    pub tty: bool,
}

/// What part of a container's log the client wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogOptions {
    /// Keep streaming new lines until the client goes away.
    pub follow: bool,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// The previous (terminated) instance of the container.
    pub previous: bool,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

/// A terminal size in character cells, as kubectl sends it on the resize
/// channel (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Boxed reader handed across the backend boundary.
pub type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// Boxed writer handed across the backend boundary.
pub type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A bidirectional byte stream, e.g. a TCP connection inside a pod.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// Changes the size of a process's terminal.
pub trait TerminalResizer: Send + Sync {
    /// Applies `size` (e.g. TIOCSWINSZ on the pty master).
    fn resize(&self, size: TerminalSize) -> Result<(), StreamingError>;
}

/// The standard streams of a process started (exec) or joined (attach) by
/// the backend, and how it ends.
pub struct ProcessIo {
    /// Writes to the process's standard input; dropping it closes stdin.
    pub stdin: Option<BoxedWriter>,
    /// Standard output, or the terminal's output with a tty.
    pub stdout: Option<BoxedReader>,
    /// Standard error (absent with a tty).
    pub stderr: Option<BoxedReader>,
    /// Terminal resizing, present with a tty.
    pub resizer: Option<Box<dyn TerminalResizer>>,
    /// Resolves with the exit code when the process ends. For attach it
    /// resolves when the container ends (or never, while it runs).
    pub exit: BoxFuture<'static, Result<i32, StreamingError>>,
}

/// The node-side operations behind the streaming endpoints.
pub trait StreamingBackend: Send + Sync + 'static {
    /// Starts `command` in `target` with the requested streams.
    fn exec(
        &self,
        target: ContainerRef,
        command: Vec<String>,
        options: StdioOptions,
    ) -> impl Future<Output = Result<ProcessIo, StreamingError>> + Send;

    /// Joins the streams of the running container `target`.
    fn attach(
        &self,
        target: ContainerRef,
        options: StdioOptions,
    ) -> impl Future<Output = Result<ProcessIo, StreamingError>> + Send;

    /// Connects to `port` on the pod's loopback inside its network namespace.
    fn port_forward(
        &self,
        pod: PodRef,
        port: u16,
    ) -> impl Future<Output = Result<Box<dyn AsyncReadWrite>, StreamingError>> + Send;

    /// The container's log, already cut to `options` (tail, since, limit,
    /// timestamps); with `follow` the reader keeps yielding new output.
    fn logs(
        &self,
        target: ContainerRef,
        options: LogOptions,
    ) -> impl Future<Output = Result<BoxedReader, StreamingError>> + Send;
}
