//! Namespace lifecycle: a namespace being deleted (deletionTimestamp set,
//! `kubernetes` in `spec.finalizers`) is emptied of every namespaced resource
//! the API serves (found through discovery, so custom resources are included),
//! and once nothing is left the `kubernetes` finalizer is removed through the
//! `finalize` subresource, which lets the API server delete the namespace.
//!
//! [`plan_namespace_cleanup`] decides from what a pass observed; the loop
//! lists, deletes, and re-examines the namespace until it is empty.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::{is_api_status, ControllerError, ControllersConfig};

/// The finalizer this controller owns.
pub const KUBERNETES_FINALIZER: &str = "kubernetes";

/// One namespaced object found in a namespace being deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemainingObject {
    /// Index into the resource list the caller discovered.
    pub resource_index: usize,
    /// Object name.
    pub name: String,
    /// True when it already has a deletionTimestamp.
    pub being_deleted: bool,
    /// Its finalizers (they explain why it is still there).
    pub finalizers: Vec<String>,
}

/// What to do with a namespace in this pass.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespacePlan {
    /// Not being deleted, or our finalizer already removed.
    Nothing,
    /// Delete these objects (indices into the remaining list) and look again later.
    DeleteAndWait {
        /// Objects not yet being deleted.
        delete: Vec<usize>,
        /// Status conditions describing what remains.
        conditions: Vec<NamespaceCondition>,
    },
    /// Empty: remove the `kubernetes` finalizer, keeping the others.
    Finalize {
        /// The finalizers to keep in `spec.finalizers`.
        remaining_finalizers: Vec<String>,
    },
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    }
}

/// Decides one pass. `resource_names` names the discovered resources (e.g.
/// `pods`, `deployments.apps`) for the status messages.
pub fn plan_namespace_cleanup(
    namespace: &Namespace,
    resource_names: &[String],
    remaining: &[RemainingObject],
    now: Timestamp,
) -> NamespacePlan {
    if namespace.metadata.deletion_timestamp.is_none() {
        return NamespacePlan::Nothing;
    }
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|spec| spec.finalizers.clone())
        .unwrap_or_default();
    if !finalizers
        .iter()
        .any(|finalizer| finalizer == KUBERNETES_FINALIZER)
    {
        return NamespacePlan::Nothing;
    }
    if remaining.is_empty() {
        let remaining_finalizers = finalizers
            .into_iter()
            .filter(|finalizer| finalizer != KUBERNETES_FINALIZER)
            .collect();
        return NamespacePlan::Finalize {
            remaining_finalizers,
        };
    }
    let delete = remaining
        .iter()
        .enumerate()
        .filter(|(_, object)| !object.being_deleted)
        .map(|(index, _)| index)
        .collect();
    // Messages in upstream's wording, which `kubectl describe ns` shows.
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    let mut finalizer_counts: std::collections::BTreeMap<&str, usize> =
        std::collections::BTreeMap::new();
    for object in remaining {
        let resource = resource_names
            .get(object.resource_index)
            .map(String::as_str)
            .unwrap_or("unknown");
        *counts.entry(resource).or_insert(0) += 1;
        for finalizer in &object.finalizers {
            *finalizer_counts.entry(finalizer.as_str()).or_insert(0) += 1;
        }
    }
    let content_message = counts
        .iter()
        .map(|(resource, count)| format!("{resource} has {count} resource instances"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut conditions = vec![condition(
        "NamespaceContentRemaining",
        "True",
        "SomeResourcesRemain",
        format!("Some resources are remaining: {content_message}"),
        now,
    )];
    if !finalizer_counts.is_empty() {
        let finalizer_message = finalizer_counts
            .iter()
            .map(|(finalizer, count)| format!("{finalizer} in {count} resource instances"))
            .collect::<Vec<_>>()
            .join(", ");
        conditions.push(condition(
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {finalizer_message}"),
            now,
        ));
    }
    NamespacePlan::DeleteAndWait { delete, conditions }
}

struct Context {
    client: Client,
    requeue_after: Duration,
}

/// The namespaced resources that can be listed and deleted, with a display name.
async fn discover_namespaced_resources(
    client: &Client,
) -> Result<Vec<(ApiResource, String)>, ControllerError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|error| ControllerError::api("discover api resources", error))?;
    let mut resources = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if capabilities.scope != Scope::Namespaced
                || !capabilities.supports_operation(verbs::LIST)
                || !capabilities.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let display = if resource.group.is_empty() {
                resource.plural.clone()
            } else {
                format!("{}.{}", resource.plural, resource.group)
            };
            resources.push((resource, display));
        }
    }
    Ok(resources)
}

async fn reconcile(
    namespace: Arc<Namespace>,
    context: Arc<Context>,
) -> Result<Action, ControllerError> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();
    // Cheap check first: only namespaces being deleted need discovery and lists.
    if plan_namespace_cleanup(&namespace, &[], &[], now) == NamespacePlan::Nothing {
        return Ok(Action::await_change());
    }
    let resources = discover_namespaced_resources(&context.client).await?;
    let resource_names: Vec<String> = resources
        .iter()
        .map(|(_, display)| display.clone())
        .collect();
    let mut remaining = Vec::new();
    let mut remaining_apis = Vec::new();
    for (resource_index, (resource, display)) in resources.iter().enumerate() {
        let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), &name, resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            // A resource that vanished since discovery has nothing left.
            Err(error) if is_api_status(&error, 404) || is_api_status(&error, 405) => continue,
            Err(error) => {
                return Err(ControllerError::api(
                    format!("list {display} in namespace {name}"),
                    error,
                ))
            }
        };
        for object in list.items {
            remaining.push(RemainingObject {
                resource_index,
                name: object.metadata.name.clone().unwrap_or_default(),
                being_deleted: object.metadata.deletion_timestamp.is_some(),
                finalizers: object.metadata.finalizers.clone().unwrap_or_default(),
            });
            remaining_apis.push(api.clone());
        }
    }
    match plan_namespace_cleanup(&namespace, &resource_names, &remaining, now) {
        NamespacePlan::Nothing => Ok(Action::await_change()),
        NamespacePlan::Finalize {
            remaining_finalizers,
        } => {
            let mut finalized = (*namespace).clone();
            finalized.metadata.managed_fields = None;
            finalized
                .spec
                .get_or_insert_with(Default::default)
                .finalizers = Some(remaining_finalizers);
            let api: Api<Namespace> = Api::all(context.client.clone());
            match api
                .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
                .await
            {
                Ok(_) => tracing::info!(namespace = %name, "namespace emptied and finalized"),
                Err(error) if is_api_status(&error, 404) => {}
                Err(error) => {
                    return Err(ControllerError::api(
                        format!("finalize namespace {name}"),
                        error,
                    ))
                }
            }
            Ok(Action::await_change())
        }
        NamespacePlan::DeleteAndWait { delete, conditions } => {
            let delete_params = DeleteParams::background();
            for index in delete {
                let object = &remaining[index];
                match remaining_apis[index]
                    .delete(&object.name, &delete_params)
                    .await
                {
                    Ok(_) => {}
                    Err(error) if is_api_status(&error, 404) || is_api_status(&error, 409) => {}
                    Err(error) => {
                        let resource = &resource_names[object.resource_index];
                        return Err(ControllerError::api(
                            format!(
                                "delete {resource} {}/{} of deleted namespace",
                                name, object.name
                            ),
                            error,
                        ));
                    }
                }
            }
            let patch = serde_json::json!({ "status": { "conditions": conditions } });
            let api: Api<Namespace> = Api::all(context.client.clone());
            if let Err(error) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(namespace = %name, %error, "could not record namespace deletion conditions");
            }
            Ok(Action::requeue(context.requeue_after))
        }
    }
}

fn error_policy(
    namespace: Arc<Namespace>,
    error: &ControllerError,
    context: Arc<Context>,
) -> Action {
    tracing::warn!(namespace = ?namespace.metadata.name, %error, "namespace cleanup failed; retrying");
    Action::requeue(context.requeue_after.max(Duration::from_millis(500)))
}

/// Empties and finalizes deleted namespaces until the process stops.
pub async fn run_namespace_lifecycle(
    client: Client,
    config: ControllersConfig,
) -> Result<(), ControllerError> {
    let context = Arc::new(Context {
        client: client.clone(),
        requeue_after: config.namespace_requeue_period,
    });
    Controller::new(Api::<Namespace>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, context)
        .for_each(|_| async {})
        .await;
    Err(ControllerError::ControllerStopped {
        controller: "namespace-lifecycle",
        reason: "the namespace watch ended".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use serde_json::json;

    fn namespace(deleting: bool, finalizers: &[&str]) -> Namespace {
        let mut value = json!({"metadata": {"name": "team"}, "spec": {"finalizers": finalizers}});
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        }
        serde_json::from_value(value).unwrap()
    }

    fn object(
        resource_index: usize,
        name: &str,
        being_deleted: bool,
        finalizers: &[&str],
    ) -> RemainingObject {
        RemainingObject {
            resource_index,
            name: name.to_string(),
            being_deleted,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn live_namespace_is_left_alone() {
        let plan = plan_namespace_cleanup(
            &namespace(false, &["kubernetes"]),
            &[],
            &[object(0, "a", false, &[])],
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(plan, NamespacePlan::Nothing);
    }

    #[test]
    fn already_finalized_namespace_is_left_alone() {
        let plan = plan_namespace_cleanup(&namespace(true, &[]), &[], &[], Timestamp::UNIX_EPOCH);
        assert_eq!(plan, NamespacePlan::Nothing);
    }

    #[test]
    fn content_is_deleted_once_and_described() {
        let names = vec!["pods".to_string(), "configmaps".to_string()];
        let remaining = [
            object(0, "web", false, &[]),
            object(0, "db", true, &["example.com/protect"]),
            object(1, "settings", false, &[]),
        ];
        let plan = plan_namespace_cleanup(
            &namespace(true, &["kubernetes"]),
            &names,
            &remaining,
            Timestamp::UNIX_EPOCH,
        );
        let NamespacePlan::DeleteAndWait { delete, conditions } = plan else {
            panic!("expected deletes")
        };
        assert_eq!(delete, vec![0, 2]);
        expect![[r#"
            NamespaceContentRemaining: Some resources are remaining: configmaps has 1 resource instances, pods has 2 resource instances
            NamespaceFinalizersRemaining: Some content in the namespace has finalizers remaining: example.com/protect in 1 resource instances
        "#]]
        .assert_eq(
            &conditions
                .iter()
                .map(|c| format!("{}: {}\n", c.type_, c.message.as_deref().unwrap()))
                .collect::<String>(),
        );
    }

    #[test]
    fn empty_namespace_is_finalized_keeping_other_finalizers() {
        let plan = plan_namespace_cleanup(
            &namespace(true, &["example.com/x", "kubernetes"]),
            &[],
            &[],
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            plan,
            NamespacePlan::Finalize {
                remaining_finalizers: vec!["example.com/x".to_string()]
            }
        );
    }
}
