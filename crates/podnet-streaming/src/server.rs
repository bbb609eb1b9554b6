//! The HTTP surface: kubelet-style routes, upgrade negotiation (WebSocket
//! or SPDY/3.1) and the unix socket listener.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::protocol::{
    negotiate_spdy_protocol, parse_log_query, parse_remote_command_query,
    SPDY_PORT_FORWARD_PROTOCOL, SPDY_REMOTE_COMMAND_PROTOCOLS, WEBSOCKET_REMOTE_COMMAND_PROTOCOLS,
    WEBSOCKET_SPDY_PORT_FORWARD_PROTOCOL,
};
use crate::remotecommand::RemoteCommandRequest;
use crate::spdy::{Role, SpdySession};
use crate::{ContainerRef, PodRef, StreamingBackend, StreamingError};

const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
const ACCEPTED_STREAM_PROTOCOLS_HEADER: &str = "x-accept-stream-protocol-version";

/// The streaming routes, to be mounted by the agent:
/// `/exec/{namespace}/{pod}/{container}`, `/attach/{namespace}/{pod}/{container}`,
/// `/portForward/{namespace}/{pod}`, `/containerLogs/{namespace}/{pod}/{container}`
/// (the exec and attach routes also accept the kubelet's
/// `/{namespace}/{pod}/{uid}/{container}` form).
pub fn router<B: StreamingBackend>(backend: Arc<B>) -> Router {
    Router::new()
        .route("/exec/{namespace}/{pod}/{container}", any(exec::<B>))
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            any(exec_with_uid::<B>),
        )
        .route("/attach/{namespace}/{pod}/{container}", any(attach::<B>))
        .route(
            "/attach/{namespace}/{pod}/{uid}/{container}",
            any(attach_with_uid::<B>),
        )
        .route("/portForward/{namespace}/{pod}", any(port_forward::<B>))
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            any(port_forward_with_uid::<B>),
        )
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs::<B>),
        )
        .with_state(backend)
}

/// Serves [`router`] on a unix socket at `path` until `shutdown` resolves.
/// A stale socket left by an earlier run is removed; the new one is made
/// accessible to root only.
pub async fn serve_unix<B: StreamingBackend>(
    path: impl AsRef<Path>,
    backend: Arc<B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StreamingError> {
    let path = path.as_ref();
    let io_error = |action: String| move |source| StreamingError::Io { action, source };
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(path).map_err(
            io_error(format!("removing the stale socket {}", path.display())),
        )?,
        Ok(_) => {
            return Err(StreamingError::BadRequest {
                message: format!(
                    "{} exists and is not a socket: remove it or choose another path",
                    path.display()
                ),
            })
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io_error(format!(
        "binding the streaming socket {}",
        path.display()
    )))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error(
        format!("restricting the permissions of {}", path.display()),
    ))?;
    axum::serve(listener, router(backend))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(io_error(format!(
            "serving the streaming socket {}",
            path.display()
        )))
}

/// A `metav1.Status` response for an error raised before any upgrade.
pub(crate) fn status_response(error: &StreamingError) -> Response {
    let (code, reason) = match error {
        StreamingError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
        StreamingError::BadRequest { .. } | StreamingError::Protocol { .. } => {
            (StatusCode::BAD_REQUEST, "BadRequest")
        }
        StreamingError::Backend { .. } | StreamingError::Io { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        }
    };
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.to_string(),
        "reason": reason,
        "code": code.as_u16(),
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn header_contains(headers: &HeaderMap, name: header::HeaderName, needle: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(needle))
        })
    })
}

fn is_websocket_request(headers: &HeaderMap) -> bool {
    header_contains(headers, header::UPGRADE, "websocket")
}

fn is_spdy_request(headers: &HeaderMap) -> bool {
    header_contains(headers, header::UPGRADE, "SPDY/3.1")
}

/// Negotiates the SPDY sub-protocol, answers 101 and hands the upgraded
/// connection to `serve` as a server-side session.
fn spdy_upgrade<F, Fut>(request: Request, supported: &[&'static str], serve: F) -> Response
where
    F: FnOnce(SpdySession, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let offers: Vec<String> = request
        .headers()
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_string))
        .collect();
    if offers.is_empty() {
        return status_response(&StreamingError::BadRequest {
            message: "unable to upgrade: X-Stream-Protocol-Version is required".to_string(),
        });
    }
    let Some(protocol) = negotiate_spdy_protocol(offers.iter().map(String::as_str), supported)
    else {
        let mut response = status_response(&StreamingError::BadRequest {
            message: format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offers:?}, server accepts {supported:?}"
            ),
        });
        *response.status_mut() = StatusCode::FORBIDDEN;
        for protocol in supported {
            response.headers_mut().append(
                ACCEPTED_STREAM_PROTOCOLS_HEADER,
                HeaderValue::from_static(protocol),
            );
        }
        return response;
    };
    let upgrade = hyper::upgrade::on(request);
    let chosen = protocol.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                serve(
                    SpdySession::new(TokioIo::new(upgraded), Role::Server),
                    chosen,
                )
                .await
            }
            Err(error) => tracing::debug!(%error, "spdy upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header(STREAM_PROTOCOL_HEADER, protocol)
        .body(Body::empty())
        .expect("a static response builds")
}

async fn websocket_upgrade(request: Request) -> Result<WebSocketUpgrade, Response> {
    let (mut parts, _body) = request.into_parts();
    WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(IntoResponse::into_response)
}

fn not_an_upgrade() -> Response {
    status_response(&StreamingError::BadRequest {
        message: "this endpoint needs a websocket or SPDY/3.1 upgrade request".to_string(),
    })
}

async fn remote_command<B: StreamingBackend>(
    backend: Arc<B>,
    namespace: String,
    pod: String,
    container: String,
    exec: bool,
    request: Request,
) -> Response {
    let query = match parse_remote_command_query(request.uri().query().unwrap_or(""), exec) {
        Ok(query) => query,
        Err(error) => return status_response(&error),
    };
    let container = if container.is_empty() {
        query.container.unwrap_or_default()
    } else {
        container
    };
    let command_request = RemoteCommandRequest {
        target: ContainerRef {
            namespace,
            pod,
            container,
        },
        command: exec.then_some(query.command),
        stdio: query.stdio,
    };
    if is_websocket_request(request.headers()) {
        let upgrade = match websocket_upgrade(request).await {
            Ok(upgrade) => upgrade.protocols(WEBSOCKET_REMOTE_COMMAND_PROTOCOLS),
            Err(response) => return response,
        };
        let protocol = upgrade
            .selected_protocol()
            .and_then(|protocol| protocol.to_str().ok())
            .unwrap_or("channel.k8s.io")
            .to_string();
        return upgrade.on_upgrade(move |socket| {
            crate::websocket::serve_remote_command(socket, protocol, backend, command_request)
        });
    }
    if is_spdy_request(request.headers()) {
        return spdy_upgrade(
            request,
            &SPDY_REMOTE_COMMAND_PROTOCOLS,
            move |session, protocol| {
                crate::remotecommand::serve_spdy(session, protocol, backend, command_request)
            },
        );
    }
    not_an_upgrade()
}

async fn exec<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    request: Request,
) -> Response {
    remote_command(backend, namespace, pod, container, true, request).await
}

async fn exec_with_uid<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, pod, _uid, container)): UrlPath<(String, String, String, String)>,
    request: Request,
) -> Response {
    remote_command(backend, namespace, pod, container, true, request).await
}

async fn attach<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    request: Request,
) -> Response {
    remote_command(backend, namespace, pod, container, false, request).await
}

async fn attach_with_uid<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, pod, _uid, container)): UrlPath<(String, String, String, String)>,
    request: Request,
) -> Response {
    remote_command(backend, namespace, pod, container, false, request).await
}

async fn port_forward_for_pod<B: StreamingBackend>(
    backend: Arc<B>,
    pod: PodRef,
    request: Request,
) -> Response {
    if is_websocket_request(request.headers()) {
        let upgrade = match websocket_upgrade(request).await {
            Ok(upgrade) => upgrade.protocols([WEBSOCKET_SPDY_PORT_FORWARD_PROTOCOL]),
            Err(response) => return response,
        };
        if upgrade.selected_protocol().is_none() {
            return status_response(&StreamingError::BadRequest {
                message: format!(
                    "websocket port-forward needs the {WEBSOCKET_SPDY_PORT_FORWARD_PROTOCOL} subprotocol: use kubectl 1.31 or newer, or SPDY"
                ),
            });
        }
        return upgrade.on_upgrade(move |socket| async move {
            let session = SpdySession::new(
                crate::websocket::websocket_byte_stream(socket),
                Role::Server,
            );
            crate::portforward::serve_spdy(session, backend, pod).await
        });
    }
    if is_spdy_request(request.headers()) {
        return spdy_upgrade(
            request,
            &[SPDY_PORT_FORWARD_PROTOCOL],
            move |session, _protocol| crate::portforward::serve_spdy(session, backend, pod),
        );
    }
    not_an_upgrade()
}

async fn port_forward<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, name)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    port_forward_for_pod(backend, PodRef { namespace, name }, request).await
}

async fn port_forward_with_uid<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, name, _uid)): UrlPath<(String, String, String)>,
    request: Request,
) -> Response {
    port_forward_for_pod(backend, PodRef { namespace, name }, request).await
}

async fn container_logs<B: StreamingBackend>(
    State(backend): State<Arc<B>>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    request: Request,
) -> Response {
    let options = match parse_log_query(request.uri().query().unwrap_or("")) {
        Ok(options) => options,
        Err(error) => return status_response(&error),
    };
    crate::logs::serve_logs(
        backend,
        ContainerRef {
            namespace,
            pod,
            container,
        },
        options,
    )
    .await
}
