//! Defaulting, as upstream's defaulters do it (the values `kubectl get -o yaml` shows).
//!
//! Besides the versioned defaulters this also applies what upstream's create
//! path adds before an object is stored and that kubectl users expect to see:
//! the namespace `kubernetes` finalizer, a Service's single-stack IPv4 family,
//! and, for Pods, the `default` service account and the not-ready /
//! unreachable tolerations of the DefaultTolerationSeconds admission plugin.
//! Every default only fills a field that is absent (or null), so applying
//! them again to a stored object changes nothing.

use crate::registry::ResourceInfo;
use serde_json::{json, Map, Value};

/// Fill in the defaults of a new or updated object in place.
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    let Some(object) = obj.as_object_mut() else {
        return;
    };
    match (info.group, info.kind) {
        ("", "Pod") => default_pod(object),
        ("", "Service") => {
            if let Some(spec) = child_object(object, "spec") {
                default_service_spec(spec);
            }
        }
        ("", "Namespace") => default_namespace(object),
        ("", "Secret") => set_default(object, "type", json!("Opaque")),
        ("", "Endpoints") => {
            for subset in array_items(object, "subsets") {
                for port in array_items(subset, "ports") {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        ("", "Node") => default_node(object),
        ("", "PersistentVolume") => default_persistent_volume(object),
        ("", "PersistentVolumeClaim") => default_persistent_volume_claim(object),
        ("apps", "Deployment") => default_deployment(object),
        ("apps", "ReplicaSet") => {
            if let Some(spec) = child_object(object, "spec") {
                set_default(spec, "replicas", json!(1));
                default_template(spec);
            }
        }
        ("apps", "DaemonSet") => default_daemon_set(object),
        ("apps", "StatefulSet") => default_stateful_set(object),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(object),
        ("storage.k8s.io", "StorageClass") => {
            set_default(object, "reclaimPolicy", json!("Delete"));
            set_default(object, "volumeBindingMode", json!("Immediate"));
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in array_items(object, "ports") {
                set_default(port, "name", json!(""));
                set_default(port, "protocol", json!("TCP"));
            }
        }
        _ => {}
    }
}

/// On update, keep what the server allocated when the new object leaves it
/// out, as upstream's service strategy does before validating: a Service's
/// cluster IPs and its ports' node ports. Without it `kubectl replace` of a
/// manifest that never named a cluster IP would be refused as changing an
/// immutable field.
pub fn carry_over_allocated_values(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if !(info.group.is_empty() && info.kind == "Service") {
        return;
    }
    let Some(old_spec) = old.get("spec").and_then(Value::as_object) else {
        return;
    };
    let Some(new_spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let same_type = old_spec.get("type") == new_spec.get("type")
        || new_spec.get("type").is_none_or(Value::is_null);
    let new_cluster_ip = new_spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    if new_cluster_ip.is_empty()
        && new_spec.get("type").and_then(Value::as_str) != Some("ExternalName")
    {
        for key in ["clusterIP", "clusterIPs"] {
            if let Some(value) = old_spec.get(key) {
                new_spec.insert(key.to_string(), value.clone());
            }
        }
    }
    if !same_type {
        return;
    }
    if let Some(port) = old_spec.get("healthCheckNodePort").cloned() {
        set_default(new_spec, "healthCheckNodePort", port);
    }
    let old_ports: Vec<&Map<String, Value>> = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .collect();
    for port in array_items(new_spec, "ports") {
        if !is_unset(port.get("nodePort")) {
            continue;
        }
        let protocol = |p: &Map<String, Value>| {
            p.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string()
        };
        let allocated = old_ports
            .iter()
            .find(|old_port| {
                old_port.get("port") == port.get("port") && protocol(old_port) == protocol(port)
            })
            .and_then(|old_port| old_port.get("nodePort"))
            .filter(|node_port| !node_port.is_null());
        if let Some(node_port) = allocated {
            port.insert("nodePort".into(), node_port.clone());
        }
    }
}

/// Insert `value` under `key` unless a non-null value is already there.
fn set_default(object: &mut Map<String, Value>, key: &str, value: Value) {
    match object.get(key) {
        Some(existing) if !existing.is_null() => {}
        _ => {
            object.insert(key.to_string(), value);
        }
    }
}

/// The object under `key`, created empty when absent or null; None when the
/// key holds something else (validation reports that, defaulting leaves it).
fn child_object<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    set_default(object, key, json!({}));
    object.get_mut(key).and_then(Value::as_object_mut)
}

/// The object under `key` only if present: for optional sub-structures whose
/// presence is meaningful (a probe, a strategy's rollingUpdate).
fn existing_object<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    object.get_mut(key).and_then(Value::as_object_mut)
}

/// The object items of the array under `key`, if any.
fn array_items<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    object
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn is_unset(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Number(number)) => number.as_i64() == Some(0),
        Some(Value::String(text)) => text.is_empty(),
        _ => false,
    }
}

fn default_pod(pod: &mut Map<String, Value>) {
    if let Some(spec) = child_object(pod, "spec") {
        default_pod_spec(spec);
        // The ServiceAccount admission plugin runs on pods only, not on
        // templates: a Deployment's template keeps its field unset.
        let account = spec
            .get("serviceAccount")
            .filter(|value| value.as_str().is_some_and(|text| !text.is_empty()))
            .cloned()
            .unwrap_or_else(|| json!("default"));
        set_default(spec, "serviceAccountName", account);
        add_default_tolerations(spec);
    }
}

/// The DefaultTolerationSeconds admission plugin: a pod tolerates a node that
/// is not ready or unreachable for five minutes before it is evicted, unless
/// it already says otherwise for that taint.
fn add_default_tolerations(spec: &mut Map<String, Value>) {
    set_default(spec, "tolerations", json!([]));
    let Some(tolerations) = spec.get_mut("tolerations").and_then(Value::as_array_mut) else {
        return;
    };
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let already_tolerated = tolerations.iter().any(|toleration| {
            let effect = toleration
                .get("effect")
                .and_then(Value::as_str)
                .unwrap_or("");
            let key = toleration.get("key").and_then(Value::as_str).unwrap_or("");
            let operator = toleration
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("Equal");
            let effect_matches = effect.is_empty() || effect == "NoExecute";
            let key_matches = key == taint || (key.is_empty() && operator == "Exists");
            effect_matches && key_matches
        });
        if !already_tolerated {
            tolerations.push(json!({
                "effect": "NoExecute",
                "key": taint,
                "operator": "Exists",
                "tolerationSeconds": 300
            }));
        }
    }
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in array_items(spec, list) {
            default_container(container, host_network);
        }
    }
    for volume in array_items(spec, "volumes") {
        default_volume(volume);
    }
}

/// Volume sources: a volume with none is an emptyDir upstream.
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

fn default_volume(volume: &mut Map<String, Value>) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|source| volume.get(*source).is_some_and(|value| !value.is_null()));
    if !has_source {
        volume.insert("emptyDir".into(), json!({}));
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(source) = existing_object(volume, source) {
            set_default(source, "defaultMode", json!(420));
        }
    }
    if let Some(projected) = existing_object(volume, "projected") {
        for projection in array_items(projected, "sources") {
            if let Some(token) = existing_object(projection, "serviceAccountToken") {
                set_default(token, "expirationSeconds", json!(3600));
            }
            if let Some(downward) = existing_object(projection, "downwardAPI") {
                for item in array_items(downward, "items") {
                    if let Some(field_ref) = existing_object(item, "fieldRef") {
                        set_default(field_ref, "apiVersion", json!("v1"));
                    }
                }
            }
        }
    }
    if let Some(downward) = existing_object(volume, "downwardAPI") {
        for item in array_items(downward, "items") {
            if let Some(field_ref) = existing_object(item, "fieldRef") {
                set_default(field_ref, "apiVersion", json!("v1"));
            }
        }
    }
    if let Some(host_path) = existing_object(volume, "hostPath") {
        set_default(host_path, "type", json!(""));
    }
    if let Some(claim) = existing_object(volume, "ephemeral")
        .and_then(|ephemeral| existing_object(ephemeral, "volumeClaimTemplate"))
        .and_then(|template| existing_object(template, "spec"))
    {
        set_default(claim, "volumeMode", json!("Filesystem"));
    }
}

/// `Always` when the image names no tag or `:latest`, as upstream decides it;
/// a digest pins the image, so it is never pulled again.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(container: &mut Map<String, Value>, host_network: bool) {
    if let Some(image) = container.get("image").and_then(Value::as_str) {
        let policy = default_image_pull_policy(image);
        set_default(container, "imagePullPolicy", json!(policy));
    }
    set_default(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    set_default(container, "terminationMessagePolicy", json!("File"));
    for port in array_items(container, "ports") {
        set_default(port, "protocol", json!("TCP"));
        if host_network {
            if let Some(container_port) = port.get("containerPort").cloned() {
                set_default(port, "hostPort", container_port);
            }
        }
    }
    if let Some(resources) = child_object(container, "resources") {
        // Upstream: requests default to limits for every resource that has a
        // limit and no request.
        if let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() {
            if !limits.is_empty() {
                if let Some(requests) = child_object(resources, "requests") {
                    for (name, quantity) in limits {
                        set_default(requests, &name, quantity);
                    }
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = existing_object(container, probe) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = existing_object(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(http_get) = existing_object(lifecycle, hook)
                .and_then(|handler| existing_object(handler, "httpGet"))
            {
                set_default(http_get, "scheme", json!("HTTP"));
            }
        }
    }
    for variable in array_items(container, "env") {
        if let Some(field_ref) = existing_object(variable, "valueFrom")
            .and_then(|value_from| existing_object(value_from, "fieldRef"))
        {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
}

fn default_probe(probe: &mut Map<String, Value>) {
    set_default(probe, "timeoutSeconds", json!(1));
    set_default(probe, "periodSeconds", json!(10));
    set_default(probe, "successThreshold", json!(1));
    set_default(probe, "failureThreshold", json!(3));
    if let Some(http_get) = existing_object(probe, "httpGet") {
        set_default(http_get, "scheme", json!("HTTP"));
        set_default(http_get, "path", json!("/"));
    }
    if let Some(grpc) = existing_object(probe, "grpc") {
        set_default(grpc, "service", json!(""));
    }
}

/// The pod template of a workload: the same defaults as a Pod's spec, but
/// none of the admission-time ones (service account, tolerations).
fn default_template(spec: &mut Map<String, Value>) {
    if let Some(template_spec) =
        child_object(spec, "template").and_then(|template| child_object(template, "spec"))
    {
        default_pod_spec(template_spec);
    }
}

fn default_service_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    for port in array_items(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        if is_unset(port.get("targetPort")) {
            if let Some(number) = port.get("port").cloned() {
                port.insert("targetPort".into(), number);
            }
        }
    }
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        if let Some(client_ip) = child_object(spec, "sessionAffinityConfig")
            .and_then(|config| child_object(config, "clientIP"))
        {
            set_default(client_ip, "timeoutSeconds", json!(10800));
        }
    }
    if service_type == "ExternalName" {
        return;
    }
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // The service registry picks the family on create; podnet is IPv4 only.
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
}

fn default_namespace(namespace: &mut Map<String, Value>) {
    let name = namespace
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name {
        if let Some(labels) = child_object(namespace, "metadata")
            .and_then(|metadata| child_object(metadata, "labels"))
        {
            // Upstream overwrites it: the label always tells the true name.
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    if let Some(spec) = child_object(namespace, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child_object(namespace, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

fn default_node(node: &mut Map<String, Value>) {
    if let Some(status) = existing_object(node, "status") {
        if let Some(capacity) = status.get("capacity").cloned() {
            set_default(status, "allocatable", capacity);
        }
    }
}

fn default_persistent_volume(volume: &mut Map<String, Value>) {
    if let Some(spec) = child_object(volume, "spec") {
        set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(host_path) = existing_object(spec, "hostPath") {
            set_default(host_path, "type", json!(""));
        }
    }
    if let Some(status) = child_object(volume, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn default_persistent_volume_claim(claim: &mut Map<String, Value>) {
    if let Some(spec) = child_object(claim, "spec") {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child_object(claim, "status") {
        set_default(status, "phase", json!("Pending"));
    }
}

fn default_deployment(deployment: &mut Map<String, Value>) {
    let Some(spec) = child_object(deployment, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    if let Some(strategy) = child_object(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(rolling) = child_object(strategy, "rollingUpdate") {
                set_default(rolling, "maxUnavailable", json!("25%"));
                set_default(rolling, "maxSurge", json!("25%"));
            }
        }
    }
    default_template(spec);
}

fn default_daemon_set(daemon_set: &mut Map<String, Value>) {
    let Some(spec) = child_object(daemon_set, "spec") else {
        return;
    };
    set_default(spec, "revisionHistoryLimit", json!(10));
    if let Some(strategy) = child_object(spec, "updateStrategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(rolling) = child_object(strategy, "rollingUpdate") {
                set_default(rolling, "maxUnavailable", json!(1));
                set_default(rolling, "maxSurge", json!(0));
            }
        }
    }
    default_template(spec);
}

fn default_stateful_set(stateful_set: &mut Map<String, Value>) {
    let Some(spec) = child_object(stateful_set, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child_object(spec, "updateStrategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(rolling) = child_object(strategy, "rollingUpdate") {
                set_default(rolling, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = child_object(spec, "persistentVolumeClaimRetentionPolicy") {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    for claim in array_items(spec, "volumeClaimTemplates") {
        if let Some(claim_spec) = child_object(claim, "spec") {
            set_default(claim_spec, "volumeMode", json!("Filesystem"));
        }
        if let Some(status) = child_object(claim, "status") {
            set_default(status, "phase", json!("Pending"));
        }
    }
    default_template(spec);
}

fn default_network_policy(policy: &mut Map<String, Value>) {
    let Some(spec) = child_object(policy, "spec") else {
        return;
    };
    let has_egress = spec
        .get("egress")
        .and_then(Value::as_array)
        .is_some_and(|rules| !rules.is_empty());
    let policy_types_unset = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(|types| types.is_empty());
    if policy_types_unset {
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
    for direction in ["ingress", "egress"] {
        for rule in array_items(spec, direction) {
            for port in array_items(rule, "ports") {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find_kind;
    use expect_test::{expect, Expect};

    fn check(api_version: &str, kind: &str, manifest: &str, expected: Expect) {
        let info = find_kind(api_version, kind).expect("kind is served");
        let mut object: Value = serde_yaml::from_str(manifest).unwrap();
        apply_defaults(info, &mut object);
        expected.assert_eq(&serde_yaml::to_string(&object).unwrap());
        // Defaulting is idempotent: a stored object defaults to itself.
        let once = object.clone();
        apply_defaults(info, &mut object);
        assert_eq!(once, object);
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, expected) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.2", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("docker.io/nicolaka/netshoot", "Always"),
        ] {
            assert_eq!(default_image_pull_policy(image), expected, "{image}");
        }
    }

    #[test]
    fn pod() {
        check(
            "v1",
            "Pod",
            r#"
metadata: {name: web, namespace: default}
spec:
  containers:
  - name: web
    image: nginx
    ports: [{containerPort: 80}]
    resources: {limits: {memory: 128Mi}}
    readinessProbe: {httpGet: {port: 80}}
    env: [{name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
  initContainers:
  - {name: init, image: "busybox:1.36"}
  volumes:
  - name: scratch
  - {name: config, configMap: {name: web}}
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 60}
"#,
            expect![[r#"
                metadata:
                  name: web
                  namespace: default
                spec:
                  containers:
                  - name: web
                    image: nginx
                    ports:
                    - containerPort: 80
                      protocol: TCP
                    resources:
                      limits:
                        memory: 128Mi
                      requests:
                        memory: 128Mi
                    readinessProbe:
                      httpGet:
                        port: 80
                        scheme: HTTP
                        path: /
                      timeoutSeconds: 1
                      periodSeconds: 10
                      successThreshold: 1
                      failureThreshold: 3
                    env:
                    - name: IP
                      valueFrom:
                        fieldRef:
                          fieldPath: status.podIP
                          apiVersion: v1
                    imagePullPolicy: Always
                    terminationMessagePath: /dev/termination-log
                    terminationMessagePolicy: File
                  initContainers:
                  - name: init
                    image: busybox:1.36
                    imagePullPolicy: IfNotPresent
                    terminationMessagePath: /dev/termination-log
                    terminationMessagePolicy: File
                    resources: {}
                  volumes:
                  - name: scratch
                    emptyDir: {}
                  - name: config
                    configMap:
                      name: web
                      defaultMode: 420
                  tolerations:
                  - key: node.kubernetes.io/unreachable
                    operator: Exists
                    effect: NoExecute
                    tolerationSeconds: 60
                  - effect: NoExecute
                    key: node.kubernetes.io/not-ready
                    operator: Exists
                    tolerationSeconds: 300
                  restartPolicy: Always
                  dnsPolicy: ClusterFirst
                  schedulerName: default-scheduler
                  terminationGracePeriodSeconds: 30
                  securityContext: {}
                  enableServiceLinks: true
                  priority: 0
                  preemptionPolicy: PreemptLowerPriority
                  serviceAccountName: default
            "#]],
        );
    }

    #[test]
    fn service() {
        check(
            "v1",
            "Service",
            r#"
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80}
  - {name: dns, port: 53, targetPort: dns, protocol: UDP}
"#,
            expect![[r#"
                metadata:
                  name: web
                spec:
                  type: NodePort
                  selector:
                    app: web
                  ports:
                  - port: 80
                    protocol: TCP
                    targetPort: 80
                  - name: dns
                    port: 53
                    targetPort: dns
                    protocol: UDP
                  sessionAffinity: None
                  internalTrafficPolicy: Cluster
                  externalTrafficPolicy: Cluster
                  ipFamilies:
                  - IPv4
                  ipFamilyPolicy: SingleStack
            "#]],
        );
    }

    #[test]
    fn external_name_service_gets_no_families() {
        check(
            "v1",
            "Service",
            "spec: {type: ExternalName, externalName: example.com}",
            expect![[r#"
                spec:
                  type: ExternalName
                  externalName: example.com
                  sessionAffinity: None
            "#]],
        );
    }

    #[test]
    fn deployment() {
        check(
            "apps/v1",
            "Deployment",
            r#"
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"#,
            expect![[r#"
                metadata:
                  name: web
                spec:
                  selector:
                    matchLabels:
                      app: web
                  template:
                    metadata:
                      labels:
                        app: web
                    spec:
                      containers:
                      - name: web
                        image: nginx:1.27
                        imagePullPolicy: IfNotPresent
                        terminationMessagePath: /dev/termination-log
                        terminationMessagePolicy: File
                        resources: {}
                      restartPolicy: Always
                      dnsPolicy: ClusterFirst
                      schedulerName: default-scheduler
                      terminationGracePeriodSeconds: 30
                      securityContext: {}
                      enableServiceLinks: true
                      priority: 0
                      preemptionPolicy: PreemptLowerPriority
                  replicas: 1
                  revisionHistoryLimit: 10
                  progressDeadlineSeconds: 600
                  strategy:
                    type: RollingUpdate
                    rollingUpdate:
                      maxUnavailable: 25%
                      maxSurge: 25%
            "#]],
        );
    }

    #[test]
    fn recreate_strategy_gets_no_rolling_parameters() {
        let info = find_kind("apps/v1", "Deployment").unwrap();
        let mut object = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply_defaults(info, &mut object);
        assert_eq!(object["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn workloads_and_storage() {
        check(
            "apps/v1",
            "StatefulSet",
            r#"
spec:
  serviceName: db
  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce]}}]
"#,
            expect![[r#"
                spec:
                  serviceName: db
                  volumeClaimTemplates:
                  - metadata:
                      name: data
                    spec:
                      accessModes:
                      - ReadWriteOnce
                      volumeMode: Filesystem
                    status:
                      phase: Pending
                  replicas: 1
                  revisionHistoryLimit: 10
                  podManagementPolicy: OrderedReady
                  updateStrategy:
                    type: RollingUpdate
                    rollingUpdate:
                      partition: 0
                  persistentVolumeClaimRetentionPolicy:
                    whenDeleted: Retain
                    whenScaled: Retain
                  template:
                    spec:
                      restartPolicy: Always
                      dnsPolicy: ClusterFirst
                      schedulerName: default-scheduler
                      terminationGracePeriodSeconds: 30
                      securityContext: {}
                      enableServiceLinks: true
                      priority: 0
                      preemptionPolicy: PreemptLowerPriority
            "#]],
        );
        check(
            "apps/v1",
            "DaemonSet",
            "spec: {template: {spec: {}}}",
            expect![[r#"
                spec:
                  template:
                    spec:
                      restartPolicy: Always
                      dnsPolicy: ClusterFirst
                      schedulerName: default-scheduler
                      terminationGracePeriodSeconds: 30
                      securityContext: {}
                      enableServiceLinks: true
                      priority: 0
                      preemptionPolicy: PreemptLowerPriority
                  revisionHistoryLimit: 10
                  updateStrategy:
                    type: RollingUpdate
                    rollingUpdate:
                      maxUnavailable: 1
                      maxSurge: 0
            "#]],
        );
        check(
            "v1",
            "PersistentVolume",
            "spec: {capacity: {storage: 1Gi}, hostPath: {path: /data}}",
            expect![[r#"
                spec:
                  capacity:
                    storage: 1Gi
                  hostPath:
                    path: /data
                    type: ''
                  persistentVolumeReclaimPolicy: Retain
                  volumeMode: Filesystem
                status:
                  phase: Pending
            "#]],
        );
        check(
            "storage.k8s.io/v1",
            "StorageClass",
            "provisioner: podnet.io/local",
            expect![[r#"
                provisioner: podnet.io/local
                reclaimPolicy: Delete
                volumeBindingMode: Immediate
            "#]],
        );
    }

    #[test]
    fn service_updates_keep_allocated_addresses_and_node_ports() {
        let info = find_kind("v1", "Service").unwrap();
        let old = json!({"spec": {
            "type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053}]
        }});
        let mut replaced = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 53, "protocol": "TCP"}]}});
        carry_over_allocated_values(info, &mut replaced, &old);
        expect![[r#"
            {"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080},{"port":53,"protocol":"TCP"}],"clusterIP":"10.96.0.20","clusterIPs":["10.96.0.20"]}}"#]]
        .assert_eq(&replaced.to_string());
        let mut to_external_name =
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}});
        carry_over_allocated_values(info, &mut to_external_name, &old);
        assert!(to_external_name["spec"].get("clusterIP").is_none());
    }

    #[test]
    fn namespace_secret_and_network_policy() {
        check(
            "v1",
            "Namespace",
            "metadata: {name: team-a, labels: {kubernetes.io/metadata.name: wrong}}",
            expect![[r#"
                metadata:
                  name: team-a
                  labels:
                    kubernetes.io/metadata.name: team-a
                spec:
                  finalizers:
                  - kubernetes
                status:
                  phase: Active
            "#]],
        );
        check(
            "v1",
            "Secret",
            "data: {a: Yg==}",
            expect![[r#"
                data:
                  a: Yg==
                type: Opaque
            "#]],
        );
        check(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "spec: {podSelector: {}, egress: [{ports: [{port: 53}]}]}",
            expect![[r#"
                spec:
                  podSelector: {}
                  egress:
                  - ports:
                    - port: 53
                      protocol: TCP
                  policyTypes:
                  - Ingress
                  - Egress
            "#]],
        );
    }
}
