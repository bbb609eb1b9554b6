//! In-cluster API access for pods, as the kubelet gives it: the
//! `KUBERNETES_SERVICE_*` / `KUBERNETES_PORT*` environment of the
//! `kubernetes` Service and a read-only token volume at
//! /var/run/secrets/kubernetes.io/serviceaccount (`token`, `ca.crt`,
//! `namespace`).
//!
//! Simplified: the API server accepts one bearer token, so every pod gets
//! that token (no per-ServiceAccount tokens, no expiry, no RBAC); pods with
//! `automountServiceAccountToken: false` get none.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Pod;

use crate::AgentError;

/// Where the token volume is mounted in containers.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The name under which the prepared volume is handed to container launch.
pub const VOLUME_NAME: &str = "kube-api-access-podnet";

#[derive(Debug, Clone)]
struct Source {
    token: PathBuf,
    ca: PathBuf,
    api_ip: Ipv4Addr,
    api_port: u16,
}

static SOURCE: OnceLock<Source> = OnceLock::new();

/// Use `dir`'s `token` and `ca.crt` (the API server's) as pods' credentials
/// and `api_ip:api_port` (the `kubernetes` Service) as their API address.
/// Without the files pods get the environment but no token volume.
pub fn configure(dir: &Path, api_ip: Ipv4Addr, api_port: u16) {
    let _ = SOURCE.set(Source {
        token: dir.join("token"),
        ca: dir.join("ca.crt"),
        api_ip,
        api_port,
    });
}

fn automount(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.automount_service_account_token)
        .unwrap_or(true)
}

/// The environment of the `kubernetes` Service (before the container's own).
pub fn pod_env() -> Vec<String> {
    let Some(source) = SOURCE.get() else {
        return Vec::new();
    };
    let (ip, port) = (source.api_ip, source.api_port);
    vec![
        format!("KUBERNETES_SERVICE_HOST={ip}"),
        format!("KUBERNETES_SERVICE_PORT={port}"),
        format!("KUBERNETES_SERVICE_PORT_HTTPS={port}"),
        format!("KUBERNETES_PORT=tcp://{ip}:{port}"),
        format!("KUBERNETES_PORT_{port}_TCP=tcp://{ip}:{port}"),
        format!("KUBERNETES_PORT_{port}_TCP_PROTO=tcp"),
        format!("KUBERNETES_PORT_{port}_TCP_PORT={port}"),
        format!("KUBERNETES_PORT_{port}_TCP_ADDR={ip}"),
    ]
}

/// Write the pod's token volume under `pod_dir`; None when the pod opts
/// out or no credentials are configured.
pub fn prepare_volume(pod: &Pod, pod_dir: &Path) -> Result<Option<PathBuf>, AgentError> {
    let Some(source) = SOURCE.get() else {
        return Ok(None);
    };
    if !automount(pod) {
        return Ok(None);
    }
    let (Ok(token), Ok(ca)) = (
        std::fs::read_to_string(&source.token),
        std::fs::read_to_string(&source.ca),
    ) else {
        return Ok(None);
    };
    let dir = pod_dir
        .join("volumes")
        .join("kubernetes.io~projected")
        .join(VOLUME_NAME);
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::io(&dir, e))?;
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    for (name, content) in [
        ("token", token.trim().to_string()),
        ("ca.crt", ca),
        ("namespace", namespace),
    ] {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, &content).map_err(|e| AgentError::io(&path, e))?;
        }
    }
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_volume() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "abc\n").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "PEM").unwrap();
        configure(dir.path(), Ipv4Addr::new(10, 96, 0, 1), 443);
        let env = pod_env();
        assert!(env.contains(&"KUBERNETES_SERVICE_HOST=10.96.0.1".to_string()));
        assert!(env.contains(&"KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1".to_string()));
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "kube-system"}}),
        )
        .unwrap();
        let pod_dir = dir.path().join("pod");
        let volume = prepare_volume(&pod, &pod_dir).unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(volume.join("token")).unwrap(),
            "abc"
        );
        assert_eq!(
            std::fs::read_to_string(volume.join("namespace")).unwrap(),
            "kube-system"
        );
        let opted_out: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q"}, "spec": {"automountServiceAccountToken": false, "containers": []}
        }))
        .unwrap();
        assert!(prepare_volume(&opted_out, &pod_dir).unwrap().is_none());
    }
}
