//! The loop behind [`crate::workloads`]: one watch-driven loop for the
//! ReplicaSet, Deployment and DaemonSet controllers sharing their caches
//! (pods, ReplicaSets, Deployments, DaemonSets, nodes).
//!
//! An event marks the objects it concerns dirty; each pass syncs the dirty
//! ones. Pods created or deleted and ReplicaSets written but not yet seen
//! through the watch are expectations: their owner waits (≤5 s) for them
//! before deciding again, so a stale cache never creates pods twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::watch::Informer;
use crate::workloads::{
    controller_of, controller_reference, daemon_pod_template, plan_daemon_set, plan_deployment,
    plan_replica_set, pod_from_template, same_status, selector_matches,
    templates_equal_ignoring_hash, ReplicaSetAction,
};
use crate::{is_api_status, ControllerError, ControllersConfig};

/// How long writes may stay unseen before the cache is trusted again.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pod creations in flight at once for one owner.
const CREATE_PARALLELISM: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    ReplicaSet,
    Deployment,
    DaemonSet,
}

type Key = (Kind, String, String);

#[derive(Debug)]
struct Expectation {
    since: Instant,
    pods_added: BTreeSet<String>,
    pods_gone: BTreeSet<String>,
    rs_at: Vec<(String, i64)>,
    rs_gone: BTreeSet<String>,
}

fn rv(meta: &ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ns_name(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

struct WorkloadsLoop {
    client: Client,
    pods: Informer<Pod>,
    replica_sets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    daemon_sets: Informer<DaemonSet>,
    nodes: Informer<Node>,
    dirty: BTreeSet<Key>,
    retry: BTreeSet<Key>,
    delayed: Vec<(Instant, Key)>,
    expectations: HashMap<Key, Expectation>,
    all_dirty_once: bool,
}

impl WorkloadsLoop {
    fn synced(&self) -> bool {
        self.pods.synced()
            && self.replica_sets.synced()
            && self.deployments.synced()
            && self.daemon_sets.synced()
            && self.nodes.synced()
    }

    fn on_pod(&mut self, event: Event<Pod>) {
        let pod = match event {
            Event::Apply(pod) | Event::InitApply(pod) | Event::Delete(pod) => pod,
            Event::Init | Event::InitDone => return,
        };
        let (namespace, _) = ns_name(&pod.metadata);
        match controller_of(&pod.metadata) {
            Some(owner) if owner.kind == "ReplicaSet" => {
                self.dirty
                    .insert((Kind::ReplicaSet, namespace, owner.name.clone()));
            }
            Some(owner) if owner.kind == "DaemonSet" => {
                self.dirty
                    .insert((Kind::DaemonSet, namespace, owner.name.clone()));
            }
            Some(_) => {}
            None => {
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                for rs in self.replica_sets.store().state() {
                    if rs.metadata.namespace.as_deref() == Some(&namespace)
                        && rs
                            .spec
                            .as_ref()
                            .is_some_and(|s| selector_matches(&s.selector, &labels))
                    {
                        self.dirty
                            .insert((Kind::ReplicaSet, namespace.clone(), rs.name_any()));
                    }
                }
                for ds in self.daemon_sets.store().state() {
                    if ds.metadata.namespace.as_deref() == Some(&namespace)
                        && ds
                            .spec
                            .as_ref()
                            .is_some_and(|s| selector_matches(&s.selector, &labels))
                    {
                        self.dirty
                            .insert((Kind::DaemonSet, namespace.clone(), ds.name_any()));
                    }
                }
            }
        }
    }

    fn on_replica_set(&mut self, event: Event<ReplicaSet>) {
        let rs = match event {
            Event::Apply(rs) | Event::InitApply(rs) | Event::Delete(rs) => rs,
            Event::Init | Event::InitDone => return,
        };
        let (namespace, name) = ns_name(&rs.metadata);
        self.dirty
            .insert((Kind::ReplicaSet, namespace.clone(), name));
        match controller_of(&rs.metadata) {
            Some(owner) if owner.kind == "Deployment" => {
                self.dirty
                    .insert((Kind::Deployment, namespace, owner.name.clone()));
            }
            Some(_) => {}
            None => {
                let labels = rs.metadata.labels.clone().unwrap_or_default();
                for deployment in self.deployments.store().state() {
                    if deployment.metadata.namespace.as_deref() == Some(&namespace)
                        && deployment
                            .spec
                            .as_ref()
                            .is_some_and(|s| selector_matches(&s.selector, &labels))
                    {
                        self.dirty.insert((
                            Kind::Deployment,
                            namespace.clone(),
                            deployment.name_any(),
                        ));
                    }
                }
            }
        }
    }

    fn on_owner<K: kube::Resource>(&mut self, kind: Kind, event: Event<K>) {
        if let Event::Apply(object) | Event::InitApply(object) | Event::Delete(object) = event {
            let (namespace, name) = ns_name(object.meta());
            self.dirty.insert((kind, namespace, name));
        }
    }

    fn on_node(&mut self, event: Event<Node>) {
        if let Event::Apply(_) | Event::Delete(_) = event {
            for ds in self.daemon_sets.store().state() {
                let (namespace, name) = ns_name(&ds.metadata);
                self.dirty.insert((Kind::DaemonSet, namespace, name));
            }
        }
    }

    /// Takes every event already delivered, without waiting.
    fn drain(&mut self) {
        loop {
            let mut more = false;
            if let Some(Some(event)) = self.pods.next_event().now_or_never() {
                self.on_pod(event);
                more = true;
            }
            if let Some(Some(event)) = self.replica_sets.next_event().now_or_never() {
                self.on_replica_set(event);
                more = true;
            }
            if let Some(Some(event)) = self.deployments.next_event().now_or_never() {
                self.on_owner(Kind::Deployment, event);
                more = true;
            }
            if let Some(Some(event)) = self.daemon_sets.next_event().now_or_never() {
                self.on_owner(Kind::DaemonSet, event);
                more = true;
            }
            if let Some(Some(event)) = self.nodes.next_event().now_or_never() {
                self.on_node(event);
                more = true;
            }
            if !more {
                break;
            }
        }
    }

    fn expectations_met(
        &mut self,
        key: &Key,
        pods: &HashMap<(String, String), Arc<Pod>>,
        replica_sets: &HashMap<(String, String), Arc<ReplicaSet>>,
    ) -> bool {
        let Some(expectation) = self.expectations.get(key) else {
            return true;
        };
        if expectation.since.elapsed() > EXPECTATION_TIMEOUT {
            self.expectations.remove(key);
            return true;
        }
        let namespace = &key.1;
        let pod_seen = |name: &String| pods.get(&(namespace.clone(), name.clone()));
        let met = expectation.pods_added.iter().all(|n| pod_seen(n).is_some())
            && expectation
                .pods_gone
                .iter()
                .all(|n| pod_seen(n).is_none_or(|p| p.metadata.deletion_timestamp.is_some()))
            && expectation.rs_at.iter().all(|(n, version)| {
                replica_sets
                    .get(&(namespace.clone(), n.clone()))
                    .is_some_and(|rs| rv(&rs.metadata) >= *version)
            })
            && expectation.rs_gone.iter().all(|n| {
                replica_sets
                    .get(&(namespace.clone(), n.clone()))
                    .is_none_or(|rs| rs.metadata.deletion_timestamp.is_some())
            });
        if met {
            self.expectations.remove(key);
        }
        met
    }

    fn expect(&mut self, key: &Key) -> &mut Expectation {
        self.expectations
            .entry(key.clone())
            .or_insert_with(|| Expectation {
                since: Instant::now(),
                pods_added: BTreeSet::new(),
                pods_gone: BTreeSet::new(),
                rs_at: Vec::new(),
                rs_gone: BTreeSet::new(),
            })
    }

    /// Creates `pods` for the workload `key` (`kind` names it in errors) and
    /// remembers the created names until the watch shows them, so a stale
    /// cache never creates them twice. Every create is tried; the first error
    /// is returned.
    async fn create_pods_expecting(
        &mut self,
        key: &Key,
        pod_api: &Api<Pod>,
        kind: &str,
        pods: Vec<Pod>,
    ) -> Result<(), ControllerError> {
        let (_, namespace, name) = key;
        let mut first_error = None;
        for result in create_pods(pod_api, pods).await {
            match result {
                Ok(pod_name) => {
                    self.expect(key).pods_added.insert(pod_name);
                }
                Err(error) => {
                    first_error.get_or_insert(ControllerError::api(
                        format!("create pod for {kind} {namespace}/{name}"),
                        error,
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes the named pods of the workload `key` and remembers them until
    /// the watch shows them gone.
    async fn delete_pods_expecting(
        &mut self,
        key: &Key,
        pod_api: &Api<Pod>,
        pod_names: &[String],
    ) -> Result<(), ControllerError> {
        let namespace = &key.1;
        for pod_name in pod_names {
            delete_pod(pod_api, namespace, pod_name).await?;
            self.expect(key).pods_gone.insert(pod_name.clone());
        }
        Ok(())
    }

    async fn sync_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.is_empty() {
            return;
        }
        let pods: HashMap<(String, String), Arc<Pod>> = self
            .pods
            .store()
            .state()
            .into_iter()
            .map(|p| (ns_name(&p.metadata), p))
            .collect();
        let replica_sets: HashMap<(String, String), Arc<ReplicaSet>> = self
            .replica_sets
            .store()
            .state()
            .into_iter()
            .map(|r| (ns_name(&r.metadata), r))
            .collect();
        for key in dirty {
            if !self.expectations_met(&key, &pods, &replica_sets) {
                self.retry.insert(key);
                continue;
            }
            let result = match key.0 {
                Kind::ReplicaSet => self.sync_replica_set(&key, &pods).await,
                Kind::Deployment => self.sync_deployment(&key, &replica_sets).await,
                Kind::DaemonSet => self.sync_daemon_set(&key, &pods).await,
            };
            if let Err(error) = result {
                tracing::warn!(object = ?key, %error, "workload sync failed; retrying");
                self.retry.insert(key);
            }
        }
    }

    async fn sync_replica_set(
        &mut self,
        key: &Key,
        pods: &HashMap<(String, String), Arc<Pod>>,
    ) -> Result<(), ControllerError> {
        let (_, namespace, name) = key;
        let Some(rs) = self.replica_sets.get(namespace, name) else {
            self.expectations.remove(key);
            return Ok(());
        };
        let namespace_pods: Vec<&Pod> = pods
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, p)| p.as_ref())
            .collect();
        let plan = plan_replica_set(&rs, &namespace_pods, Timestamp::now());
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let owner = controller_reference("ReplicaSet", &rs.metadata);
        adopt_and_release(
            &pod_api,
            "pod",
            &owner,
            &plan.adopt,
            &plan.release,
            pods,
            namespace,
        )
        .await?;
        if plan.create > 0 {
            let template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            let pod = pod_from_template(&template, owner.clone(), namespace, &format!("{name}-"));
            self.create_pods_expecting(key, &pod_api, "replicaset", vec![pod; plan.create])
                .await?;
        }
        self.delete_pods_expecting(key, &pod_api, &plan.delete)
            .await?;
        if !same_status(rs.status.as_ref(), &plan.status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
            patch_status_unless_gone(&api, "replicaset", namespace, name, &plan.status).await?;
        }
        if let Some(after) = plan.recheck_after {
            self.delayed.push((Instant::now() + after, key.clone()));
        }
        Ok(())
    }
}

/// Adds (adopt) or removes (release) `owner`'s controller reference on objects.
async fn adopt_and_release<K>(
    api: &Api<K>,
    what: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    adopt: &[String],
    release: &[String],
    objects: &HashMap<(String, String), Arc<K>>,
    namespace: &str,
) -> Result<(), ControllerError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for (names, adopting) in [(adopt, true), (release, false)] {
        for object_name in names {
            let Some(object) = objects.get(&(namespace.to_string(), object_name.clone())) else {
                continue;
            };
            let mut refs: Vec<_> = object
                .meta()
                .owner_references
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.uid != owner.uid)
                .collect();
            if adopting {
                refs.push(owner.clone());
            }
            let patch = json!({"metadata": {"ownerReferences": refs,
                    "uid": object.meta().uid, "resourceVersion": object.meta().resource_version}});
            match api
                .patch(object_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(error) if is_api_status(&error, 404) || is_api_status(&error, 409) => {}
                Err(error) => {
                    let verb = if adopting { "adopt" } else { "release" };
                    return Err(ControllerError::api(
                        format!(
                            "{verb} {what} {namespace}/{object_name} for {} {}",
                            owner.kind, owner.name
                        ),
                        error,
                    ));
                }
            }
        }
    }
    Ok(())
}

impl WorkloadsLoop {
    async fn sync_deployment(
        &mut self,
        key: &Key,
        replica_sets: &HashMap<(String, String), Arc<ReplicaSet>>,
    ) -> Result<(), ControllerError> {
        let (_, namespace, name) = key;
        let Some(deployment) = self.deployments.get(namespace, name) else {
            self.expectations.remove(key);
            return Ok(());
        };
        let namespace_sets: Vec<&ReplicaSet> = replica_sets
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, r)| r.as_ref())
            .collect();
        let mut plan = plan_deployment(&deployment, &namespace_sets, Timestamp::now());
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), namespace);
        let deploy_api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let owner = controller_reference("Deployment", &deployment.metadata);
        adopt_and_release(
            &rs_api,
            "replicaset",
            &owner,
            &plan.adopt,
            &[],
            replica_sets,
            namespace,
        )
        .await?;
        for action in std::mem::take(&mut plan.actions) {
            match action {
                ReplicaSetAction::Create(rs) => {
                    let rs_name = rs.name_any();
                    match rs_api.create(&PostParams::default(), &rs).await {
                        Ok(created) => {
                            let version = rv(&created.metadata);
                            self.expect(key).rs_at.push((rs_name, version));
                        }
                        Err(error) if is_api_status(&error, 409) => {
                            // A ReplicaSet of that name exists: ours and
                            // the cache is behind, or a hash collision.
                            let existing = rs_api.get(&rs_name).await.map_err(|e| {
                                ControllerError::api(
                                    format!("get replicaset {namespace}/{rs_name}"),
                                    e,
                                )
                            })?;
                            let ours = controller_of(&existing.metadata)
                                .is_some_and(|r| Some(&r.uid) == deployment.metadata.uid.as_ref());
                            let same = existing
                                .spec
                                .as_ref()
                                .and_then(|s| s.template.as_ref())
                                .zip(deployment.spec.as_ref().map(|s| &s.template))
                                .is_some_and(|(a, b)| templates_equal_ignoring_hash(a, b));
                            if !(ours && same) {
                                let count = deployment
                                    .status
                                    .as_ref()
                                    .and_then(|s| s.collision_count)
                                    .unwrap_or(0)
                                    + 1;
                                deploy_api
                                    .patch_status(
                                        name,
                                        &PatchParams::default(),
                                        &Patch::Merge(&json!({"status": {"collisionCount": count}})),
                                    )
                                    .await
                                    .map_err(|e| {
                                        ControllerError::api(
                                            format!("record hash collision of deployment {namespace}/{name}"),
                                            e,
                                        )
                                    })?;
                            }
                            return Ok(());
                        }
                        Err(error) => {
                            return Err(ControllerError::api(
                                format!(
                                    "create replicaset {namespace}/{rs_name} for deployment {name}"
                                ),
                                error,
                            ))
                        }
                    }
                }
                ReplicaSetAction::Scale {
                    name: rs_name,
                    replicas,
                    annotations,
                } => {
                    let mut patch = json!({"spec": {"replicas": replicas}});
                    if !annotations.is_empty() {
                        patch["metadata"] = json!({"annotations": annotations});
                    }
                    let written = rs_api
                        .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(|e| {
                            ControllerError::api(
                                format!("scale replicaset {namespace}/{rs_name} to {replicas}"),
                                e,
                            )
                        })?;
                    let version = rv(&written.metadata);
                    self.expect(key).rs_at.push((rs_name, version));
                }
                ReplicaSetAction::Delete(rs_name) => {
                    match rs_api.delete(&rs_name, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(error) if is_api_status(&error, 404) => {}
                        Err(error) => {
                            return Err(ControllerError::api(
                                format!("delete old replicaset {namespace}/{rs_name}"),
                                error,
                            ))
                        }
                    }
                    self.expect(key).rs_gone.insert(rs_name);
                }
            }
        }
        if let Some(revision) = &plan.revision {
            deploy_api
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"metadata": {"annotations": {
                        crate::workloads::REVISION_ANNOTATION: revision}}})),
                )
                .await
                .map_err(|e| {
                    ControllerError::api(
                        format!("set revision {revision} on deployment {namespace}/{name}"),
                        e,
                    )
                })?;
        }
        if !same_status(deployment.status.as_ref(), &plan.status) {
            patch_status_unless_gone(&deploy_api, "deployment", namespace, name, &plan.status)
                .await?;
        }
        Ok(())
    }

    async fn sync_daemon_set(
        &mut self,
        key: &Key,
        pods: &HashMap<(String, String), Arc<Pod>>,
    ) -> Result<(), ControllerError> {
        let (_, namespace, name) = key;
        let Some(ds) = self.daemon_sets.get(namespace, name) else {
            self.expectations.remove(key);
            return Ok(());
        };
        let nodes = self.nodes.store().state();
        let node_refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
        let namespace_pods: Vec<&Pod> = pods
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, p)| p.as_ref())
            .collect();
        let plan = plan_daemon_set(&ds, &node_refs, &namespace_pods, Timestamp::now());
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let owner = controller_reference("DaemonSet", &ds.metadata);
        adopt_and_release(
            &pod_api,
            "pod",
            &owner,
            &plan.adopt,
            &plan.release,
            pods,
            namespace,
        )
        .await?;
        let new_pods: Vec<Pod> = plan
            .create_on
            .iter()
            .map(|node| {
                let template = daemon_pod_template(&ds, &plan.hash, node);
                pod_from_template(&template, owner.clone(), namespace, &format!("{name}-"))
            })
            .collect();
        self.create_pods_expecting(key, &pod_api, "daemonset", new_pods)
            .await?;
        self.delete_pods_expecting(key, &pod_api, &plan.delete)
            .await?;
        if !same_status(ds.status.as_ref(), &plan.status) {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
            patch_status_unless_gone(&api, "daemonset", namespace, name, &plan.status).await?;
        }
        if let Some(after) = plan.recheck_after {
            self.delayed.push((Instant::now() + after, key.clone()));
        }
        Ok(())
    }
}

/// Creates pods concurrently; returns each created pod's name or the error.
async fn create_pods(api: &Api<Pod>, pods: Vec<Pod>) -> Vec<Result<String, kube::Error>> {
    futures::stream::iter(pods)
        .map(|pod| async move {
            api.create(&PostParams::default(), &pod)
                .await
                .map(|p| p.name_any())
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .collect()
        .await
}

async fn delete_pod(api: &Api<Pod>, namespace: &str, name: &str) -> Result<(), ControllerError> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(error) if is_api_status(&error, 404) => Ok(()),
        Err(error) => Err(ControllerError::api(
            format!("delete pod {namespace}/{name}"),
            error,
        )),
    }
}

/// Merge-patches a workload's status; a workload deleted meanwhile is fine.
async fn patch_status_unless_gone<K>(
    api: &Api<K>,
    kind: &str,
    namespace: &str,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), ControllerError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({ "status": status });
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_api_status(&error, 404) => Ok(()),
        Err(error) => Err(ControllerError::api(
            format!("update status of {kind} {namespace}/{name}"),
            error,
        )),
    }
}

/// Runs the ReplicaSet, Deployment and DaemonSet controllers until the process stops.
pub async fn run_workload_controllers(
    client: Client,
    _config: ControllersConfig,
) -> Result<(), ControllerError> {
    let mut state = WorkloadsLoop {
        pods: Informer::new(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            "pods (workloads)",
        ),
        replica_sets: Informer::new(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
            "replicasets (workloads)",
        ),
        deployments: Informer::new(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
            "deployments (workloads)",
        ),
        daemon_sets: Informer::new(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default(),
            "daemonsets (workloads)",
        ),
        nodes: Informer::new(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            "nodes (workloads)",
        ),
        client,
        dirty: BTreeSet::new(),
        retry: BTreeSet::new(),
        delayed: Vec::new(),
        expectations: HashMap::new(),
        all_dirty_once: false,
    };
    let mut retry_timer = tokio::time::interval(Duration::from_millis(200));
    retry_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = state.pods.next_event() => match event {
                Some(event) => state.on_pod(event),
                None => break,
            },
            event = state.replica_sets.next_event() => match event {
                Some(event) => state.on_replica_set(event),
                None => break,
            },
            event = state.deployments.next_event() => match event {
                Some(event) => state.on_owner(Kind::Deployment, event),
                None => break,
            },
            event = state.daemon_sets.next_event() => match event {
                Some(event) => state.on_owner(Kind::DaemonSet, event),
                None => break,
            },
            event = state.nodes.next_event() => match event {
                Some(event) => state.on_node(event),
                None => break,
            },
            _ = retry_timer.tick() => {
                let retry = std::mem::take(&mut state.retry);
                state.dirty.extend(retry);
                let now = Instant::now();
                let (due, later): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut state.delayed).into_iter().partition(|(at, _)| *at <= now);
                state.delayed = later;
                state.dirty.extend(due.into_iter().map(|(_, key)| key));
            }
        }
        state.drain();
        if !state.synced() {
            continue;
        }
        if !state.all_dirty_once {
            state.all_dirty_once = true;
            let mut all = Vec::new();
            for rs in state.replica_sets.store().state() {
                let (ns, name) = ns_name(&rs.metadata);
                all.push((Kind::ReplicaSet, ns, name));
            }
            for d in state.deployments.store().state() {
                let (ns, name) = ns_name(&d.metadata);
                all.push((Kind::Deployment, ns, name));
            }
            for ds in state.daemon_sets.store().state() {
                let (ns, name) = ns_name(&ds.metadata);
                all.push((Kind::DaemonSet, ns, name));
            }
            state.dirty.extend(all);
        }
        state.sync_dirty().await;
    }
    Err(ControllerError::ControllerStopped {
        controller: "workloads",
        reason: "a watch stream ended".to_string(),
    })
}
