//! The everyday kubectl flows against a real server: apply, get, patch,
//! server-side apply, errors, watch, protobuf create.

mod support;
use support::*;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  containers:
  - name: nginx
    image: nginx
    ports:
    - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv1
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
provisioner: podnet.io/local
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: app
        image: busybox
        command: [sleep, "3600"]
        ports:
        - containerPort: 8080
"#;

fn write(server: &TestServer, name: &str, contents: &str) -> String {
    let path = server.data_path().join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn apply_get_and_reapply() {
    let server = TestServer::start();
    let manifest = write(&server, "all.yaml", MANIFEST);
    let applied = server.ok(&["apply", "-f", &manifest]);
    for line in [
        "pod/web created",
        "service/web created",
        "networkpolicy.networking.k8s.io/deny-all created",
        "persistentvolume/pv1 created",
        "persistentvolumeclaim/data created",
        "storageclass.storage.k8s.io/local created",
        "deployment.apps/api created",
    ] {
        assert!(applied.contains(line), "{applied}");
    }
    let again = server.ok(&["apply", "-f", &manifest]);
    assert!(again.contains("pod/web unchanged"), "{again}");
    assert!(again.contains("deployment.apps/api unchanged"), "{again}");

    // An image change through client-side apply keeps the container ports.
    let changed = write(
        &server,
        "changed.yaml",
        &MANIFEST.replace("image: busybox", "image: busybox:1.36"),
    );
    let out = server.ok(&["apply", "-f", &changed]);
    assert!(out.contains("deployment.apps/api configured"), "{out}");
    let image = server.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort} {.metadata.generation}"]);
    assert_eq!(image, "busybox:1.36 8080 2");

    let pods = server.ok(&["get", "pods"]);
    assert!(pods.starts_with("NAME"), "{pods}");
    assert!(pods.contains("READY") && pods.contains("STATUS"), "{pods}");
    let wide = server.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains("NODE"), "{wide}");
    let yaml = server.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("uid:")
            && yaml.contains("creationTimestamp:")
            && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let by_label = server.ok(&["get", "pods", "-l", "tier=front", "-o", "name"]);
    assert_eq!(by_label.trim(), "pod/web");
    let none = server.ok(&["get", "pods", "-l", "tier=back", "-o", "name"]);
    assert_eq!(none.trim(), "");
    let by_field = server.ok(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "metadata.name=web",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "pod/web");
    let all = server.ok(&["get", "all"]);
    assert!(
        all.contains("pod/web")
            && all.contains("service/web")
            && all.contains("deployment.apps/api"),
        "{all}"
    );
    for binary in [KUBECTL, KUBECTL_127, KUBECTL_133] {
        let storage = server.ok_with(binary, &["get", "pv,pvc"]);
        assert!(
            storage.contains("persistentvolume/pv1")
                && storage.contains("persistentvolumeclaim/data"),
            "{binary}: {storage}"
        );
        let across = server.ok_with(binary, &["get", "svc", "-A"]);
        assert!(across.contains("web"), "{binary}: {across}");
    }
    let chunked = server.ok(&["get", "ns", "--chunk-size=1", "-o", "name"]);
    assert_eq!(chunked.lines().count(), 4, "{chunked}");
}

#[test]
fn server_side_apply_and_conflicts() {
    let server = TestServer::start();
    let deployment = write(&server, "d.yaml", MANIFEST.split("---").last().unwrap());
    let out = server.ok(&["apply", "--server-side", "-f", &deployment]);
    assert!(
        out.contains("deployment.apps/api serverside-applied"),
        "{out}"
    );
    server.ok(&["scale", "deploy", "api", "--replicas=5"]);
    let replicas = server.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "5");
    let conflict = server.fails(&["apply", "--server-side", "-f", &deployment]);
    assert!(
        conflict.contains("Apply failed with 1 conflict: conflict with")
            && conflict.contains("using apps/v1: .spec.replicas"),
        "{conflict}"
    );
    server.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &deployment,
    ]);
    let replicas = server.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "2");
}

#[test]
fn errors_are_reported_like_upstream() {
    let server = TestServer::start();
    let invalid = write(
        &server,
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  containers:\n  - name: c\n",
    );
    let err = server.fails(&["apply", "-f", &invalid]);
    assert!(
        err.contains("The Pod \"bad\" is invalid: spec.containers[0].image: Required value"),
        "{err}"
    );
    let (code, body) = server.curl(
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(&server.token()),
        Some((
            "application/json",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":[{"name":"c"}]}}"#,
        )),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(r#""field":"spec.containers[0].image""#),
        "{body}"
    );

    let unknown = write(
        &server,
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nspec: {foo: 1}\ndata: {a: b}\n",
    );
    let err = server.fails(&["apply", "-f", &unknown]);
    assert!(err.contains("unknown field \"spec\""), "{err}");
    // Neither refused object was stored.
    let err = server.fails(&["get", "pod", "bad"]);
    assert!(err.contains("pods \"bad\" not found"), "{err}");
    let err = server.fails(&["get", "configmap", "x"]);
    assert!(err.contains("configmaps \"x\" not found"), "{err}");

    let token = server.token();
    let (code, body) = server.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&token),
        Some(("application/yaml", "metadata: {name: broken\ndata: [")),
    );
    assert_eq!(code, 400, "{body}");
    let listed = server.ok(&["get", "configmaps", "-o", "name"]);
    assert!(!listed.contains("broken"), "{listed}");

    let (code, body) = server.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        Some(&token),
        Some(("application/json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"data":{"a":"b"},"extra":1}"#)),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("strict decoding error: unknown field \\\"extra\\\""),
        "{body}"
    );
    let (code, _) = server.curl(
        "GET",
        "/api/v1/namespaces/default/configmaps/s",
        Some(&token),
        None,
    );
    assert_eq!(code, 404, "a strictly refused object is not stored");

    // Two updates from the same resourceVersion: exactly one wins.
    server.ok(&["create", "configmap", "race", "--from-literal=a=1"]);
    let rv = server.ok(&[
        "get",
        "cm",
        "race",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let update = |value: &str| {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"race","resourceVersion":"{rv}"}},"data":{{"a":"{value}"}}}}"#
        );
        server.curl(
            "PUT",
            "/api/v1/namespaces/default/configmaps/race",
            Some(&token),
            Some(("application/json", &body)),
        )
    };
    let first = update("2");
    let second = update("3");
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(second.0, 409, "{}", second.1);
    assert!(second.1.contains("the object has been modified; please apply your changes to the latest version and try again"), "{}", second.1);

    // A field selector the resource does not support is the client's fault.
    let (code, body) = server.curl(
        "GET",
        "/api/v1/namespaces/default/pods?fieldSelector=spec.nosuch%3Dx",
        Some(&token),
        None,
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("field label not supported: spec.nosuch"),
        "{body}"
    );
    let err = server.fails(&["get", "pods", "--field-selector", "spec.nosuch=x"]);
    assert!(err.contains("field label not supported"), "{err}");

    let err = server.fails(&["get", "pod", "nosuch"]);
    assert!(err.contains("pods \"nosuch\" not found"), "{err}");
    let err = server.fails(&["create", "configmap", "race"]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn protobuf_create_subcommands() {
    let server = TestServer::start();
    assert!(server
        .ok(&["create", "namespace", "team"])
        .contains("namespace/team created"));
    assert!(server
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
            "--port=80",
            "-n",
            "team"
        ])
        .contains("created"));
    assert!(server
        .ok(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=k=v",
            "-n",
            "team"
        ])
        .contains("created"));
    assert!(server
        .ok(&[
            "create",
            "secret",
            "generic",
            "sec",
            "--from-literal=k=v",
            "-n",
            "team"
        ])
        .contains("created"));
    assert!(server
        .ok(&[
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:80",
            "-n",
            "team"
        ])
        .contains("created"));
    let image = server.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.spec.replicas}",
    ]);
    assert_eq!(image, "nginx 2");
    let secret = server.ok(&[
        "get",
        "secret",
        "sec",
        "-n",
        "team",
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(secret, "dg==");
    let sa = server.ok(&["get", "sa", "default", "-n", "team", "-o", "name"]);
    assert_eq!(sa.trim(), "serviceaccount/default");
    // kubectl 1.27 sends JSON for the same commands.
    assert!(server
        .ok_with(
            KUBECTL_127,
            &["create", "configmap", "old", "--from-literal=k=v"]
        )
        .contains("created"));
}
