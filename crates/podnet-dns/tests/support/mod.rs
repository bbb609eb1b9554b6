//! Test plumbing: a throwaway network namespace that a whole test runs
//! inside (API server, DNS server, upstream, dig), an in-process API server,
//! and a scripted upstream resolver.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use podnet_apiserver::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A network namespace removed on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        remove_orphans(prefix);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(status.success(), "ip netns add {name}");
        let status = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .expect("ip link set lo up");
        assert!(status.success());
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Run `body` on a new thread inside this namespace, with a
    /// multi-threaded runtime whose threads are in the namespace too.
    pub fn run<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let path = self.path();
        let result = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(body());
            runtime.shutdown_timeout(Duration::from_secs(2));
        })
        .join();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

/// `dig` inside namespace `netns` (on a blocking thread); returns its output.
pub async fn dig(netns: &str, args: &[&str]) -> String {
    let netns = netns.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("ip")
            .args(["netns", "exec", &netns, "dig", "+time=2", "+tries=1"])
            .args(&args)
            .output()
            .expect("dig runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .expect("dig thread")
}

/// Removes `<prefix>-<pid>-<n>` namespaces whose test process no longer
/// exists: a run that was killed (SIGKILL, a machine restart) never ran its
/// `Drop`, so the next run cleans up after it.
fn remove_orphans(prefix: &str) {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An in-process API server on 127.0.0.1 of the current namespace.
pub struct Api {
    pub client: Client,
    pub kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Api {
    pub async fn start() -> Api {
        let dir = tempfile::Builder::new()
            .prefix("podnet-dns-test-")
            .tempdir()
            .expect("temp dir");
        let server = Server::open(ServerConfig {
            data_dir: dir.path().join("server"),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            extra_sans: Vec::new(),
        })
        .expect("server opens");
        let kubeconfig = server.kubeconfig_path();
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = server
                .serve(async {
                    let _ = signal.await;
                })
                .await;
        });
        let file = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .expect("kube config");
        let client = Client::try_from(config).expect("client");
        Api {
            client,
            kubeconfig,
            _dir: dir,
            shutdown: Some(shutdown),
        }
    }

    pub async fn apply(&self, yaml: &str) {
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let value: serde_json::Value =
                serde::Deserialize::deserialize(document).expect("yaml document");
            if value.is_null() {
                continue;
            }
            self.create(value).await;
        }
    }

    pub async fn create(&self, value: serde_json::Value) {
        use kube::api::{Api as KubeApi, DynamicObject, PostParams};
        use kube::discovery::ApiResource;
        let kind = value["kind"].as_str().expect("kind").to_string();
        let (group, version, plural) = match kind.as_str() {
            "Namespace" => ("", "v1", "namespaces"),
            "Service" => ("", "v1", "services"),
            "Pod" => ("", "v1", "pods"),
            "EndpointSlice" => ("discovery.k8s.io", "v1", "endpointslices"),
            other => panic!("kind {other} not handled by the test helper"),
        };
        let resource = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.clone(),
            plural: plural.into(),
        };
        let object: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let api: KubeApi<DynamicObject> = match value["metadata"]["namespace"].as_str() {
            Some(ns) => KubeApi::namespaced_with(self.client.clone(), ns, &resource),
            None if kind == "Namespace" => KubeApi::all_with(self.client.clone(), &resource),
            None => KubeApi::namespaced_with(self.client.clone(), "default", &resource),
        };
        let created = api.create(&PostParams::default(), &object).await;
        if let Err(error) = created {
            panic!("creating {kind} {}: {error}", value["metadata"]["name"]);
        }
        if kind == "Pod" && value.get("status").is_some() {
            let name = value["metadata"]["name"].as_str().unwrap();
            api.patch_status(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"status": value["status"]})),
            )
            .await
            .expect("pod status");
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A scripted upstream resolver on UDP and TCP:
/// - `*.example.org A` → 192.0.2.10 (TTL 60)
/// - `big.example.org A` → 40 addresses; over UDP truncated (TC, no answers)
/// - anything else → NXDOMAIN
///
/// It counts the queries it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn upstream_answer(request: &Message, udp: bool) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.queries = request.queries.clone();
    let Some(query) = request.queries.first() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let name = query.name.to_lowercase().to_ascii();
    if name == "big.example.org." && query.query_type == RecordType::A {
        if udp {
            response.metadata.truncation = true;
        } else {
            for index in 0..40u8 {
                response.add_answer(Record::from_rdata(
                    query.name.clone(),
                    60,
                    RData::A(Ipv4Addr::new(192, 0, 2, index).into()),
                ));
            }
        }
    } else if name.ends_with("example.org.") && query.query_type == RecordType::A {
        response.add_answer(Record::from_rdata(
            query.name.clone(),
            60,
            RData::A(Ipv4Addr::new(192, 0, 2, 10).into()),
        ));
    } else {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response
}

impl Upstream {
    pub async fn start() -> Upstream {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counter = queries.clone();
        let udp_task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok((length, peer)) = udp.recv_from(&mut buffer).await {
                let Ok(request) = Message::from_vec(&buffer[..length]) else {
                    continue;
                };
                if request.metadata.message_type != MessageType::Query {
                    continue;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = upstream_answer(&request, true).to_vec().unwrap();
                let _ = udp.send_to(&reply, peer).await;
            }
        });
        let counter = queries.clone();
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    while let Ok(length) = stream.read_u16().await {
                        let mut buffer = vec![0u8; length as usize];
                        if stream.read_exact(&mut buffer).await.is_err() {
                            return;
                        }
                        let Ok(request) = Message::from_vec(&buffer) else {
                            return;
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        let reply = upstream_answer(&request, false).to_vec().unwrap();
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            queries,
            tasks: vec![udp_task, tcp_task],
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Poll `check` until it returns Some or `timeout` passes; returns the value
/// and how long it took.
pub async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return (value, start.elapsed());
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
