//! Streaming subresources (log, exec, attach, portforward): find the pod's
//! node agent through the Node's `podnet.io/agent-endpoint` annotation and
//! relay the request there, kubelet-style paths, copying bytes both ways
//! after an HTTP/1.1 upgrade.

use crate::objects::{meta_str, object_key};
use crate::request::{Query, ResourceTarget};
use crate::rest::{decode_record, Rest};
use crate::server::{boxed_incoming, Body};
use crate::ApiError;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use podnet_model::registry;
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// The node annotation naming the agent's streaming endpoint.
pub const AGENT_ENDPOINT_ANNOTATION: &str = "podnet.io/agent-endpoint";

/// Where a pod's agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEndpoint {
    Unix(std::path::PathBuf),
    Https { host: String, port: u16 },
}

impl AgentEndpoint {
    pub fn parse(value: &str) -> Option<AgentEndpoint> {
        if let Some(path) = value.strip_prefix("unix://") {
            return Some(AgentEndpoint::Unix(path.into()));
        }
        let rest = value.strip_prefix("https://")?;
        let authority = rest.split('/').next()?;
        let (host, port) = authority.rsplit_once(':')?;
        Some(AgentEndpoint::Https {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: port.parse().ok()?,
        })
    }
}

/// The agent path for a streaming subresource (`None` for unknown ones).
pub fn agent_path(
    subresource: &str,
    namespace: &str,
    pod: &str,
    container: &str,
    raw_query: &str,
) -> Option<String> {
    let base = match subresource {
        "log" => format!("/containerLogs/{namespace}/{pod}/{container}"),
        "exec" => format!("/exec/{namespace}/{pod}/{container}"),
        "attach" => format!("/attach/{namespace}/{pod}/{container}"),
        "portforward" => format!("/portForward/{namespace}/{pod}"),
        _ => return None,
    };
    Some(if raw_query.is_empty() {
        base
    } else {
        format!("{base}?{raw_query}")
    })
}

/// The container a request means: the `container` parameter, else the
/// `kubectl.kubernetes.io/default-container` annotation, else the first one.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Option<String> {
    if let Some(name) = requested.filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    if let Some(name) = pod
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
        .and_then(Value::as_str)
    {
        return Some(name.to_string());
    }
    pod.pointer("/spec/containers/0/name")
        .and_then(Value::as_str)
        .map(str::to_string)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(endpoint: &AgentEndpoint, ca_cert_pem: &str) -> Result<Box<dyn Stream>, ApiError> {
    match endpoint {
        AgentEndpoint::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| ApiError::Backend(format!("dial unix {}: {e}", path.display())))?;
            Ok(Box::new(stream))
        }
        AgentEndpoint::Https { host, port } => {
            use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| ApiError::Backend(format!("dial tcp {host}:{port}: {e}")))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_cert_pem.as_bytes()).flatten() {
                roots
                    .add(cert)
                    .map_err(|e| ApiError::Backend(format!("cluster CA unusable: {e}")))?;
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiError::Backend(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = ServerName::try_from(host.clone())
                .map_err(|e| ApiError::Backend(format!("agent host {host}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| ApiError::Backend(format!("tls handshake with {host}:{port}: {e}")))?;
            Ok(Box::new(tls))
        }
    }
}

/// Serve a streaming subresource request by relaying it to the pod's agent.
pub async fn forward(
    rest: &Rest,
    ca_cert_pem: &str,
    target: &ResourceTarget,
    query: &Query,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let namespace = target.namespace.clone().unwrap_or_default();
    let pod_name = target.name.clone().unwrap_or_default();
    let subresource = target.subresource.clone().unwrap_or_default();
    let pod = rest.get(target, &pod_name)?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "pod {pod_name} does not have a host assigned: wait until it is scheduled"
            ))
        })?
        .to_string();
    let nodes = registry::find("", "v1", "nodes").expect("registry serves nodes");
    let node = match rest.store.get(&object_key(nodes, None, &node_name))? {
        Some(record) => decode_record(nodes, &record)?,
        None => {
            return Err(ApiError::NotFound {
                group: String::new(),
                resource: "nodes".into(),
                name: node_name,
            })
        }
    };
    let endpoint_value = node
        .pointer(&format!(
            "/metadata/annotations/{}",
            AGENT_ENDPOINT_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::Backend(format!(
                "node {node_name} has no {AGENT_ENDPOINT_ANNOTATION} annotation: is its agent running?"
            ))
        })?;
    let endpoint = AgentEndpoint::parse(endpoint_value).ok_or_else(|| {
        ApiError::Backend(format!(
            "node {node_name} has an unusable {AGENT_ENDPOINT_ANNOTATION} {endpoint_value:?}: expected unix:///path or https://host:port"
        ))
    })?;
    let container = if subresource == "portforward" {
        String::new()
    } else {
        let container = choose_container(&pod, query.get("container"))
            .ok_or_else(|| ApiError::BadRequest(format!("pod {pod_name} has no containers")))?;
        let known = ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .filter_map(|list| pod["spec"][list].as_array())
            .flatten()
            .any(|c| c["name"] == container.as_str());
        if !known {
            return Err(ApiError::BadRequest(format!(
                "container {container} is not valid for pod {pod_name}"
            )));
        }
        container
    };
    let path = agent_path(&subresource, &namespace, &pod_name, &container, query.raw())
        .ok_or(ApiError::MethodNotAllowed)?;
    let _ = meta_str(&pod, "uid");

    let stream = connect(&endpoint, ca_cert_pem).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::Backend(format!("agent of node {node_name}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });

    let wants_upgrade = request.headers().contains_key(http::header::UPGRADE);
    let mut upstream = Request::builder()
        .method(request.method().clone())
        .uri(path);
    for (name, value) in request.headers() {
        // Credentials for the API server are not the agent's business.
        if name == http::header::AUTHORIZATION || name == http::header::HOST {
            continue;
        }
        upstream = upstream.header(name, value);
    }
    upstream = upstream.header(http::header::HOST, HeaderValue::from_static("podnet-agent"));
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut request));
    let upstream = upstream
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = sender
        .send_request(upstream)
        .await
        .map_err(|e| ApiError::Backend(format!("agent of node {node_name}: {e}")))?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::Backend(
                "the agent switched protocols on a request that asked for no upgrade".into(),
            ));
        };
        let agent_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(agent)) = (client_upgrade.await, agent_upgrade.await) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut agent = TokioIo::new(agent);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        let mut reply = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in response.headers() {
            reply = reply.header(name, value);
        }
        return reply
            .body(crate::server::empty_body())
            .map_err(|e| ApiError::Internal(e.to_string()));
    }
    let (parts, body) = response.into_parts();
    let mut reply = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if name == http::header::CONNECTION || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        reply = reply.header(name, value);
    }
    reply
        .body(boxed_incoming(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_and_paths() {
        assert_eq!(
            AgentEndpoint::parse("unix:///run/podnet/agent.sock"),
            Some(AgentEndpoint::Unix("/run/podnet/agent.sock".into()))
        );
        assert_eq!(
            AgentEndpoint::parse("https://172.18.0.2:10250"),
            Some(AgentEndpoint::Https {
                host: "172.18.0.2".into(),
                port: 10250
            })
        );
        assert_eq!(AgentEndpoint::parse("tcp://x"), None);
        assert_eq!(
            agent_path("exec", "default", "web", "nginx", "command=ls&stdout=true").unwrap(),
            "/exec/default/web/nginx?command=ls&stdout=true"
        );
        assert_eq!(
            agent_path("portforward", "default", "web", "", "").unwrap(),
            "/portForward/default/web"
        );
        assert_eq!(
            agent_path("log", "a", "b", "c", "follow=true").unwrap(),
            "/containerLogs/a/b/c?follow=true"
        );
    }

    #[test]
    fn default_container_follows_annotation_then_first() {
        let pod = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "app"}},
            "spec": {"containers": [{"name": "sidecar"}, {"name": "app"}]}});
        assert_eq!(choose_container(&pod, None).unwrap(), "app");
        assert_eq!(choose_container(&pod, Some("sidecar")).unwrap(), "sidecar");
        let plain = json!({"spec": {"containers": [{"name": "one"}]}});
        assert_eq!(choose_container(&plain, Some("")).unwrap(), "one");
    }
}
