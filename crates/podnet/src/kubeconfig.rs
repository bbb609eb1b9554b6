//! Merging a cluster's kubeconfig into the user's, the way kind does: one
//! cluster, user and context named `podnet-<cluster>`, made current.

use anyhow::{Context, Result};
use serde_yaml::{Mapping, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// The user's kubeconfig: the first entry of $KUBECONFIG, else ~/.kube/config.
pub fn user_kubeconfig_path() -> PathBuf {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).next() {
            if !first.as_os_str().is_empty() {
                return first;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kube").join("config")
}

fn load(path: &Path) -> Result<Value> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml::from_str(&text)
            .with_context(|| format!("parsing kubeconfig {}", path.display())),
        Ok(_) => Ok(empty_config()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(empty_config()),
        Err(error) => Err(error).with_context(|| format!("reading kubeconfig {}", path.display())),
    }
}

fn empty_config() -> Value {
    serde_yaml::from_str(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\npreferences: {}\n",
    )
    .expect("static yaml")
}

fn store(path: &Path, config: &Value) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let text = serde_yaml::to_string(config)?;
    let temporary = path.with_extension("podnet-tmp");
    fs::write(&temporary, text)?;
    fs::set_permissions(
        &temporary,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    fs::rename(&temporary, path).with_context(|| format!("writing kubeconfig {}", path.display()))
}

fn named_list<'a>(config: &'a mut Value, key: &str) -> &'a mut Vec<Value> {
    let map = config.as_mapping_mut().expect("kubeconfig is a mapping");
    let entry = map
        .entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !entry.is_sequence() {
        *entry = Value::Sequence(Vec::new());
    }
    entry.as_sequence_mut().expect("sequence")
}

fn upsert(list: &mut Vec<Value>, name: &str, item: Value) {
    list.retain(|existing| existing.get("name").and_then(Value::as_str) != Some(name));
    list.push(item);
}

fn with_name(name: &str, key: &str, body: Value) -> Value {
    let mut map = Mapping::new();
    map.insert("name".into(), name.into());
    map.insert(key.into(), body);
    Value::Mapping(map)
}

/// Merge the single-context kubeconfig at `cluster_kubeconfig` into the user's
/// file under `context`, and make it the current context.
pub fn merge(cluster_kubeconfig: &Path, context: &str) -> Result<PathBuf> {
    let source = load(cluster_kubeconfig)?;
    let first = |key: &str, inner: &str| -> Result<Value> {
        source
            .get(key)
            .and_then(|list| list.get(0))
            .and_then(|item| item.get(inner))
            .cloned()
            .with_context(|| format!("{} has no {key}[0].{inner}", cluster_kubeconfig.display()))
    };
    let cluster = first("clusters", "cluster")?;
    let user = first("users", "user")?;
    let target_path = user_kubeconfig_path();
    let mut target = load(&target_path)?;
    upsert(
        named_list(&mut target, "clusters"),
        context,
        with_name(context, "cluster", cluster),
    );
    upsert(
        named_list(&mut target, "users"),
        context,
        with_name(context, "user", user),
    );
    let mut context_body = Mapping::new();
    context_body.insert("cluster".into(), context.into());
    context_body.insert("user".into(), context.into());
    upsert(
        named_list(&mut target, "contexts"),
        context,
        with_name(context, "context", Value::Mapping(context_body)),
    );
    target
        .as_mapping_mut()
        .expect("mapping")
        .insert("current-context".into(), context.into());
    store(&target_path, &target)?;
    Ok(target_path)
}

/// Remove `context` (and its cluster and user) from the user's kubeconfig.
pub fn remove(context: &str) -> Result<()> {
    let path = user_kubeconfig_path();
    if !path.exists() {
        return Ok(());
    }
    let mut config = load(&path)?;
    for key in ["clusters", "users", "contexts"] {
        named_list(&mut config, key)
            .retain(|item| item.get("name").and_then(Value::as_str) != Some(context));
    }
    let map = config.as_mapping_mut().expect("mapping");
    if map.get("current-context").and_then(Value::as_str) == Some(context) {
        map.insert("current-context".into(), "".into());
    }
    store(&path, &config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_then_remove_keeps_other_contexts() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("config");
        fs::write(
            &user,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://127.0.0.1:1}\nusers:\n- name: other\n  user: {token: t}\ncontexts:\n- name: other\n  context: {cluster: other, user: other}\ncurrent-context: other\n",
        )
        .unwrap();
        let cluster = dir.path().join("cluster");
        fs::write(
            &cluster,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: podnet\n  cluster: {server: https://127.0.0.1:6443}\nusers:\n- name: podnet\n  user: {token: abc}\ncontexts:\n- name: podnet\n  context: {cluster: podnet, user: podnet}\ncurrent-context: podnet\n",
        )
        .unwrap();
        std::env::set_var("KUBECONFIG", &user);
        merge(&cluster, "podnet-dev").unwrap();
        let merged = load(&user).unwrap();
        assert_eq!(merged["current-context"].as_str(), Some("podnet-dev"));
        assert_eq!(merged["contexts"].as_sequence().unwrap().len(), 2);
        assert_eq!(merged["users"][1]["user"]["token"].as_str(), Some("abc"));
        remove("podnet-dev").unwrap();
        let after = load(&user).unwrap();
        assert_eq!(after["contexts"].as_sequence().unwrap().len(), 1);
        assert_eq!(after["contexts"][0]["name"].as_str(), Some("other"));
    }
}
