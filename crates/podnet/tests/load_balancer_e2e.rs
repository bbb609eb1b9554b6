//! End to end: a LoadBalancer Service gets an address from the underlay
//! pool, is reachable from pods and nodes, and with
//! `podnet up --publish-load-balancers` also on the host's 127.0.0.1:<port>.
//! Needs root, runc and kubectl.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::*;

fn manifests(port: u16, node1: &str, node2: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: lbweb
  labels: {{app: lbweb}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node1}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo $HOSTNAME > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: lbclient
spec:
  nodeSelector: {{kubernetes.io/hostname: {node2}}}
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: busybox
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Service
metadata:
  name: lbweb
spec:
  type: LoadBalancer
  selector: {{app: lbweb}}
  ports:
  - {{port: {port}, targetPort: 8080, protocol: TCP}}
"#
    )
}

/// A port nothing on the host listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` on the host's loopback; the body, or why not.
fn get_on_loopback(port: u16) -> Result<String, String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: lb\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    Ok(response)
}

#[test]
fn load_balancer_address_reaches_the_service_from_pods_nodes_and_host_loopback() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("lbpub", 2, &["--publish-load-balancers"]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let port = free_port();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests(port, &node1, &node2));
    cluster.wait_phase("lbweb", "Running", Duration::from_secs(120));
    cluster.wait_phase("lbclient", "Running", Duration::from_secs(120));

    let mut address = String::new();
    cluster.wait_for("a load balancer address", Duration::from_secs(30), || {
        address = cluster
            .kubectl_ok(&[
                "get",
                "svc",
                "lbweb",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .trim()
            .to_string();
        !address.is_empty()
    });
    assert!(address.starts_with("172.18.255."), "{address}");
    let listing = cluster.kubectl_ok(&["get", "svc", "lbweb"]);
    assert!(listing.contains(&address), "EXTERNAL-IP column:\n{listing}");

    // From a pod on the other node.
    let url = format!("http://{address}:{port}/");
    let mut body = String::new();
    cluster.wait_for(
        "the service through its LB address from a pod",
        Duration::from_secs(20),
        || {
            body = String::from_utf8_lossy(
                &cluster
                    .kubectl(&[
                        "exec",
                        "lbclient",
                        "--",
                        "sh",
                        "-c",
                        &format!("timeout 3 wget -qO- {url}"),
                    ])
                    .stdout,
            )
            .to_string();
            body.trim() == "lbweb"
        },
    );

    // From a node without the endpoint.
    cluster.wait_for(
        "the service through its LB address from a node",
        Duration::from_secs(20),
        || {
            let output =
                cluster.node_exec(&node2, &["timeout", "3", "busybox", "wget", "-qO-", &url]);
            String::from_utf8_lossy(&output.stdout).trim() == "lbweb"
        },
    );

    // From the host's loopback, through the underlay.
    let mut last = Err(String::new());
    cluster.wait_for("the service on 127.0.0.1", Duration::from_secs(20), || {
        last = get_on_loopback(port);
        matches!(&last, Ok(response) if response.contains("200 OK") && response.trim_end().ends_with("lbweb"))
    });

    // Deleting the Service closes the host port.
    cluster.kubectl_ok(&["delete", "svc", "lbweb"]);
    cluster.wait_for("127.0.0.1 port closed", Duration::from_secs(20), || {
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(1),
        )
        .is_err()
    });
}

#[test]
fn load_balancers_stay_off_the_host_unless_asked() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("lbnopub", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let port = free_port();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifests(port, &node1, &node2));
    cluster.wait_phase("lbweb", "Running", Duration::from_secs(120));
    cluster.wait_phase("lbclient", "Running", Duration::from_secs(120));
    let mut address = String::new();
    cluster.wait_for("a load balancer address", Duration::from_secs(30), || {
        address = cluster
            .kubectl_ok(&[
                "get",
                "svc",
                "lbweb",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ])
            .trim()
            .to_string();
        !address.is_empty()
    });
    let url = format!("http://{address}:{port}/");
    cluster.wait_for(
        "the service through its LB address from a pod",
        Duration::from_secs(20),
        || {
            let output = cluster.kubectl(&[
                "exec",
                "lbclient",
                "--",
                "sh",
                "-c",
                &format!("timeout 3 wget -qO- {url}"),
            ]);
            String::from_utf8_lossy(&output.stdout).trim() == "lbweb"
        },
    );
    assert!(
        get_on_loopback(port).is_err(),
        "127.0.0.1:{port} answers although --publish-load-balancers was not given"
    );
}
