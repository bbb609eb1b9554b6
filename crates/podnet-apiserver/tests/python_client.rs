//! The Python `kubernetes` client (from PyPI, installed by
//! scripts/install-deps.sh into /opt/podnet-python) creates, lists and
//! watches pods against a real server.

mod support;
use support::*;

const PYTHON: &str = "/opt/podnet-python/bin/python";

const SCRIPT: &str = r#"
import json, sys, threading
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()

def pod(name):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}),
        spec=client.V1PodSpec(containers=[client.V1Container(
            name="c", image="busybox",
            ports=[client.V1ContainerPort(container_port=80)])]))

created = v1.create_namespaced_pod("default", pod("py-1"))
listed = v1.list_namespaced_pod("default", label_selector="app=py")
rv = listed.metadata.resource_version

def later():
    v1.create_namespaced_pod("default", pod("py-2"))
    v1.patch_namespaced_pod("py-2", "default", {"metadata": {"labels": {"step": "two"}}})
    v1.delete_namespaced_pod("py-1", "default")

events = []
w = watch.Watch()
threading.Timer(0.5, later).start()
for event in w.stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=20):
    events.append([event["type"], event["object"].metadata.name])
    if len(events) == 3:
        w.stop()

try:
    v1.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="py-bad"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c")])))
    invalid = None
except client.exceptions.ApiException as e:
    invalid = [e.status, json.loads(e.body)["details"]["causes"][0]["field"]]

print(json.dumps({
    "created": [created.metadata.name, created.status.phase, created.spec.containers[0].image_pull_policy],
    "listed": [p.metadata.name for p in listed.items],
    "events": events,
    "invalid": invalid,
    "after": sorted(p.metadata.name for p in v1.list_namespaced_pod("default").items),
}))
"#;

#[test]
fn python_client_creates_lists_and_watches_pods() {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run scripts/install-deps.sh (it installs the Python kubernetes client)"
    );
    let server = TestServer::start();
    let script = server.data_path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let output = std::process::Command::new(PYTHON)
        .arg(&script)
        .arg(&server.kubeconfig)
        .env("HOME", server.data_path())
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "the Python client failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    assert_eq!(
        result["created"],
        serde_json::json!(["py-1", "Pending", "Always"])
    );
    assert_eq!(result["listed"], serde_json::json!(["py-1"]));
    assert_eq!(
        result["events"],
        serde_json::json!([["ADDED", "py-2"], ["MODIFIED", "py-2"], ["DELETED", "py-1"]])
    );
    assert_eq!(
        result["invalid"],
        serde_json::json!([422, "spec.containers[0].image"])
    );
    assert_eq!(result["after"], serde_json::json!(["py-2"]));
}
