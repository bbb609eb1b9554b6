//! Container probes as the kubelet runs them: liveness, readiness and
//! startup, each an exec, httpGet or tcpSocket check with
//! initialDelaySeconds / periodSeconds / timeoutSeconds / successThreshold /
//! failureThreshold.
//!
//! The decisions are pure ([`ProbePlan::from_spec`] turns a `Probe` into a
//! plan, [`ProbeCounter`] applies the thresholds); [`Prober`] runs one worker
//! task per (container, probe kind). HTTP and TCP checks run from inside the
//! pod's network namespace: the agent lives in the host's network namespace,
//! where pod addresses are not reachable.

use crate::backend::ContainerBackend;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As events spell it (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    Exec {
        command: Vec<String>,
    },
    Http {
        https: bool,
        /// `None`: the pod IP.
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: Option<String>,
        port: u16,
    },
}

/// A probe with its timing, defaults applied as upstream defaults them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePlan {
    pub kind: ProbeKind,
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// Probe-level terminationGracePeriodSeconds (liveness and startup).
    pub termination_grace: Option<Duration>,
}

fn seconds(value: Option<i32>, default: i32, minimum: i32) -> Duration {
    Duration::from_secs(value.unwrap_or(default).max(minimum) as u64)
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {number} is out of range")),
        IntOrString::String(name) => {
            if let Ok(number) = name.parse::<u16>() {
                return Ok(number);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| {
                    format!(
                        "container {} has no port named {name:?}; name it under ports or give a number",
                        container.name
                    )
                })
        }
    }
}

impl ProbePlan {
    /// The plan for one probe of `container`, or why it cannot run.
    pub fn from_spec(
        kind: ProbeKind,
        probe: &Probe,
        container: &Container,
    ) -> Result<ProbePlan, String> {
        let action = if let Some(exec) = &probe.exec {
            let command = exec.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err(format!(
                    "{} probe of container {} has an empty exec command",
                    kind.title(),
                    container.name
                ));
            }
            ProbeAction::Exec { command }
        } else if let Some(http) = &probe.http_get {
            let path = http.path.clone().unwrap_or_default();
            ProbeAction::Http {
                https: http
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("https")),
                host: http.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(&http.port, container)?,
                path: if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                },
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            ProbeAction::Tcp {
                host: tcp.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(&tcp.port, container)?,
            }
        } else {
            return Err(format!(
                "{} probe of container {} needs exec, httpGet or tcpSocket (grpc is not supported)",
                kind.title(),
                container.name
            ));
        };
        Ok(ProbePlan {
            kind,
            action,
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            // Liveness and startup probes must use 1; validation enforces it upstream.
            success_threshold: match kind {
                ProbeKind::Readiness => probe.success_threshold.unwrap_or(1).max(1) as u32,
                _ => 1,
            },
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            termination_grace: probe
                .termination_grace_period_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64)),
        })
    }

    /// Every probe a container declares.
    pub fn all_for(container: &Container) -> Vec<Result<ProbePlan, String>> {
        [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(kind, probe)| {
            probe
                .as_ref()
                .map(|probe| ProbePlan::from_spec(kind, probe, container))
        })
        .collect()
    }
}

/// Consecutive results against the thresholds. The result starts unknown
/// (`None`): readiness counts as not ready, liveness as alive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeCounter {
    pub result: Option<bool>,
    successes: u32,
    failures: u32,
}

impl ProbeCounter {
    /// Records one outcome; returns the new result when it changed.
    pub fn record(&mut self, success: bool, plan: &ProbePlan) -> Option<bool> {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= plan.success_threshold && self.result != Some(true) {
                self.result = Some(true);
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= plan.failure_threshold && self.result != Some(false) {
                self.result = Some(false);
                return Some(false);
            }
        }
        None
    }
}

/// One probe attempt's outcome: success, or the failure message events show.
pub type ProbeOutcome = Result<(), String>;

/// Runs one check. Blocking: HTTP and TCP enter the pod's network namespace.
pub fn run_check(
    action: &ProbeAction,
    timeout: Duration,
    pod_ip: &str,
    netns: &std::path::Path,
    containers: &dyn ContainerBackend,
    container_id: &str,
) -> ProbeOutcome {
    match action {
        ProbeAction::Exec { command } => {
            match containers.exec_sync(container_id, command, timeout) {
                Ok((0, _)) => Ok(()),
                Ok((code, output)) => {
                    let output = String::from_utf8_lossy(&output).trim().to_string();
                    Err(if output.is_empty() {
                        format!("command {command:?} exited with {code}")
                    } else {
                        format!("command {command:?} exited with {code}: {output}")
                    })
                }
                Err(error) => Err(error),
            }
        }
        ProbeAction::Tcp { host, port } => {
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            in_pod_netns(netns, move || {
                let address = resolve(&host, *port)?;
                TcpStream::connect_timeout(&address, timeout)
                    .map(|_| ())
                    .map_err(|e| format!("dial tcp {address}: connect: {}", io_message(&e)))
            })
        }
        ProbeAction::Http {
            https,
            host,
            port,
            path,
            headers,
        } => {
            if *https {
                return Err(format!(
                    "HTTPS probes are not supported; probe port {port} with tcpSocket or exec instead"
                ));
            }
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            let (port, path, headers) = (*port, path.clone(), headers.clone());
            in_pod_netns(netns, move || {
                http_get(&host, port, &path, &headers, timeout)
            })
        }
    }
}

/// An I/O error as Go spells it in probe messages ("connection refused").
fn io_message(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn in_pod_netns(
    netns: &std::path::Path,
    work: impl FnOnce() -> ProbeOutcome + Send,
) -> ProbeOutcome {
    podnet_netlink::in_netns(netns, work)
        .map_err(|e| format!("entering the pod's network namespace: {e}"))?
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// A plain HTTP/1.1 GET; 200..400 is success, as the kubelet counts it.
pub fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> ProbeOutcome {
    let deadline = Instant::now() + timeout;
    let address = resolve(host, port)?;
    let url = format!("http://{address}{path}");
    let mut stream = TcpStream::connect_timeout(&address, timeout).map_err(|e| {
        format!(
            "Get \"{url}\": dial tcp {address}: connect: {}",
            io_message(&e)
        )
    })?;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let _ = stream.set_write_timeout(Some(remaining()));
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        request.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("Get \"{url}\": {}", io_message(&e)))?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    while !response.windows(2).any(|w| w == b"\r\n") {
        let _ = stream.set_read_timeout(Some(remaining()));
        if Instant::now() >= deadline {
            return Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ));
        }
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                ))
            }
            Err(e) => return Err(format!("Get \"{url}\": {}", io_message(&e))),
        }
    }
    let line = String::from_utf8_lossy(&response);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

/// What the probes currently say about one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// Readiness: `None` until the first decision (not ready).
    pub ready: Option<bool>,
    /// Startup: `None` until it succeeded once.
    pub started: Option<bool>,
}

/// Something a worker reports back to the pod workers.
#[derive(Debug, Clone)]
pub enum ProbeEvent {
    /// A probe failed (one attempt): an `Unhealthy` warning.
    Unhealthy { kind: ProbeKind, message: String },
    /// Liveness or startup failed past its threshold: the container is killed.
    Kill {
        kind: ProbeKind,
        grace: Option<Duration>,
    },
    /// A result changed; the pod's status should be reported again.
    Changed,
}

/// Where a worker sends what it found: (pod uid, container id, container name, event).
pub type ProbeSink = Arc<dyn Fn(&str, &str, &str, ProbeEvent) + Send + Sync>;

/// The container a set of workers probes.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub pod_uid: String,
    pub container_id: String,
    pub container_name: String,
    pub pod_ip: String,
    pub netns: PathBuf,
    pub started_at: Instant,
}

/// A running worker: the pod it belongs to and its task.
type Worker = (String, tokio::task::JoinHandle<()>);

/// Probe workers and their latest results, keyed by container id.
#[derive(Default)]
pub struct Prober {
    workers: Mutex<HashMap<(String, ProbeKind), Worker>>,
    results: Arc<Mutex<HashMap<String, ProbeResults>>>,
}

impl Prober {
    pub fn results(&self, container_id: &str) -> ProbeResults {
        self.results
            .lock()
            .expect("probe results")
            .get(container_id)
            .copied()
            .unwrap_or_default()
    }

    /// Makes sure a worker runs for every probe in `plans` of this container.
    pub fn ensure(
        &self,
        target: &ProbeTarget,
        plans: &[ProbePlan],
        containers: Arc<dyn ContainerBackend>,
        sink: ProbeSink,
    ) {
        let mut workers = self.workers.lock().expect("probe workers");
        let has_startup = plans.iter().any(|p| p.kind == ProbeKind::Startup);
        for plan in plans {
            let key = (target.container_id.clone(), plan.kind);
            if workers.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(probe_worker(
                target.clone(),
                plan.clone(),
                has_startup,
                containers.clone(),
                self.results.clone(),
                sink.clone(),
            ));
            workers.insert(key, (target.pod_uid.clone(), task));
        }
    }

    /// Stops the workers of `pod_uid`'s containers that are not in `keep`.
    pub fn retain(&self, pod_uid: &str, keep: &[String]) {
        let mut workers = self.workers.lock().expect("probe workers");
        let mut results = self.results.lock().expect("probe results");
        workers.retain(|(container_id, _), (uid, task)| {
            let stays = uid != pod_uid || keep.contains(container_id);
            if !stays {
                task.abort();
                results.remove(container_id);
            }
            stays
        });
    }
}

async fn probe_worker(
    target: ProbeTarget,
    plan: ProbePlan,
    has_startup: bool,
    containers: Arc<dyn ContainerBackend>,
    results: Arc<Mutex<HashMap<String, ProbeResults>>>,
    sink: ProbeSink,
) {
    let id = target.container_id.clone();
    let emit = |event: ProbeEvent| sink(&target.pod_uid, &id, &target.container_name, event);
    let since_start = target.started_at.elapsed();
    if plan.initial_delay > since_start {
        tokio::time::sleep(plan.initial_delay - since_start).await;
    }
    let mut counter = ProbeCounter::default();
    let mut ticker = tokio::time::interval(plan.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = results
            .lock()
            .expect("probe results")
            .get(&id)
            .and_then(|r| r.started)
            .unwrap_or(false);
        match plan.kind {
            // Once started, the startup probe is done for this container.
            ProbeKind::Startup if started => return,
            // Liveness and readiness wait for the startup probe.
            ProbeKind::Liveness | ProbeKind::Readiness if has_startup && !started => continue,
            _ => {}
        }
        let action = plan.action.clone();
        let (pod_ip, netns) = (target.pod_ip.clone(), target.netns.clone());
        let (check_containers, check_id, timeout) = (containers.clone(), id.clone(), plan.timeout);
        let outcome = tokio::task::spawn_blocking(move || {
            run_check(
                &action,
                timeout,
                &pod_ip,
                &netns,
                check_containers.as_ref(),
                &check_id,
            )
        })
        .await
        .unwrap_or_else(|e| Err(format!("probe worker failed: {e}")));
        if let Err(message) = &outcome {
            emit(ProbeEvent::Unhealthy {
                kind: plan.kind,
                message: message.clone(),
            });
        }
        let Some(result) = counter.record(outcome.is_ok(), &plan) else {
            continue;
        };
        match (plan.kind, result) {
            (ProbeKind::Readiness, ready) => {
                results
                    .lock()
                    .expect("probe results")
                    .entry(id.clone())
                    .or_default()
                    .ready = Some(ready);
                emit(ProbeEvent::Changed);
            }
            (ProbeKind::Startup, true) => {
                results
                    .lock()
                    .expect("probe results")
                    .entry(id.clone())
                    .or_default()
                    .started = Some(true);
                emit(ProbeEvent::Changed);
                return;
            }
            (ProbeKind::Liveness, true) => {}
            (kind, false) => {
                emit(ProbeEvent::Kill {
                    kind,
                    grace: plan.termination_grace,
                });
                // The container is being killed; a new attempt gets new workers.
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> Container {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn plans_apply_upstream_defaults_and_named_ports() {
        let c = container(
            "name: web\nports: [{name: http, containerPort: 8080}]\n\
             readinessProbe: {httpGet: {path: healthz, port: http}, successThreshold: 2}\n\
             livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 3, failureThreshold: 1, initialDelaySeconds: 5}\n\
             startupProbe: {exec: {command: [cat, /ready]}, timeoutSeconds: 4}\n",
        );
        let plans: Vec<ProbePlan> = ProbePlan::all_for(&c)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        expect_test::expect![[r#"
            [
                ProbePlan {
                    kind: Startup,
                    action: Exec {
                        command: [
                            "cat",
                            "/ready",
                        ],
                    },
                    initial_delay: 0ns,
                    period: 10s,
                    timeout: 4s,
                    success_threshold: 1,
                    failure_threshold: 3,
                    termination_grace: None,
                },
                ProbePlan {
                    kind: Liveness,
                    action: Tcp {
                        host: None,
                        port: 8080,
                    },
                    initial_delay: 5s,
                    period: 3s,
                    timeout: 1s,
                    success_threshold: 1,
                    failure_threshold: 1,
                    termination_grace: None,
                },
                ProbePlan {
                    kind: Readiness,
                    action: Http {
                        https: false,
                        host: None,
                        port: 8080,
                        path: "/healthz",
                        headers: [],
                    },
                    initial_delay: 0ns,
                    period: 10s,
                    timeout: 1s,
                    success_threshold: 2,
                    failure_threshold: 3,
                    termination_grace: None,
                },
            ]
        "#]]
        .assert_debug_eq(&plans);
    }

    #[test]
    fn unknown_named_port_says_how_to_fix_it() {
        let c = container("name: web\nlivenessProbe: {httpGet: {port: metrics}}\n");
        let error = ProbePlan::all_for(&c).remove(0).unwrap_err();
        assert!(error.contains("no port named \"metrics\""), "{error}");
    }

    #[test]
    fn counter_honours_thresholds() {
        let c = container(
            "name: a\nreadinessProbe: {exec: {command: [x]}, successThreshold: 2, failureThreshold: 3}",
        );
        let plan = ProbePlan::all_for(&c).remove(0).unwrap();
        let mut counter = ProbeCounter::default();
        assert_eq!(counter.record(true, &plan), None);
        assert_eq!(counter.record(true, &plan), Some(true));
        assert_eq!(counter.record(true, &plan), None);
        assert_eq!(counter.record(false, &plan), None);
        assert_eq!(counter.record(false, &plan), None);
        assert_eq!(
            counter.record(true, &plan),
            None,
            "a success resets failures"
        );
        assert_eq!(counter.record(false, &plan), None);
        assert_eq!(counter.record(false, &plan), None);
        assert_eq!(counter.record(false, &plan), Some(false));
        assert_eq!(counter.record(false, &plan), None);
        assert_eq!(counter.record(true, &plan), None);
        assert_eq!(counter.record(true, &plan), Some(true));
    }

    #[test]
    fn http_get_counts_2xx_and_3xx_as_success() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "302 Found", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let n = stream.read(&mut request).unwrap();
                let text = String::from_utf8_lossy(&request[..n]).to_string();
                assert!(text.starts_with("GET /healthz HTTP/1.1\r\n"), "{text}");
                assert!(text.contains("X-Check: yes\r\n"), "{text}");
                write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
        });
        let headers = vec![("X-Check".to_string(), "yes".to_string())];
        let timeout = Duration::from_secs(2);
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &headers, timeout),
            Ok(())
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &headers, timeout),
            Ok(())
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/healthz", &headers, timeout),
            Err("HTTP probe failed with statuscode: 503".to_string())
        );
        server.join().unwrap();
    }

    #[test]
    fn http_get_times_out_on_a_silent_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = Instant::now();
        let error = http_get("127.0.0.1", port, "/", &[], Duration::from_millis(300)).unwrap_err();
        assert!(error.contains("deadline exceeded"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }
}
