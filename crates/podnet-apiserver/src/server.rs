//! HTTP glue: TLS accept loop, bearer-token authentication, routing to
//! discovery, OpenAPI and the REST verbs, content negotiation (objects,
//! Tables, metadata) and streaming replies.

use crate::discovery;
use crate::objects::partial_metadata;
use crate::request::{route, Query, ResourceTarget, Route};
use crate::rest::{self, DeleteOptions, PatchType, Reply, Rest, ScaleChange, WriteOptions};
use crate::watch::{self, Rendering, WatchRequest};
use crate::ApiError;
use bytes::Bytes;
use futures::FutureExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use podnet_model::schema;
use podnet_model::table::{self, IncludeObject};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// Every reply body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Largest request body accepted (upstream's limit is 3 MiB per object).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty_body() -> Body {
    full_body(Bytes::new())
}

pub fn boxed_incoming(body: Incoming) -> Body {
    body.map_err(std::io::Error::other).boxed()
}

/// Lines waiting in a streaming body's channel are joined into one frame up
/// to this size: a burst of watch events (a group commit's worth) then
/// costs one chunk, one TLS write and one system call instead of one each.
const COALESCED_FRAME: usize = 64 * 1024;

pub(crate) fn streaming_body(mut receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
    // Kept between frames, so that joining allocates nothing but the frame
    // itself, of exactly its size.
    let mut lines: Vec<Bytes> = Vec::new();
    let stream = futures::stream::poll_fn(move |cx| {
        receiver.poll_recv(cx).map(|next| {
            next.map(|first| {
                let mut size = first.len();
                lines.push(first);
                while size < COALESCED_FRAME {
                    let Ok(more) = receiver.try_recv() else { break };
                    size += more.len();
                    lines.push(more);
                }
                Ok::<_, std::io::Error>(Frame::data(joined(&mut lines)))
            })
        })
    });
    StreamBody::new(stream).boxed()
}

/// The lines as one piece (emptying `lines`), allocated at its exact size;
/// a single line is passed on without a copy.
pub(crate) fn joined(lines: &mut Vec<Bytes>) -> Bytes {
    if lines.len() == 1 {
        return lines.pop().unwrap_or_default();
    }
    let size = lines.iter().map(Bytes::len).sum();
    let mut joined = bytes::BytesMut::with_capacity(size);
    for line in lines.drain(..) {
        joined.extend_from_slice(&line);
    }
    joined.freeze()
}

/// Shared state of a running server.
pub struct ServerState {
    pub rest: Rest,
    pub token: String,
    pub server_address: String,
    pub ca_cert_pem: String,
}

fn json_response(code: u16, body: &Value, warnings: &[String]) -> Response<Body> {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response = response.header("Warning", value);
        }
    }
    response
        .body(full_body(
            serde_json::to_vec(body).expect("JSON values serialize"),
        ))
        .expect("static response parts are valid")
}

fn error_response(error: &ApiError) -> Response<Body> {
    json_response(error.code(), &error.to_status(), &[])
}

fn header_str(request: &Request<Incoming>, name: header::HeaderName) -> &str {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn authorized(request: &Request<Incoming>, token: &str) -> bool {
    let Some(presented) = header_str(request, header::AUTHORIZATION).strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time comparison: the token is the only credential.
    let presented = presented.trim().as_bytes();
    let expected = token.as_bytes();
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Entry point for every request.
pub async fn handle(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let outcome = AssertUnwindSafe(dispatch(state, request))
        .catch_unwind()
        .await;
    let response = match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error_response(&error),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "handler panicked".into());
            error_response(&ApiError::Internal(message))
        }
    };
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    Ok(response)
}

async fn dispatch(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path_route = route(request.uri().path());
    let anonymous = matches!(path_route, Route::Version | Route::Health);
    if !anonymous && !authorized(&request, &state.token) {
        return Err(ApiError::Unauthorized);
    }
    let accept = header_str(&request, header::ACCEPT).to_string();
    let query = Query::parse(request.uri().query());
    let method = request.method().clone();
    let read_only = method == Method::GET || method == Method::HEAD;
    if !read_only && !matches!(path_route, Route::Resource(_)) {
        return Err(ApiError::MethodNotAllowed);
    }
    match path_route {
        Route::Version => Ok(json_response(200, &version_info(), &[])),
        Route::Health => Ok(Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(full_body("ok"))
            .expect("static response")),
        Route::LegacyApi => Ok(discovery_reply(
            &accept,
            true,
            discovery::api_versions(&state.server_address),
        )),
        Route::Apis => Ok(discovery_reply(&accept, false, discovery::api_group_list())),
        Route::ApiGroup(group) => discovery::api_group_document(&group)
            .map(|doc| json_response(200, &doc, &[]))
            .ok_or_else(ApiError::path_not_found),
        Route::GroupVersion { group, version } => discovery::api_resource_list(&group, &version)
            .map(|doc| json_response(200, &doc, &[]))
            .ok_or_else(ApiError::path_not_found),
        Route::OpenApiV2 if wants_openapi_v2_protobuf(&accept) => {
            Ok(openapi_v2_protobuf_reply(&request))
        }
        Route::OpenApiV2 => Ok(openapi_reply(&request, schema::openapi_v2(), false)),
        Route::OpenApiV3Index => Ok(openapi_reply(&request, &schema::openapi_v3_index(), false)),
        Route::OpenApiV3Document(path) => schema::openapi_v3_document(&path)
            .map(|doc| openapi_reply(&request, doc, query.get("hash").is_some()))
            .ok_or_else(ApiError::path_not_found),
        Route::NotFound => Err(ApiError::path_not_found()),
        Route::Resource(target) => resource(state, target, query, &accept, request).await,
    }
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-podnet",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn discovery_reply(accept: &str, core: bool, legacy: Value) -> Response<Body> {
    match discovery::aggregated_version(accept) {
        Some(version) => Response::builder()
            .status(200)
            .header(
                header::CONTENT_TYPE,
                discovery::aggregated_content_type(version),
            )
            .header(header::VARY, "Accept")
            .body(full_body(
                serde_json::to_vec(&discovery::aggregated(core, version))
                    .expect("JSON values serialize"),
            ))
            .expect("static response"),
        None => json_response(200, &legacy, &[]),
    }
}

/// OpenAPI documents are large and fixed for the life of the process: serve
/// them with an ETag, 304 on a match, and long caching when the client asked
/// by content hash.
fn openapi_reply(request: &Request<Incoming>, doc: &Value, by_hash: bool) -> Response<Body> {
    let bytes = serde_json::to_vec(doc).expect("JSON values serialize");
    let etag = format!("\"{:016X}\"", fnv1a(&bytes));
    if header_str(request, header::IF_NONE_MATCH) == etag {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(empty_body())
            .expect("static response");
    }
    let cache = if by_hash {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache)
        .body(full_body(bytes))
        .expect("static response")
}

/// Whether a `/openapi/v2` request asks for gnostic's protobuf form (kubectl
/// before 1.30 validates with it); JSON otherwise.
fn wants_openapi_v2_protobuf(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let media = media.split(';').next().unwrap_or("").trim();
        media == schema::OPENAPI_V2_PROTOBUF_CONTENT_TYPE
            || media == schema::OPENAPI_V2_PROTOBUF_RESPONSE_CONTENT_TYPE
    })
}

fn openapi_v2_protobuf_reply(request: &Request<Incoming>) -> Response<Body> {
    let bytes = Bytes::from_static(schema::openapi_v2_protobuf());
    let etag = format!("\"{:016X}\"", fnv1a(&bytes));
    if header_str(request, header::IF_NONE_MATCH) == etag {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, etag)
            .body(empty_body())
            .expect("static response");
    }
    Response::builder()
        .status(200)
        .header(
            header::CONTENT_TYPE,
            schema::OPENAPI_V2_PROTOBUF_RESPONSE_CONTENT_TYPE,
        )
        .header(header::ETAG, etag)
        .header(header::VARY, "Accept")
        .body(full_body(bytes))
        .expect("static response")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

fn rendering_for(accept: &str, query: &Query) -> Rendering {
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        if params.contains(&"as=Table") {
            let include = match query.get("includeObject") {
                Some("None") => IncludeObject::None,
                Some("Object") => IncludeObject::Object,
                _ => IncludeObject::Metadata,
            };
            return Rendering::Table(include);
        }
        if params.contains(&"as=PartialObjectMetadata")
            || params.contains(&"as=PartialObjectMetadataList")
        {
            return Rendering::PartialMetadata;
        }
    }
    Rendering::Object
}

fn render_one(target: &ResourceTarget, rendering: Rendering, obj: Value) -> Value {
    match rendering {
        Rendering::Object => obj,
        Rendering::PartialMetadata => partial_metadata(&obj),
        Rendering::Table(include) => {
            let rv = obj["metadata"]["resourceVersion"].clone();
            let mut table = table::table(
                target.info,
                std::slice::from_ref(&obj),
                jiff::Timestamp::now(),
                include,
                true,
            );
            table["metadata"]["resourceVersion"] = rv;
            table
        }
    }
}

fn reply_response(reply: Reply) -> Response<Body> {
    json_response(reply.code, &reply.body, &reply.warnings)
}

async fn read_body(request: Request<Incoming>) -> Result<(String, Bytes), ApiError> {
    let content_type = header_str(&request, header::CONTENT_TYPE).to_string();
    let body = http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(format!("reading the request body failed: {e}")))?
        .to_bytes();
    Ok((content_type, body))
}

async fn resource(
    state: Arc<ServerState>,
    target: ResourceTarget,
    query: Query,
    accept: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let rest = &state.rest;
    let method = request.method().clone();
    let subresource = target.subresource.clone();
    if let Some(sub @ ("log" | "exec" | "attach" | "portforward")) = subresource.as_deref() {
        let allowed = match sub {
            "log" => method == Method::GET,
            _ => method == Method::GET || method == Method::POST,
        };
        if !allowed {
            return Err(ApiError::MethodNotAllowed);
        }
        return crate::proxy::forward(rest, &state.ca_cert_pem, &target, &query, request).await;
    }
    let user_agent = header_str(&request, header::USER_AGENT).to_string();
    let rendering = rendering_for(accept, &query);
    let name = target.name.clone();
    let (content_type, body) = read_body(request).await?;
    let rest = rest.clone();
    // Store calls block (SQLite commits wait for the disk): keep them off the
    // threads that drive connections.
    let outcome = tokio::task::spawn_blocking(move || {
        serve_resource(
            &rest,
            &target,
            &query,
            rendering,
            &user_agent,
            (method, name.as_deref(), subresource.as_deref()),
            &content_type,
            &body,
        )
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(join_error) if join_error.is_panic() => {
            let panic = join_error.into_panic();
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "handler panicked".into());
            Err(ApiError::Internal(message))
        }
        Err(join_error) => Err(ApiError::Internal(join_error.to_string())),
    }
}

#[allow(clippy::too_many_arguments)]
fn serve_resource(
    rest: &Rest,
    target: &ResourceTarget,
    query: &Query,
    rendering: Rendering,
    user_agent: &str,
    verb: (Method, Option<&str>, Option<&str>),
    content_type: &str,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let target = target.clone();
    let watching = target.legacy_watch || query.flag("watch");
    let write_options = || WriteOptions::from_query(query, user_agent);
    let (content_type, body) = (content_type.to_string(), body.clone());
    match verb {
        (Method::GET, _, None) if watching => {
            let watch_request = WatchRequest::parse(&target, query, rendering)?;
            let receiver = watch::start(rest, watch_request)?;
            let content_type = match rendering {
                Rendering::Table(_) => "application/json;as=Table;v=v1;g=meta.k8s.io",
                _ => "application/json",
            };
            Ok(Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, content_type)
                .header(header::CACHE_CONTROL, "no-cache, private")
                .body(streaming_body(receiver))
                .expect("static response"))
        }
        (Method::GET, None, None) => {
            crate::list_body::list_response(rest, &target, query, rendering)
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let obj = rest.get(&target, name)?;
            Ok(json_response(
                200,
                &render_one(&target, rendering, obj),
                &[],
            ))
        }
        (Method::GET, Some(name), Some("scale")) => {
            Ok(json_response(200, &rest.get_scale(&target, name)?, &[]))
        }
        (Method::POST, None, None) => {
            let obj = rest::decode_body(&content_type, &body)?;
            if target.info.group.is_empty() && target.info.plural == "bindings" {
                return Ok(reply_response(rest.bind(&target, None, &obj)?));
            }
            Ok(reply_response(rest.create(
                &target,
                obj,
                &write_options()?,
            )?))
        }
        (Method::POST, Some(name), Some("binding")) => {
            let obj = rest::decode_body(&content_type, &body)?;
            Ok(reply_response(rest.bind(&target, Some(name), &obj)?))
        }
        (Method::POST, Some(name), Some("eviction")) => {
            let eviction = if body.is_empty() {
                json!({})
            } else {
                rest::decode_body(&content_type, &body)?
            };
            let options_body = eviction
                .get("deleteOptions")
                .map(|o| serde_json::to_vec(o).expect("JSON values serialize"))
                .unwrap_or_default();
            let options = DeleteOptions::parse(&options_body, &Query::default())?;
            let pod_target = ResourceTarget {
                subresource: None,
                ..target.clone()
            };
            rest.delete(&pod_target, name, &options)?;
            Ok(json_response(
                201,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
                &[],
            ))
        }
        (Method::PUT, Some(name), None | Some("status") | Some("finalize")) => {
            let obj = rest::decode_body(&content_type, &body)?;
            Ok(reply_response(rest.update(
                &target,
                name,
                obj,
                &write_options()?,
            )?))
        }
        (Method::PUT, Some(name), Some("scale")) => {
            let scale = rest::decode_body(&content_type, &body)?;
            Ok(reply_response(rest.write_scale(
                &target,
                name,
                ScaleChange::Replace(scale),
                &write_options()?,
            )?))
        }
        (Method::PATCH, Some(name), Some("scale")) => {
            let patch_type = PatchType::from_content_type(&content_type)?;
            Ok(reply_response(rest.write_scale(
                &target,
                name,
                ScaleChange::Patch(patch_type, &body),
                &write_options()?,
            )?))
        }
        (Method::PATCH, Some(name), None | Some("status")) => {
            let patch_type = PatchType::from_content_type(&content_type)?;
            Ok(reply_response(rest.patch(
                &target,
                name,
                patch_type,
                &body,
                &write_options()?,
                query.flag("force"),
            )?))
        }
        (Method::DELETE, Some(name), None) => {
            let options = DeleteOptions::parse(&body, query)?;
            Ok(reply_response(rest.delete(&target, name, &options)?))
        }
        (Method::DELETE, None, None) => {
            let options = DeleteOptions::parse(&body, query)?;
            Ok(reply_response(
                rest.delete_collection(&target, query, &options)?,
            ))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}
