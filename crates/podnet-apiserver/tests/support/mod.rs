//! A real server on 127.0.0.1:0 in a temporary data directory, driven by the
//! real kubectl binaries and curl.

#![allow(dead_code)]

use podnet_apiserver::{Server, ServerConfig};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const KUBECTL: &str = "/usr/bin/kubectl";
pub const KUBECTL_127: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.27";
pub const KUBECTL_133: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("podnet-apiserver-test-")
            .tempdir()
            .expect("temp dir");
        Self::start_in(dir)
    }

    /// Start on an existing data directory (to test restarts).
    pub fn start_in(dir: tempfile::TempDir) -> TestServer {
        let server = Server::open(ServerConfig {
            data_dir: dir.path().join("server"),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            extra_sans: Vec::new(),
        })
        .expect("server opens");
        let kubeconfig = server.kubeconfig_path();
        let port = server.local_addr().port();
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
        TestServer {
            dir,
            kubeconfig,
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Stop the server and hand back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.halt();
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn halt(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("kubecache")
    }

    pub fn command(&self, binary: &str, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("KUBECACHEDIR", self.cache_dir())
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        command
    }

    pub fn kubectl_with(&self, binary: &str, args: &[&str]) -> Output {
        self.command(binary, args).output().expect("kubectl runs")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(KUBECTL, args)
    }

    /// Run kubectl, requiring success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(KUBECTL, args)
    }

    pub fn ok_with(&self, binary: &str, args: &[&str]) -> String {
        let output = self.kubectl_with(binary, args);
        assert!(
            output.status.success(),
            "{binary} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    }

    /// Run kubectl, requiring failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            !output.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).expect("utf-8")
    }

    /// kubectl with stdin from `input`.
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(KUBECTL, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server/token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("server/ca.crt")
    }

    /// curl against the server: returns (HTTP code, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .arg("-sS")
            .arg("--max-time")
            .arg("10")
            .arg("--cacert")
            .arg(self.ca())
            .arg("-X")
            .arg(method)
            .arg("-w")
            .arg("\n%{http_code}");
        if let Some(token) = token {
            command
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"));
        }
        if let Some((content_type, data)) = body {
            command
                .arg("-H")
                .arg(format!("Content-Type: {content_type}"))
                .arg("--data-binary")
                .arg(data);
        }
        command.arg(format!("https://127.0.0.1:{}{path}", self.port));
        let output = command.output().expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Authenticated GET with extra request headers: returns (HTTP code, body).
    pub fn get_with_headers(&self, path: &str, headers: &[&str]) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(self.ca())
            .args(["-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {}", self.token()));
        for header in headers {
            command.arg("-H").arg(header);
        }
        command.arg(format!("https://127.0.0.1:{}{path}", self.port));
        let output = command.output().expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn data_path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}
