//! Pod volumes on the node (emptyDir, hostPath) and small helpers for the
//! values the kubelet derives from a pod spec (downward API env vars,
//! resource quantities).

use crate::backend::Sandbox;
use crate::AgentError;
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn empty_dir_root(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes").join("kubernetes.io~empty-dir")
}

/// Create the pod's volumes and return volume name → host path.
pub fn prepare_volumes(pod: &Pod, pod_dir: &Path) -> Result<HashMap<String, PathBuf>, AgentError> {
    let mut paths = HashMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for volume in spec.volumes.iter().flatten() {
        if let Some(empty_dir) = &volume.empty_dir {
            let path = empty_dir_root(pod_dir).join(&volume.name);
            if !path.exists() {
                std::fs::create_dir_all(&path).map_err(|e| AgentError::io(&path, e))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| AgentError::io(&path, e))?;
                if empty_dir.medium.as_deref() == Some("Memory") {
                    let size = empty_dir
                        .size_limit
                        .as_ref()
                        .and_then(|q| parse_quantity_bytes(&q.0))
                        .map(|bytes| format!("size={bytes},mode=1777"))
                        .unwrap_or_else(|| "mode=1777".to_string());
                    nix::mount::mount(
                        Some("tmpfs"),
                        &path,
                        Some("tmpfs"),
                        nix::mount::MsFlags::empty(),
                        Some(size.as_str()),
                    )
                    .map_err(|e| AgentError::io(&path, std::io::Error::from(e)))?;
                }
            }
            paths.insert(volume.name.clone(), path);
        } else if let Some(host_path) = &volume.host_path {
            let path = PathBuf::from(&host_path.path);
            if host_path.path.split('/').any(|part| part == "..") {
                return Err(AgentError::Volume(format!(
                    "hostPath {} of volume {} must not contain '..'",
                    host_path.path, volume.name
                )));
            }
            match host_path.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => {
                    std::fs::create_dir_all(&path).map_err(|e| AgentError::io(&path, e))?
                }
                "Directory" if !path.is_dir() => {
                    return Err(AgentError::Volume(format!(
                        "hostPath type check failed: {} is not a directory",
                        host_path.path
                    )))
                }
                "FileOrCreate" if !path.exists() => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
                    }
                    std::fs::write(&path, b"").map_err(|e| AgentError::io(&path, e))?;
                }
                "File" if !path.is_file() => {
                    return Err(AgentError::Volume(format!(
                        "hostPath type check failed: {} is not a file",
                        host_path.path
                    )))
                }
                _ => {}
            }
            paths.insert(volume.name.clone(), path);
        }
    }
    if let Some(dir) = crate::service_account::prepare_volume(pod, pod_dir)? {
        paths.insert(crate::service_account::VOLUME_NAME.to_string(), dir);
    }
    Ok(paths)
}

/// Unmount memory-backed volumes of a pod (before its directory is removed).
pub fn remove_pod_volumes(pod_dir: &Path) -> Result<(), AgentError> {
    let root = empty_dir_root(pod_dir);
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    Ok(())
}

/// Downward-API environment values (`valueFrom.fieldRef`).
pub fn field_ref_value(pod: &Pod, sandbox: &Sandbox, variable: &EnvVar) -> Option<String> {
    let field = variable
        .value_from
        .as_ref()?
        .field_ref
        .as_ref()?
        .field_path
        .clone();
    match field.as_str() {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone()),
        "status.podIP" => Some(sandbox.ip.clone()),
        "status.hostIP" => pod.status.as_ref().and_then(|s| s.host_ip.clone()),
        other => {
            let label = other
                .strip_prefix("metadata.labels['")?
                .strip_suffix("']")?;
            pod.metadata.labels.as_ref()?.get(label).cloned()
        }
    }
}

/// Bytes of a quantity like `128Mi`, `1G`, `500k`, `1e3`.
pub fn parse_quantity_bytes(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some((mantissa, exponent)) = text.split_once(['e', 'E']) {
        let value: f64 = mantissa.parse().ok()?;
        let exponent: i32 = exponent.parse().ok()?;
        return Some((value * 10f64.powi(exponent)).round() as i64);
    }
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "m" => 0.001,
        _ => return None,
    };
    Some((value * factor).round() as i64)
}

/// Millicores of a cpu quantity like `250m`, `1`, `0.5`.
pub fn parse_cpu_millis(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_suffix('m') {
        Some(millis) => millis.parse().ok(),
        None => text
            .parse::<f64>()
            .ok()
            .map(|cores| (cores * 1000.0).round() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_bytes("128Mi"), Some(134_217_728));
        assert_eq!(parse_quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity_bytes("1e3"), Some(1000));
        assert_eq!(parse_cpu_millis("250m"), Some(250));
        assert_eq!(parse_cpu_millis("1.5"), Some(1500));
    }

    #[test]
    fn empty_dir_is_created_world_writable() {
        let dir = tempfile::tempdir().unwrap();
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: p, uid: u}\nspec: {containers: [], volumes: [{name: shared, emptyDir: {}}]}\n",
        )
        .unwrap();
        let paths = prepare_volumes(&pod, dir.path()).unwrap();
        let path = &paths["shared"];
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert!(path.ends_with("volumes/kubernetes.io~empty-dir/shared"));
    }

    #[test]
    fn host_path_rejects_dot_dot() {
        let dir = tempfile::tempdir().unwrap();
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: p}\nspec: {containers: [], volumes: [{name: h, hostPath: {path: /tmp/../etc}}]}\n",
        )
        .unwrap();
        assert!(prepare_volumes(&pod, dir.path())
            .unwrap_err()
            .to_string()
            .contains("'..'"));
    }
}
