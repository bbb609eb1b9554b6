use super::*;
use expect_test::expect;

fn now() -> Timestamp {
    "2026-01-01T00:01:00Z".parse().unwrap()
}

fn pod(name: &str, node: Option<&str>, phase: &str, ready_since: Option<&str>, owner: &str) -> Pod {
    let mut value = json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                "uid": owner, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": phase}
    });
    if let Some(node) = node {
        value["spec"]["nodeName"] = json!(node);
    }
    if let Some(since) = ready_since {
        value["status"]["conditions"] =
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}]);
    }
    serde_json::from_value(value).unwrap()
}

fn replica_set(replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "rs", "namespace": "default", "uid": "rs-uid", "generation": 2},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap()
}

#[test]
fn scale_down_deletes_unscheduled_then_not_ready_then_newest_ready() {
    let pods = [
        pod(
            "old-ready",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:00:00Z"),
            "rs-uid",
        ),
        pod(
            "new-ready",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:00:50Z"),
            "rs-uid",
        ),
        pod("not-ready", Some("n1"), "Running", None, "rs-uid"),
        pod("unscheduled", None, "Pending", None, "rs-uid"),
        pod("orphan", Some("n2"), "Running", None, "other-uid"),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let plan = plan_replica_set(&replica_set(1, 30), &refs, now());
    assert_eq!(plan.delete, ["unscheduled", "not-ready", "new-ready"]);
    assert_eq!(plan.create, 0);
    expect![[r#"
        ReplicaSetStatus {
            available_replicas: Some(
                1,
            ),
            conditions: None,
            fully_labeled_replicas: Some(
                4,
            ),
            observed_generation: Some(
                2,
            ),
            ready_replicas: Some(
                2,
            ),
            replicas: 4,
            terminating_replicas: None,
        }
    "#]]
    .assert_debug_eq(&plan.status);
    // new-ready becomes available 30 s after 00:00:50, i.e. 20 s from now.
    assert_eq!(plan.recheck_after, Some(Duration::from_secs(21)));
}

#[test]
fn orphans_are_adopted_and_counted() {
    let mut orphan = pod("orphan", Some("n1"), "Running", None, "x");
    orphan.metadata.owner_references = None;
    let plan = plan_replica_set(&replica_set(3, 0), &[&orphan], now());
    assert_eq!(plan.adopt, ["orphan"]);
    assert_eq!(plan.create, 2);
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let deployment = |replicas: i32, surge: Value, unavailable: Value| -> Deployment {
        serde_json::from_value(
            json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas,
            "selector": {}, "template": {},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}),
        )
        .unwrap()
    };
    assert_eq!(
        fenceposts(&deployment(3, json!("25%"), json!("25%"))),
        (1, 0)
    );
    assert_eq!(
        fenceposts(&deployment(10, json!("25%"), json!("25%"))),
        (3, 2)
    );
    assert_eq!(fenceposts(&deployment(3, json!(0), json!(0))), (0, 1));
    assert_eq!(fenceposts(&deployment(4, json!(2), json!("50%"))), (2, 2));
}

#[test]
fn template_hash_is_stable_and_changes_with_the_template() {
    let template: PodTemplateSpec = serde_json::from_value(
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .unwrap();
    let hash = template_hash(&template, None);
    assert_eq!(hash, template_hash(&template, None));
    assert!(hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{hash}");
    assert_ne!(hash, template_hash(&template, Some(1)));
    let mut other = template.clone();
    other.spec.as_mut().unwrap().containers[0].image = Some("busybox".into());
    assert_ne!(hash, template_hash(&other, None));
    let mut labelled = template.clone();
    labelled
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
    assert!(templates_equal_ignoring_hash(&template, &labelled));
    assert!(!templates_equal_ignoring_hash(&template, &other));
}

fn deployment_rs(name: &str, image: &str, revision: &str, spec: i32, available: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"},
            "creationTimestamp": format!("2026-01-01T00:00:0{revision}Z"),
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                "uid": "d-uid", "controller": true}]},
        "spec": {"replicas": spec, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: name}},
                "spec": {"containers": [{"name": "c", "image": image}]}}},
        "status": {"replicas": spec, "readyReplicas": available, "availableReplicas": available}
    }))
    .unwrap()
}

fn web_deployment(image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 2},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}
    }))
    .unwrap()
}

fn actions(plan: &DeploymentPlan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| match a {
            ReplicaSetAction::Create(rs) => format!(
                "create {} replicas={} revision={}",
                rs.metadata.name.as_deref().unwrap_or(""),
                rs.spec.as_ref().unwrap().replicas.unwrap(),
                rs.metadata.annotations.as_ref().unwrap()[REVISION_ANNOTATION]
            ),
            ReplicaSetAction::Scale { name, replicas, .. } => format!("scale {name} {replicas}"),
            ReplicaSetAction::Delete(name) => format!("delete {name}"),
        })
        .collect()
}

#[test]
fn rolling_update_steps() {
    // A new template: the new ReplicaSet starts at the surge (4 + 1 - 4 = 1).
    let old = deployment_rs("web-old", "nginx", "1", 4, 4);
    let deployment = web_deployment("busybox", 4);
    let plan = plan_deployment(&deployment, &[&old], now());
    let created = actions(&plan);
    assert_eq!(created.len(), 1);
    assert!(created[0].ends_with("replicas=1 revision=2"), "{created:?}");
    assert!(created[0].starts_with("create web-"), "{created:?}");

    // New at 1 (not yet available): old may go down by maxUnavailable (1).
    let new = deployment_rs("web-new", "busybox", "2", 1, 0);
    let plan = plan_deployment(&deployment, &[&old, &new], now());
    expect![[r#"
        [
            "scale web-new 1",
            "scale web-old 3",
        ]
    "#]]
    .assert_debug_eq(&actions(&plan));

    // New at 2 and old at 3, all available: 5 available, 3 must stay, so old goes to 1.
    let old = deployment_rs("web-old", "nginx", "1", 3, 3);
    let new = deployment_rs("web-new", "busybox", "2", 2, 2);
    let plan = plan_deployment(&deployment, &[&old, &new], now());
    expect![[r#"
        [
            "scale web-new 2",
            "scale web-old 1",
        ]
    "#]]
    .assert_debug_eq(&actions(&plan));

    // Complete: old at 0, status reports NewReplicaSetAvailable.
    let old = deployment_rs("web-old", "nginx", "1", 0, 0);
    let new = deployment_rs("web-new", "busybox", "2", 4, 4);
    let mut deployment = deployment;
    deployment
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(REVISION_ANNOTATION.into(), "2".into());
    let plan = plan_deployment(&deployment, &[&old, &new], now());
    assert!(plan.revision.is_none());
    let status = &plan.status;
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.available_replicas,
            status.unavailable_replicas
        ),
        (Some(4), Some(4), Some(4), Some(0))
    );
    let reasons: Vec<_> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} {}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or("")
            )
        })
        .collect();
    expect![[r#"
        [
            "Available True MinimumReplicasAvailable",
            "Progressing True NewReplicaSetAvailable",
        ]
    "#]]
    .assert_debug_eq(&reasons);
}

#[test]
fn revision_history_limit_deletes_oldest_scaled_down_sets() {
    let mut deployment = web_deployment("v4", 1);
    deployment.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let sets = [
        deployment_rs("web-1", "v1", "1", 0, 0),
        deployment_rs("web-2", "v2", "2", 0, 0),
        deployment_rs("web-3", "v3", "3", 0, 0),
        deployment_rs("web-4", "v4", "4", 1, 1),
    ];
    let refs: Vec<&ReplicaSet> = sets.iter().collect();
    let plan = plan_deployment(&deployment, &refs, now());
    // web-4 gets its desired/max replicas annotations; web-3 stays as history.
    assert_eq!(
        actions(&plan),
        ["scale web-4 1", "delete web-1", "delete web-2"]
    );
}

#[test]
fn daemon_set_places_one_pod_per_eligible_node() {
    let node = |name: &str, labels: Value, taints: Value| -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    };
    let nodes = [
        node("n1", json!({"disk": "ssd"}), json!([])),
        node(
            "n2",
            json!({"disk": "ssd"}),
            json!([{"key": "k", "effect": "NoSchedule"}]),
        ),
        node("n3", json!({"disk": "hdd"}), json!([])),
        node(
            "n4",
            json!({"disk": "ssd"}),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        ),
    ];
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "ds", "namespace": "default", "uid": "ds-uid", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "ds"}},
            "template": {"metadata": {"labels": {"app": "ds"}},
                "spec": {"nodeSelector": {"disk": "ssd"},
                    "containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let refs: Vec<&Node> = nodes.iter().collect();
    let plan = plan_daemon_set(&ds, &refs, &[], now());
    assert_eq!(plan.create_on, ["n1", "n4"]);
    assert_eq!(plan.status.desired_number_scheduled, 2);
    let template = daemon_pod_template(&ds, &plan.hash, "n1");
    let pod = pod_from_template(
        &template,
        controller_reference("DaemonSet", &ds.metadata),
        "default",
        "ds-",
    );
    assert_eq!(daemon_pod_node(&pod).as_deref(), Some("n1"));
    assert_eq!(
        pod.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL],
        plan.hash
    );
}
