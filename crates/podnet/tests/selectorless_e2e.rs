//! End to end: a Service without a selector, with Endpoints written by hand,
//! serves through every node's proxy (its Endpoints are mirrored into an
//! EndpointSlice, which is what proxies read). Needs root, runc and kubectl.

mod support;

use std::time::Duration;
use support::*;

fn pods(node1: &str, node2: &str) -> String {
    format!(
        "{}---{}---
apiVersion: v1
kind: Service
metadata:
  name: manual
spec:
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
",
        web_pod("backend", node1, "role: backend", "http", "manual-backend"),
        client_pod("client", node2)
    )
}

fn endpoints(ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Endpoints
metadata:
  name: manual
  labels: {{team: data}}
subsets:
- addresses: [{{ip: "{ip}"}}]
  ports: [{{name: http, port: 8080}}]
"#
    )
}

#[test]
fn selectorless_service_with_manual_endpoints_serves_and_follows_them() {
    if !can_run() {
        return;
    }
    let cluster = Cluster::up("sless", 2, &[]);
    let node1 = format!("{}-node1", cluster.name);
    let node2 = format!("{}-node2", cluster.name);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &pods(&node1, &node2));
    cluster.wait_phase("backend", "Running", Duration::from_secs(120));
    cluster.wait_phase("client", "Running", Duration::from_secs(120));
    let backend_ip = pod_ip(&cluster, "backend");
    cluster.kubectl_stdin(&["apply", "-f", "-"], &endpoints(&backend_ip));

    // The body, or wget's error output.
    let get = |url: &str| {
        cluster
            .wget_from("client", url)
            .unwrap_or_else(|error| error)
    };
    cluster.wait_for(
        "the selector-less service serving",
        Duration::from_secs(20),
        || get("http://manual/") == "manual-backend",
    );
    let slices = cluster.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=manual,endpointslice.kubernetes.io/managed-by=endpointslicemirroring-controller.k8s.io",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.endpoints[*].addresses[0]} {.metadata.labels.team}{\"\\n\"}{end}",
    ]);
    assert_eq!(slices.trim(), format!("manual-mirror-0 {backend_ip} data"));
    // Nothing changed, nothing written: the mirror does not rewrite its slice.
    let version = || {
        cluster.kubectl_ok(&[
            "get",
            "endpointslice",
            "manual-mirror-0",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = version();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        version(),
        before,
        "the mirrored slice keeps being rewritten"
    );

    // Endpoints changed by hand: the proxy follows (an unused address answers nothing).
    cluster.kubectl_stdin(&["apply", "-f", "-"], &endpoints("10.244.250.250"));
    cluster.wait_for(
        "the old backend gone from the service",
        Duration::from_secs(20),
        || get("http://manual/") != "manual-backend",
    );
    // Endpoints deleted: the mirrored slice goes, the service has no endpoints.
    cluster.kubectl_ok(&["delete", "endpoints", "manual"]);
    cluster.wait_for(
        "the mirrored slice removed",
        Duration::from_secs(20),
        || {
            cluster
                .kubectl_ok(&[
                    "get",
                    "endpointslices",
                    "-l",
                    "kubernetes.io/service-name=manual",
                    "-o",
                    "name",
                ])
                .trim()
                .is_empty()
        },
    );
    cluster.wait_for(
        "connection refused without endpoints",
        Duration::from_secs(20),
        || {
            let answer = get("http://manual/");
            answer.contains("refused")
        },
    );
}
