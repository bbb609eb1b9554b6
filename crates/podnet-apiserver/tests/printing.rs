//! `kubectl get` with every printing option prints upstream's columns and
//! cells, with the current kubectl and with 1.27 and 1.33
//! (see shared/reference/kubectl-wire.md for the columns).

mod support;
use support::*;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node1}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx
    ports: [{containerPort: 80}]
---
apiVersion: v1
kind: Pod
metadata:
  name: idle
  labels: {app: idle}
spec:
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: local
  hostPath: {path: /tmp/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: app, image: busybox}]
"#;

/// The lines of a printed table with runs of spaces collapsed, so that
/// multi-word headers stay comparable (`NOMINATED NODE`).
fn lines(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The line starting with `first` (a name), with the AGE-like cell at
/// `age_index` replaced by `AGE`.
fn row(output: &str, first: &str, age_index: usize) -> String {
    let line = lines(output)
        .into_iter()
        .find(|l| l.split(' ').next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{output}"));
    let mut cells: Vec<&str> = line.split(' ').collect();
    let age = cells[age_index];
    assert!(
        age.ends_with('s') || age.ends_with('m'),
        "cell {age_index} of {line:?} is not an age"
    );
    cells[age_index] = "AGE";
    cells.join(" ")
}

fn header(output: &str) -> String {
    lines(output).into_iter().next().unwrap_or_default()
}

fn set_up() -> TestServer {
    let server = TestServer::start();
    server.ok_stdin(&["apply", "-f", "-"], MANIFEST);
    let token = server.token();
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"web"},"target":{"kind":"Node","name":"node1"}}"#;
    let (code, body) = server.curl(
        "POST",
        "/api/v1/namespaces/default/pods/web/binding",
        Some(&token),
        Some(("application/json", binding)),
    );
    assert_eq!(code, 201, "{body}");
    let status = r#"{"status":{"phase":"Running","podIP":"10.244.1.7","podIPs":[{"ip":"10.244.1.7"}],"hostIP":"172.18.0.2",
        "conditions":[{"type":"Ready","status":"True"}],
        "containerStatuses":[{"name":"nginx","ready":true,"restartCount":2,"image":"nginx","imageID":"","started":true,"state":{"running":{"startedAt":"2025-01-01T00:00:00Z"}}}]}}"#;
    let (code, body) = server.curl(
        "PATCH",
        "/api/v1/namespaces/default/pods/web/status",
        Some(&token),
        Some(("application/merge-patch+json", status)),
    );
    assert_eq!(code, 200, "{body}");
    let node_status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready","lastHeartbeatTime":"2025-01-01T00:00:00Z","lastTransitionTime":"2025-01-01T00:00:00Z"}],
        "addresses":[{"type":"InternalIP","address":"172.18.0.2"},{"type":"Hostname","address":"node1"}],
        "nodeInfo":{"kubeletVersion":"v1.33.0-podnet","osImage":"Debian GNU/Linux 12 (bookworm)","kernelVersion":"6.1.0","containerRuntimeVersion":"runc://1.1.5","architecture":"amd64","operatingSystem":"linux","machineID":"","systemUUID":"","bootID":"","kubeProxyVersion":""}}}"#;
    let (code, body) = server.curl(
        "PATCH",
        "/api/v1/nodes/node1/status",
        Some(&token),
        Some(("application/merge-patch+json", node_status)),
    );
    assert_eq!(code, 200, "{body}");
    server
}

#[test]
fn get_prints_upstream_columns_with_every_kubectl() {
    let server = set_up();
    let cluster_ip = server.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert!(!cluster_ip.is_empty(), "the Service has a cluster IP");
    for binary in [KUBECTL, KUBECTL_127, KUBECTL_133] {
        let get = |args: &[&str]| {
            let mut full = vec!["get"];
            full.extend_from_slice(args);
            server.ok_with(binary, &full)
        };
        let pods = get(&["pods"]);
        assert_eq!(header(&pods), "NAME READY STATUS RESTARTS AGE", "{binary}");
        assert_eq!(
            row(&pods, "web", 4),
            "web 1/1 Running 2 AGE",
            "{binary}: {pods}"
        );
        assert_eq!(
            row(&pods, "idle", 4),
            "idle 0/1 Pending 0 AGE",
            "{binary}: {pods}"
        );

        let wide = get(&["pods", "-o", "wide"]);
        assert_eq!(
            header(&wide),
            "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES",
            "{binary}"
        );
        assert_eq!(
            row(&wide, "web", 4),
            "web 1/1 Running 2 AGE 10.244.1.7 node1 <none> <none>",
            "{binary}: {wide}"
        );
        assert_eq!(
            row(&wide, "idle", 4),
            "idle 0/1 Pending 0 AGE <none> <none> <none> <none>",
            "{binary}: {wide}"
        );

        let yaml = get(&["pod", "web", "-o", "yaml"]);
        for needle in [
            "apiVersion: v1",
            "kind: Pod",
            "podIP: 10.244.1.7",
            "nodeName: node1",
            "resourceVersion:",
            "uid:",
        ] {
            assert!(yaml.contains(needle), "{binary}: {needle} in {yaml}");
        }
        assert_eq!(
            get(&["pod", "web", "-o", "jsonpath={.status.podIP}"]),
            "10.244.1.7",
            "{binary}"
        );

        let everywhere = get(&["pods", "-A"]);
        assert_eq!(
            header(&everywhere),
            "NAMESPACE NAME READY STATUS RESTARTS AGE",
            "{binary}"
        );
        assert!(
            lines(&everywhere)
                .iter()
                .any(|l| l.starts_with("default web 1/1 Running 2 ")),
            "{binary}: {everywhere}"
        );

        let labelled = get(&["pods", "-l", "app=web"]);
        assert_eq!(lines(&labelled).len(), 2, "{binary}: {labelled}");
        assert_eq!(row(&labelled, "web", 4), "web 1/1 Running 2 AGE");
        let running = get(&["pods", "--field-selector", "status.phase=Running"]);
        assert_eq!(lines(&running).len(), 2, "{binary}: {running}");
        assert_eq!(row(&running, "web", 4), "web 1/1 Running 2 AGE");
        let pending = get(&[
            "pods",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name",
        ]);
        assert_eq!(pending.trim(), "pod/idle", "{binary}");

        let services = get(&["svc"]);
        assert_eq!(
            header(&services),
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
            "{binary}"
        );
        assert_eq!(
            row(&services, "web", 5),
            format!("web ClusterIP {cluster_ip} <none> 80/TCP AGE"),
            "{binary}: {services}"
        );
        let wide = get(&["svc", "web", "-o", "wide"]);
        assert_eq!(
            header(&wide),
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR",
            "{binary}"
        );
        assert!(
            row(&wide, "web", 5).ends_with("AGE app=web"),
            "{binary}: {wide}"
        );

        let all = get(&["all"]);
        let all_lines = lines(&all);
        for expected in [
            "NAME READY STATUS RESTARTS AGE",
            "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE",
            "NAME READY UP-TO-DATE AVAILABLE AGE",
        ] {
            assert!(
                all_lines.iter().any(|l| l == expected),
                "{binary}: {expected} in {all}"
            );
        }
        assert_eq!(row(&all, "pod/web", 4), "pod/web 1/1 Running 2 AGE");
        assert_eq!(
            row(&all, "deployment.apps/api", 4),
            "deployment.apps/api 0/2 0 0 AGE"
        );
        assert!(
            all_lines
                .iter()
                .any(|l| l.starts_with("service/web ClusterIP ")),
            "{binary}: {all}"
        );

        let storage = get(&["pv,pvc"]);
        let storage_lines = lines(&storage);
        assert_eq!(
            storage_lines[0],
            "NAME CAPACITY ACCESS MODES RECLAIM POLICY STATUS CLAIM STORAGECLASS VOLUMEATTRIBUTESCLASS REASON AGE",
            "{binary}: {storage}"
        );
        assert_eq!(
            row(&storage, "persistentvolume/pv1", 7),
            "persistentvolume/pv1 1Gi RWO Retain Pending local <unset> AGE",
            "{binary}: {storage}"
        );
        assert!(
            storage_lines.iter().any(|l| {
                l
                == "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE"
            }),
            "{binary}: {storage}"
        );
        assert_eq!(
            row(&storage, "persistentvolumeclaim/data", 4),
            "persistentvolumeclaim/data Pending local <unset> AGE",
            "{binary}: {storage}"
        );

        let policies = get(&["networkpolicy", "-A"]);
        assert_eq!(
            header(&policies),
            "NAMESPACE NAME POD-SELECTOR AGE",
            "{binary}"
        );
        assert!(
            lines(&policies)
                .iter()
                .any(|l| l.starts_with("default deny-all <none> ")),
            "{binary}: {policies}"
        );

        let nodes = get(&["nodes", "-o", "wide"]);
        assert_eq!(
            header(&nodes),
            "NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE KERNEL-VERSION CONTAINER-RUNTIME",
            "{binary}"
        );
        assert_eq!(
            row(&nodes, "node1", 3),
            "node1 Ready <none> AGE v1.33.0-podnet 172.18.0.2 <none> Debian GNU/Linux 12 (bookworm) 6.1.0 runc://1.1.5",
            "{binary}: {nodes}"
        );
    }
}

#[test]
fn tables_carry_the_list_resource_version() {
    let server = set_up();
    let accept = "Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (code, body) = server.get_with_headers("/api/v1/namespaces/default/pods", &[accept]);
    assert_eq!(code, 200, "{body}");
    let table: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(table["kind"], "Table");
    let (_, list) = server.get_with_headers("/api/v1/namespaces/default/pods", &[]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let rv = table["metadata"]["resourceVersion"].as_str().unwrap_or("");
    assert!(!rv.is_empty(), "{table}");
    assert_eq!(rv, list["metadata"]["resourceVersion"].as_str().unwrap());
    let (code, one) = server.get_with_headers("/api/v1/namespaces/default/pods/web", &[accept]);
    assert_eq!(code, 200);
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    let pod_rv = server.ok(&[
        "get",
        "pod",
        "web",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(
        one["metadata"]["resourceVersion"].as_str(),
        Some(pod_rv.as_str())
    );
}
