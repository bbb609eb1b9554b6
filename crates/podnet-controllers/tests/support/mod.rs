//! A real podnet API server on 127.0.0.1:0 in a temporary directory, a kube
//! client for it, and helpers to create nodes and wait for conditions.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use podnet_apiserver::{Server, ServerConfig};
use podnet_controllers::ControllersConfig;
use serde_json::json;

pub struct TestCluster {
    pub client: Client,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    controllers: Option<tokio::task::JoinHandle<()>>,
}

impl TestCluster {
    /// Starts the API server on its own runtime thread (so its work does not
    /// compete with the test's runtime) and a client for it.
    pub async fn start() -> TestCluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("podnet-controllers-test-")
            .tempdir()
            .expect("temp dir");
        let server = Server::open(ServerConfig {
            data_dir: dir.path().join("server"),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            extra_sans: Vec::new(),
        })
        .expect("server opens");
        let kubeconfig_path = server.kubeconfig_path();
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime
                .block_on(server.serve(async {
                    let _ = signal.await;
                }))
                .expect("server runs");
        });
        let kubeconfig = Kubeconfig::read_from(&kubeconfig_path).expect("kubeconfig readable");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kube config");
        let client = Client::try_from(config).expect("client");
        TestCluster {
            client,
            _dir: dir,
            shutdown: Some(shutdown),
            thread: Some(thread),
            controllers: None,
        }
    }

    /// Starts every controller with test-friendly timings.
    /// Starting them again stops the previous instance first, like a process restart.
    pub fn run_controllers(&mut self, config: ControllersConfig) {
        if let Some(previous) = self.controllers.take() {
            previous.abort();
        }
        let client = self.client.clone();
        self.controllers = Some(tokio::spawn(async move {
            if let Err(error) = podnet_controllers::run(client, config).await {
                panic!("controllers stopped: {error}");
            }
        }));
    }

    pub fn fast_config() -> ControllersConfig {
        ControllersConfig {
            node_monitor_grace_period: Duration::from_secs(2),
            node_monitor_period: Duration::from_millis(200),
            unschedulable_retry_period: Duration::from_secs(5),
            namespace_requeue_period: Duration::from_millis(200),
            garbage_collector_rediscovery_period: Duration::from_secs(5),
            ..ControllersConfig::default()
        }
    }

    /// Registers a Ready node with the given allocatable CPU, as an agent would.
    pub async fn create_ready_node(&self, name: &str, cpu: &str) -> Node {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        }))
        .unwrap();
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node created");
        self.set_node_ready(name, cpu, "True").await
    }

    pub async fn set_node_ready(&self, name: &str, cpu: &str, ready: &str) -> Node {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = json!({"status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}]
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
            .expect("node status patched")
    }

    pub async fn create_pod(&self, namespace: &str, name: &str, cpu: &str) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod created")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(controllers) = self.controllers.take() {
            controllers.abort();
        }
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
