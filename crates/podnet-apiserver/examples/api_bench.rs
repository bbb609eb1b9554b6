//! Load generator for the API server benchmark (bench/api.sh): creates pods
//! with concurrency while watchers stream them, then lists them as a Table
//! and as JSON. Talks HTTPS with the kubeconfig's token, like any client.
//! Prints one JSON document with the measurements.
//!
//! Usage: api_bench --kubeconfig FILE [--pods N] [--concurrency C]
//!                  [--watchers W] [--server-pid PID] [--namespace NS]

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

struct Options {
    kubeconfig: String,
    pods: usize,
    concurrency: usize,
    watchers: usize,
    server_pid: Option<u32>,
    namespace: String,
}

fn parse_options() -> Options {
    let mut options = Options {
        kubeconfig: String::new(),
        pods: 10_000,
        concurrency: 32,
        watchers: 100,
        server_pid: None,
        namespace: "bench".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut index = 0;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--kubeconfig" => options.kubeconfig = value,
            "--pods" => options.pods = value.parse().expect("--pods takes a number"),
            "--concurrency" => {
                options.concurrency = value.parse().expect("--concurrency takes a number")
            }
            "--watchers" => options.watchers = value.parse().expect("--watchers takes a number"),
            "--server-pid" => {
                options.server_pid = Some(value.parse().expect("--server-pid takes a number"))
            }
            "--namespace" => options.namespace = value,
            other => panic!("unknown argument {other:?} (see the usage in the source)"),
        }
        index += 2;
    }
    assert!(!options.kubeconfig.is_empty(), "--kubeconfig is required");
    options
}

/// Server address, TLS client configuration and token from a kubeconfig.
struct Target {
    address: SocketAddr,
    host: String,
    tls: tokio_rustls::TlsConnector,
    token: String,
}

fn target_from(kubeconfig: &str) -> Target {
    use base64::Engine;
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig readable");
    let config: Value = serde_yaml::from_str(&text).expect("kubeconfig is YAML");
    let cluster = &config["clusters"][0]["cluster"];
    let server = cluster["server"].as_str().expect("cluster.server");
    let host = server.trim_start_matches("https://").to_string();
    let address: SocketAddr = host.parse().expect("server is https://IP:PORT");
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            cluster["certificate-authority-data"]
                .as_str()
                .expect("certificate-authority-data"),
        )
        .expect("CA is base64");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("CA is PEM")).expect("CA is usable");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Target {
        address,
        host,
        tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
        token: config["users"][0]["user"]["token"]
            .as_str()
            .expect("users[0].user.token")
            .to_string(),
    }
}

async fn connect(target: &Target) -> Sender {
    let tcp = tokio::net::TcpStream::connect(target.address)
        .await
        .expect("server reachable");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::IpAddress(target.address.ip().into());
    let tls = target.tls.connect(name, tcp).await.expect("TLS handshake");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(connection);
    sender
}

fn request(
    target: &Target,
    method: &str,
    path: &str,
    accept: &str,
    body: Bytes,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, &target.host)
        .header(header::AUTHORIZATION, format!("Bearer {}", target.token))
        .header(header::ACCEPT, accept)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("request parts are valid")
}

async fn call(sender: &mut Sender, request: Request<Full<Bytes>>) -> (u16, Bytes) {
    sender.ready().await.expect("connection open");
    let response = sender.send_request(request).await.expect("request sent");
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body read")
        .to_bytes();
    (code, body)
}

fn pod(namespace: &str, index: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("bench-{index:06}"),
            "namespace": namespace,
            "labels": {"app": "bench", "shard": (index % 16).to_string()},
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "busybox",
                "command": ["sleep", "3600"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }],
        },
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn rss_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / per_second)
}

/// The index in `bench-NNNNNN` of the object in one watch event line.
fn pod_index(finder: &memchr::memmem::Finder<'_>, line: &[u8]) -> Option<usize> {
    let at = finder.find(line)? + finder.needle().len();
    let digits = line.get(at..at + 6)?;
    digits.iter().try_fold(0usize, |index, digit| {
        digit
            .is_ascii_digit()
            .then(|| index * 10 + usize::from(digit - b'0'))
    })
}

/// What one watcher counted: every ADDED event of a bench pod, and the
/// delay from the create's acknowledgement to the event's arrival.
struct WatchTally<'a> {
    name_finder: memchr::memmem::Finder<'a>,
    acked_ns: &'a [AtomicU64],
    seen: usize,
    lags_ms: Vec<f64>,
}

impl WatchTally<'_> {
    /// One complete event line (with its newline).
    fn line(&mut self, line: &[u8], now: u64) {
        if !line.starts_with(b"{\"type\":\"ADDED\"") {
            return;
        }
        let Some(index) = pod_index(&self.name_finder, line) else {
            return;
        };
        self.seen += 1;
        let acked = self.acked_ns[index].load(Ordering::Acquire);
        // An event can arrive before the create's reply does: no lag.
        let lag = if acked == 0 {
            0
        } else {
            now.saturating_sub(acked)
        };
        self.lags_ms.push(lag as f64 / 1e6);
    }

    /// One chunk of the stream: whole lines are read where they lie, and
    /// only a line split across chunks is copied (into `partial`).
    fn chunk(&mut self, partial: &mut Vec<u8>, mut data: &[u8], now: u64) {
        if !partial.is_empty() {
            let Some(end) = memchr::memchr(b'\n', data) else {
                partial.extend_from_slice(data);
                return;
            };
            partial.extend_from_slice(&data[..=end]);
            let line = std::mem::take(partial);
            self.line(&line, now);
            *partial = line;
            partial.clear();
            data = &data[end + 1..];
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', data) {
            self.line(&data[start..=end], now);
            start = end + 1;
        }
        partial.extend_from_slice(&data[start..]);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = parse_options();
    let target = Arc::new(target_from(&options.kubeconfig));
    let ns = options.namespace.clone();
    let mut control = connect(&target).await;
    let (code, body) = call(
        &mut control,
        request(
            &target,
            "POST",
            "/api/v1/namespaces",
            "application/json",
            Bytes::from(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                    .to_string(),
            ),
        ),
    )
    .await;
    assert!(
        code == 201 || code == 409,
        "namespace create: {code} {body:?}"
    );
    let (_, body) = call(
        &mut control,
        request(
            &target,
            "GET",
            &format!("/api/v1/namespaces/{ns}/pods?limit=1"),
            "application/json",
            Bytes::new(),
        ),
    )
    .await;
    let listed: Value = serde_json::from_slice(&body).expect("list is JSON");
    let start_rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_string();
    let rss_idle_kib = rss_kib(options.server_pid, "VmRSS");

    // Watchers first, from the list's resourceVersion, so they see every create.
    let epoch = Instant::now();
    let acked_ns: Arc<Vec<AtomicU64>> =
        Arc::new((0..options.pods).map(|_| AtomicU64::new(0)).collect());
    let mut watcher_tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(options.watchers.max(1));
    for _ in 0..options.watchers {
        let target = target.clone();
        let acked_ns = acked_ns.clone();
        let path = format!(
            "/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={start_rv}&timeoutSeconds=600"
        );
        let ready_tx = ready_tx.clone();
        let expected = options.pods;
        watcher_tasks.push(tokio::spawn(async move {
            let mut sender = connect(&target).await;
            sender.ready().await.expect("connection open");
            let response = sender
                .send_request(request(
                    &target,
                    "GET",
                    &path,
                    "application/json",
                    Bytes::new(),
                ))
                .await
                .expect("watch started");
            assert_eq!(response.status().as_u16(), 200, "watch refused");
            let _ = ready_tx.send(()).await;
            let mut body = response.into_body();
            let mut tally = WatchTally {
                name_finder: memchr::memmem::Finder::new(b"\"name\":\"bench-"),
                acked_ns: &acked_ns,
                seen: 0,
                lags_ms: Vec::with_capacity(expected),
            };
            let mut partial = Vec::new();
            while tally.seen < expected {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let Ok(data) = frame.expect("watch stream").into_data() else {
                    continue;
                };
                let now = epoch.elapsed().as_nanos() as u64;
                tally.chunk(&mut partial, &data, now);
            }
            (tally.seen, tally.lags_ms)
        }));
    }
    drop(ready_tx);
    for _ in 0..options.watchers {
        ready_rx.recv().await.expect("watcher started");
    }

    // Creates.
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let rss_peak_during = Arc::new(AtomicU64::new(0));
    let sampling = {
        let rss_peak_during = rss_peak_during.clone();
        let pid = options.server_pid;
        tokio::spawn(async move {
            loop {
                if let Some(rss) = rss_kib(pid, "VmRSS") {
                    rss_peak_during.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let server_pid = options.server_pid.map(|pid| pid.to_string());
    let server_cpu_before = server_pid.as_deref().and_then(cpu_seconds);
    let client_cpu_before = cpu_seconds("self");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..options.concurrency {
        let target = target.clone();
        let next = next.clone();
        let failures = failures.clone();
        let acked_ns = acked_ns.clone();
        let ns = ns.clone();
        let total = options.pods;
        workers.push(tokio::spawn(async move {
            let mut sender = connect(&target).await;
            let mut latencies_ms = Vec::new();
            let path = format!("/api/v1/namespaces/{ns}/pods");
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let body = Bytes::from(pod(&ns, index).to_string());
                let sent = Instant::now();
                let (code, reply) = call(
                    &mut sender,
                    request(&target, "POST", &path, "application/json", body),
                )
                .await;
                latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                if code == 201 {
                    acked_ns[index].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
                } else {
                    if failures.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!(
                            "create bench-{index:06}: {code} {}",
                            String::from_utf8_lossy(&reply)
                        );
                    }
                }
            }
            latencies_ms
        }));
    }
    let mut create_ms = Vec::new();
    for worker in workers {
        create_ms.extend(worker.await.expect("worker"));
    }
    let create_seconds = started.elapsed().as_secs_f64();
    create_ms.sort_by(f64::total_cmp);

    let mut watch_lag_ms = Vec::new();
    let mut events_seen = 0;
    for task in watcher_tasks {
        match tokio::time::timeout(Duration::from_secs(120), task).await {
            Ok(Ok((seen, lags))) => {
                events_seen += seen;
                watch_lag_ms.extend(lags);
            }
            _ => eprintln!("a watcher did not finish"),
        }
    }
    let watch_seconds = started.elapsed().as_secs_f64();
    // CPU used from the first create until every watcher had every event:
    // the server's, and this client's own (it decrypts every watch stream).
    let cpu_used = |before: Option<f64>, now: Option<f64>| match (before, now) {
        (Some(before), Some(now)) => json!(round(now - before)),
        _ => Value::Null,
    };
    let server_cpu = cpu_used(
        server_cpu_before,
        server_pid.as_deref().and_then(cpu_seconds),
    );
    let client_cpu = cpu_used(client_cpu_before, cpu_seconds("self"));
    watch_lag_ms.sort_by(f64::total_cmp);
    sampling.abort();

    // Lists: the whole collection across namespaces, as kubectl asks for it
    // without chunking, and with kubectl's default chunking (limit=500).
    let table_accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let list = |accept: &'static str, chunked: bool| {
        let target = target.clone();
        let ns = ns.clone();
        async move {
            let mut sender = connect(&target).await;
            let mut runs_ms = Vec::new();
            let mut items = 0;
            let mut bytes = 0;
            for _ in 0..5 {
                // Only the requests are timed, not this client's decoding.
                let mut elapsed = Duration::ZERO;
                let mut continue_token = String::new();
                items = 0;
                bytes = 0;
                loop {
                    let mut path = format!("/api/v1/namespaces/{ns}/pods");
                    if chunked {
                        path.push_str(&format!("?limit=500&continue={continue_token}"));
                    }
                    let started = Instant::now();
                    let (code, body) = call(
                        &mut sender,
                        request(&target, "GET", &path, accept, Bytes::new()),
                    )
                    .await;
                    elapsed += started.elapsed();
                    assert_eq!(code, 200, "list failed");
                    bytes += body.len();
                    let value: Value = serde_json::from_slice(&body).expect("list is JSON");
                    items += value["items"]
                        .as_array()
                        .or(value["rows"].as_array())
                        .map_or(0, Vec::len);
                    match value["metadata"]["continue"].as_str() {
                        Some(token) if chunked && !token.is_empty() => {
                            continue_token = token.to_string()
                        }
                        _ => break,
                    }
                }
                runs_ms.push(elapsed.as_secs_f64() * 1e3);
            }
            runs_ms.sort_by(f64::total_cmp);
            json!({"items": items, "bytes": bytes, "median_ms": round(percentile(&runs_ms, 50.0)), "min_ms": round(runs_ms[0])})
        }
    };
    let table = list(table_accept, false).await;
    let json_list = list("application/json", false).await;
    let table_chunked = list(table_accept, true).await;
    drop(control);

    let report = json!({
        "pods": options.pods,
        "concurrency": options.concurrency,
        "watchers": options.watchers,
        "create": {
            "seconds": round(create_seconds),
            "objects_per_second": round(options.pods as f64 / create_seconds),
            "failures": failures.load(Ordering::Relaxed),
            "p50_ms": round(percentile(&create_ms, 50.0)),
            "p99_ms": round(percentile(&create_ms, 99.0)),
            "max_ms": round(create_ms.last().copied().unwrap_or(0.0)),
        },
        "watch": {
            "events_expected": options.pods * options.watchers,
            "events_seen": events_seen,
            "all_delivered_seconds": round(watch_seconds),
            "lag_p50_ms": round(percentile(&watch_lag_ms, 50.0)),
            "lag_p99_ms": round(percentile(&watch_lag_ms, 99.0)),
            "lag_max_ms": round(watch_lag_ms.last().copied().unwrap_or(0.0)),
        },
        "cpu_seconds_create_and_watch": {
            "wall": round(watch_seconds),
            "server": server_cpu,
            "client": client_cpu,
        },
        "list_table": table,
        "list_json": json_list,
        "list_table_chunked_500": table_chunked,
        "server_rss_mib": {
            "idle": rss_idle_kib.map(|k| round(k as f64 / 1024.0)),
            "peak_during_create": round(rss_peak_during.load(Ordering::Relaxed) as f64 / 1024.0),
            "after": rss_kib(options.server_pid, "VmRSS").map(|k| round(k as f64 / 1024.0)),
            "high_water_mark": rss_kib(options.server_pid, "VmHWM").map(|k| round(k as f64 / 1024.0)),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON"));
}
