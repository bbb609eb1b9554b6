//! NetworkPolicy end to end, modelled on the upstream netpol e2e suite: a
//! two-node cluster, namespaces x, y, z (labelled `ns=<name>`), pods a, b, c
//! in each (labelled `pod=<name>`; a and c on node 1, b on node 2), servers
//! on ports 80 and 81 over TCP and UDP. Each case applies policies with the
//! real kubectl, probes every pod from every pod on every port/protocol in
//! parallel and compares the truth table with the one the independent oracle
//! (`podnet_netplan::netpol_oracle`) computes from the objects in the API.
//!
//! The servers and probe clients run in the pods' own network namespaces
//! (found through the agent's sandbox records), as threads of this test: the
//! packets take exactly the path a container's would, and hundreds of probes
//! finish in about a second. SCTP is not probed: this kernel has no SCTP
//! sockets (the compiler and oracle handle it; see their unit tests).
//! Needs root, runc and kubectl.

mod support;

use podnet_netplan::netpol_oracle::{OracleCluster, OracleEndpoint, OracleProtocol};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [u16; 2] = [80, 81];
const PROTOCOLS: [OracleProtocol; 2] = [OracleProtocol::Tcp, OracleProtocol::Udp];

/// Run `work` on a fresh thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &Path, work: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        work()
    })
    .join()
    .expect("netns thread")
}

/// TCP and UDP servers on 80 and 81 in one pod's namespace, stopped on drop.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(netns: &Path, reply: &str) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        let sockets = in_netns(netns, || {
            PORTS
                .iter()
                .map(|port| {
                    let tcp = TcpListener::bind(("0.0.0.0", *port)).expect("bind tcp");
                    tcp.set_nonblocking(true).unwrap();
                    let udp = UdpSocket::bind(("0.0.0.0", *port)).expect("bind udp");
                    udp.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    (tcp, udp)
                })
                .collect::<Vec<_>>()
        });
        let mut threads = Vec::new();
        for (tcp, udp) in sockets {
            let (stop_tcp, stop_udp) = (stop.clone(), stop.clone());
            let (reply_tcp, reply_udp) = (reply.to_string(), reply.to_string());
            threads.push(std::thread::spawn(move || {
                while !stop_tcp.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut stream, _)) => {
                            use std::io::Write;
                            let _ = stream.write_all(reply_tcp.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
            threads.push(std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while !stop_udp.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = udp.recv_from(&mut buffer) {
                        let _ = udp.send_to(reply_udp.as_bytes(), peer);
                    }
                }
            }));
        }
        Servers { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One probe: may `from` (a netns) reach `ip:port` over `protocol`?
fn probe(from: &Path, ip: &str, port: u16, protocol: OracleProtocol, timeout: Duration) -> bool {
    let address: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    in_netns(from, move || match protocol {
        OracleProtocol::Tcp => {
            let Ok(mut stream) = TcpStream::connect_timeout(&address, timeout) else {
                return false;
            };
            stream.set_read_timeout(Some(timeout)).unwrap();
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply);
            !reply.is_empty()
        }
        _ => {
            let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
            socket.set_read_timeout(Some(timeout)).unwrap();
            // A few tries: UDP may lose the first datagram while ARP resolves.
            let mut buffer = [0u8; 64];
            for _ in 0..3 {
                let _ = socket.send_to(b"probe", address);
                if let Ok((n, _)) = socket.recv_from(&mut buffer) {
                    return n > 0;
                }
            }
            false
        }
    })
}

/// Does a TCP handshake with `ip:port` from `from` complete? (For servers
/// such as httpd that say nothing until asked.)
fn connects(from: &Path, ip: &str, port: u16, timeout: Duration) -> bool {
    let address: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    in_netns(from, move || {
        TcpStream::connect_timeout(&address, timeout).is_ok()
    })
}

struct TestPod {
    namespace: String,
    name: String,
    ip: String,
    netns: PathBuf,
}

impl TestPod {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The conformance fixture: cluster, pods and their servers.
struct Conformance {
    cluster: Cluster,
    pods: Vec<TestPod>,
    _servers: Vec<Servers>,
}

fn pod_manifest(namespace: &str, name: &str, node: &str) -> String {
    // `web` differs per pod (80 on a, 81 on b and c): named ports must be
    // resolved on each destination pod.
    let web = if name == "a" { 80 } else { 81 };
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: "{namespace}", labels: {{pod: {name}}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: busybox
    command: [sleep, "100000"]
    ports:
    - {{name: serve-80-tcp, containerPort: 80, protocol: TCP}}
    - {{name: serve-81-tcp, containerPort: 81, protocol: TCP}}
    - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}
    - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}
    - {{name: web, containerPort: {web}, protocol: TCP}}
---
"#
    )
}

/// The sandbox netns of a pod, from the agent's record on its node.
fn sandbox_netns(cluster: &Cluster, node: &str, uid: &str) -> PathBuf {
    let record = cluster
        .root
        .path()
        .join(&cluster.name)
        .join("nodes")
        .join(node)
        .join("var/lib/podnet/pods")
        .join(uid)
        .join("sandbox.json");
    let text =
        std::fs::read_to_string(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
    let sandbox: Value = serde_json::from_str(&text).unwrap();
    PathBuf::from(sandbox["netns_path"].as_str().expect("netns_path"))
}

fn items(cluster: &Cluster, args: &[&str]) -> Vec<Value> {
    let text = cluster.kubectl_ok(args);
    let list: Value = serde_json::from_str(&text).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

impl Conformance {
    fn up(prefix: &str) -> Conformance {
        let cluster = Cluster::up(prefix, 2, &[]);
        let node1 = format!("{}-node1", cluster.name);
        let node2 = format!("{}-node2", cluster.name);
        let mut manifest = String::new();
        for namespace in NAMESPACES {
            manifest.push_str(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{namespace}\", labels: {{ns: \"{namespace}\"}}}}\n---\n"
            ));
        }
        cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
        let mut manifest = String::new();
        for namespace in NAMESPACES {
            for name in PODS {
                let node = if name == "b" { &node2 } else { &node1 };
                manifest.push_str(&pod_manifest(namespace, name, node));
            }
        }
        cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
        let mut pods = Vec::new();
        cluster.wait_for("9 pods Running", Duration::from_secs(120), || {
            let listed = items(&cluster, &["get", "pods", "-A", "-o", "json"]);
            let running: Vec<&Value> = listed
                .iter()
                .filter(|p| {
                    p["status"]["phase"] == "Running"
                        && p["status"]["podIP"].is_string()
                        && NAMESPACES.contains(&p["metadata"]["namespace"].as_str().unwrap_or(""))
                })
                .collect();
            if running.len() < 9 {
                return false;
            }
            pods = running
                .iter()
                .map(|p| TestPod {
                    namespace: p["metadata"]["namespace"].as_str().unwrap().to_string(),
                    name: p["metadata"]["name"].as_str().unwrap().to_string(),
                    ip: p["status"]["podIP"].as_str().unwrap().to_string(),
                    netns: sandbox_netns(
                        &cluster,
                        p["spec"]["nodeName"].as_str().unwrap(),
                        p["metadata"]["uid"].as_str().unwrap(),
                    ),
                })
                .collect();
            true
        });
        pods.sort_by_key(|p| p.key());
        let servers = pods
            .iter()
            .map(|pod| Servers::start(&pod.netns, &pod.key()))
            .collect();
        Conformance {
            cluster,
            pods,
            _servers: servers,
        }
    }

    fn apply(&self, yaml: &str) {
        self.cluster.kubectl_stdin(&["apply", "-f", "-"], yaml);
    }

    fn oracle(&self) -> OracleCluster {
        OracleCluster {
            namespaces: items(&self.cluster, &["get", "namespaces", "-o", "json"]),
            pods: items(&self.cluster, &["get", "pods", "-A", "-o", "json"]),
            policies: items(
                &self.cluster,
                &["get", "networkpolicies", "-A", "-o", "json"],
            ),
        }
    }

    /// Every pod → every pod on every port and protocol, in parallel.
    fn probe_all(&self) -> BTreeMap<(String, String, u16, OracleProtocol), bool> {
        let mut handles = Vec::new();
        for from in &self.pods {
            for to in &self.pods {
                for port in PORTS {
                    for protocol in PROTOCOLS {
                        let key = (from.key(), to.key(), port, protocol);
                        let netns = from.netns.clone();
                        let ip = to.ip.clone();
                        handles.push((
                            key,
                            std::thread::spawn(move || {
                                probe(&netns, &ip, port, protocol, Duration::from_millis(700))
                            }),
                        ));
                    }
                }
            }
        }
        handles
            .into_iter()
            .map(|(key, handle)| (key, handle.join().unwrap()))
            .collect()
    }

    fn expected(&self) -> BTreeMap<(String, String, u16, OracleProtocol), bool> {
        let oracle = self.oracle();
        let mut table = BTreeMap::new();
        for from in &self.pods {
            for to in &self.pods {
                for port in PORTS {
                    for protocol in PROTOCOLS {
                        let allowed = oracle.allows(
                            &OracleEndpoint::pod(&from.namespace, &from.name),
                            &OracleEndpoint::pod(&to.namespace, &to.name),
                            protocol,
                            port,
                        );
                        table.insert((from.key(), to.key(), port, protocol), allowed);
                    }
                }
            }
        }
        table
    }

    /// Probe until the kernel agrees with the oracle (policies take a moment
    /// to land); fail with the differences. Returns how many probes ran.
    fn check(&self, case: &str) -> usize {
        let expected = self.expected();
        let denied = expected.values().filter(|allowed| !**allowed).count();
        let mut last = BTreeMap::new();
        for _ in 0..4 {
            last = self.probe_all();
            if last == expected {
                eprintln!(
                    "{case}: {} probes match the oracle ({denied} denied)",
                    expected.len()
                );
                return expected.len();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut report = String::new();
        for (key, want) in &expected {
            let got = last[key];
            if got != *want {
                report.push_str(&format!(
                    "  {} → {} {}/{}: expected {}, kernel {}\n",
                    key.0,
                    key.1,
                    key.2,
                    key.3.name(),
                    if *want { "allowed" } else { "denied" },
                    if got { "allowed" } else { "denied" }
                ));
            }
        }
        let listing = self.cluster.node_exec(
            &format!("{}-node1", self.cluster.name),
            &["nft", "list", "table", "inet", "podnet-netpol"],
        );
        panic!(
            "{case}: kernel differs from the oracle:\n{report}\nnode1 table:\n{}\nlogs:\n{}",
            String::from_utf8_lossy(&listing.stdout),
            self.cluster.logs()
        );
    }
}

fn run_case(prefix: &str, steps: &[&str]) {
    if !can_run() {
        return;
    }
    let fixture = Conformance::up(prefix);
    fixture.check("no policies");
    for (index, yaml) in steps.iter().enumerate() {
        fixture.apply(yaml);
        fixture.check(&format!("step {}", index + 1));
    }
}

const DENY_ALL_INGRESS_X: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-ingress, namespace: "x"}
spec: {podSelector: {}}
"#;

#[test]
fn default_deny_ingress() {
    run_case("npdi", &[DENY_ALL_INGRESS_X]);
}

#[test]
fn default_deny_egress() {
    run_case(
        "npde",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all-egress, namespace: "x"}
spec: {podSelector: {}, policyTypes: [Egress]}
"#],
    );
}

#[test]
fn default_deny_all() {
    run_case(
        "npda",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: "y"}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"#],
    );
}

#[test]
fn allow_all_over_deny_all() {
    run_case(
        "npaa",
        &[
            DENY_ALL_INGRESS_X,
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: "x"}
spec:
  podSelector: {}
  ingress: [{}]
"#,
        ],
    );
}

#[test]
fn pod_selector_alone_is_same_namespace() {
    run_case(
        "npps",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-b, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
"#],
    );
}

#[test]
fn namespace_selector_alone() {
    run_case(
        "npns",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]
"#],
    );
}

#[test]
fn pod_and_namespace_selector_anded() {
    run_case(
        "npand",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-yb, namespace: "x"}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]}]
"#],
    );
}

#[test]
fn peers_ored_with_match_expressions() {
    run_case(
        "npor",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-or, namespace: "x"}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: ["x", "y"]}]}
    - podSelector: {matchExpressions: [{key: pod, operator: Exists}, {key: pod, operator: NotIn, values: [a]}]}
"#],
    );
}

#[test]
fn named_ports_resolve_per_destination() {
    run_case(
        "npnp",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: named, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: web}, {port: serve-81-udp, protocol: UDP}]
"#],
    );
}

#[test]
fn port_range_with_end_port() {
    run_case(
        "nprg",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: "x"}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {}}]
    ports: [{port: 79, endPort: 80, protocol: TCP}, {port: 81, endPort: 90, protocol: UDP}]
"#],
    );
}

#[test]
fn udp_only_does_not_allow_tcp() {
    run_case(
        "npudp",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: udp-only, namespace: "x"}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80, protocol: UDP}, {port: 81, protocol: UDP}]}]
"#],
    );
}

#[test]
fn stacked_policies_union() {
    run_case(
        "npst",
        &[
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-80, namespace: "x"}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: 80}]}]
"#,
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-also-81-from-z, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "z"}}}], ports: [{port: 81}]}]
"#,
        ],
    );
}

#[test]
fn ip_block_with_except() {
    if !can_run() {
        return;
    }
    let fixture = Conformance::up("npip");
    // Allow the whole pod network except node 2's /24 (where every b lives).
    let b_ip = &fixture.pods.iter().find(|p| p.name == "b").unwrap().ip;
    let node2_subnet = format!("{}.0/24", b_ip.rsplit_once('.').unwrap().0);
    fixture.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: ipblock, namespace: "x"}}
spec:
  podSelector: {{matchLabels: {{pod: a}}}}
  ingress: [{{from: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{node2_subnet}]}}}}]}}]
"#
    ));
    fixture.check("ipBlock with except");
    // Egress with except: x/c may reach the pod network except y/a's address.
    let ya_ip = &fixture.pods.iter().find(|p| p.key() == "y/a").unwrap().ip;
    fixture.apply(&format!(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: egress-except, namespace: "x"}}
spec:
  podSelector: {{matchLabels: {{pod: c}}}}
  policyTypes: [Egress]
  egress: [{{to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{ya_ip}/32]}}}}]}}]
"#
    ));
    fixture.check("egress ipBlock with except");
}

#[test]
fn egress_to_other_namespace() {
    run_case(
        "npeg",
        &[r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-to-y, namespace: "x"}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: a}}}]
    ports: [{port: 80}, {port: serve-81-udp, protocol: UDP}]
"#],
    );
}

#[test]
fn pod_and_namespace_label_updates() {
    if !can_run() {
        return;
    }
    let fixture = Conformance::up("nplbl");
    fixture.apply(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-team, namespace: "x"}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {role: client}}}]}]
"#,
    );
    fixture.check("nobody has the labels");
    fixture
        .cluster
        .kubectl_ok(&["label", "namespace", "z", "team=blue"]);
    fixture.check("z is blue, no client yet");
    fixture
        .cluster
        .kubectl_ok(&["label", "pod", "-n", "z", "c", "role=client"]);
    fixture.check("z/c is a client");
    fixture
        .cluster
        .kubectl_ok(&["label", "pod", "-n", "y", "b", "role=client"]);
    fixture.check("y/b is a client in a namespace that is not blue");
    // The selected pod itself changes: x/a stops being selected.
    fixture
        .cluster
        .kubectl_ok(&["label", "pod", "-n", "x", "a", "pod=renamed", "--overwrite"]);
    fixture.check("x/a no longer selected");
    fixture
        .cluster
        .kubectl_ok(&["label", "namespace", "z", "team-"]);
    fixture
        .cluster
        .kubectl_ok(&["label", "pod", "-n", "x", "c", "pod=a", "--overwrite"]);
    fixture.check("z not blue, x/c now selected");
}

/// Deleting a policy restores traffic; reports how long it took.
#[test]
fn policy_deletion_restores_traffic() {
    if !can_run() {
        return;
    }
    let fixture = Conformance::up("npdel");
    fixture.apply(DENY_ALL_INGRESS_X);
    fixture.check("deny all ingress in x");
    let from = fixture.pods.iter().find(|p| p.key() == "y/b").unwrap();
    let to = fixture.pods.iter().find(|p| p.key() == "x/a").unwrap();
    assert!(!probe(
        &from.netns,
        &to.ip,
        80,
        OracleProtocol::Tcp,
        Duration::from_millis(300)
    ));
    let started = Instant::now();
    fixture
        .cluster
        .kubectl_ok(&["delete", "networkpolicy", "-n", "x", "deny-all-ingress"]);
    let deleted = started.elapsed();
    let restored = loop {
        if probe(
            &from.netns,
            &to.ip,
            80,
            OracleProtocol::Tcp,
            Duration::from_millis(50),
        ) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "traffic not restored in 10 s"
        );
    };
    eprintln!(
        "policy deletion: kubectl delete returned after {} ms, traffic restored {} ms after the delete started",
        deleted.as_millis(),
        restored.as_millis()
    );
    fixture.check("policy deleted");
}

/// The documentation's example: only frontend reaches backend on TCP 8080;
/// the backend itself still reaches out (the policy is ingress-only).
#[test]
fn allow_frontend_to_backend_example() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("npfe", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let server = |name: &str, node: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo hello-from-{name} > /www/index.html && httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080}}]
---
"#
        )
    };
    let manifest =
        server("backend", &node1) + &server("frontend", &node2) + &server("other", &node1);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    cluster.wait_for("3 pods Running", Duration::from_secs(120), || {
        cluster
            .kubectl_ok(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"])
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
            == 3
    });
    let backend = pod_ip(&cluster, "backend");
    let other = pod_ip(&cluster, "other");
    let fetch = |from: &str, ip: &str| -> bool {
        let output = cluster.kubectl(&[
            "exec",
            from,
            "--",
            "timeout",
            "3",
            "wget",
            "-qO-",
            &format!("http://{ip}:8080/"),
        ]);
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("hello-from-")
    };
    assert!(
        fetch("other", &backend),
        "before the policy anyone reaches backend"
    );
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend-to-backend}
spec:
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{protocol: TCP, port: 8080}]
"#,
    );
    let listed = cluster.kubectl_ok(&["get", "networkpolicy", "-A"]);
    assert!(
        listed.contains("allow-frontend-to-backend") && listed.contains("app=backend"),
        "{listed}"
    );
    cluster.wait_for(
        "other is cut off from backend",
        Duration::from_secs(10),
        || !fetch("other", &backend),
    );
    assert!(
        fetch("frontend", &backend),
        "frontend reaches backend on 8080"
    );
    assert!(!fetch("other", &backend), "nothing else reaches backend");
    assert!(fetch("backend", &other), "backend still reaches out");
    assert!(
        fetch("other", &other) && fetch("frontend", &other),
        "other pods are untouched"
    );
    // Troubleshooting flow: delete the policy, traffic returns.
    cluster.kubectl_ok(&["delete", "networkpolicy", "allow-frontend-to-backend"]);
    cluster.wait_for("traffic returns", Duration::from_secs(10), || {
        fetch("other", &backend)
    });
}

/// With a deny-all ingress policy in place, 50 new pods (httpd on TCP 80)
/// are probed with TCP handshakes from the moment their IP is allocated (the
/// IPAM files on the nodes, before the API knows the IP): none may ever
/// complete. Afterwards the policy is deleted and the same probe succeeds.
#[test]
fn race_fifty_new_pods_are_isolated_from_their_first_packet() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("nprace", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    cluster.kubectl_ok(&["create", "namespace", "race"]);
    cluster.kubectl_ok(&["create", "namespace", "probe"]);
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-all, namespace: race}}
spec: {{podSelector: {{}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: prober, namespace: probe}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node1}}}
  containers: [{{name: c, image: busybox, command: [sleep, "100000"]}}]
"#
        ),
    );
    let mut prober = None;
    cluster.wait_for("prober Running", Duration::from_secs(60), || {
        let listed = items(&cluster, &["get", "pods", "-n", "probe", "-o", "json"]);
        if let Some(p) = listed.iter().find(|p| p["status"]["phase"] == "Running") {
            prober = Some((
                p["status"]["podIP"].as_str().unwrap().to_string(),
                sandbox_netns(&cluster, &node1, p["metadata"]["uid"].as_str().unwrap()),
            ));
        }
        prober.is_some()
    });
    let (prober_ip, prober_netns) = prober.unwrap();
    // Every IP allocated so far (prober, agents' mirror pods have none).
    let ipam_dirs: Vec<PathBuf> = ["node1", "node2"]
        .iter()
        .map(|n| {
            cluster
                .root
                .path()
                .join(&cluster.name)
                .join("nodes")
                .join(format!("{}-{n}", cluster.name))
                .join("var/lib/cni/networks")
        })
        .collect();
    let allocated = |dirs: &[PathBuf]| -> Vec<String> {
        let mut found = Vec::new();
        for dir in dirs {
            for network in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                for entry in std::fs::read_dir(network.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = entry.file_name().to_string_lossy().to_string();
                    if name.parse::<std::net::Ipv4Addr>().is_ok() {
                        found.push(name);
                    }
                }
            }
        }
        found
    };
    let before: Vec<String> = allocated(&ipam_dirs);
    assert!(
        before.contains(&prober_ip),
        "IPAM records found: {before:?}"
    );

    // The probing side: one thread per new IP, hammering TCP 80 and UDP 80.
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watcher = {
        let (stop, successes, attempts) = (stop.clone(), successes.clone(), attempts.clone());
        let prober_netns = prober_netns.clone();
        let ipam_dirs = ipam_dirs.clone();
        std::thread::spawn(move || {
            let mut seen: std::collections::HashSet<String> = before.into_iter().collect();
            let mut probers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for ip in allocated(&ipam_dirs) {
                    if seen.insert(ip.clone()) {
                        let (stop, successes, attempts) =
                            (stop.clone(), successes.clone(), attempts.clone());
                        let netns = prober_netns.clone();
                        probers.push(std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                attempts.fetch_add(1, Ordering::Relaxed);
                                if connects(&netns, &ip, 80, Duration::from_millis(100)) {
                                    successes.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("TCP handshake with {ip}:80 succeeded");
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }));
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let probed = probers.len();
            for prober in probers {
                let _ = prober.join();
            }
            probed
        })
    };
    // 50 pods that answer on TCP 80 and UDP 80 as soon as they start.
    let mut manifest = String::new();
    for i in 0..50 {
        manifest.push_str(&format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: p{i}, namespace: race}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"]
---
"#
        ));
    }
    let started = Instant::now();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    cluster.wait_for("50 pods Running", Duration::from_secs(180), || {
        cluster
            .kubectl_ok(&[
                "get",
                "pods",
                "-n",
                "race",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ])
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
            == 50
    });
    let all_running = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let probed = watcher.join().unwrap();
    let attempts = attempts.load(Ordering::Relaxed);
    let successes = successes.load(Ordering::Relaxed);
    eprintln!(
        "race: 50 pods Running after {} ms; {probed} new IPs probed from allocation, {attempts} probes, {successes} succeeded",
        all_running.as_millis()
    );
    assert_eq!(probed, 50, "every new pod's IP was probed");
    assert_eq!(
        successes, 0,
        "a probe reached a pod that a deny-all policy selects"
    );
    // The probes can succeed: without the policy the same pods answer.
    let target = pod_ip_in(&cluster, "race", "p0");
    let deleting = Instant::now();
    cluster.kubectl_ok(&["delete", "networkpolicy", "-n", "race", "deny-all"]);
    let mut reached = None;
    while deleting.elapsed() < Duration::from_secs(30) {
        if connects(&prober_netns, &target, 80, Duration::from_millis(300)) {
            reached = Some(deleting.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(reached) = reached else {
        let tables: Vec<String> = ["node1", "node2"]
            .iter()
            .map(|n| {
                let output = cluster.node_exec(
                    &format!("{}-{n}", cluster.name),
                    &["nft", "list", "table", "inet", "podnet-netpol"],
                );
                format!("{n}:\n{}", String::from_utf8_lossy(&output.stdout))
            })
            .collect();
        panic!(
            "p0 ({target}) not reachable 30 s after deleting the policy\n{}\npods:\n{}\nlogs:\n{}",
            tables.join("\n"),
            cluster.kubectl_ok(&["get", "pods", "-A", "-o", "wide"]),
            cluster.logs()
        );
    };
    eprintln!(
        "race: p0 reachable {} ms after the policy delete started",
        reached.as_millis()
    );
}

fn pod_ip_in(cluster: &Cluster, namespace: &str, name: &str) -> String {
    cluster.kubectl_ok(&[
        "get",
        "pod",
        "-n",
        namespace,
        name,
        "-o",
        "jsonpath={.status.podIP}",
    ])
}

/// Issue 6, case 5: an egress policy that allows only DNS (UDP and TCP 53
/// to the kube-dns pods, picked by namespace and pod selector) lets the
/// selected pod resolve names while every other egress is blocked; with the
/// DNS allowance removed (egress still isolated) resolution fails too, so
/// the allowance is what makes names resolve.
#[test]
fn egress_allowing_only_dns_to_kube_dns() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("npdns", 2, &[]);
    cluster.wait_for("2 ready DNS pods", Duration::from_secs(180), || {
        let ready = cluster.kubectl_ok(&[
            "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\" \"}{end}",
        ]);
        ready.split_whitespace().filter(|s| *s == "True").count() >= 2
    });
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: nicolaka/netshoot, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 8080 -h /www"]
"#,
    );
    for pod in ["client", "web"] {
        cluster.wait_phase(pod, "Running", Duration::from_secs(120));
    }
    let web = pod_ip(&cluster, "web");
    // `kubernetes.default` through the resolv.conf search path, as libc
    // clients resolve it (the images' busybox nslookup sends names with a
    // dot as they are, and those go upstream).
    let resolves = || {
        let output = cluster.kubectl(&[
            "exec",
            "client",
            "--",
            "dig",
            "+search",
            "+short",
            "+time=2",
            "+tries=1",
            "kubernetes.default",
            "A",
        ]);
        let text = String::from_utf8_lossy(&output.stdout);
        let ok = output.status.success() && text.lines().any(|line| line.trim() == "10.96.0.1");
        if !ok {
            eprintln!(
                "dig +search kubernetes.default: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        ok
    };
    let fetches = || {
        let output = cluster.kubectl(&[
            "exec",
            "client",
            "--",
            "curl",
            "-s",
            "-m",
            "3",
            &format!("http://{web}:8080/"),
        ]);
        output.status.success()
            && String::from_utf8_lossy(&output.stdout).contains("hello-from-web")
    };
    // (The DNS service's rules may still be on their way to the node.)
    cluster.wait_for(
        "the client resolves names before any policy",
        Duration::from_secs(30),
        resolves,
    );
    assert!(fetches(), "before any policy the client reaches web");

    let policy = |egress: &str| {
        format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: client-egress}}
spec:
  podSelector: {{matchLabels: {{app: client}}}}
  policyTypes: [Egress]
  egress: {egress}
"#
        )
    };
    let allow_dns = r#"
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]"#;
    cluster.kubectl_stdin(&["apply", "-f", "-"], &policy(allow_dns));
    cluster.wait_for(
        "the client is cut off from web",
        Duration::from_secs(30),
        || !fetches(),
    );
    assert!(
        resolves(),
        "kubernetes.default resolves through the DNS allowance"
    );
    assert!(!fetches(), "other egress stays blocked");

    // The same policy without the DNS rule: names no longer resolve.
    cluster.kubectl_stdin(&["apply", "-f", "-"], &policy("[]"));
    cluster.wait_for(
        "resolution fails without the DNS allowance",
        Duration::from_secs(30),
        || !resolves(),
    );
    assert!(!fetches(), "egress to web is still blocked");

    // And back: the allowance alone brings resolution back.
    cluster.kubectl_stdin(&["apply", "-f", "-"], &policy(allow_dns));
    cluster.wait_for(
        "resolution returns with the DNS allowance",
        Duration::from_secs(30),
        resolves,
    );
    assert!(!fetches(), "egress to web is blocked throughout");
}

/// A named port in a policy follows the pods' container port names: when the
/// backend is replaced by one whose port 8080 has another name (container
/// ports cannot change in place, so a rename is a new pod, as in a rollout),
/// the policy stops allowing it; named back, it allows it again.
#[test]
fn container_port_rename_changes_what_a_named_port_allows() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("npren", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let backend = |port_name: &str| {
        web_pod(
            "backend",
            &node1,
            "app: backend",
            port_name,
            "hello-backend",
        )
    };
    let policy = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-http-by-name}
spec:
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress]
  ingress:
  - ports: [{protocol: TCP, port: http}]
"#;
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "{}---{policy}---{}",
            client_pod("client", &node2),
            backend("http")
        ),
    );
    cluster.wait_phase("client", "Running", Duration::from_secs(120));
    let fetch = || {
        let url = format!("http://{}:8080/", pod_ip(&cluster, "backend"));
        cluster
            .wget_from("client", &url)
            .is_ok_and(|body| body == "hello-backend")
    };
    let replace_backend = |port_name: &str| {
        cluster.kubectl_ok(&["delete", "pod", "backend", "--wait=true"]);
        cluster.kubectl_stdin(&["apply", "-f", "-"], &backend(port_name));
        cluster.wait_phase("backend", "Running", Duration::from_secs(120));
    };
    cluster.wait_phase("backend", "Running", Duration::from_secs(120));
    cluster.wait_for("port named http allowed", Duration::from_secs(20), &fetch);

    replace_backend("admin");
    // The pod is Running, so its rules are in place: nothing may get through.
    assert!(
        !fetch(),
        "port 8080 is named admin now: the policy allows only http"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(!fetch(), "still blocked a second later");

    replace_backend("http");
    cluster.wait_for("named http again: allowed", Duration::from_secs(20), &fetch);
}
