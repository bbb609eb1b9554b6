//! Root-only tests against real runc, overlayfs and namespaces. Each test
//! builds its own image store, runtime state and network namespace, and
//! removes all of it on drop.

use podnet_runtime::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct Fixture {
    root: tempfile::TempDir,
    netns: String,
    pod_dir: PathBuf,
    pinned: PinnedNamespaces,
    runtime: Runtime,
    images: ImageStore,
}

impl Fixture {
    fn new(pod_name: &str) -> Fixture {
        let root = tempfile::Builder::new()
            .prefix("podnet-rt-")
            .tempdir()
            .unwrap();
        let netns = format!(
            "podnet-rt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let created = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap();
        assert!(created.success(), "ip netns add {netns}");
        let lo = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(lo.success());
        let pod_dir = root.path().join("pod");
        let pinned = create_pod_ipc_uts(&pod_dir, pod_name).unwrap();
        let images = ImageStore::open(root.path().join("images")).unwrap();
        let node_root = root.path().join("node");
        let config = RuntimeConfig {
            cgroup_parent: format!("/podnet-test-{}", std::process::id()),
            ..RuntimeConfig::for_node(
                &node_root,
                images.clone(),
                PathBuf::from(env!("CARGO_BIN_EXE_podnet-runtime-shim")),
            )
        };
        let runtime = Runtime::new(config).unwrap();
        Fixture {
            root,
            netns,
            pod_dir,
            pinned,
            runtime,
            images,
        }
    }

    fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    fn spec(&self, image: &str, container: &str, command: &[&str]) -> ContainerSpec {
        let image = ensure_offline_image(&self.images, image).unwrap();
        let hostname_file = self.root.path().join(format!("hostname-{container}"));
        std::fs::write(&hostname_file, "pod-a\n").unwrap();
        ContainerSpec {
            pod: PodRef {
                namespace: "default".into(),
                name: "pod-a".into(),
                uid: format!("uid{}", std::process::id()),
            },
            container_name: container.into(),
            image,
            command: command.iter().map(|s| s.to_string()).collect(),
            hostname: "pod-a".into(),
            namespaces: PodNamespaces {
                network: Some(self.netns_path()),
                ipc: Some(self.pinned.ipc.clone()),
                uts: Some(self.pinned.uts.clone()),
            },
            mounts: vec![BindMount {
                container_path: "/etc/hostname".into(),
                host_path: hostname_file,
                read_only: true,
            }],
            log_path: container_log_path(
                &self.runtime.config().log_dir,
                "default",
                "pod-a",
                "uid",
                container,
                0,
            ),
            ..Default::default()
        }
    }

    fn log_text(&self, container: &str) -> String {
        std::fs::read_to_string(container_log_path(
            &self.runtime.config().log_dir,
            "default",
            "pod-a",
            "uid",
            container,
            0,
        ))
        .unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(containers) = self.runtime.list() {
            for container in containers {
                let _ = self.runtime.remove(&container.id);
            }
        }
        let _ = remove_pod_namespaces(&self.pod_dir);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = std::fs::remove_dir(format!(
            "/sys/fs/cgroup/memory/podnet-test-{}",
            std::process::id()
        ));
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(
                hierarchy
                    .path()
                    .join(format!("podnet-test-{}", std::process::id())),
            );
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn exec_output(runtime: &Runtime, id: &str, command: &[&str]) -> (i32, String, String) {
    use tokio::io::AsyncReadExt;
    let mut process = runtime
        .exec(
            id,
            ExecOptions {
                command: command.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    process
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    process
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    (process.wait().await.unwrap(), stdout, stderr)
}

fn mounts_mentioning(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn busybox_container_logs_exec_stop_and_remove() {
    let fixture = Fixture::new("pod-a");
    let spec = fixture.spec(
        "busybox:1.36",
        "main",
        &["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"],
    );
    let runtime = fixture.runtime.clone();
    let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
        .await
        .unwrap()
        .unwrap();
    let status = fixture.runtime.status(&id).unwrap();
    assert_eq!(status.state, ContainerState::Running, "{status:?}");
    let init_pid = status.pid.unwrap();

    wait_until("log lines", Duration::from_secs(10), || {
        fixture.log_text("main").lines().count() >= 2
    });
    let log = fixture.log_text("main");
    let mut lines: Vec<LogEntry> = log
        .lines()
        .map(|line| parse_log_line(line.as_bytes()).unwrap())
        .collect();
    lines.sort_by_key(|entry| entry.stream == LogStream::Stderr);
    assert_eq!(
        (
            lines[0].stream,
            lines[0].complete,
            lines[0].content.as_slice()
        ),
        (LogStream::Stdout, true, &b"hello"[..]),
        "{log}"
    );
    assert_eq!(
        (lines[1].stream, lines[1].content.as_slice()),
        (LogStream::Stderr, &b"oops"[..]),
        "{log}"
    );
    assert!(
        log.lines()
            .all(|line| line.len() > 31 && &line[29..31] == "Z "),
        "timestamps look like CRI's: {log}"
    );
    let mut rendered = Vec::new();
    fixture
        .runtime
        .logs(
            &id,
            &LogOptions {
                tail_lines: Some(1),
                ..Default::default()
            },
            &mut rendered,
        )
        .await
        .unwrap();
    // stdout and stderr are read concurrently, so either may be the last line.
    let last = String::from_utf8_lossy(&rendered);
    assert!(
        last == "hello\n" || last == "oops\n",
        "tail 1 is one line: {last:?}"
    );

    let (code, hostname_file, _) =
        exec_output(&fixture.runtime, &id, &["cat", "/etc/hostname"]).await;
    assert_eq!((code, hostname_file.trim()), (0, "pod-a"));
    let (_, hostname, _) = exec_output(&fixture.runtime, &id, &["hostname"]).await;
    assert_eq!(hostname.trim(), "pod-a");
    let (code, _, _) = exec_output(&fixture.runtime, &id, &["sh", "-c", "exit 7"]).await;
    assert_eq!(code, 7);

    // sleep as pid 1 has no SIGTERM handler, so only the SIGKILL after the grace period ends it.
    let runtime = fixture.runtime.clone();
    let stop_id = id.clone();
    let started = Instant::now();
    let stopped =
        tokio::task::spawn_blocking(move || runtime.stop(&stop_id, Duration::from_secs(1)))
            .await
            .unwrap()
            .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(stopped.state, ContainerState::Exited);
    assert_eq!(
        (stopped.exit_code, stopped.reason.as_deref()),
        (Some(137), Some("Error"))
    );
    assert!(stopped.finished_at.is_some());

    let container_dir = fixture
        .runtime
        .config()
        .state_dir
        .join("containers")
        .join(&id);
    fixture.runtime.remove(&id).unwrap();
    fixture.runtime.remove(&id).unwrap();
    assert!(!container_dir.exists());
    assert_eq!(mounts_mentioning(&container_dir), Vec::<String>::new());
    assert!(
        !fixture.runtime.config().runc_root.join(&id).exists(),
        "runc state is gone"
    );
    assert!(
        !Path::new(&format!("/proc/{init_pid}")).exists(),
        "container process is gone"
    );
    let leftover = Command::new("pgrep")
        .args(["-f", &container_dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        leftover.stdout.is_empty(),
        "no shim left: {}",
        String::from_utf8_lossy(&leftover.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_of_a_pod_share_network_ipc_and_uts() {
    let fixture = Fixture::new("pod-a");
    Command::new("ip")
        .args(["-n", &fixture.netns, "link", "set", "lo", "up"])
        .status()
        .unwrap();
    Command::new("ip")
        .args([
            "-n",
            &fixture.netns,
            "addr",
            "add",
            "10.123.0.5/32",
            "dev",
            "lo",
        ])
        .status()
        .unwrap();
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let spec = fixture.spec("busybox", name, &["sleep", "1000"]);
        let runtime = fixture.runtime.clone();
        ids.push(
            tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let (_, first_addresses, _) = exec_output(&fixture.runtime, &ids[0], &["ip", "addr"]).await;
    let (_, second_addresses, _) = exec_output(&fixture.runtime, &ids[1], &["ip", "addr"]).await;
    assert!(
        first_addresses.contains("10.123.0.5/32"),
        "{first_addresses}"
    );
    assert_eq!(first_addresses, second_addresses);
    let (_, first_host, _) = exec_output(&fixture.runtime, &ids[0], &["hostname"]).await;
    let (_, second_host, _) = exec_output(&fixture.runtime, &ids[1], &["hostname"]).await;
    assert_eq!((first_host.trim(), second_host.trim()), ("pod-a", "pod-a"));
    // A System V message queue made in one container is visible in the other.
    let (_, ipc_first, _) =
        exec_output(&fixture.runtime, &ids[0], &["readlink", "/proc/1/ns/ipc"]).await;
    let (_, ipc_second, _) =
        exec_output(&fixture.runtime, &ids[1], &["readlink", "/proc/1/ns/ipc"]).await;
    assert_eq!(ipc_first, ipc_second);
    let pinned_ipc = std::fs::read_link("/proc/thread-self/ns/ipc").unwrap();
    assert_ne!(
        ipc_first.trim(),
        pinned_ipc.display().to_string(),
        "not the host's ipc namespace"
    );
    assert_eq!(hostname_in(&fixture.pinned.uts).unwrap(), "pod-a");
    let listed = fixture.runtime.list().unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_reasons_are_recorded() {
    let fixture = Fixture::new("pod-a");
    for (name, command, code, reason) in [
        ("ok", "true", 0, "Completed"),
        ("fails", "exit 3", 3, "Error"),
    ] {
        let spec = fixture.spec("busybox", name, &["sh", "-c", command]);
        let runtime = fixture.runtime.clone();
        let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
            .await
            .unwrap()
            .unwrap();
        wait_until("exit", Duration::from_secs(10), || {
            fixture.runtime.status(&id).unwrap().state == ContainerState::Exited
        });
        let status = fixture.runtime.status(&id).unwrap();
        assert_eq!(
            (status.exit_code, status.reason.as_deref()),
            (Some(code), Some(reason)),
            "{name}"
        );
    }
    let missing = fixture.spec("busybox", "missing", &["/no/such/binary"]);
    let runtime = fixture.runtime.clone();
    let error = tokio::task::spawn_blocking(move || runtime.create_and_start(missing))
        .await
        .unwrap()
        .unwrap_err();
    assert!(error.to_string().contains("/no/such/binary"), "{error}");
    assert_eq!(
        fixture.runtime.list().unwrap().len(),
        2,
        "a failed start leaves nothing behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_stdin_and_tty_exec() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixture = Fixture::new("pod-a");
    let mut spec = fixture.spec("busybox", "echo", &["cat"]);
    spec.stdin = true;
    let runtime = fixture.runtime.clone();
    let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
        .await
        .unwrap()
        .unwrap();
    let (mut reader, mut writer) = fixture.runtime.attach(&id).await.unwrap();
    writer.write_stdin(b"ping\n").await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), reader.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output, Some(AttachOutput::Stdout(b"ping\n".to_vec())));
    writer.close_stdin().await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), reader.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit, Some(AttachOutput::Exited(0)));
    assert!(fixture.log_text("echo").contains("stdout F ping"));

    let spec = fixture.spec("busybox", "shell", &["sleep", "1000"]);
    let runtime = fixture.runtime.clone();
    let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
        .await
        .unwrap()
        .unwrap();
    let mut process = fixture
        .runtime
        .exec(
            &id,
            ExecOptions {
                command: vec!["sh".into()],
                tty: true,
                stdin: true,
                initial_size: Some((100, 40)),
            },
        )
        .await
        .unwrap();
    let mut stdin = process.stdin.take().unwrap();
    let mut stdout = process.stdout.take().unwrap();
    // Type only once the shell prompts, as a person at a terminal would.
    let mut output = Vec::new();
    while !String::from_utf8_lossy(&output).contains("# ") {
        let mut chunk = [0u8; 1024];
        let count = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            count > 0,
            "the shell ended early: {}",
            String::from_utf8_lossy(&output)
        );
        output.extend_from_slice(&chunk[..count]);
    }
    stdin.write_all(b"tty; stty size; exit 5\n").await.unwrap();
    stdin.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), stdout.read_to_end(&mut output))
        .await
        .unwrap()
        .unwrap();
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("/dev/pts/"), "{output}");
    assert!(output.contains("40 100"), "{output}");
    assert_eq!(process.wait().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_serves_http_inside_the_pod_network() {
    let fixture = Fixture::new("web");
    let spec = fixture.spec("nginx", "nginx", &[]);
    assert_eq!(spec.image.stop_signal.as_deref(), Some("SIGQUIT"));
    assert_eq!(spec.image.exposed_ports, vec!["80/tcp".to_string()]);
    let runtime = fixture.runtime.clone();
    let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
        .await
        .unwrap()
        .unwrap();
    let mut body = String::new();
    wait_until("nginx to answer", Duration::from_secs(15), || {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &fixture.netns,
                "curl",
                "-s",
                "--max-time",
                "2",
                "http://127.0.0.1:80/",
            ])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&output.stdout).to_string();
        body.contains("Welcome to nginx!")
    });
    wait_until("access log line", Duration::from_secs(5), || {
        fixture.log_text("nginx").contains("\"GET / HTTP/1.1\" 200")
    });
    let runtime = fixture.runtime.clone();
    let stopped = tokio::task::spawn_blocking(move || runtime.stop(&id, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stopped.exit_code, stopped.reason.as_deref()),
        (Some(0), Some("Completed")),
        "SIGQUIT is a graceful stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn netshoot_has_working_tools() {
    let fixture = Fixture::new("debug");
    let spec = fixture.spec("nicolaka/netshoot", "netshoot", &["sleep", "1000"]);
    let runtime = fixture.runtime.clone();
    let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
        .await
        .unwrap()
        .unwrap();
    let (code, _, stderr) = exec_output(&fixture.runtime, &id, &["dig", "-v"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("DiG"), "{stderr}");
    let (code, stdout, stderr) = exec_output(&fixture.runtime, &id, &["curl", "--version"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("curl "), "{stdout}");
    for tool in [
        vec!["ip", "-br", "link"],
        vec!["ss", "-ltn"],
        vec!["ping", "-c", "1", "-W", "2", "127.0.0.1"],
        vec!["tcpdump", "--version"],
        vec!["iperf3", "--version"],
        vec!["traceroute", "--version"],
        vec!["nslookup", "-version"],
        vec!["host", "-V"],
        vec!["nc", "-h"],
        vec!["sh", "-c", "grep -q '^http' /etc/services"],
    ] {
        let (code, stdout, stderr) = exec_output(&fixture.runtime, &id, &tool).await;
        assert!(
            code == 0 || (tool[0] == "nc" && code == 1 && stderr.contains("usage")),
            "{tool:?} exited {code}: {stdout} {stderr}"
        );
    }
}

#[test]
fn imports_oci_layout_and_docker_archives() {
    let root = tempfile::tempdir().unwrap();
    let source = ImageStore::open(root.path().join("source")).unwrap();
    let image = ensure_offline_image(&source, "busybox").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&source.read_blob(&image.manifest_digest).unwrap()).unwrap();
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let config_bytes = source.read_blob(&image.config_digest).unwrap();
    let layer_bytes = source.read_blob(&layer_digest).unwrap();

    // docker save layout: manifest.json + config + layer.tar
    let docker_tar = root.path().join("docker.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&docker_tar).unwrap());
        let mut append = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        append("abc.json", &config_bytes);
        append("layer1/layer.tar", &layer_bytes);
        append("manifest.json", br#"[{"Config":"abc.json","RepoTags":["example.com/tools/box:v2"],"Layers":["layer1/layer.tar"]}]"#);
        builder.finish().unwrap();
    }
    // OCI layout tarball with blobs and a named index entry
    let oci_tar = root.path().join("oci.tar");
    {
        let mut builder = tar::Builder::new(std::fs::File::create(&oci_tar).unwrap());
        let manifest_bytes = source.read_blob(&image.manifest_digest).unwrap();
        let mut append = |name: String, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        for (digest, bytes) in [
            (&image.manifest_digest, &manifest_bytes),
            (&image.config_digest, &config_bytes),
            (&layer_digest, &layer_bytes),
        ] {
            append(
                format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
                bytes,
            );
        }
        append("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": media_type::MANIFEST, "digest": image.manifest_digest, "size": manifest_bytes.len(),
            "annotations": {REF_NAME_ANNOTATION: "docker.io/acme/box:1.0"}}]});
        append("index.json".into(), &serde_json::to_vec(&index).unwrap());
        builder.finish().unwrap();
    }
    let target = ImageStore::open(root.path().join("target")).unwrap();
    assert_eq!(
        target.import_tar(&docker_tar).unwrap(),
        vec!["example.com/tools/box:v2".to_string()]
    );
    assert_eq!(
        target.import_tar(&oci_tar).unwrap(),
        vec!["docker.io/acme/box:1.0".to_string()]
    );
    let imported = target.resolve("acme/box:1.0").unwrap().unwrap();
    assert_eq!(imported.cmd, vec!["sh".to_string()]);
    assert!(imported.layer_dirs[0].join("bin/busybox").exists());
    let docker = target.resolve("example.com/tools/box:v2").unwrap().unwrap();
    assert_eq!(docker.config_digest, image.config_digest);
    let names: Vec<String> = target
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    assert_eq!(
        names,
        vec![
            "docker.io/acme/box:1.0".to_string(),
            "example.com/tools/box:v2".to_string()
        ]
    );
    let error = ensure_offline_image(&target, "alpine").unwrap_err();
    assert_eq!(
        error.to_string(),
        "image docker.io/library/alpine:latest is not present and cannot be built offline: import it with `podnet image import FILE`"
    );
}

#[test]
fn offline_builds_are_reproducible_and_tag_latest() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path()).unwrap();
    let tagged = ensure_offline_image(&store, "busybox:1.36").unwrap();
    let latest = store.resolve("busybox").unwrap().unwrap();
    assert_eq!(tagged.manifest_digest, latest.manifest_digest);
    let rebuilt = build_offline_image(&store, OfflineImage::Busybox).unwrap();
    assert_eq!(rebuilt.digest, tagged.manifest_digest);
    let layer = &tagged.layer_dirs[0];
    for applet in ["sh", "wget", "nc", "httpd", "nslookup", "ping", "ip"] {
        assert_eq!(
            std::fs::read_link(layer.join("bin").join(applet)).unwrap(),
            Path::new("busybox"),
            "{applet}"
        );
    }
    assert_eq!(tagged.cmd, vec!["sh".to_string()]);
}

#[test]
fn pod_namespaces_are_pinned_and_removed_idempotently() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ns");
    let pinned = create_pod_ipc_uts(&dir, "my-pod").unwrap();
    assert_eq!(create_pod_ipc_uts(&dir, "my-pod").unwrap(), pinned);
    assert_eq!(hostname_in(&pinned.uts).unwrap(), "my-pod");
    assert_ne!(
        nix::unistd::gethostname().unwrap().to_string_lossy(),
        "my-pod"
    );
    remove_pod_namespaces(&dir).unwrap();
    remove_pod_namespaces(&dir).unwrap();
    assert!(!pinned.ipc.exists() && !pinned.uts.exists());
    assert_eq!(mounts_mentioning(&dir), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn tty_containers_log_console_output_and_accept_attach_input() {
    let fixture = Fixture::new("pod-a");
    let mut spec = fixture.spec(
        "busybox",
        "console",
        &["sh", "-c", "tty; read line; echo got-$line; stty size"],
    );
    spec.tty = true;
    spec.stdin = true;
    let runtime = fixture.runtime.clone();
    let id = tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
        .await
        .unwrap()
        .unwrap();
    wait_until("tty line in the log", Duration::from_secs(10), || {
        fixture.log_text("console").contains("/dev/pts/0")
    });
    let (mut reader, mut writer) = fixture.runtime.attach(&id).await.unwrap();
    writer.resize(120, 30).await.unwrap();
    writer.write_stdin(b"hi\n").await.unwrap();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(AttachOutput::Stdout(bytes)) => seen.extend_from_slice(&bytes),
            Some(AttachOutput::Stderr(_)) => panic!("a tty has no separate stderr"),
            Some(AttachOutput::Exited(code)) => {
                assert_eq!(code, 0);
                break;
            }
            None => panic!("session closed before the exit frame"),
        }
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("got-hi"), "{seen}");
    assert!(seen.contains("30 120"), "{seen}");
    let log = fixture.log_text("console");
    assert!(log.contains("stdout F got-hi"), "{log}");
}

#[test]
fn a_new_runtime_removes_rootfs_mounts_left_without_a_record_by_a_crash() {
    let root = tempfile::tempdir().unwrap();
    let images = ImageStore::open(root.path().join("images")).unwrap();
    let config = RuntimeConfig::for_node(
        &root.path().join("node"),
        images,
        PathBuf::from(env!("CARGO_BIN_EXE_podnet-runtime-shim")),
    );
    let containers = config.state_dir.join("containers");
    drop(Runtime::new(config.clone()).unwrap());
    // A process died after mounting this rootfs, before writing container.json.
    let orphan = containers.join("orphan");
    let rootfs = orphan.join("bundle/rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &rootfs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    // A recorded container is the runtime's to manage, never swept.
    let recorded = containers.join("recorded");
    std::fs::create_dir_all(&recorded).unwrap();
    std::fs::write(recorded.join("container.json"), "{}").unwrap();

    let runtime = Runtime::new(config);
    let left = mounts_mentioning(&orphan);
    if !left.is_empty() {
        let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    }
    runtime.unwrap();
    assert_eq!(left, Vec::<String>::new());
    assert!(!orphan.exists());
    assert!(recorded.join("container.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_pod_returns_one_pods_containers_and_follows_the_state_directory() {
    let fixture = Fixture::new("pod-a");
    let mut ids = Vec::new();
    for (name, uid) in [("one", "pod-one"), ("two", "pod-two"), ("three", "pod-two")] {
        let mut spec = fixture.spec("busybox", name, &["sleep", "1000"]);
        spec.pod.uid = uid.to_string();
        let runtime = fixture.runtime.clone();
        ids.push(
            tokio::task::spawn_blocking(move || runtime.create_and_start(spec))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let names = |runtime: &Runtime, uid: &str| -> Vec<String> {
        let mut names: Vec<String> = runtime
            .list_pod(uid)
            .unwrap()
            .into_iter()
            .map(|c| {
                assert_eq!(c.pod.uid, uid);
                assert_eq!(c.state, ContainerState::Running, "{c:?}");
                c.container_name
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&fixture.runtime, "pod-one"), vec!["one"]);
    assert_eq!(names(&fixture.runtime, "pod-two"), vec!["three", "two"]);
    assert!(names(&fixture.runtime, "pod-none").is_empty());
    // A runtime opened afresh (an agent restart) finds the same containers on disk.
    let restarted = Runtime::new(fixture.runtime.config().clone()).unwrap();
    assert_eq!(names(&restarted, "pod-two"), vec!["three", "two"]);
    // A container removed through another instance is gone from this one's view,
    // and its exit is seen.
    restarted.remove(&ids[1]).unwrap();
    assert_eq!(names(&fixture.runtime, "pod-two"), vec!["three"]);
    fixture
        .runtime
        .stop(&ids[2], Duration::from_secs(0))
        .unwrap();
    let exited = fixture.runtime.list_pod("pod-two").unwrap();
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0].state, ContainerState::Exited);
}
