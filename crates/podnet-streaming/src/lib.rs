//! podnet-streaming is the node side of `kubectl exec`, `attach`,
//! `port-forward` and `logs`: an HTTP service, mounted by the agent at the
//! kubelet-style paths the API server proxies to, that speaks the streaming
//! protocols kubectl speaks (WebSocket `v5.channel.k8s.io` / `v4`, SPDY/3.1
//! with `X-Stream-Protocol-Version`, SPDY tunnelled in WebSocket for
//! port-forward) and plain chunked text for logs. What runs behind a stream
//! (a process in a container, a socket in a pod's network namespace, a log
//! file) comes from a [`StreamingBackend`] the agent provides.

pub mod spdy;

/// Everything that can go wrong serving a streaming request.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The request named a pod or container the node does not run.
    #[error("{what} not found on this node: check the pod is scheduled here and running")]
    NotFound {
        /// The missing object, e.g. `container "app" in pod "default/web"`.
        what: String,
    },
    /// The request itself is malformed (query parameters, headers).
    #[error("bad streaming request: {message}")]
    BadRequest {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The peer broke the wire protocol (SPDY framing, WebSocket channels).
    #[error("streaming protocol error: {message}")]
    Protocol {
        /// What the peer sent that could not be understood.
        message: String,
    },
    /// The backend could not start or run what the stream asked for.
    #[error("{message}")]
    Backend {
        /// The backend's own lowercase explanation.
        message: String,
    },
    /// Reading or writing a socket, pipe or file failed.
    #[error("streaming i/o failed while {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

mod backend;
mod logs;
mod portforward;
mod protocol;
mod remotecommand;
mod server;
mod websocket;

pub use backend::{
    AsyncReadWrite, BoxedReader, BoxedWriter, ContainerRef, LogOptions, PodRef, ProcessIo,
    StdioOptions, StreamingBackend, TerminalResizer, TerminalSize,
};
pub use protocol::{ResizeDecoder, StatusReport};
pub use server::{router, serve_unix};
