//! The real `podnet server` binary as a child process: durability across
//! `kill -9`, watches resumed across a restart on the same data directory,
//! and HTTPS only, also on a non-loopback address (inside a network
//! namespace of the test's own).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One `podnet server` process on a data directory. Killed (by PID) on drop.
struct ServerProcess {
    child: Child,
    dir: PathBuf,
    address: String,
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Start the server (inside `netns` when given) and wait until it answers.
    fn start(dir: &Path, listen: &str, netns: Option<&str>) -> ServerProcess {
        let mut command = match netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", ns])
                    .arg(support::podnet_binary());
                command
            }
            None => Command::new(support::podnet_binary()),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .unwrap();
        command
            .args(["server", "--data-dir"])
            .arg(dir)
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = command.spawn().expect("podnet server starts");
        let server = ServerProcess {
            child,
            dir: dir.to_path_buf(),
            address: listen.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = server.curl(netns, "https", "/healthz", false);
            if code == 200 && body == "ok" {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "podnet server did not answer on {listen}: {}",
                std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, by PID, and reap.
    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// curl `scheme://address/path` (in `netns` when given), with the token
    /// when `authorized`: (HTTP code, body). Code 0 means no HTTP reply.
    fn curl(
        &self,
        netns: Option<&str>,
        scheme: &str,
        path: &str,
        authorized: bool,
    ) -> (u16, String) {
        let mut command = match netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, "curl"]);
                command
            }
            None => Command::new("curl"),
        };
        command
            .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.dir.join("ca.crt"));
        if authorized {
            command
                .arg("-H")
                .arg(format!("Authorization: Bearer {}", self.token()));
        }
        command.arg(format!("{scheme}://{}{path}", self.address));
        let output = command.output().expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .args(args)
            .env("KUBECACHEDIR", self.dir.join("kubecache"))
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kill_9_right_after_create_keeps_the_object_and_its_resource_version() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("server");
    let listen = format!("127.0.0.1:{}", free_loopback_port());
    let mut acknowledged = Vec::new();
    for round in 0..3 {
        let server = ServerProcess::start(&dir, &listen, None);
        let name = format!("durable-{round}");
        // The reply's resourceVersion: the create is acknowledged here.
        let rv = server.kubectl_ok(&[
            "create",
            "configmap",
            &name,
            "--from-literal=round=x",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ]);
        assert!(!rv.is_empty());
        server.kill_9();
        acknowledged.push((name, rv));
    }
    let server = ServerProcess::start(&dir, &listen, None);
    for (name, rv) in &acknowledged {
        let stored = server.kubectl_ok(&[
            "get",
            "configmap",
            name,
            "-o",
            "jsonpath={.metadata.resourceVersion} {.data.round}",
        ]);
        assert_eq!(
            stored,
            format!("{rv} x"),
            "{name} after kill -9 and restart"
        );
    }
    // Revisions are never reused after a crash.
    let next = server.kubectl_ok(&[
        "create",
        "configmap",
        "after",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let last: i64 = acknowledged.last().unwrap().1.parse().unwrap();
    assert!(next.parse::<i64>().unwrap() > last, "{next} after {last}");
}

#[test]
fn watch_resumes_across_a_real_server_restart() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("server");
    let listen = format!("127.0.0.1:{}", free_loopback_port());
    let server = ServerProcess::start(&dir, &listen, None);
    let start_rv = server.kubectl_ok(&[
        "create",
        "configmap",
        "before",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    server.kubectl_ok(&["create", "configmap", "during", "--from-literal=a=1"]);
    server.kill_9();

    let server = ServerProcess::start(&dir, &listen, None);
    server.kubectl_ok(&["label", "configmap", "during", "after=restart"]);
    server.kubectl_ok(&["delete", "configmap", "before"]);
    // A client that saw `start_rv` before the restart resumes from it.
    let (code, body) = server.curl(
        None,
        "https",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={start_rv}&timeoutSeconds=2"),
        true,
    );
    assert_eq!(code, 200, "{body}");
    let events: Vec<(String, String)> = body
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                event["type"].as_str().unwrap().to_string(),
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("ADDED", "during"),
        ("MODIFIED", "during"),
        ("DELETED", "before"),
    ]
    .iter()
    .map(|(t, n)| (t.to_string(), n.to_string()))
    .collect();
    assert_eq!(events, expected, "{body}");

    // kubectl's own watch, started before the next write, streams it.
    let mut watcher = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .args([
            "get",
            "configmaps",
            "--watch-only",
            "-o",
            "name",
            "--request-timeout=20s",
        ])
        .env("KUBECACHEDIR", dir.join("kubecache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    server.kubectl_ok(&["create", "configmap", "streamed"]);
    let stdout = watcher.stdout.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = sender.send(line);
        }
    });
    let line = receiver.recv_timeout(Duration::from_secs(15));
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(line.ok().as_deref(), Some("configmap/streamed"));
}

/// A network namespace of the test's own, removed on drop.
struct TestNetns(String);

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn only_https_also_on_a_non_loopback_address() {
    if !support::can_run() {
        return;
    }
    let netns = TestNetns(format!("pn-https-{}", std::process::id()));
    ip(&["netns", "add", &netns.0]);
    ip(&["-n", &netns.0, "link", "set", "lo", "up"]);
    // A veth pair with both ends in the namespace: a non-loopback address.
    ip(&[
        "-n", &netns.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    ip(&["-n", &netns.0, "addr", "add", "10.254.0.1/24", "dev", "v0"]);
    ip(&["-n", &netns.0, "link", "set", "v0", "up"]);
    ip(&["-n", &netns.0, "link", "set", "v1", "up"]);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("server");
    let server = ServerProcess::start(&dir, "10.254.0.1:6443", Some(&netns.0));

    // HTTPS with a certificate for the address; no token → 401, token → 200.
    let (code, body) = server.curl(Some(&netns.0), "https", "/api/v1/namespaces", false);
    assert_eq!(code, 401, "{body}");
    let (code, body) = server.curl(Some(&netns.0), "https", "/api/v1/namespaces", true);
    assert_eq!(code, 200, "{body}");
    let kubeconfig = std::fs::read_to_string(dir.join("kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("server: https://10.254.0.1:6443"),
        "{kubeconfig}"
    );
    // Plain HTTP gets no HTTP reply at all, with or without a token.
    let (code, _) = server.curl(Some(&netns.0), "http", "/api/v1/namespaces", false);
    assert_eq!(code, 0, "plain HTTP must not be answered");
    let (code, _) = server.curl(Some(&netns.0), "http", "/healthz", true);
    assert_eq!(code, 0, "plain HTTP must not be answered");

    // The server's only TCP listener is that TLS socket.
    let output = Command::new("ip")
        .args(["netns", "exec", &netns.0, "ss", "-Hltnp"])
        .output()
        .unwrap();
    let listeners: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={},", server.pid())))
        .map(|l| l.split_whitespace().nth(3).unwrap_or("").to_string())
        .collect();
    assert_eq!(listeners, vec!["10.254.0.1:6443".to_string()]);
}
