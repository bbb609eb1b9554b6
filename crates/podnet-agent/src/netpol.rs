//! NetworkPolicy enforcement on this node: watches NetworkPolicies, Pods and
//! Namespaces, compiles them with `podnet_netplan::netpol` for the pods of
//! this node and applies the result with `nft -f -` inside the node's network
//! namespace (table `inet podnet-netpol`, nothing else is touched).
//!
//! The first apply replaces the table atomically, so the engine converges from
//! any state left by an earlier run; later applies send only the difference.
//! A failed apply is retried with a full replace.
//!
//! No window for new pods: the pod worker calls [`NetpolEngine::admit_pod`]
//! with the sandbox's IP after CNI ADD and before starting any container; it
//! returns once a ruleset that knows that IP (and so isolates the pod if a
//! policy selects it) is in the kernel. The API may not have the pod's IP
//! yet, and the engine's own watch may lag the worker's, so the registration
//! carries the Pod object too.

use crate::AgentError;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use podnet_netplan::netpol::{
    render_full, render_update, NamespaceInfo, NetpolCompiler, NetpolInput, NetpolRuleset, PodInfo,
    PolicyInfo,
};
use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a registration stands in for a pod the engine's watch has not
/// delivered (yet); after that the watch is the truth.
const REGISTRATION_GRACE: Duration = Duration::from_secs(30);
/// How long a pod worker waits for its pod's rules before giving up (the
/// sync fails and is retried; containers do not start meanwhile).
const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);

struct Registration {
    pod: serde_json::Value,
    ip: Ipv4Addr,
    at: Instant,
    generation: u64,
}

/// The node's NetworkPolicy engine.
pub struct NetpolEngine {
    node_name: String,
    netns: PathBuf,
    registrations: Mutex<HashMap<String, Registration>>,
    /// Bumped on every change the next apply must include.
    requested: AtomicU64,
    wake: tokio::sync::Notify,
    /// The highest generation whose ruleset is in the kernel.
    applied: tokio::sync::watch::Sender<u64>,
}

impl NetpolEngine {
    pub fn new(node_name: String, netns: PathBuf) -> Arc<NetpolEngine> {
        Arc::new(NetpolEngine {
            node_name,
            netns,
            registrations: Mutex::new(HashMap::new()),
            requested: AtomicU64::new(1),
            wake: tokio::sync::Notify::new(),
            applied: tokio::sync::watch::channel(0).0,
        })
    }

    fn changed(&self) -> u64 {
        let generation = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        generation
    }

    /// Make sure the rules for `pod` at `ip` are in the kernel (call after
    /// the sandbox exists and before its first container starts).
    pub async fn admit_pod(&self, pod: &Pod, ip: &str) -> Result<(), AgentError> {
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return Ok(());
        }
        let Ok(address) = ip.parse::<Ipv4Addr>() else {
            // IPv6-only sandboxes are not policed by this engine.
            return Ok(());
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let generation = {
            let mut registrations = self.registrations.lock().expect("registrations");
            match registrations.get(&uid) {
                Some(existing) if existing.ip == address => existing.generation,
                _ => {
                    let generation = self.changed();
                    registrations.insert(
                        uid,
                        Registration {
                            pod: serde_json::to_value(pod).unwrap_or_default(),
                            ip: address,
                            at: Instant::now(),
                            generation,
                        },
                    );
                    generation
                }
            }
        };
        let mut applied = self.applied.subscribe();
        let reached = tokio::time::timeout(ADMIT_TIMEOUT, applied.wait_for(|g| *g >= generation))
            .await
            .is_ok_and(|result| result.is_ok());
        match reached {
            true => Ok(()),
            false => Err(AgentError::Network(format!(
                "network policy rules for pod {name} ({ip}) were not programmed within {}s; \
                 see the agent log for nft errors",
                ADMIT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Watch the API and keep the kernel in line, forever.
    pub async fn run(self: Arc<Self>, client: kube::Client) -> Result<(), AgentError> {
        if let Err(error) = enable_bridge_netfilter(&self.netns) {
            tracing::warn!("network policy: {error}");
        }
        let policies = self
            .clone()
            .reflect(Api::<NetworkPolicy>::all(client.clone()));
        let pods = self.clone().reflect(Api::<Pod>::all(client.clone()));
        let namespaces = self.clone().reflect(Api::<Namespace>::all(client));
        for ready in [
            policies.wait_until_ready().await.is_ok(),
            pods.wait_until_ready().await.is_ok(),
            namespaces.wait_until_ready().await.is_ok(),
        ] {
            if !ready {
                return Err(AgentError::Internal(
                    "network policy watches stopped before their first list".into(),
                ));
            }
        }
        let mut last: Option<NetpolRuleset> = None;
        let mut compiler = NetpolCompiler::new();
        let mut conversions = Conversions::default();
        loop {
            let generation = self.requested.load(Ordering::SeqCst);
            let input = self.input(&policies, &pods, &namespaces, &mut conversions);
            let desired = compiler.compile(&input);
            let script = match &last {
                None => render_full(&desired),
                Some(previous) => render_update(previous, &desired, false),
            };
            let started = Instant::now();
            let result = if script.is_empty() {
                Ok(())
            } else {
                let netns = self.netns.clone();
                tokio::task::spawn_blocking(move || apply_script(&netns, &script))
                    .await
                    .unwrap_or_else(|e| Err(format!("nft worker: {e}")))
            };
            match result {
                Ok(()) => {
                    if last.as_ref() != Some(&desired) {
                        tracing::info!(
                            chains = desired.chains.len(),
                            sets = desired.sets.len(),
                            policies_compiled = compiler.last_recompiled(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "network policy rules applied"
                        );
                    }
                    last = Some(desired);
                    self.applied.send_replace(generation);
                }
                Err(error) => {
                    tracing::warn!("applying network policy rules: {error}");
                    last = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            if self.requested.load(Ordering::SeqCst) == generation {
                self.wake.notified().await;
            }
        }
    }

    fn reflect<K>(self: Arc<Self>, api: Api<K>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (reader, writer) = reflector::store::<K>();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        self.changed();
                    }
                    Err(error) => tracing::warn!("network policy watch: {error}"),
                }
            }
        });
        reader
    }

    fn input(
        &self,
        policies: &Store<NetworkPolicy>,
        pods: &Store<Pod>,
        namespaces: &Store<Namespace>,
        conversions: &mut Conversions,
    ) -> NetpolInput {
        let mut registrations = self.registrations.lock().expect("registrations");
        let mut pod_infos = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut fresh = Conversions::default();
        for pod in pods.state() {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if !registrations.contains_key(&uid) {
                let info = conversions.pods.convert(&mut fresh.pods, &*pod, |object| {
                    PodInfo::from_json(object, &self.node_name)
                });
                pod_infos.push(info);
                continue;
            }
            let mut object = serde_json::to_value(&*pod).unwrap_or_default();
            if let Some(registration) = registrations.get(&uid) {
                seen.insert(uid);
                // The worker's copy may be newer than the watch's.
                if revision(&registration.pod) > revision(&object) {
                    object = registration.pod.clone();
                }
                let mut info = PodInfo::from_json(&object, &self.node_name);
                if info.local && object["spec"]["hostNetwork"].as_bool() != Some(true) {
                    info.ip = Some(registration.ip);
                }
                pod_infos.push(info);
            } else {
                pod_infos.push(PodInfo::from_json(&object, &self.node_name));
            }
        }
        registrations.retain(|uid, registration| {
            seen.contains(uid) || registration.at.elapsed() < REGISTRATION_GRACE
        });
        for (uid, registration) in registrations.iter() {
            if !seen.contains(uid) {
                let mut info = PodInfo::from_json(&registration.pod, &self.node_name);
                info.local = true;
                info.ip = Some(registration.ip);
                pod_infos.push(info);
            }
        }
        // One local pod per IP (a stale record must not lend its rules to a
        // new pod that reuses the address): the most recently registered wins.
        let newest: HashMap<Ipv4Addr, Instant> =
            registrations.values().fold(HashMap::new(), |mut acc, r| {
                let entry = acc.entry(r.ip).or_insert(r.at);
                if r.at > *entry {
                    *entry = r.at;
                }
                acc
            });
        let owner_of: HashMap<Ipv4Addr, (String, String)> = registrations
            .values()
            .filter(|r| newest.get(&r.ip) == Some(&r.at))
            .map(|r| {
                (
                    r.ip,
                    (
                        r.pod["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        r.pod["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            })
            .collect();
        for info in pod_infos.iter_mut().filter(|p| p.local) {
            if let Some(ip) = info.ip {
                if let Some((namespace, name)) = owner_of.get(&ip) {
                    if (&info.namespace, &info.name) != (namespace, name) {
                        info.ip = None;
                    }
                }
            }
        }
        let input = NetpolInput {
            namespaces: namespaces
                .state()
                .iter()
                .map(|ns| {
                    conversions.namespaces.convert(
                        &mut fresh.namespaces,
                        &**ns,
                        NamespaceInfo::from_json,
                    )
                })
                .collect(),
            pods: pod_infos,
            policies: policies
                .state()
                .iter()
                .map(|p| {
                    conversions
                        .policies
                        .convert(&mut fresh.policies, &**p, PolicyInfo::from_json)
                })
                .collect(),
        };
        // Objects gone from the stores are forgotten.
        *conversions = fresh;
        input
    }
}

/// Objects already converted for the compiler, by uid and resourceVersion:
/// only new or changed objects go through JSON again.
struct Converted<T> {
    by_uid: HashMap<String, (String, T)>,
}

impl<T> Default for Converted<T> {
    fn default() -> Self {
        Converted {
            by_uid: HashMap::new(),
        }
    }
}

impl<T: Clone> Converted<T> {
    fn convert<K: kube::Resource + serde::Serialize>(
        &mut self,
        fresh: &mut Converted<T>,
        object: &K,
        from_json: impl FnOnce(&serde_json::Value) -> T,
    ) -> T {
        let meta = object.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        let version = meta.resource_version.clone().unwrap_or_default();
        let value = match self.by_uid.remove(&uid) {
            Some((seen, value)) if !uid.is_empty() && !version.is_empty() && seen == version => {
                value
            }
            _ => from_json(&serde_json::to_value(object).unwrap_or_default()),
        };
        fresh.by_uid.insert(uid, (version, value.clone()));
        value
    }
}

#[derive(Default)]
struct Conversions {
    pods: Converted<PodInfo>,
    namespaces: Converted<NamespaceInfo>,
    policies: Converted<PolicyInfo>,
}

fn revision(object: &serde_json::Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bridged pod-to-pod packets must pass the inet hooks (see podnet-netplan's
/// netpol module); it is the kernel's default, made explicit.
pub fn enable_bridge_netfilter(netns: &Path) -> Result<(), String> {
    podnet_netlink::in_netns(netns, || {
        std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1")
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| {
        format!(
            "enabling bridge netfilter in {}: {e} (same-node pod traffic would bypass policy)",
            netns.display()
        )
    })
}

/// Run `nft -f -` with `script` inside the namespace at `netns`.
pub fn apply_script(netns: &Path, script: &str) -> Result<(), String> {
    let output = podnet_netlink::in_netns(netns, || -> std::io::Result<std::process::Output> {
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())?;
        child.wait_with_output()
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| {
        format!(
            "running nft in {}: {e} (is nftables installed?)",
            netns.display()
        )
    })?;
    if output.status.success() {
        Ok(())
    } else {
        let first_lines: String = script.lines().take(20).collect::<Vec<_>>().join("\n");
        Err(format!(
            "nft -f - in {} failed: {}\nscript begins:\n{first_lines}",
            netns.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
