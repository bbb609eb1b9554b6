//! Validation modes, dry runs, generated names, OpenAPI for old and new
//! kubectl, deletecollection, describe of the networking and storage kinds.

mod support;
use support::*;

#[test]
fn warn_mode_dry_run_and_generate_name() {
    let server = TestServer::start();
    let output = server
        .command(KUBECTL, &["apply", "--validate=warn", "-f", "-"])
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
                .write_all(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w}\ndata: {a: b}\nbogus: 1\n")
                .unwrap();
            child.wait_with_output().unwrap()
        })
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field \"bogus\""), "{stderr}");
    // Dropped from the object (the last-applied annotation still quotes it).
    let stored: serde_json::Value =
        serde_json::from_str(&server.ok(&["get", "cm", "w", "-o", "json"])).unwrap();
    assert!(stored.get("bogus").is_none(), "{stored}");

    let out = server.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=b",
        "--dry-run=server",
    ]);
    assert!(out.contains("created (server dry run)"), "{out}");
    assert!(server.fails(&["get", "cm", "dry"]).contains("not found"));

    let created = server.ok_stdin(
        &["create", "-f", "-", "-o", "name"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: gen-}\n",
    );
    assert!(
        created.trim().starts_with("configmap/gen-")
            && created.trim().len() == "configmap/gen-".len() + 5,
        "{created}"
    );
}

#[test]
fn openapi_for_old_and_new_clients() {
    let server = TestServer::start();
    let path = server.data_path().join("deploy.yaml");
    std::fs::write(
        &path,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: old}\nspec:\n  selector: {matchLabels: {app: old}}\n  template:\n    metadata: {labels: {app: old}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    // 1.27 validates against /openapi/v2, 1.33 against /openapi/v3.
    let out = server.ok_with(KUBECTL_127, &["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/old created"), "{out}");
    let out = server.ok_with(KUBECTL_133, &["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("unchanged"), "{out}");
    let explained = server.ok(&["explain", "deployment.spec.replicas"]);
    assert!(explained.contains("replicas"), "{explained}");
    let explained = server.ok_with(KUBECTL_127, &["explain", "pods.spec.containers.image"]);
    assert!(explained.contains("image"), "{explained}");

    let (code, index) = server.curl("GET", "/openapi/v3", Some(&server.token()), None);
    assert_eq!(code, 200);
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, doc) = server.curl("GET", &url, Some(&server.token()), None);
    assert_eq!(code, 200);
    assert!(doc.contains("io.k8s.api.apps.v1.Deployment"));
}

#[test]
fn delete_collection_and_describe_more_kinds() {
    let server = TestServer::start();
    for name in ["a", "b", "c"] {
        server.ok(&["create", "configmap", name, "--from-literal=k=v"]);
    }
    server.ok(&["label", "configmap", "a", "b", "group=x"]);
    let token = server.token();
    let (code, body) = server.curl(
        "DELETE",
        "/api/v1/namespaces/default/configmaps?labelSelector=group%3Dx",
        Some(&token),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let left = server.ok(&["get", "cm", "-o", "name"]);
    assert!(
        left.contains("configmap/c")
            && !left.contains("configmap/a")
            && !left.contains("configmap/b"),
        "{left}"
    );

    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: node1}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv1}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/pv1}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec:\n  podSelector: {}\n",
    );
    for (kind, name) in [
        ("node", "node1"),
        ("pv", "pv1"),
        ("pvc", "data"),
        ("netpol", "deny"),
    ] {
        let described = server.ok(&["describe", kind, name]);
        assert!(described.contains(name), "{kind}: {described}");
    }
}
