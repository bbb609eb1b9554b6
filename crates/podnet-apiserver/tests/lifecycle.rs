//! Deletion semantics (graceful pods, finalizers, propagation, namespaces),
//! binding, status and describe.

mod support;
use support::*;

use serde_json::Value;

fn json(server: &TestServer, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (code, text) = server.curl(
        method,
        path,
        Some(&server.token()),
        body.map(|b| ("application/json", b)),
    );
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"NAME"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;

#[test]
fn binding_and_graceful_pod_deletion() {
    let server = TestServer::start();
    let pods = "/api/v1/namespaces/default/pods";
    let (code, _) = json(&server, "POST", pods, Some(&POD.replace("NAME", "a")));
    assert_eq!(code, 201);
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"a"},"target":{"kind":"Node","name":"node1"}}"#;
    let (code, body) = json(&server, "POST", &format!("{pods}/a/binding"), Some(binding));
    assert_eq!(code, 201, "{body}");
    let (code, body) = json(&server, "POST", &format!("{pods}/a/binding"), Some(binding));
    assert_eq!(code, 409, "{body}");
    let (_, pod) = json(&server, "GET", &format!("{pods}/a"), None);
    assert_eq!(pod["spec"]["nodeName"], "node1");

    // Scheduled: deletion is graceful, the agent finishes it with grace 0.
    let (code, body) = json(
        &server,
        "DELETE",
        &format!("{pods}/a"),
        Some(r#"{"propagationPolicy":"Background"}"#),
    );
    assert!(code == 200 || code == 202, "{body}");
    let (code, pod) = json(&server, "GET", &format!("{pods}/a"), None);
    assert_eq!(code, 200);
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    let (code, _) = json(
        &server,
        "DELETE",
        &format!("{pods}/a"),
        Some(r#"{"gracePeriodSeconds":0}"#),
    );
    assert_eq!(code, 200);
    let (code, _) = json(&server, "GET", &format!("{pods}/a"), None);
    assert_eq!(code, 404);

    // Unscheduled: gone at once.
    json(&server, "POST", pods, Some(&POD.replace("NAME", "b")));
    let out = server.ok(&["delete", "pod", "b"]);
    assert!(out.contains("pod \"b\" deleted"), "{out}");
}

#[test]
fn finalizers_and_foreground_deletion() {
    let server = TestServer::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, _) = json(
        &server,
        "POST",
        cms,
        Some(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"f","finalizers":["example.com/keep"]}}"#,
        ),
    );
    assert_eq!(code, 201);
    let (code, body) = json(
        &server,
        "DELETE",
        &format!("{cms}/f"),
        Some(r#"{"propagationPolicy":"Foreground"}"#),
    );
    assert!(code == 200 || code == 202, "{body}");
    let (_, cm) = json(&server, "GET", &format!("{cms}/f"), None);
    assert!(cm["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        cm["metadata"]["finalizers"],
        serde_json::json!(["example.com/keep", "foregroundDeletion"])
    );
    let (code, body) = json(&server, "PATCH", &format!("{cms}/f"), None);
    assert_eq!(code, 415, "{body}");
    let (code, _) = server.curl(
        "PATCH",
        &format!("{cms}/f"),
        Some(&server.token()),
        Some((
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )),
    );
    assert_eq!(code, 200);
    let (code, _) = json(&server, "GET", &format!("{cms}/f"), None);
    assert_eq!(code, 404);
}

#[test]
fn namespaces_terminate_and_finalize() {
    let server = TestServer::start();
    server.ok(&["create", "namespace", "gone"]);
    server.ok(&["create", "configmap", "x", "-n", "gone"]);
    let (code, _) = json(&server, "DELETE", "/api/v1/namespaces/gone", None);
    assert!(code == 200 || code == 202);
    let phase = server.ok(&["get", "ns", "gone", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating");
    let err = server.fails(&["create", "configmap", "y", "-n", "gone"]);
    assert!(err.contains("being terminated"), "{err}");
    let err = server.fails(&["create", "configmap", "y", "-n", "missing"]);
    assert!(err.contains("namespaces \"missing\" not found"), "{err}");
    let (_, mut ns) = json(&server, "GET", "/api/v1/namespaces/gone", None);
    ns["spec"]["finalizers"] = serde_json::json!([]);
    let (code, body) = json(
        &server,
        "PUT",
        "/api/v1/namespaces/gone/finalize",
        Some(&ns.to_string()),
    );
    assert_eq!(code, 200, "{body}");
    let (code, _) = json(&server, "GET", "/api/v1/namespaces/gone", None);
    assert_eq!(code, 404);
    let err = server.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("may not be deleted"), "{err}");
}

#[test]
fn status_subresource_and_describe() {
    let server = TestServer::start();
    let pods = "/api/v1/namespaces/default/pods";
    json(&server, "POST", pods, Some(&POD.replace("NAME", "s")));
    let (code, body) = server.curl(
        "PATCH",
        &format!("{pods}/s/status"),
        Some(&server.token()),
        Some((
            "application/merge-patch+json",
            r#"{"status":{"phase":"Running","podIP":"10.244.0.5"},"spec":{"nodeName":"sneaky"}}"#,
        )),
    );
    assert_eq!(code, 200, "{body}");
    let (_, pod) = json(&server, "GET", &format!("{pods}/s"), None);
    assert_eq!(pod["status"]["phase"], "Running");
    assert!(
        pod["spec"]["nodeName"].is_null(),
        "status writes must not touch spec: {pod}"
    );
    // A main-resource write cannot change status.
    server.curl(
        "PATCH",
        &format!("{pods}/s"),
        Some(&server.token()),
        Some((
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"x":"y"}},"status":{"phase":"Failed"}}"#,
        )),
    );
    let (_, pod) = json(&server, "GET", &format!("{pods}/s"), None);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(pod["metadata"]["labels"]["x"], "y");

    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "s.1", "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "s", "namespace": "default", "uid": uid},
        "reason": "Scheduled", "message": "Successfully assigned default/s to node1",
        "type": "Normal", "source": {"component": "default-scheduler"},
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z", "count": 1,
    });
    let (code, body) = json(
        &server,
        "POST",
        "/api/v1/namespaces/default/events",
        Some(&event.to_string()),
    );
    assert_eq!(code, 201, "{body}");
    let described = server.ok(&["describe", "pod", "s"]);
    assert!(
        described.contains("Name:") && described.contains("s"),
        "{described}"
    );
    assert!(
        described.contains("Successfully assigned default/s to node1"),
        "{described}"
    );
    server.ok_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n");
    let described = server.ok(&["describe", "svc", "web"]);
    assert!(described.contains("Selector:"), "{described}");
}
