//! Container logs as a plain streamed `text/plain` response.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{header, StatusCode};
use tokio_util::io::ReaderStream;

use crate::server::status_response;
use crate::{ContainerRef, LogOptions, StreamingBackend};

/// Streams the backend's log reader; with `follow` the response stays open
/// for as long as the reader yields.
pub(crate) async fn serve_logs<B: StreamingBackend>(
    backend: Arc<B>,
    target: ContainerRef,
    options: LogOptions,
) -> Response {
    match backend.logs(target, options).await {
        Ok(reader) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from_stream(ReaderStream::new(reader)))
            .expect("a static response builds"),
        Err(error) => status_response(&error),
    }
}
