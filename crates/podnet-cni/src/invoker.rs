//! The runtime side of CNI, as libcni does it: load the network
//! configuration list, run each plugin with the CNI environment and its
//! config on stdin (with `name`, `cniVersion` and the previous plugin's result
//! injected), and cache the ADD result so DEL and CHECK get it as prevResult.
//!
//! The agent lives in the host's network namespace but the plugins must act
//! in the node's, so every plugin process enters the node namespace between
//! fork and exec.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::spec::version_at_least;
use crate::CniError;

/// A network configuration list (`*.conflist`).
#[derive(Clone, Debug, PartialEq)]
pub struct CniConfigList {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `disableCheck`.
    pub disable_check: bool,
    /// `disableGC`.
    pub disable_gc: bool,
    /// The plugin entries, in order.
    pub plugins: Vec<Value>,
}

impl CniConfigList {
    /// Parses a conflist.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<CniConfigList, CniError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|source| CniError::Decode {
            what: origin.to_string(),
            source,
        })?;
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let invalid = |reason: String| CniError::InvalidConfig {
            reason: format!("{origin}: {reason}"),
        };
        let name = text("name").ok_or_else(|| invalid("missing name".to_string()))?;
        let cni_version =
            text("cniVersion").ok_or_else(|| invalid("missing cniVersion".to_string()))?;
        let plugins = value
            .get("plugins")
            .and_then(Value::as_array)
            .filter(|plugins| !plugins.is_empty())
            .ok_or_else(|| invalid("plugins must be a non-empty list".to_string()))?
            .clone();
        for plugin in &plugins {
            if plugin.get("type").and_then(Value::as_str).is_none() {
                return Err(invalid("every plugin needs a type".to_string()));
            }
        }
        Ok(CniConfigList {
            cni_version,
            name,
            disable_check: value
                .get("disableCheck")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            disable_gc: value
                .get("disableGC")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            plugins,
        })
    }

    /// Loads the first `*.conflist` of `directory` in lexical order.
    pub fn load_from_dir(directory: &Path) -> Result<CniConfigList, CniError> {
        let entries = fs::read_dir(directory)
            .map_err(|error| CniError::io(directory.display(), "read the CNI conf dir", error))?;
        let mut candidates: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "conflist")
            })
            .collect();
        candidates.sort();
        let path = candidates
            .into_iter()
            .next()
            .ok_or_else(|| CniError::NoConfig {
                directory: directory.to_path_buf(),
            })?;
        let bytes = fs::read(&path).map_err(|error| CniError::io(path.display(), "read", error))?;
        CniConfigList::parse(&bytes, &path.display().to_string())
    }
}

/// A pod attachment: container id and interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Container (sandbox) id.
    pub container_id: String,
    /// Interface name in the pod.
    pub ifname: String,
}

/// Invokes the CNI plugin chain configured in a conf dir.
#[derive(Clone, Debug)]
pub struct CniInvoker {
    plugin_dirs: Vec<PathBuf>,
    conf_dir: PathBuf,
    cache_dir: PathBuf,
    node_netns_path: Option<PathBuf>,
}

struct Invocation<'a> {
    command: &'a str,
    container_id: &'a str,
    netns: Option<&'a Path>,
    ifname: &'a str,
    args: &'a [(String, String)],
}

impl CniInvoker {
    /// `plugin_dirs`: where plugin executables are looked up (CNI_PATH);
    /// `conf_dir`: holds the conflist; `cache_dir`: e.g. `<node>/var/lib/cni`
    /// (results go in `results/`); `node_netns_path`: the namespace plugins
    /// run in (`None`: the caller's own).
    pub fn new(
        plugin_dirs: Vec<PathBuf>,
        conf_dir: PathBuf,
        cache_dir: PathBuf,
        node_netns_path: Option<PathBuf>,
    ) -> CniInvoker {
        CniInvoker {
            plugin_dirs,
            conf_dir,
            cache_dir,
            node_netns_path,
        }
    }

    /// The network configuration in effect.
    pub fn config(&self) -> Result<CniConfigList, CniError> {
        CniConfigList::load_from_dir(&self.conf_dir)
    }

    fn cache_path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    fn find_plugin(&self, plugin_type: &str) -> Result<PathBuf, CniError> {
        if !plugin_type.contains('/') {
            for directory in &self.plugin_dirs {
                let candidate = directory.join(plugin_type);
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        Err(CniError::PluginNotFound {
            plugin: plugin_type.to_string(),
            searched: self.plugin_dirs.clone(),
        })
    }

    fn plugin_stdin(
        list: &CniConfigList,
        plugin: &Value,
        prev_result: Option<&Value>,
        extra: Option<(&str, Value)>,
    ) -> Value {
        let mut config = plugin.clone();
        config["name"] = json!(list.name);
        config["cniVersion"] = json!(list.cni_version);
        if let Some(prev_result) = prev_result {
            config["prevResult"] = prev_result.clone();
        }
        if let Some((key, value)) = extra {
            config[key] = value;
        }
        config
    }

    fn exec_plugin(
        &self,
        plugin: &Value,
        invocation: &Invocation<'_>,
        stdin: &Value,
    ) -> Result<Option<Value>, CniError> {
        let plugin_type = plugin
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = self.find_plugin(plugin_type)?;
        let cni_path = std::env::join_paths(&self.plugin_dirs)
            .map(|joined| joined.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Like the CRI runtimes, mark the pod metadata args as optional:
        // plugins that do not know K8S_POD_NAME otherwise refuse them.
        let mut arg_pairs: Vec<String> = Vec::new();
        if !invocation.args.is_empty()
            && !invocation
                .args
                .iter()
                .any(|(key, _)| key == "IgnoreUnknown")
        {
            arg_pairs.push("IgnoreUnknown=1".to_string());
        }
        arg_pairs.extend(
            invocation
                .args
                .iter()
                .map(|(key, value)| format!("{key}={value}")),
        );
        let cni_args = arg_pairs.join(";");
        let mut command = Command::new(&path);
        command
            .env("CNI_COMMAND", invocation.command)
            .env("CNI_CONTAINERID", invocation.container_id)
            .env("CNI_IFNAME", invocation.ifname)
            .env("CNI_ARGS", cni_args)
            .env("CNI_PATH", cni_path)
            .env(
                "CNI_NETNS",
                invocation
                    .netns
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let node_netns = match &self.node_netns_path {
            Some(node_netns_path) => Some(podnet_netlink::open_netns(node_netns_path)?),
            None => None,
        };
        if let Some(node_netns) = &node_netns {
            let raw_fd = node_netns.as_raw_fd();
            // SAFETY: between fork and exec only async-signal-safe calls are
            // allowed; setns(2) is a plain system call on an inherited fd.
            unsafe {
                command.pre_exec(move || {
                    if libc::setns(raw_fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .map_err(|error| CniError::io(path.display(), "start plugin", error))?;
        if let Some(mut child_stdin) = child.stdin.take() {
            child_stdin
                .write_all(stdin.to_string().as_bytes())
                .map_err(|error| CniError::io(path.display(), "write plugin stdin", error))?;
        }
        let output = child
            .wait_with_output()
            .map_err(|error| CniError::io(path.display(), "wait for plugin", error))?;
        let parsed: Option<Value> = serde_json::from_slice(&output.stdout).ok();
        if !output.status.success() {
            let (code, message) = match &parsed {
                Some(error) => (
                    error.get("code").and_then(Value::as_u64).unwrap_or(999) as u32,
                    format!(
                        "{}{}",
                        error.get("msg").and_then(Value::as_str).unwrap_or_default(),
                        error
                            .get("details")
                            .and_then(Value::as_str)
                            .filter(|details| !details.is_empty())
                            .map(|details| format!(": {details}"))
                            .unwrap_or_default()
                    ),
                ),
                None => (
                    999,
                    format!(
                        "exit {}: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    ),
                ),
            };
            return Err(CniError::PluginFailed {
                plugin: plugin_type.to_string(),
                command: invocation.command.to_string(),
                code,
                message,
            });
        }
        Ok(parsed)
    }

    /// ADD: runs every plugin in order, chaining results, caches the final
    /// result and returns it. On failure the caller runs [`CniInvoker::del`]
    /// (as runtimes do with libcni): DEL is what undoes earlier plugins of
    /// the chain, and an ADD that failed because the interface already
    /// exists must not tear down the working attachment.
    pub fn add(
        &self,
        container_id: &str,
        netns_path: &Path,
        ifname: &str,
        args: &[(String, String)],
    ) -> Result<Value, CniError> {
        let list = self.config()?;
        let invocation = Invocation {
            command: "ADD",
            container_id,
            netns: Some(netns_path),
            ifname,
            args,
        };
        let mut prev_result: Option<Value> = None;
        for plugin in &list.plugins {
            let stdin = Self::plugin_stdin(&list, plugin, prev_result.as_ref(), None);
            if let Some(result) = self.exec_plugin(plugin, &invocation, &stdin)? {
                prev_result = Some(result);
            }
        }
        let result = prev_result.unwrap_or_else(|| json!({"cniVersion": list.cni_version}));
        let cache_path = self.cache_path(&list.name, container_id, ifname);
        let cache = json!({
            "kind": "cniCacheV1",
            "containerId": container_id,
            "ifName": ifname,
            "networkName": list.name,
            "netns": netns_path.display().to_string(),
            "cniArgs": args.iter().map(|(key, value)| vec![key.clone(), value.clone()]).collect::<Vec<_>>(),
            "result": result,
        });
        if let Some(parent) = cache_path.parent() {
            fs::create_dir_all(parent).map_err(|error| {
                CniError::io(parent.display(), "create the result cache", error)
            })?;
        }
        let temporary = cache_path.with_extension("tmp");
        fs::write(&temporary, cache.to_string())
            .and_then(|()| fs::rename(&temporary, &cache_path))
            .map_err(|error| CniError::io(cache_path.display(), "write cached result", error))?;
        Ok(result)
    }

    /// The cached ADD result of an attachment, if any.
    pub fn cached_result(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Value>, CniError> {
        let list = self.config()?;
        let path = self.cache_path(&list.name, container_id, ifname);
        match fs::read(&path) {
            Ok(bytes) => {
                let cache: Value =
                    serde_json::from_slice(&bytes).map_err(|source| CniError::Decode {
                        what: path.display().to_string(),
                        source,
                    })?;
                Ok(cache.get("result").cloned())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(CniError::io(path.display(), "read cached result", error)),
        }
    }

    /// CHECK: runs every plugin with the cached result as prevResult.
    pub fn check(
        &self,
        container_id: &str,
        netns_path: &Path,
        ifname: &str,
        args: &[(String, String)],
    ) -> Result<(), CniError> {
        let list = self.config()?;
        if list.disable_check || !version_at_least(&list.cni_version, "0.4.0") {
            return Ok(());
        }
        let cached = self.cached_result(container_id, ifname)?.ok_or_else(|| {
            CniError::UnknownContainer {
                container_id: container_id.to_string(),
                reason: format!("no cached ADD result for interface {ifname}"),
            }
        })?;
        let invocation = Invocation {
            command: "CHECK",
            container_id,
            netns: Some(netns_path),
            ifname,
            args,
        };
        for plugin in &list.plugins {
            let stdin = Self::plugin_stdin(&list, plugin, Some(&cached), None);
            self.exec_plugin(plugin, &invocation, &stdin)?;
        }
        Ok(())
    }

    /// DEL: runs every plugin in reverse order with the cached result as
    /// prevResult, keeps going after a failure, and removes the cache once
    /// every plugin succeeded. `netns_path` may be `None` (netns gone).
    pub fn del(
        &self,
        container_id: &str,
        netns_path: Option<&Path>,
        ifname: &str,
        args: &[(String, String)],
    ) -> Result<(), CniError> {
        let list = self.config()?;
        let cached = self.cached_result(container_id, ifname)?;
        let invocation = Invocation {
            command: "DEL",
            container_id,
            netns: netns_path.filter(|path| path.exists()),
            ifname,
            args,
        };
        let mut first_error = None;
        for plugin in list.plugins.iter().rev() {
            let stdin = Self::plugin_stdin(&list, plugin, cached.as_ref(), None);
            if let Err(error) = self.exec_plugin(plugin, &invocation, &stdin) {
                first_error.get_or_insert(error);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let path = self.cache_path(&list.name, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(CniError::io(path.display(), "remove cached result", error)),
        }
    }

    /// GC: tells every plugin which attachments are valid so it releases
    /// the rest, and drops cached results of the others. Only for
    /// configurations of version 1.1.0 or later, as the spec requires.
    pub fn gc(&self, valid_attachments: &[Attachment]) -> Result<(), CniError> {
        let list = self.config()?;
        let valid_json: Vec<Value> = valid_attachments
            .iter()
            .map(|attachment| json!({"containerID": attachment.container_id, "ifname": attachment.ifname}))
            .collect();
        let mut first_error = None;
        if !list.disable_gc && version_at_least(&list.cni_version, "1.1.0") {
            let invocation = Invocation {
                command: "GC",
                container_id: "",
                netns: None,
                ifname: "",
                args: &[],
            };
            for plugin in &list.plugins {
                let stdin = Self::plugin_stdin(
                    &list,
                    plugin,
                    None,
                    Some(("cni.dev/valid-attachments", json!(valid_json))),
                );
                if let Err(error) = self.exec_plugin(plugin, &invocation, &stdin) {
                    first_error.get_or_insert(error);
                }
            }
        }
        let results_directory = self.cache_dir.join("results");
        if let Ok(entries) = fs::read_dir(&results_directory) {
            let valid_names: Vec<String> = valid_attachments
                .iter()
                .map(|attachment| {
                    format!(
                        "{}-{}-{}",
                        list.name, attachment.container_id, attachment.ifname
                    )
                })
                .collect();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}-", list.name)) && !valid_names.contains(&name) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// STATUS: asks every plugin whether it can ADD (1.1.0+ only).
    pub fn status(&self) -> Result<(), CniError> {
        let list = self.config()?;
        if !version_at_least(&list.cni_version, "1.1.0") {
            return Ok(());
        }
        let invocation = Invocation {
            command: "STATUS",
            container_id: "",
            netns: None,
            ifname: "",
            args: &[],
        };
        for plugin in &list.plugins {
            let stdin = Self::plugin_stdin(&list, plugin, None, None);
            self.exec_plugin(plugin, &invocation, &stdin)?;
        }
        Ok(())
    }
}
