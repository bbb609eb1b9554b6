//! `podnet demo`: the seed demo against a running local cluster, through the
//! real kubectl: an nginx pod and a netshoot client on different nodes, the
//! client fetching the page over the pod network, then through a Service
//! found by name with cluster DNS.

use crate::paths::ClusterPaths;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MANIFEST: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  nodeSelector: {kubernetes.io/hostname: NODE1}
  containers:
  - name: nginx
    image: nginx
    ports: [{containerPort: 80, name: http}]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeSelector: {kubernetes.io/hostname: NODE2}
  containers:
  - name: shell
    image: busybox
    command: [sleep, "36000"]
"#;

fn kubectl(paths: &ClusterPaths, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut command = Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(paths.kubeconfig())
        .args(args);
    command.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .context("running kubectl (is it installed?)")?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

fn show(paths: &ClusterPaths, args: &[&str]) -> Result<String> {
    println!("$ kubectl {}", args.join(" "));
    let text = kubectl(paths, args, None)?;
    print!("{text}");
    Ok(text)
}

pub fn run(name: &str) -> Result<()> {
    let paths = ClusterPaths::new(name);
    let state = crate::cluster::ClusterState::load(&paths)?;
    let node1 = state
        .nodes
        .first()
        .map(|n| n.name.clone())
        .context("cluster has no nodes")?;
    let node2 = state
        .nodes
        .get(1)
        .map(|n| n.name.clone())
        .unwrap_or_else(|| node1.clone());
    let manifest = MANIFEST.replace("NODE1", &node1).replace("NODE2", &node2);
    println!("$ kubectl apply -f seed.yaml");
    print!(
        "{}",
        kubectl(&paths, &["apply", "-f", "-"], Some(&manifest))?
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let phases = kubectl(
            &paths,
            &[
                "get",
                "pods",
                "web",
                "client",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
            None,
        )?;
        if phases
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
            == 2
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the demo pods did not start within 2 minutes: see `kubectl describe pod web client`");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    show(&paths, &["get", "nodes", "-o", "wide"])?;
    show(&paths, &["get", "pods", "-o", "wide"])?;
    let ip = kubectl(
        &paths,
        &["get", "pod", "web", "-o", "jsonpath={.status.podIP}"],
        None,
    )?;
    let url = format!("http://{ip}/");
    retry_exec(&paths, &["timeout", "3", "wget", "-qO-", &url], first_title)?;

    // A Service in front of the pod, found by name through cluster DNS.
    println!("$ kubectl expose pod web --port=80 --name=web");
    print!(
        "{}",
        kubectl(
            &paths,
            &["expose", "pod", "web", "--port=80", "--name=web"],
            None
        )
        .or_else(|error| {
            // Re-running the demo: the Service is already there.
            kubectl(&paths, &["get", "svc", "web", "-o", "name"], None).map_err(|_| error)
        })?
    );
    show(&paths, &["get", "svc", "web"])?;
    show(
        &paths,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )?;
    show(
        &paths,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "k8s-app=kube-dns",
            "-o",
            "wide",
        ],
    )?;
    retry_exec(
        &paths,
        &["nslookup", "web.default.svc.cluster.local"],
        |text| text.trim().to_string(),
    )?;
    retry_exec(
        &paths,
        &["timeout", "3", "wget", "-qO-", "http://web/"],
        first_title,
    )?;
    println!("$ podnet node exec {node1} -- ip netns");
    let status = Command::new(std::env::current_exe()?)
        .args(["node", "exec", &node1, "--", "ip", "netns"])
        .status()?;
    if !status.success() {
        bail!("podnet node exec failed");
    }
    println!("\nThe demo pods stay up: `kubectl delete pod web client; kubectl delete svc web` removes them.");
    Ok(())
}

fn first_title(page: &str) -> String {
    page.lines()
        .find(|l| l.contains("<title>"))
        .unwrap_or(page.trim())
        .to_string()
}

/// `kubectl exec client -- COMMAND`, retried for up to 60 s (the DNS pods
/// may still be starting on a fresh cluster), printing what `show` makes of
/// the output.
fn retry_exec(paths: &ClusterPaths, command: &[&str], show: impl Fn(&str) -> String) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    println!("$ kubectl exec client -- {}", command.join(" "));
    loop {
        let mut args = vec!["exec", "client", "--"];
        args.extend_from_slice(command);
        match kubectl(paths, &args, None) {
            Ok(output) => {
                println!("{}", show(&output));
                return Ok(());
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("  (not yet: {error})");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error),
        }
    }
}
