//! Shared end-to-end harness: a real `podnet up` cluster in a temporary
//! state root, driven with the real kubectl, removed on drop even when the
//! test fails. Each test binary includes it with `mod support;`.
#![allow(dead_code)]
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn podnet_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podnet"))
}

/// A cluster for one test, removed on drop even when the test fails.
pub struct Cluster {
    pub name: String,
    pub root: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub kube_cache: tempfile::TempDir,
}

impl Cluster {
    pub fn up(prefix: &str, nodes: usize, extra: &[&str]) -> Cluster {
        let name = format!("{prefix}{}", std::process::id() % 100000);
        let root = tempfile::tempdir().expect("temp root");
        let mut command = Command::new(podnet_binary());
        command
            .env("PODNET_ROOT", root.path())
            .args([
                "up",
                "--name",
                &name,
                "--nodes",
                &nodes.to_string(),
                "--no-kubeconfig",
                "--wait",
                "90s",
            ])
            .args(extra);
        let output = command.output().expect("run podnet up");
        let kubeconfig = root.path().join(&name).join("server/kubeconfig");
        let cluster = Cluster {
            name,
            root,
            kubeconfig,
            kube_cache: tempfile::tempdir().unwrap(),
        };
        assert!(
            output.status.success(),
            "podnet up failed:\n{}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            cluster.logs()
        );
        cluster
    }

    pub fn logs(&self) -> String {
        let mut text = String::new();
        let base = self.root.path().join(&self.name);
        text.push_str(&std::fs::read_to_string(base.join("server/server.log")).unwrap_or_default());
        if let Ok(entries) = std::fs::read_dir(base.join("nodes")) {
            for entry in entries.flatten() {
                text.push_str(&format!("--- {}\n", entry.path().display()));
                text.push_str(
                    &std::fs::read_to_string(entry.path().join("agent.log")).unwrap_or_default(),
                );
            }
        }
        text.lines()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECACHEDIR", self.kube_cache.path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}\n{}\nlogs:\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
            self.logs()
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .env("KUBECACHEDIR", self.kube_cache.path())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("timed out waiting for {what}\nlogs:\n{}", self.logs());
    }

    pub fn node_exec(&self, node: &str, command: &[&str]) -> Output {
        Command::new(podnet_binary())
            .env("PODNET_ROOT", self.root.path())
            .args(["node", "exec", node, "--"])
            .args(command)
            .output()
            .expect("podnet node exec")
    }

    pub fn down(&self) -> Output {
        Command::new(podnet_binary())
            .env("PODNET_ROOT", self.root.path())
            .args(["down", "--name", &self.name])
            .output()
            .expect("podnet down")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.root.path().join(&self.name).exists() {
            let _ = self.down();
        }
    }
}

pub fn can_run() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let tools = ["runc", "kubectl", "ip"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    skip_unless(root && tools, "needs root, runc, kubectl and ip")
}

/// `ok`, or a skip message. Under the project's test command
/// (`scripts/test.sh` sets PODNET_REQUIRE_PRIVILEGED_TESTS=1) a missing
/// prerequisite is a failure, so these tests can never pass by skipping.
pub fn skip_unless(ok: bool, why: &str) -> bool {
    if !ok {
        assert!(
            std::env::var_os("PODNET_REQUIRE_PRIVILEGED_TESTS").is_none(),
            "{why} (PODNET_REQUIRE_PRIVILEGED_TESTS is set: install it with scripts/install-deps.sh)"
        );
        eprintln!("skipping: {why}");
    }
    ok
}

pub fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub fn pod_ip(cluster: &Cluster, pod: &str) -> String {
    cluster.kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

impl Cluster {
    /// The node's own directory tree (run/netns, var/lib/cni, var/lib/podnet, ...).
    pub fn node_root(&self, node: &str) -> PathBuf {
        self.root.path().join(&self.name).join("nodes").join(node)
    }

    /// The PID of a node's agent, from the cluster state.
    pub fn agent_pid(&self, node: &str) -> i32 {
        std::fs::read_to_string(self.node_root(node).join("agent.pid"))
            .expect("agent.pid")
            .trim()
            .parse()
            .expect("agent pid")
    }

    /// `podnet node restart-agent NODE`.
    pub fn restart_agent(&self, node: &str) -> Output {
        Command::new(podnet_binary())
            .env("PODNET_ROOT", self.root.path())
            .args(["node", "restart-agent", node])
            .output()
            .expect("podnet node restart-agent")
    }

    /// `kubectl get pod NAME -o jsonpath=EXPR`, empty when it fails.
    pub fn pod_field(&self, pod: &str, expression: &str) -> String {
        let output = self.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={expression}")]);
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// Waits until the pod's phase is `phase`.
    pub fn wait_phase(&self, pod: &str, phase: &str, timeout: Duration) {
        self.wait_for(&format!("pod {pod} {phase}"), timeout, || {
            self.pod_field(pod, "{.status.phase}") == phase
        });
    }

    /// The name of the node's node-exec'd `ip netns` entries (pod sandboxes).
    pub fn node_sandboxes(&self, node: &str) -> Vec<String> {
        std::fs::read_dir(self.node_root(node).join("run/netns"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.starts_with("cni-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A busybox pod pinned to `node` that sleeps (a client to exec from).
pub fn client_pod(name: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: busybox
    command: [sleep, "3600"]
"#
    )
}

/// A busybox httpd pod pinned to `node`, answering `body` on TCP 8080;
/// `labels` and `port_name` are inserted as given (`app: web`, `http`).
pub fn web_pod(name: &str, node: &str, labels: &str, port_name: &str, body: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{{labels}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{name: {port_name}, containerPort: 8080}}]
"#
    )
}

impl Cluster {
    /// `wget -qO- URL` from inside `pod` (3 s timeout): the body (trimmed), or
    /// the error output when the request failed.
    pub fn wget_from(&self, pod: &str, url: &str) -> Result<String, String> {
        let output = self.kubectl(&[
            "exec",
            pod,
            "--",
            "sh",
            "-c",
            &format!("timeout 3 wget -qO- {url} 2>&1"),
        ]);
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if output.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}
