//! End to end: the pod lifecycle on a real `podnet up` cluster with the real
//! kubectl: restart policies and CrashLoopBackOff, probes, init containers,
//! logs/exec/attach/port-forward/run, the node's view of pods, churn without
//! leaks, agent crashes and restarts, the host-gw backend, the reference CNI
//! plugins, and image pull errors. Needs root, runc and kubectl.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn apply(cluster: &Cluster, manifest: &str) {
    cluster.kubectl_stdin(&["apply", "-f", "-"], manifest);
}

fn condition(cluster: &Cluster, pod: &str, kind: &str) -> String {
    cluster.pod_field(
        pod,
        &format!("{{.status.conditions[?(@.type==\"{kind}\")].status}}"),
    )
}

fn events_of(cluster: &Cluster, pod: &str) -> String {
    cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={pod}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message,COUNT:.count",
    ])
}

/// kubectl run with a terminal of its own: a fresh pseudo-terminal is its
/// stdin, stdout and stderr and its controlling terminal, and kubectl leads
/// the terminal's foreground process group (no `script`/`timeout` wrapper,
/// whose background process group made kubectl stop on SIGTTIN/SIGTTOU when
/// it touched the terminal). Returns everything written to the terminal;
/// kubectl is killed if it is still running after `limit`.
fn with_terminal(cluster: &Cluster, kubectl_args: &[&str], limit: Duration) -> String {
    use std::os::unix::process::CommandExt;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut command = Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .env("KUBECACHEDIR", cluster.kube_cache.path())
        .args(kubectl_args)
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("run kubectl on a terminal");
    drop(command);
    drop(pty.slave);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut master = std::fs::File::from(pty.master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once the last holder of the terminal has closed it.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // The reader's channel closes once kubectl (the terminal's last holder)
    // has exited and everything it wrote has been read.
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut killed = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => out.extend(chunk),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                killed = true;
                break;
            }
        }
    }
    let exited = child.wait().unwrap();
    let status = if killed {
        format!("killed after {limit:?}")
    } else {
        exited.to_string()
    };
    format!(
        "{}\n[kubectl {}: {status}]",
        String::from_utf8_lossy(&out),
        kubectl_args.join(" ")
    )
}

const CRASHING: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: crash
    image: busybox
    command: [sh, -c, "echo attempt-started; echo second-line; exit 3"]
---
apiVersion: v1
kind: Pod
metadata: {name: once-ok}
spec:
  restartPolicy: OnFailure
  containers:
  - name: ok
    image: busybox
    command: [sh, -c, "exit 0"]
---
apiVersion: v1
kind: Pod
metadata: {name: never-fails}
spec:
  restartPolicy: Never
  containers:
  - name: fail
    image: busybox
    command: [sh, -c, "exit 7"]
---
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: first
    image: busybox
    command: [sh, -c, "echo first >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: busybox
    command: [sh, -c, "test \"$(cat /work/order)\" = first && echo second >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, "cat /work/order; exec sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
---
apiVersion: v1
kind: Pod
metadata: {name: no-such-image}
spec:
  containers:
  - name: app
    image: registry.invalid/nothing/here:1.0
"#;

#[test]
fn restart_policies_crash_loop_back_off_init_containers_and_image_errors() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2ec", 1, &[]);
    apply(&cluster, CRASHING);

    // Always: restarted at once, then CrashLoopBackOff with a growing count.
    cluster.wait_for(
        "crasher in CrashLoopBackOff",
        Duration::from_secs(60),
        || {
            cluster.pod_field(
                "crasher",
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == "CrashLoopBackOff"
        },
    );
    let count = |c: &Cluster| -> i32 {
        c.pod_field("crasher", "{.status.containerStatuses[0].restartCount}")
            .parse()
            .unwrap_or(0)
    };
    let first = count(&cluster);
    assert!(first >= 1, "restartCount {first}");
    assert_eq!(
        cluster.pod_field(
            "crasher",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "3"
    );
    assert_eq!(
        cluster.pod_field(
            "crasher",
            "{.status.containerStatuses[0].lastState.terminated.reason}"
        ),
        "Error"
    );
    assert_eq!(cluster.pod_field("crasher", "{.status.phase}"), "Running");
    cluster.wait_for("restartCount to grow", Duration::from_secs(40), || {
        count(&cluster) > first
    });
    let message = cluster.pod_field(
        "crasher",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains("back-off") || message.is_empty(),
        "{message}"
    );
    let events = events_of(&cluster, "crasher");
    assert!(
        events.contains("BackOff") && events.contains("Started"),
        "{events}"
    );

    // Logs: --previous, -c, --tail.
    let previous = cluster.kubectl_ok(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("attempt-started"), "{previous}");
    let tail = cluster.kubectl_ok(&["logs", "crasher", "-c", "crash", "--tail", "1"]);
    assert_eq!(tail.trim(), "second-line", "{tail}");

    // OnFailure and exit 0: Succeeded. Never and a failure: Failed.
    cluster.wait_phase("once-ok", "Succeeded", Duration::from_secs(30));
    cluster.wait_phase("never-fails", "Failed", Duration::from_secs(30));
    assert_eq!(
        cluster.pod_field("never-fails", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );

    // Init containers ran in order, each to completion, before the main one.
    cluster.wait_phase("ordered", "Running", Duration::from_secs(30));
    assert_eq!(condition(&cluster, "ordered", "Initialized"), "True");
    let order = cluster.kubectl_ok(&["logs", "ordered", "-c", "main"]);
    assert_eq!(
        order.split_whitespace().collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert_eq!(
        cluster.pod_field(
            "ordered",
            "{.status.initContainerStatuses[*].state.terminated.reason}"
        ),
        "Completed Completed"
    );

    // An image that is neither present nor buildable.
    cluster.wait_for("ImagePullBackOff", Duration::from_secs(30), || {
        cluster.pod_field(
            "no-such-image",
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ImagePullBackOff"
    });
    let message = cluster.pod_field(
        "no-such-image",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.contains("registry.invalid/nothing/here:1.0"),
        "{message}"
    );
    let events = events_of(&cluster, "no-such-image");
    assert!(events.contains("Failed to pull image"), "{events}");
}

const PROBED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo ok > /www/ready && touch /tmp/alive && sleep 2 && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 30}
    readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 1}
    livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: never-listens}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sleep, "3600"]
    livenessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1, failureThreshold: 1, initialDelaySeconds: 1}
"#;

#[test]
fn probes_drive_readiness_and_restart_unhealthy_containers() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2ep", 1, &[]);
    apply(&cluster, PROBED);

    // Running but not started (startup probe) and not ready at first.
    cluster.wait_phase("probed", "Running", Duration::from_secs(30));
    let started = cluster.pod_field("probed", "{.status.containerStatuses[0].started}");
    let early_ready = condition(&cluster, "probed", "Ready");
    // Then started, ready, and the pod Ready.
    cluster.wait_for("probed Ready", Duration::from_secs(30), || {
        condition(&cluster, "probed", "Ready") == "True"
    });
    assert!(
        started == "false" || early_ready == "False",
        "the startup probe gates readiness: started={started} ready={early_ready}"
    );
    assert_eq!(condition(&cluster, "probed", "ContainersReady"), "True");
    assert_eq!(
        cluster.pod_field("probed", "{.status.containerStatuses[0].ready}"),
        "true"
    );

    // A failing readiness probe (HTTP 404) turns Ready False, and back.
    cluster.kubectl_ok(&["exec", "probed", "--", "rm", "/www/ready"]);
    cluster.wait_for("probed not Ready", Duration::from_secs(20), || {
        condition(&cluster, "probed", "Ready") == "False"
    });
    assert_eq!(condition(&cluster, "probed", "ContainersReady"), "False");
    assert_eq!(
        cluster.pod_field("probed", "{.status.containerStatuses[0].restartCount}"),
        "0",
        "readiness failures do not restart"
    );
    cluster.kubectl_ok(&["exec", "probed", "--", "sh", "-c", "echo ok > /www/ready"]);
    cluster.wait_for("probed Ready again", Duration::from_secs(20), || {
        condition(&cluster, "probed", "Ready") == "True"
    });

    // A failing liveness probe (exec) restarts the container.
    cluster.kubectl_ok(&["exec", "probed", "--", "rm", "/tmp/alive"]);
    cluster.wait_for("probed restarted", Duration::from_secs(30), || {
        cluster.pod_field("probed", "{.status.containerStatuses[0].restartCount}") == "1"
    });
    let events = events_of(&cluster, "probed");
    assert!(
        events.contains("Unhealthy")
            && events.contains("Readiness probe failed: HTTP probe failed with statuscode: 404")
            && events.contains("Liveness probe failed")
            && events.contains("Killing")
            && events.contains("failed liveness probe, will be restarted"),
        "{events}"
    );
    cluster.wait_for(
        "probed Ready after restart",
        Duration::from_secs(30),
        || condition(&cluster, "probed", "Ready") == "True",
    );

    // tcpSocket liveness against a port nobody listens on.
    cluster.wait_for("never-listens restarted", Duration::from_secs(30), || {
        cluster
            .pod_field(
                "never-listens",
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<i32>()
            .unwrap_or(0)
            >= 1
    });
    let events = events_of(&cluster, "never-listens");
    assert!(events.contains("connection refused"), "{events}");
}

const STREAMING: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo port-forwarded > /www/index.html && exec httpd -f -p 80 -h /www"]
  - name: ticker
    image: busybox
    command: [sh, -c, "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: counter}
spec:
  restartPolicy: Never
  containers:
  - name: count
    image: busybox
    command: [sh, -c, "sleep 1; for i in 1 2 3; do echo line-$i; sleep 0.5; done"]
"#;

#[test]
fn logs_exec_attach_port_forward_run_and_the_node_view() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2es", 1, &[]);
    let node = format!("{}-node1", cluster.name);
    apply(&cluster, STREAMING);
    cluster.wait_phase("web", "Running", Duration::from_secs(30));

    // logs -f follows until the container exits (or, on a loaded machine
    // where it already finished, prints everything it wrote).
    cluster.wait_for("counter started", Duration::from_secs(30), || {
        let state = cluster.pod_field("counter", "{.status.containerStatuses[0].state}");
        state.contains("running") || state.contains("terminated")
    });
    let followed = cluster.kubectl_ok(&["logs", "-f", "counter"]);
    assert_eq!(
        followed.split_whitespace().collect::<Vec<_>>(),
        ["line-1", "line-2", "line-3"],
        "{followed}"
    );

    // exec -it with a terminal.
    let tty = with_terminal(
        &cluster,
        &[
            "exec",
            "-it",
            "web",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "tty; echo hello-from-tty",
        ],
        Duration::from_secs(30),
    );
    assert!(
        tty.contains("/dev/pts/") && tty.contains("hello-from-tty"),
        "{tty}"
    );

    // attach streams the running container's output: read until a tick
    // arrives (a loaded machine may take seconds to start kubectl), then stop.
    let mut attach = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .env("KUBECACHEDIR", cluster.kube_cache.path())
        .args(["attach", "web", "-c", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let stdout = attach.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attached = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                attached.push_str(&line);
                attached.push('\n');
                if line.contains("tick-") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(attached.contains("tick-"), "{attached}");

    // port-forward to 127.0.0.1.
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .env("KUBECACHEDIR", cluster.kube_cache.path())
        .args(["port-forward", "pod/web", ":80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut reader = std::io::BufReader::new(forward.stdout.take().unwrap());
    reader.read_line(&mut line).unwrap();
    // kubectl keeps writing ("Handling connection ..."): keep its stdout open.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port-forward said {line:?}"));
    let body = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .unwrap();
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(
        String::from_utf8_lossy(&body.stdout).trim(),
        "port-forwarded"
    );

    // kubectl run -it --rm.
    let run = with_terminal(
        &cluster,
        &[
            "run",
            "-it",
            "--rm",
            "--restart=Never",
            "--image=busybox",
            "t",
            "--",
            "echo",
            "hi-from-run",
        ],
        Duration::from_secs(60),
    );
    assert!(run.contains("hi-from-run"), "{run}");
    assert!(run.contains("pod \"t\" deleted"), "{run}");

    // The node's view: sandboxes in `ip netns`, eth0 inside, ping, nsenter.
    let ip = pod_ip(&cluster, "web");
    let listing = cluster.node_exec(&node, &["ip", "netns"]);
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    let sandbox = cluster
        .node_sandboxes(&node)
        .into_iter()
        .find(|s| {
            let addr = cluster.node_exec(&node, &["ip", "netns", "exec", s, "ip", "addr"]);
            String::from_utf8_lossy(&addr.stdout).contains(&format!("inet {ip}/"))
        })
        .unwrap_or_else(|| panic!("no sandbox with {ip}: {listing}"));
    assert!(listing.contains(&sandbox), "{listing}");
    let ping = cluster.node_exec(&node, &["ping", "-c", "1", "-W", "2", &ip]);
    assert!(ping.status.success());
    let pid = runc_pid_of(&cluster, &node, "web");
    let nsenter = cluster.node_exec(
        &node,
        &[
            "nsenter",
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(
        String::from_utf8_lossy(&nsenter.stdout).contains(&ip),
        "{}",
        String::from_utf8_lossy(&nsenter.stderr)
    );
}

/// The host PID of a pod's first container, from `runc list` on the node.
fn runc_pid_of(cluster: &Cluster, node: &str, pod: &str) -> i32 {
    let container_id = cluster.pod_field(pod, "{.status.containerStatuses[0].containerID}");
    let id = container_id.trim_start_matches("podnet://");
    let state = cluster.node_exec(node, &["runc", "state", id]);
    let value: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap_or_else(|_| {
        panic!(
            "runc state {id}: {}",
            String::from_utf8_lossy(&state.stderr)
        )
    });
    value["pid"].as_i64().expect("pid") as i32
}

fn batch_manifest(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {prefix}-{i}, labels: {{batch: {prefix}}}}}\n\
                 spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, \"3600\"]\n---\n"
            )
        })
        .collect()
}

fn running_count(cluster: &Cluster, selector: &str) -> usize {
    let phases = cluster.kubectl(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    String::from_utf8_lossy(&phases.stdout)
        .split_whitespace()
        .filter(|p| *p == "Running")
        .count()
}

/// Everything a node holds for pods: (what, leftover entries).
fn node_leftovers(cluster: &Cluster, node: &str) -> Vec<(String, Vec<String>)> {
    let root = cluster.node_root(node);
    let list = |relative: &str, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        std::fs::read_dir(root.join(relative))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| keep(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    // IPAM reservations are files named after addresses.
    let mut reservations = Vec::new();
    for network in list("var/lib/cni/networks", &|_| true) {
        reservations.extend(
            list(&format!("var/lib/cni/networks/{network}"), &|n| {
                n.parse::<std::net::Ipv4Addr>().is_ok()
            })
            .into_iter()
            .map(|ip| format!("{network}/{ip}")),
        );
    }
    found.push(("IP reservations".to_string(), reservations));
    found.push(("sandboxes".to_string(), cluster.node_sandboxes(node)));
    found.push((
        "pod state".to_string(),
        list("var/lib/podnet/pods", &|_| true),
    ));
    found.push((
        "containers".to_string(),
        list("var/lib/podnet/containers", &|_| true),
    ));
    found.push(("pod logs".to_string(), list("var/log/pods", &|_| true)));
    let links = cluster.node_exec(node, &["ip", "-o", "link"]);
    found.push((
        "veths".to_string(),
        String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .filter(|name| name.starts_with("veth"))
            .map(str::to_string)
            .collect(),
    ));
    let runc = cluster.node_exec(node, &["runc", "list", "-q"]);
    found.push((
        "runc containers".to_string(),
        String::from_utf8_lossy(&runc.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    ));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let containers_dir = root.join("var/lib/podnet/containers").display().to_string();
    let pods_dir = root.join("var/lib/podnet/pods").display().to_string();
    found.push((
        "mounts".to_string(),
        mounts
            .lines()
            .filter(|l| l.contains(&containers_dir) || l.contains(&pods_dir))
            .map(str::to_string)
            .collect(),
    ));
    found.push(("shims".to_string(), shim_processes(&root)));
    found
}

/// Processes whose command line names this node's tree (shims).
fn shim_processes(root: &std::path::Path) -> Vec<String> {
    let needle = root.join("var/lib/podnet/containers").display().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let pid = e.file_name().to_string_lossy().to_string();
                    pid.parse::<u32>().ok()?;
                    let mut cmdline = String::new();
                    std::fs::File::open(e.path().join("cmdline"))
                        .ok()?
                        .read_to_string(&mut cmdline)
                        .ok()?;
                    cmdline
                        .contains(&needle)
                        .then(|| format!("{pid}: {cmdline}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

type Leftovers = Vec<(String, Vec<String>)>;

/// What the node holds beyond `baseline` (pods of the cluster's own add-ons,
/// such as cluster DNS, that were there before the test's pods).
fn beyond(current: Leftovers, baseline: &Leftovers) -> Leftovers {
    current
        .into_iter()
        .map(|(what, entries)| {
            let before: Vec<String> = baseline
                .iter()
                .find(|(w, _)| *w == what)
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            let entries = entries
                .into_iter()
                .filter(|e| !before.contains(e))
                .collect();
            (what, entries)
        })
        .collect()
}

/// The node's pod resources once the cluster's own pods run: the baseline
/// leak checks compare against.
fn settled_baseline(cluster: &Cluster, node: &str) -> Leftovers {
    cluster.wait_for(
        "cluster add-on pods Running",
        Duration::from_secs(60),
        || {
            let phases = cluster.kubectl(&[
                "get",
                "pods",
                "-A",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ]);
            String::from_utf8_lossy(&phases.stdout)
                .split_whitespace()
                .all(|p| p == "Running")
        },
    );
    node_leftovers(cluster, node)
}

fn assert_no_leftovers(cluster: &Cluster, node: &str, baseline: &Leftovers) {
    // Teardown finishes shortly after the API objects are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leftovers: Leftovers = beyond(node_leftovers(cluster, node), baseline)
            .into_iter()
            .filter(|(_, entries)| !entries.is_empty())
            .collect();
        if leftovers.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{node} leaks: {leftovers:#?}\nlogs:\n{}", cluster.logs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn two_hundred_pods_created_and_deleted_leave_nothing_behind() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2el", 1, &[]);
    let node = format!("{}-node1", cluster.name);
    let baseline = settled_baseline(&cluster, &node);
    let (batches, per_batch) = (10, 20);
    for batch in 0..batches {
        let prefix = format!("churn{batch}");
        apply(&cluster, &batch_manifest(&prefix, per_batch));
        cluster.wait_for(
            &format!("batch {batch} Running"),
            Duration::from_secs(120),
            || running_count(&cluster, &format!("batch={prefix}")) == per_batch,
        );
        let ips = cluster.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            &format!("batch={prefix}"),
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ]);
        let unique: HashSet<&str> = ips.split_whitespace().collect();
        assert_eq!(unique.len(), per_batch, "duplicate IPs: {ips}");
        cluster.kubectl_ok(&[
            "delete",
            "pods",
            "-l",
            &format!("batch={prefix}"),
            "--wait=true",
        ]);
    }
    assert_no_leftovers(&cluster, &node, &baseline);
}

#[test]
fn agent_killed_while_creating_pods_converges_and_a_clean_restart_adopts_pods() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2ek", 1, &[]);
    let node = format!("{}-node1", cluster.name);
    let baseline = settled_baseline(&cluster, &node);

    // A pod that must survive agent restarts untouched.
    apply(&cluster, &batch_manifest("steady", 1));
    cluster.wait_phase("steady-0", "Running", Duration::from_secs(30));
    let steady_id = cluster.pod_field("steady-0", "{.status.containerStatuses[0].containerID}");
    let steady_ip = pod_ip(&cluster, "steady-0");

    // kill -9 in the middle of creating 20 pods, by PID, then restart.
    apply(&cluster, &batch_manifest("storm", 20));
    let start = Instant::now();
    while running_count(&cluster, "batch=storm") < 3 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = cluster.agent_pid(&node);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let restarted = cluster.restart_agent(&node);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert_ne!(cluster.agent_pid(&node), pid);
    cluster.wait_for("all storm pods Running", Duration::from_secs(120), || {
        running_count(&cluster, "batch=storm") == 20
    });
    let ips = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-A",
        "-o",
        "jsonpath={.items[*].status.podIP}",
    ]);
    let all: Vec<&str> = ips.split_whitespace().collect();
    let unique: HashSet<&str> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "duplicate IPs: {ips}");
    // Exactly one sandbox, one reservation and one container per pod.
    let leftovers = beyond(node_leftovers(&cluster, &node), &baseline);
    let count = |what: &str| {
        leftovers
            .iter()
            .find(|(w, _)| w == what)
            .map(|(_, e)| e.len())
            .unwrap()
    };
    assert_eq!(count("IP reservations"), 21, "{leftovers:#?}");
    assert_eq!(count("sandboxes"), 21, "{leftovers:#?}");
    assert_eq!(count("runc containers"), 21, "{leftovers:#?}");
    assert_eq!(count("veths"), 21, "{leftovers:#?}");

    // A clean restart: the running pod is adopted, not restarted.
    let restarted = cluster.restart_agent(&node);
    assert!(restarted.status.success());
    std::thread::sleep(Duration::from_secs(3));
    cluster.wait_phase("steady-0", "Running", Duration::from_secs(30));
    assert_eq!(
        cluster.pod_field("steady-0", "{.status.containerStatuses[0].containerID}"),
        steady_id
    );
    assert_eq!(
        cluster.pod_field("steady-0", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    assert_eq!(pod_ip(&cluster, "steady-0"), steady_ip);
    let exec = cluster.kubectl_ok(&["exec", "steady-0", "--", "echo", "still-here"]);
    assert_eq!(exec.trim(), "still-here");

    cluster.kubectl_ok(&["delete", "pods", "--all", "--wait=true"]);
    assert_no_leftovers(&cluster, &node, &baseline);
}

fn two_node_reachability(cluster: &Cluster) {
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: a}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node1}}}
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo from-a > /www/index.html && exec httpd -f -p 80 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {{name: b}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node1}}}
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo from-b > /www/index.html && exec httpd -f -p 80 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {{name: c}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node2}}}
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo from-c > /www/index.html && exec httpd -f -p 80 -h /www"]
"#
    );
    apply(cluster, &manifest);
    for pod in ["a", "b", "c"] {
        cluster.wait_phase(pod, "Running", Duration::from_secs(60));
    }
    let get = |from: &str, to: &str| -> String {
        let url = format!("http://{}/", pod_ip(cluster, to));
        let output = cluster.kubectl(&["exec", from, "--", "timeout", "3", "wget", "-qO-", &url]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    // Same node, across nodes, both ways.
    for (from, to) in [("a", "b"), ("a", "c"), ("c", "a"), ("c", "b")] {
        let mut answer = String::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            answer = get(from, to);
            if answer == format!("from-{to}") {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(
            answer,
            format!("from-{to}"),
            "{from} -> {to}\nlogs:\n{}",
            cluster.logs()
        );
    }
}

#[test]
fn host_gw_backend_reaches_pods_across_nodes() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2eh", 2, &["--backend", "host-gw"]);
    let node1 = format!("{}-node1", cluster.name);
    let links = cluster.node_exec(&node1, &["ip", "-o", "link"]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("flannel.1"),
        "host-gw uses no VXLAN device"
    );
    two_node_reachability(&cluster);
}

#[test]
fn reference_cni_plugins_run_pods_that_reach_each_other() {
    if !can_run() {
        return;
    }
    if !skip_unless(
        std::path::Path::new("/usr/lib/cni/bridge").exists(),
        "the reference plugins are not in /usr/lib/cni",
    ) {
        return;
    }
    let cluster = Cluster::up("e2er", 2, &["--cni", "reference"]);
    let node1 = format!("{}-node1", cluster.name);
    let baseline = settled_baseline(&cluster, &node1);
    let conf = cluster.node_exec(&node1, &["sh", "-c", "cat /etc/cni/net.d/*"]);
    let conf = String::from_utf8_lossy(&conf.stdout).to_string();
    assert!(
        conf.contains("\"bridge\"") && conf.contains("\"host-local\""),
        "{conf}"
    );
    two_node_reachability(&cluster);
    cluster.kubectl_ok(&["delete", "pods", "--all", "--wait=true"]);
    assert_no_leftovers(&cluster, &node1, &baseline);
}

#[test]
fn down_after_pods_leaves_nothing() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("e2ed", 2, &[]);
    apply(&cluster, &batch_manifest("left", 4));
    cluster.wait_for("pods Running", Duration::from_secs(60), || {
        running_count(&cluster, "batch=left") == 4
    });
    let root = cluster.root.path().join(&cluster.name);
    let output = cluster.down();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let left: Vec<String> = netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&cluster.name))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!root.exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "mounts left");
    assert!(shim_processes(&root).is_empty());
    let cgroups =
        std::path::Path::new("/sys/fs/cgroup/podnet").join(format!("{}-node1", cluster.name));
    assert!(!cgroups.exists(), "cgroup {} left", cgroups.display());
    let _ = std::io::stdout().flush();
}
