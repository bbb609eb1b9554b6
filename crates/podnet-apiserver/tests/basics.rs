//! Server start, credentials, authentication, health and discovery.

mod support;
use support::*;

#[test]
fn token_auth_health_and_version() {
    let server = TestServer::start();
    let kubeconfig = std::fs::read_to_string(&server.kubeconfig).unwrap();
    assert!(kubeconfig.contains(&format!("server: https://127.0.0.1:{}", server.port)));
    assert!(kubeconfig.contains("certificate-authority-data:"));
    assert!(server.token().len() >= 64);

    let (code, body) = server.curl("GET", "/api/v1/namespaces", None, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let (code, _) = server.curl("GET", "/api/v1/namespaces", Some("wrong"), None);
    assert_eq!(code, 401);
    let (code, body) = server.curl("GET", "/healthz", None, None);
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, body) = server.curl("GET", "/version", None, None);
    assert_eq!(code, 200);
    assert!(body.contains("gitVersion"));

    let namespaces = server.ok(&["get", "namespaces", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{ns}")),
            "{namespaces}"
        );
    }
    let labels = server.ok(&[
        "get",
        "ns",
        "kube-system",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        labels.contains("\"kubernetes.io/metadata.name\":\"kube-system\""),
        "{labels}"
    );
    let accounts = server.ok(&["get", "serviceaccounts", "-n", "kube-system", "-o", "name"]);
    assert!(accounts.contains("serviceaccount/default"), "{accounts}");
}

#[test]
fn wrong_kubeconfig_token_is_refused_by_kubectl() {
    let server = TestServer::start();
    let output = server.kubectl(&["--token", "nope", "get", "pods"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("provide credentials"),
        "{stderr}"
    );
}

#[test]
fn api_resources_from_aggregated_and_legacy_discovery() {
    let server = TestServer::start();
    let resources = server.ok(&["api-resources"]);
    assert!(resources.contains("pods"), "{resources}");
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{resources}"
    );
    let legacy = server.curl("GET", "/api/v1", Some(&server.token()), None).1;
    assert!(legacy.contains("\"pods/log\""), "{legacy}");
    // kubectl 1.27 also reads aggregated discovery; check that it lists the same.
    let old = server.ok_with(KUBECTL_127, &["api-resources", "--api-group=apps"]);
    assert!(old.contains("deployments"), "{old}");
}
