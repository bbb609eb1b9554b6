//! End to end: a LoadBalancer Service gets an address from the underlay
//! pool, is reachable from pods and nodes, and with
//! `podnet up --publish-load-balancers` also on the host's 127.0.0.1:<port>.
//! Needs root, runc and kubectl.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::*;

/// A port nothing on the host listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /` on the host's loopback; the response, or why not.
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

/// A cluster with `lbweb` (httpd) on node1, `lbclient` on node2 and a
/// LoadBalancer Service on a free host port, serving from `lbclient`
/// through its address. Returns the cluster, the port and the address.
fn load_balanced_web(prefix: &str, extra: &[&str]) -> (Cluster, u16, String) {
    let cluster = Cluster::up(prefix, 2, extra);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    let port = free_port();
    let manifest = format!(
        "{}---{}---
apiVersion: v1
kind: Service
metadata:
  name: lbweb
spec:
  type: LoadBalancer
  selector: {{app: lbweb}}
  ports:
  - {{port: {port}, targetPort: 8080, protocol: TCP}}
",
        web_pod("lbweb", &node1, "app: lbweb", "http", "lbweb"),
        client_pod("lbclient", &node2)
    );
    cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest);
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
    let url = format!("http://{address}:{port}/");
    cluster.wait_for(
        "the service through its LB address from a pod",
        Duration::from_secs(20),
        || cluster.wget_from("lbclient", &url).as_deref() == Ok("lbweb"),
    );
    (cluster, port, address)
}

#[test]
fn load_balancer_address_reaches_the_service_from_pods_nodes_and_host_loopback() {
    if !can_run() {
        return;
    }
    let (cluster, port, address) = load_balanced_web("lbpub", &["--publish-load-balancers"]);
    let listing = cluster.kubectl_ok(&["get", "svc", "lbweb"]);
    assert!(listing.contains(&address), "EXTERNAL-IP column:\n{listing}");

    // From a node without the endpoint.
    let node2 = format!("{}-node2", cluster.name);
    let url = format!("http://{address}:{port}/");
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
    cluster.wait_for("the service on 127.0.0.1", Duration::from_secs(20), || {
        matches!(get_on_loopback(port), Ok(response) if response.contains("200 OK") && response.trim_end().ends_with("lbweb"))
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
    let (_cluster, port, _) = load_balanced_web("lbnopub", &[]);
    assert!(
        get_on_loopback(port).is_err(),
        "127.0.0.1:{port} answers although --publish-load-balancers was not given"
    );
}
