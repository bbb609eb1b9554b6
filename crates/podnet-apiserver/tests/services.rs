//! Service allocation through the real kubectl: cluster IPs and node ports
//! assigned on create, requested ones honoured or refused, released on delete,
//! kept across a restart; and the `kubernetes` Service with its endpoints.

mod support;

use serde_json::Value;
use support::TestServer;

fn json(server: &TestServer, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&server.ok(&full)).expect("kubectl prints JSON")
}

fn cluster_ip(server: &TestServer, name: &str) -> String {
    json(server, &["get", "svc", name])["spec"]["clusterIP"]
        .as_str()
        .expect("cluster IP set")
        .to_string()
}

#[test]
fn kubernetes_service_and_endpoints_look_as_upstream() {
    let server = TestServer::start();
    let service = json(&server, &["get", "svc", "kubernetes"]);
    assert_eq!(service["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(service["spec"]["ports"][0]["name"], "https");
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], server.port);
    assert_eq!(service["metadata"]["labels"]["component"], "apiserver");
    let table = server.ok(&["get", "svc", "kubernetes"]);
    assert!(
        table.contains("kubernetes   ClusterIP   10.96.0.1    <none>        443/TCP"),
        "{table}"
    );
    let endpoints = server.ok(&["get", "endpoints", "kubernetes"]);
    assert!(
        endpoints.contains(&format!("127.0.0.1:{}", server.port)),
        "{endpoints}"
    );
    let slice = json(&server, &["get", "endpointslice", "kubernetes"]);
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
}

#[test]
fn cluster_ips_are_allocated_requested_refused_released_and_persistent() {
    let server = TestServer::start();
    let out = server.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    assert!(out.contains("service/web created"), "{out}");
    let web_ip = cluster_ip(&server, "web");
    assert!(web_ip.starts_with("10."), "{web_ip}");
    let parsed: std::net::Ipv4Addr = web_ip.parse().unwrap();
    assert_eq!(
        u32::from(parsed) >> 20,
        u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) >> 20
    );

    let dns = "apiVersion: v1\nkind: Service\nmetadata: {name: dns}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]\n";
    server.ok_stdin(&["apply", "-f", "-"], dns);
    assert_eq!(cluster_ip(&server, "dns"), "10.96.0.10");
    // Re-applying the same manifest keeps the address (no immutable-field error).
    server.ok_stdin(&["apply", "-f", "-"], dns);
    server.ok_stdin(&["replace", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, targetPort: 8080}]}\n");
    assert_eq!(cluster_ip(&server, "web"), web_ip);

    let taken = server.fails(&["create", "-f", "-"]);
    assert!(taken.contains("error") || !taken.is_empty());
    let stderr = {
        let output = server
            .command(support::KUBECTL, &["create", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(dns.replace("name: dns}", "name: dns2}").as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            })
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    assert!(
        stderr.contains("The Service \"dns2\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"),
        "{stderr}"
    );
    assert!(server.kubectl(&["get", "svc", "dns2"]).status.code() != Some(0));

    let headless = server.ok_stdin(&["create", "-f", "-", "-o", "jsonpath={.spec.clusterIP}"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {clusterIP: None, selector: {app: db}, ports: [{port: 5432}]}\n");
    assert_eq!(headless, "None");

    // Deleting frees the address for a new request.
    server.ok(&["delete", "svc", "dns"]);
    server.ok_stdin(
        &["create", "-f", "-"],
        &dns.replace("name: dns}", "name: dns2}"),
    );
    assert_eq!(cluster_ip(&server, "dns2"), "10.96.0.10");

    // A restart rebuilds the allocations from the stored Services.
    let dir = server.stop();
    let server = TestServer::start_in(dir);
    assert_eq!(cluster_ip(&server, "web"), web_ip);
    let stderr = server.fails(&[
        "create",
        "service",
        "clusterip",
        "again",
        "--tcp=53",
        "--clusterip=10.96.0.10",
    ]);
    assert!(
        stderr.contains("provided IP is already allocated"),
        "{stderr}"
    );
    let stderr = server.fails(&[
        "create",
        "service",
        "clusterip",
        "api",
        "--tcp=443",
        "--clusterip=10.96.0.1",
    ]);
    assert!(
        stderr.contains("provided IP is already allocated"),
        "{stderr}"
    );
}

#[test]
fn node_ports_are_allocated_requested_refused_and_released() {
    let server = TestServer::start();
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "fixed",
        "--tcp=80:8080",
        "--node-port=32023",
    ]);
    let fixed = json(&server, &["get", "svc", "fixed"]);
    assert_eq!(fixed["spec"]["ports"][0]["nodePort"], 32023);
    let table = server.ok(&["get", "svc", "fixed"]);
    assert!(table.contains("80:32023/TCP"), "{table}");

    server.ok(&["create", "service", "nodeport", "auto", "--tcp=80:8080"]);
    let auto = json(&server, &["get", "svc", "auto"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap();
    assert!((30000..=32767).contains(&auto), "{auto}");

    let stderr = server.fails(&[
        "create",
        "service",
        "nodeport",
        "clash",
        "--tcp=80:8080",
        "--node-port=32023",
    ]);
    assert!(
        stderr.contains("Service \"clash\" is invalid: spec.ports[0].nodePort: Invalid value: 32023: provided port is already allocated"),
        "{stderr}"
    );
    // Nothing of the refused request was kept: its address is not taken and
    // the object does not exist.
    assert!(!server.kubectl(&["get", "svc", "clash"]).status.success());

    // A LoadBalancer with externalTrafficPolicy Local gets a health-check port.
    server.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: x}, ports: [{port: 80}]}\n");
    let lb = json(&server, &["get", "svc", "lb"]);
    let health = lb["spec"]["healthCheckNodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&health));
    assert_ne!(Some(health), lb["spec"]["ports"][0]["nodePort"].as_u64());

    // Switching to ClusterIP releases the node port.
    server.ok(&[
        "patch",
        "svc",
        "fixed",
        "-p",
        r#"{"spec":{"type":"ClusterIP","ports":[{"port":80,"targetPort":8080,"nodePort":null}]}}"#,
    ]);
    assert!(json(&server, &["get", "svc", "fixed"])["spec"]["ports"][0]
        .get("nodePort")
        .is_none());
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "clash",
        "--tcp=80:8080",
        "--node-port=32023",
    ]);
    server.ok(&["delete", "svc", "clash"]);
    server.ok(&[
        "create",
        "service",
        "nodeport",
        "clash2",
        "--tcp=80:8080",
        "--node-port=32023",
    ]);
}
