//! `podnet demo`: the seed demo against a running local cluster, through the
//! real kubectl: an nginx pod and a netshoot client on different nodes, the
//! client fetching the page over the pod network.

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
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        println!("$ kubectl exec client -- wget -qO- {url}");
        match kubectl(
            &paths,
            &["exec", "client", "--", "timeout", "3", "wget", "-qO-", &url],
            None,
        ) {
            Ok(page) => {
                println!(
                    "{}",
                    page.lines()
                        .find(|l| l.contains("<title>"))
                        .unwrap_or(page.trim())
                );
                break;
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("  (not yet: {error})");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error),
        }
    }
    println!("$ podnet node exec {node1} -- ip netns");
    let status = Command::new(std::env::current_exe()?)
        .args(["node", "exec", &node1, "--", "ip", "netns"])
        .status()?;
    if !status.success() {
        bail!("podnet node exec failed");
    }
    println!("\nThe demo pods stay up: `kubectl delete pod web client` removes them.");
    Ok(())
}
