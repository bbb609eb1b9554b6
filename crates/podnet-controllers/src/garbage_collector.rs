//! Garbage collector: follows `metadata.ownerReferences` across every resource
//! the API serves.
//!
//! - Background: a dependent whose owners are all gone is deleted; references
//!   to owners that are gone are dropped from dependents that still have a
//!   live owner.
//! - Foreground (owner carries the `foregroundDeletion` finalizer): the owner's
//!   dependents are deleted (themselves in the foreground), and the finalizer
//!   is removed once no dependent with `blockOwnerDeletion: true` is left.
//! - Orphan (owner carries the `orphan` finalizer): the reference to the owner
//!   is removed from every dependent, then the finalizer.
//!
//! [`plan_garbage_collection`] decides over a snapshot of every object's
//! metadata. The loop keeps that snapshot with one watch per discovered
//! resource and, before deleting for a vanished owner, asks the API for the
//! owner once more: watches of different resources are not ordered, so a
//! dependent can be seen before its freshly created owner.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::mpsc;

use crate::{is_api_status, ControllerError, ControllersConfig};

/// Finalizer asking for dependents to be deleted before the owner.
pub const FOREGROUND_DELETION_FINALIZER: &str = "foregroundDeletion";
/// Finalizer asking for dependents to be kept, without the reference.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Where an object lives: its resource (index into the caller's resource list), namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// Index of the resource the object belongs to.
    pub resource: usize,
    /// Namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// The metadata the collector reasons about.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphObject {
    /// Where it lives.
    pub id: ObjectId,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion`, used as a precondition for patches.
    pub resource_version: Option<String>,
    /// `metadata.ownerReferences`.
    pub owner_references: Vec<OwnerReference>,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
    /// True when `metadata.deletionTimestamp` is set.
    pub being_deleted: bool,
}

/// One change the collector makes.
#[derive(Clone, Debug, PartialEq)]
pub enum GcAction {
    /// Delete a dependent.
    Delete {
        /// The dependent.
        id: ObjectId,
        /// Its UID, as a deletion precondition.
        uid: String,
        /// Foreground when its owner is deleted in the foreground, else Background.
        foreground: bool,
        /// Owners believed gone; they are looked up once more before deleting.
        owners_to_confirm_absent: Vec<OwnerReference>,
    },
    /// Drop some owner references from an object.
    RemoveOwnerReferences {
        /// The dependent.
        id: ObjectId,
        /// The precondition.
        resource_version: Option<String>,
        /// The references to keep.
        remaining: Vec<OwnerReference>,
        /// Owners dropped because they are gone (looked up once more first).
        owners_to_confirm_absent: Vec<OwnerReference>,
    },
    /// Remove one of our finalizers from an owner.
    RemoveFinalizer {
        /// The owner.
        id: ObjectId,
        /// The precondition.
        resource_version: Option<String>,
        /// The finalizers to keep.
        remaining: Vec<String>,
    },
}

impl GcAction {
    /// The object the action changes.
    pub fn id(&self) -> &ObjectId {
        match self {
            GcAction::Delete { id, .. }
            | GcAction::RemoveOwnerReferences { id, .. }
            | GcAction::RemoveFinalizer { id, .. } => id,
        }
    }
}

/// The API group of an ownerReference's apiVersion (`apps/v1` → `apps`, `v1` → ``).
pub fn group_of_api_version(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

enum OwnerState<'a> {
    /// Exists and does not ask for its dependents to go first.
    Solid,
    /// Exists, being deleted in the foreground: the owner side handles the dependent.
    WaitingForDependents,
    /// Known kind, no object with that UID.
    Absent(&'a OwnerReference),
}

/// Decides every action for the current snapshot. `kind_is_watched(group, kind)`
/// tells whether objects of that kind are in the snapshot at all: an owner of
/// a kind not watched is never presumed gone.
pub fn plan_garbage_collection(
    objects: &[GraphObject],
    kind_is_watched: &dyn Fn(&str, &str) -> bool,
) -> Vec<GcAction> {
    let by_uid: HashMap<&str, &GraphObject> = objects
        .iter()
        .map(|object| (object.uid.as_str(), object))
        .collect();
    let mut dependents_of: HashMap<&str, Vec<(&GraphObject, &OwnerReference)>> = HashMap::new();
    for object in objects {
        for owner in &object.owner_references {
            dependents_of
                .entry(owner.uid.as_str())
                .or_default()
                .push((object, owner));
        }
    }
    let owner_state = |owner| classify_owner(owner, &by_uid, kind_is_watched);

    let mut deletes: BTreeMap<ObjectId, GcAction> = BTreeMap::new();
    // Per dependent: owner UIDs to drop, and which of those must be confirmed gone.
    let mut reference_removals: BTreeMap<
        ObjectId,
        (&GraphObject, BTreeSet<String>, Vec<OwnerReference>),
    > = BTreeMap::new();
    let mut finalizer_removals: Vec<GcAction> = Vec::new();

    for owner in objects.iter().filter(|object| object.being_deleted) {
        let dependents = dependents_of
            .get(owner.uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if has_finalizer(owner, ORPHAN_FINALIZER) {
            for (dependent, _) in dependents {
                reference_removals
                    .entry(dependent.id.clone())
                    .or_insert_with(|| (dependent, BTreeSet::new(), Vec::new()))
                    .1
                    .insert(owner.uid.clone());
            }
            if dependents.is_empty() {
                finalizer_removals.push(remove_finalizer(owner, ORPHAN_FINALIZER));
            }
            // Orphaning comes first; foreground deletion (if also asked) waits for it.
            continue;
        }
        if has_finalizer(owner, FOREGROUND_DELETION_FINALIZER) {
            for (dependent, _) in dependents {
                if dependent.being_deleted {
                    continue;
                }
                let has_other_solid_owner = dependent.owner_references.iter().any(|other| {
                    other.uid != owner.uid && matches!(owner_state(other), OwnerState::Solid)
                });
                if has_other_solid_owner {
                    reference_removals
                        .entry(dependent.id.clone())
                        .or_insert_with(|| (dependent, BTreeSet::new(), Vec::new()))
                        .1
                        .insert(owner.uid.clone());
                } else {
                    deletes.insert(
                        dependent.id.clone(),
                        GcAction::Delete {
                            id: dependent.id.clone(),
                            uid: dependent.uid.clone(),
                            foreground: true,
                            owners_to_confirm_absent: Vec::new(),
                        },
                    );
                }
            }
            let blocked = dependents
                .iter()
                .any(|(_, reference)| reference.block_owner_deletion == Some(true));
            if !blocked {
                finalizer_removals.push(remove_finalizer(owner, FOREGROUND_DELETION_FINALIZER));
            }
        }
    }

    for dependent in objects
        .iter()
        .filter(|object| !object.being_deleted && !object.owner_references.is_empty())
    {
        let mut solid = 0;
        let mut waiting = 0;
        let mut absent: Vec<&OwnerReference> = Vec::new();
        for owner in &dependent.owner_references {
            match owner_state(owner) {
                OwnerState::Solid => solid += 1,
                OwnerState::WaitingForDependents => waiting += 1,
                OwnerState::Absent(reference) => absent.push(reference),
            }
        }
        if absent.is_empty() {
            continue;
        }
        if solid == 0 && waiting == 0 {
            deletes
                .entry(dependent.id.clone())
                .or_insert_with(|| GcAction::Delete {
                    id: dependent.id.clone(),
                    uid: dependent.uid.clone(),
                    foreground: false,
                    owners_to_confirm_absent: absent
                        .iter()
                        .map(|reference| (*reference).clone())
                        .collect(),
                });
        } else if solid > 0 {
            let entry = reference_removals
                .entry(dependent.id.clone())
                .or_insert_with(|| (dependent, BTreeSet::new(), Vec::new()));
            for reference in absent {
                entry.1.insert(reference.uid.clone());
                entry.2.push(reference.clone());
            }
        }
    }

    let mut actions: Vec<GcAction> = Vec::new();
    for (id, (dependent, removed_uids, to_confirm)) in reference_removals {
        if deletes.contains_key(&id) {
            continue;
        }
        let remaining = dependent
            .owner_references
            .iter()
            .filter(|reference| !removed_uids.contains(&reference.uid))
            .cloned()
            .collect();
        actions.push(GcAction::RemoveOwnerReferences {
            id,
            resource_version: dependent.resource_version.clone(),
            remaining,
            owners_to_confirm_absent: to_confirm,
        });
    }
    actions.extend(deletes.into_values());
    actions.extend(finalizer_removals);
    actions
}

fn classify_owner<'a>(
    owner: &'a OwnerReference,
    by_uid: &HashMap<&str, &GraphObject>,
    kind_is_watched: &dyn Fn(&str, &str) -> bool,
) -> OwnerState<'a> {
    match by_uid.get(owner.uid.as_str()) {
        Some(found)
            if found.being_deleted
                && has_finalizer(found, FOREGROUND_DELETION_FINALIZER)
                && !has_finalizer(found, ORPHAN_FINALIZER) =>
        {
            OwnerState::WaitingForDependents
        }
        Some(_) => OwnerState::Solid,
        None if kind_is_watched(group_of_api_version(&owner.api_version), &owner.kind) => {
            OwnerState::Absent(owner)
        }
        // Unknown kind: cannot tell, so treat it as present.
        None => OwnerState::Solid,
    }
}

fn has_finalizer(object: &GraphObject, finalizer: &str) -> bool {
    object.finalizers.iter().any(|present| present == finalizer)
}

fn remove_finalizer(object: &GraphObject, finalizer: &str) -> GcAction {
    GcAction::RemoveFinalizer {
        id: object.id.clone(),
        resource_version: object.resource_version.clone(),
        remaining: object
            .finalizers
            .iter()
            .filter(|present| *present != finalizer)
            .cloned()
            .collect(),
    }
}

/// A resource the collector watches.
#[derive(Clone, Debug)]
struct WatchedResource {
    api_resource: ApiResource,
    namespaced: bool,
}

async fn discover_collectable_resources(
    client: &Client,
) -> Result<Vec<WatchedResource>, ControllerError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|error| ControllerError::api("discover api resources", error))?;
    let mut resources = Vec::new();
    for group in discovery.groups() {
        for (api_resource, capabilities) in group.recommended_resources() {
            // Events are numerous, short-lived and never owners or owned in practice.
            if api_resource.kind == "Event" {
                continue;
            }
            if [verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::PATCH]
                .iter()
                .all(|verb| capabilities.supports_operation(verb))
            {
                resources.push(WatchedResource {
                    api_resource,
                    namespaced: capabilities.scope == Scope::Namespaced,
                });
            }
        }
    }
    resources.sort_by(|a, b| {
        (&a.api_resource.group, &a.api_resource.plural)
            .cmp(&(&b.api_resource.group, &b.api_resource.plural))
    });
    Ok(resources)
}

fn graph_object(resource: usize, object: &DynamicObject) -> GraphObject {
    let metadata = &object.metadata;
    GraphObject {
        id: ObjectId {
            resource,
            namespace: metadata.namespace.clone(),
            name: metadata.name.clone().unwrap_or_default(),
        },
        uid: metadata.uid.clone().unwrap_or_default(),
        resource_version: metadata.resource_version.clone(),
        owner_references: metadata.owner_references.clone().unwrap_or_default(),
        finalizers: metadata.finalizers.clone().unwrap_or_default(),
        being_deleted: metadata.deletion_timestamp.is_some(),
    }
}

struct GraphState {
    resources: Vec<WatchedResource>,
    objects: BTreeMap<ObjectId, GraphObject>,
    relisting: HashMap<usize, Vec<GraphObject>>,
    synced: HashSet<usize>,
    /// Actions already applied, with the resourceVersion they were decided on:
    /// not repeated until the object changes.
    applied: HashMap<ObjectId, Option<String>>,
}

impl GraphState {
    fn apply_event(&mut self, resource: usize, event: Event<DynamicObject>) {
        match event {
            Event::Apply(object) => {
                let object = graph_object(resource, &object);
                self.objects.insert(object.id.clone(), object);
            }
            Event::Delete(object) => {
                let object = graph_object(resource, &object);
                self.objects.remove(&object.id);
                self.applied.remove(&object.id);
            }
            Event::Init => {
                self.relisting.insert(resource, Vec::new());
            }
            Event::InitApply(object) => {
                self.relisting
                    .entry(resource)
                    .or_default()
                    .push(graph_object(resource, &object));
            }
            Event::InitDone => {
                let listed = self.relisting.remove(&resource).unwrap_or_default();
                self.objects.retain(|id, _| id.resource != resource);
                for object in listed {
                    self.objects.insert(object.id.clone(), object);
                }
                self.synced.insert(resource);
            }
        }
    }

    fn plan(&self) -> Vec<GcAction> {
        let watched: HashSet<(&str, &str)> = self
            .resources
            .iter()
            .map(|resource| {
                (
                    resource.api_resource.group.as_str(),
                    resource.api_resource.kind.as_str(),
                )
            })
            .collect();
        let objects: Vec<GraphObject> = self.objects.values().cloned().collect();
        plan_garbage_collection(&objects, &|group, kind| watched.contains(&(group, kind)))
            .into_iter()
            .filter(|action| {
                let current = self
                    .objects
                    .get(action.id())
                    .and_then(|object| object.resource_version.clone());
                self.applied.get(action.id()) != Some(&current)
            })
            .collect()
    }

    fn api_for(&self, client: &Client, id: &ObjectId) -> Api<DynamicObject> {
        let resource = &self.resources[id.resource];
        match (&id.namespace, resource.namespaced) {
            (Some(namespace), true) => {
                Api::namespaced_with(client.clone(), namespace, &resource.api_resource)
            }
            _ => Api::all_with(client.clone(), &resource.api_resource),
        }
    }

    /// Asks the API whether an owner really is gone (not found, or replaced by a new UID).
    async fn owner_confirmed_absent(
        &self,
        client: &Client,
        dependent: &ObjectId,
        owner: &OwnerReference,
    ) -> bool {
        let group = group_of_api_version(&owner.api_version);
        let Some(resource) = self.resources.iter().find(|resource| {
            resource.api_resource.group == group && resource.api_resource.kind == owner.kind
        }) else {
            return false;
        };
        let api: Api<DynamicObject> = match (&dependent.namespace, resource.namespaced) {
            (Some(namespace), true) => {
                Api::namespaced_with(client.clone(), namespace, &resource.api_resource)
            }
            (None, true) => return true,
            (_, false) => Api::all_with(client.clone(), &resource.api_resource),
        };
        match api.get_opt(&owner.name).await {
            Ok(None) => true,
            Ok(Some(found)) => found.metadata.uid.as_deref() != Some(owner.uid.as_str()),
            Err(error) => {
                tracing::debug!(owner = %owner.name, %error, "could not confirm owner absence; retrying later");
                false
            }
        }
    }

    async fn apply_action(
        &self,
        client: &Client,
        action: &GcAction,
    ) -> Result<bool, ControllerError> {
        let id = action.id();
        let api = self.api_for(client, id);
        let described = format!(
            "{} {}{}",
            self.resources[id.resource].api_resource.plural,
            id.namespace
                .as_deref()
                .map(|namespace| format!("{namespace}/"))
                .unwrap_or_default(),
            id.name
        );
        let owners_to_confirm = match action {
            GcAction::Delete {
                owners_to_confirm_absent,
                ..
            } => owners_to_confirm_absent.as_slice(),
            GcAction::RemoveOwnerReferences {
                owners_to_confirm_absent,
                ..
            } => owners_to_confirm_absent.as_slice(),
            GcAction::RemoveFinalizer { .. } => &[],
        };
        for owner in owners_to_confirm {
            if !self.owner_confirmed_absent(client, id, owner).await {
                return Ok(false);
            }
        }
        let outcome = match action {
            GcAction::Delete {
                uid, foreground, ..
            } => {
                let params = DeleteParams {
                    propagation_policy: Some(if *foreground {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                tracing::info!(object = %described, foreground, "deleting dependent whose owner is gone or going");
                api.delete(&id.name, &params).await.map(|_| ())
            }
            GcAction::RemoveOwnerReferences {
                resource_version,
                remaining,
                ..
            } => {
                let references = if remaining.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(remaining)
                };
                let patch = serde_json::json!({"metadata": {"resourceVersion": resource_version, "ownerReferences": references}});
                api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            GcAction::RemoveFinalizer {
                resource_version,
                remaining,
                ..
            } => {
                let finalizers = if remaining.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(remaining)
                };
                let patch = serde_json::json!({"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}});
                api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match outcome {
            Ok(()) => Ok(true),
            // Gone or changed meanwhile: the watch brings the new state and we decide again.
            Err(error) if is_api_status(&error, 404) || is_api_status(&error, 409) => Ok(false),
            Err(error) => Err(ControllerError::api(
                format!("garbage collect {described}"),
                error,
            )),
        }
    }
}

/// Watches every collectable resource and collects garbage until the process stops.
pub async fn run_garbage_collector(
    client: Client,
    config: ControllersConfig,
) -> Result<(), ControllerError> {
    loop {
        let resources = match discover_collectable_resources(&client).await {
            Ok(resources) => resources,
            Err(error) => {
                tracing::warn!(%error, "garbage collector discovery failed; retrying");
                tokio::time::sleep(
                    config
                        .garbage_collector_rediscovery_period
                        .min(Duration::from_secs(5)),
                )
                .await;
                continue;
            }
        };
        run_with_resources(&client, &config, resources).await;
    }
}

/// Runs until the discovered resources change.
async fn run_with_resources(
    client: &Client,
    config: &ControllersConfig,
    resources: Vec<WatchedResource>,
) {
    let (sender, mut receiver) = mpsc::channel::<(usize, Event<DynamicObject>)>(1024);
    let mut watch_tasks = tokio::task::JoinSet::new();
    for (index, resource) in resources.iter().enumerate() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource.api_resource);
        let sender = sender.clone();
        let plural = resource.api_resource.plural.clone();
        watch_tasks.spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        if sender.send((index, event)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::debug!(resource = %plural, %error, "garbage collector watch failed; retrying"),
                }
            }
        });
    }
    drop(sender);
    let mut state = GraphState {
        resources,
        objects: BTreeMap::new(),
        relisting: HashMap::new(),
        synced: HashSet::new(),
        applied: HashMap::new(),
    };
    let mut rediscovery = tokio::time::interval(config.garbage_collector_rediscovery_period);
    rediscovery.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rediscovery.tick().await;
    loop {
        tokio::select! {
            received = receiver.recv() => {
                let Some((resource, event)) = received else { return };
                state.apply_event(resource, event);
                // Take everything already queued before deciding, so a burst of
                // events costs one planning pass.
                while let Ok((resource, event)) = receiver.try_recv() {
                    state.apply_event(resource, event);
                }
            }
            _ = rediscovery.tick() => {
                match discover_collectable_resources(client).await {
                    Ok(fresh) if fresh.iter().map(|r| &r.api_resource).ne(state.resources.iter().map(|r| &r.api_resource)) => {
                        tracing::info!("api resources changed; restarting garbage collector watches");
                        watch_tasks.abort_all();
                        return;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, "garbage collector rediscovery failed"),
                }
                // Periodic pass: retries actions whose owner lookups failed.
            }
        }
        if state.synced.len() < state.resources.len() {
            continue;
        }
        for action in state.plan() {
            match state.apply_action(client, &action).await {
                Ok(true) => {
                    let version = state
                        .objects
                        .get(action.id())
                        .and_then(|object| object.resource_version.clone());
                    state.applied.insert(action.id().clone(), version);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "garbage collection step failed; retrying on the next change")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn reference(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: if kind == "ReplicaSet" || kind == "Deployment" {
                "apps/v1"
            } else {
                "v1"
            }
            .to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            uid: uid.to_string(),
            controller: Some(true),
            block_owner_deletion: block.then_some(true),
        }
    }

    fn object(
        resource: usize,
        name: &str,
        uid: &str,
        owners: Vec<OwnerReference>,
        finalizers: &[&str],
        deleting: bool,
    ) -> GraphObject {
        GraphObject {
            id: ObjectId {
                resource,
                namespace: Some("default".into()),
                name: name.into(),
            },
            uid: uid.into(),
            resource_version: Some("1".into()),
            owner_references: owners,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            being_deleted: deleting,
        }
    }

    const DEPLOYMENTS: usize = 0;
    const REPLICA_SETS: usize = 1;
    const PODS: usize = 2;

    fn check(objects: &[GraphObject], expected: Expect) {
        let watched = |group: &str, kind: &str| {
            matches!(
                (group, kind),
                ("apps", "Deployment") | ("apps", "ReplicaSet") | ("", "Pod")
            )
        };
        let mut rendered = String::new();
        for action in plan_garbage_collection(objects, &watched) {
            let line = match action {
                GcAction::Delete {
                    id,
                    foreground,
                    owners_to_confirm_absent,
                    ..
                } => format!(
                    "delete {} ({}) confirm [{}]",
                    id.name,
                    if foreground {
                        "foreground"
                    } else {
                        "background"
                    },
                    owners_to_confirm_absent
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                GcAction::RemoveOwnerReferences {
                    id,
                    remaining,
                    owners_to_confirm_absent,
                    ..
                } => format!(
                    "unown {} keep [{}] confirm [{}]",
                    id.name,
                    remaining
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    owners_to_confirm_absent
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                GcAction::RemoveFinalizer { id, remaining, .. } => {
                    format!("finalize {} keep [{}]", id.name, remaining.join(","))
                }
            };
            rendered.push_str(&line);
            rendered.push('\n');
        }
        expected.assert_eq(&rendered);
    }

    #[test]
    fn dependents_of_a_vanished_owner_are_deleted_in_the_background() {
        check(
            &[
                object(
                    PODS,
                    "web-1",
                    "p1",
                    vec![reference("ReplicaSet", "web", "rs1", true)],
                    &[],
                    false,
                ),
                object(
                    PODS,
                    "web-2",
                    "p2",
                    vec![reference("ReplicaSet", "web", "rs1", true)],
                    &[],
                    false,
                ),
                object(PODS, "loner", "p3", vec![], &[], false),
            ],
            expect![[r#"
                delete web-1 (background) confirm [web]
                delete web-2 (background) confirm [web]
            "#]],
        );
    }

    #[test]
    fn live_owner_keeps_dependents() {
        check(
            &[
                object(REPLICA_SETS, "web", "rs1", vec![], &[], false),
                object(
                    PODS,
                    "web-1",
                    "p1",
                    vec![reference("ReplicaSet", "web", "rs1", true)],
                    &[],
                    false,
                ),
            ],
            expect![""],
        );
    }

    #[test]
    fn owners_of_unwatched_kinds_are_never_presumed_gone() {
        check(
            &[object(
                PODS,
                "job-pod",
                "p1",
                vec![reference("CronThing", "x", "c1", false)],
                &[],
                false,
            )],
            expect![""],
        );
    }

    #[test]
    fn only_the_vanished_reference_goes_when_another_owner_lives() {
        check(
            &[
                object(REPLICA_SETS, "a", "rsa", vec![], &[], false),
                object(
                    PODS,
                    "shared",
                    "p1",
                    vec![
                        reference("ReplicaSet", "a", "rsa", false),
                        reference("ReplicaSet", "b", "rsb", false),
                    ],
                    &[],
                    false,
                ),
            ],
            expect![[r#"
                unown shared keep [a] confirm [b]
            "#]],
        );
    }

    #[test]
    fn foreground_deletion_cascades_and_waits_for_blocking_dependents() {
        check(
            &[
                object(
                    DEPLOYMENTS,
                    "web",
                    "d1",
                    vec![],
                    &[FOREGROUND_DELETION_FINALIZER],
                    true,
                ),
                object(
                    REPLICA_SETS,
                    "web-abc",
                    "rs1",
                    vec![reference("Deployment", "web", "d1", true)],
                    &[],
                    false,
                ),
                object(
                    PODS,
                    "web-abc-1",
                    "p1",
                    vec![reference("ReplicaSet", "web-abc", "rs1", true)],
                    &[],
                    false,
                ),
            ],
            expect![[r#"
                delete web-abc (foreground) confirm []
            "#]],
        );
        // The ReplicaSet now deletes in the foreground itself; its pods go first.
        check(
            &[
                object(
                    DEPLOYMENTS,
                    "web",
                    "d1",
                    vec![],
                    &[FOREGROUND_DELETION_FINALIZER],
                    true,
                ),
                object(
                    REPLICA_SETS,
                    "web-abc",
                    "rs1",
                    vec![reference("Deployment", "web", "d1", true)],
                    &[FOREGROUND_DELETION_FINALIZER],
                    true,
                ),
                object(
                    PODS,
                    "web-abc-1",
                    "p1",
                    vec![reference("ReplicaSet", "web-abc", "rs1", true)],
                    &[],
                    false,
                ),
            ],
            expect![[r#"
                delete web-abc-1 (foreground) confirm []
            "#]],
        );
        // Without blocking dependents, the owner's finalizer comes off.
        check(
            &[object(
                DEPLOYMENTS,
                "web",
                "d1",
                vec![],
                &[FOREGROUND_DELETION_FINALIZER, "example.com/x"],
                true,
            )],
            expect![[r#"
                finalize web keep [example.com/x]
            "#]],
        );
    }

    #[test]
    fn non_blocking_dependents_are_deleted_but_do_not_hold_the_owner() {
        check(
            &[
                object(
                    REPLICA_SETS,
                    "web",
                    "rs1",
                    vec![],
                    &[FOREGROUND_DELETION_FINALIZER],
                    true,
                ),
                object(
                    PODS,
                    "web-1",
                    "p1",
                    vec![reference("ReplicaSet", "web", "rs1", false)],
                    &[],
                    false,
                ),
            ],
            expect![[r#"
                delete web-1 (foreground) confirm []
                finalize web keep []
            "#]],
        );
    }

    #[test]
    fn orphaning_strips_references_then_the_finalizer() {
        check(
            &[
                object(
                    REPLICA_SETS,
                    "web",
                    "rs1",
                    vec![],
                    &[ORPHAN_FINALIZER],
                    true,
                ),
                object(
                    PODS,
                    "web-1",
                    "p1",
                    vec![reference("ReplicaSet", "web", "rs1", true)],
                    &[],
                    false,
                ),
            ],
            expect![[r#"
                unown web-1 keep [] confirm []
            "#]],
        );
        check(
            &[
                object(
                    REPLICA_SETS,
                    "web",
                    "rs1",
                    vec![],
                    &[ORPHAN_FINALIZER],
                    true,
                ),
                object(PODS, "web-1", "p1", vec![], &[], false),
            ],
            expect![[r#"
                finalize web keep []
            "#]],
        );
    }

    #[test]
    fn group_parsing() {
        assert_eq!(group_of_api_version("apps/v1"), "apps");
        assert_eq!(group_of_api_version("v1"), "");
        assert_eq!(group_of_api_version("example.com/v1beta1"), "example.com");
    }
}
