//! `kubectl describe` for pods, services, nodes, PVs, PVCs and network
//! policies shows the object and the events recorded about it.

mod support;
use support::*;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"#;

#[test]
fn describe_shows_objects_with_their_events() {
    let server = TestServer::start();
    server.ok_stdin(&["apply", "-f", "-"], OBJECTS);
    let token = server.token();
    let cases = [
        (
            "v1",
            "Pod",
            "pod",
            "web",
            true,
            "Scheduled",
            "assigned default/web to node1",
        ),
        (
            "v1",
            "Service",
            "svc",
            "web",
            true,
            "EnsuringService",
            "service web is being set up",
        ),
        (
            "v1",
            "Node",
            "node",
            "node1",
            false,
            "NodeReady",
            "node node1 status is now: NodeReady",
        ),
        (
            "v1",
            "PersistentVolume",
            "pv",
            "pv1",
            false,
            "VolumeRecycled",
            "volume pv1 checked",
        ),
        (
            "v1",
            "PersistentVolumeClaim",
            "pvc",
            "data",
            true,
            "WaitForFirstConsumer",
            "waiting for first consumer",
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicy",
            "deny",
            true,
            "PolicyApplied",
            "policy deny programmed",
        ),
    ];
    for (index, (api_version, kind, resource, name, namespaced, reason, message)) in
        cases.iter().enumerate()
    {
        let uid = server.ok(&["get", resource, name, "-o", "jsonpath={.metadata.uid}"]);
        // Upstream's kubelet records node events with the node's name as UID.
        let uid = if *kind == "Node" {
            name.to_string()
        } else {
            uid
        };
        let involved_namespace = if *namespaced { "default" } else { "" };
        let event = serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{index}"), "namespace": "default"},
            "involvedObject": {"apiVersion": api_version, "kind": kind, "name": name,
                               "namespace": involved_namespace, "uid": uid},
            "reason": reason, "message": message, "type": "Normal",
            "source": {"component": "podnet-test"},
            "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
            "count": 1,
        });
        let (code, body) = server.curl(
            "POST",
            "/api/v1/namespaces/default/events",
            Some(&token),
            Some(("application/json", &event.to_string())),
        );
        assert_eq!(code, 201, "{body}");
        for binary in [KUBECTL, KUBECTL_127] {
            let described = server.ok_with(binary, &["describe", resource, name]);
            let lines: Vec<String> = described
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            assert!(
                lines.iter().any(|l| l == &format!("Name: {name}")),
                "{binary} {resource}: {described}"
            );
            if *kind == "NetworkPolicy" {
                // kubectl's network policy describer prints no events (it
                // does not ask for them); the spec is checked below.
                continue;
            }
            let events_at = lines
                .iter()
                .position(|l| l.starts_with("Events:"))
                .unwrap_or_else(|| panic!("{binary} {resource}: no Events in {described}"));
            assert!(
                lines[events_at + 1] == "Type Reason Age From Message",
                "{binary} {resource}: {described}"
            );
            assert!(
                lines[events_at + 3].starts_with(&format!("Normal {reason} "))
                    && lines[events_at + 3].ends_with(&format!("podnet-test {message}")),
                "{binary} {resource}: {described}"
            );
        }
    }
    let pod = server.ok(&["describe", "pod", "web"]);
    assert!(pod.contains("Image:") && pod.contains("nginx"), "{pod}");
    let svc = server.ok(&["describe", "svc", "web"]);
    assert!(
        svc.contains("Selector:") && svc.contains("app=web"),
        "{svc}"
    );
    let policy = server.ok(&["describe", "networkpolicy", "deny"]);
    assert!(
        policy.contains("PodSelector:") && policy.contains("app=web"),
        "{policy}"
    );
    let pvc = server.ok(&["describe", "pvc", "data"]);
    assert!(pvc.contains("Status:") && pvc.contains("Pending"), "{pvc}");
}
