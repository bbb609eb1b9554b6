//! OpenAPI documents (v2 and v3) and strict unknown-field detection, both
//! derived from the k8s-openapi schemas.
//!
//! The schemas come from k8s-openapi's `schemars` implementations, generated
//! once into one table of definitions keyed by upstream names
//! (`io.k8s.api.core.v1.Pod`). That table is then shaped the way an upstream
//! API server publishes it: top-level kinds carry
//! `x-kubernetes-group-version-kind`, lists carry strategic-merge metadata
//! (kubectl's client-side apply computes patches from it), and the `paths`
//! declare the `fieldValidation` query parameter so that kubectl leaves
//! validation to the server instead of demanding a schema download it then
//! has to interpret itself.

use crate::registry::{self, ResourceInfo};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// Where definitions live in the Swagger 2.0 document.
const V2_REF_PREFIX: &str = "#/definitions/";
/// Where definitions live in the OpenAPI 3 documents.
const V3_REF_PREFIX: &str = "#/components/schemas/";
/// The upstream release the schemas describe (k8s-openapi's `v1_33`).
const KUBERNETES_VERSION: &str = "v1.33.0";

const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Strategic-merge metadata upstream attaches to list fields:
/// (definition, property, merge key, patch strategy). k8s-openapi's schemas do
/// not carry it, and without it kubectl's client-side apply would replace
/// whole lists (losing, for example, container ports added by another
/// manager) instead of merging them by key.
const PATCH_METADATA: &[(&str, &str, Option<&str>, &str)] = &[
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        Some("name"),
        "merge,retainKeys",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        Some("ip"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        Some("topologyKey"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        Some("name"),
        "merge,retainKeys",
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        Some("name"),
        "merge",
    ),
    ("io.k8s.api.core.v1.Container", "env", Some("name"), "merge"),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        Some("containerPort"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        Some("mountPath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        Some("devicePath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        Some("name"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        Some("mountPath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        Some("devicePath"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        Some("ip"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        Some("ip"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        Some("port"),
        "merge",
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", None, "merge"),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        None,
        "retainKeys",
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        Some("type"),
        "merge",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        None,
        "merge",
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        Some("uid"),
        "merge",
    ),
];

/// The upstream definition name of a served kind: `io.k8s.api.<group's first
/// label or "core">.<version>.<Kind>`.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let package = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

fn list_definition_name(info: &ResourceInfo) -> String {
    definition_name(info.group, info.version, info.list_kind)
}

/// Generate every definition reachable from the served kinds, keyed by
/// upstream name, with `$ref`s of the form `#/definitions/<name>`.
fn generate_raw_definitions() -> BTreeMap<String, Value> {
    use k8s_openapi::api::{apps, autoscaling, coordination, core, discovery, events};
    use k8s_openapi::api::{networking, policy, storage};
    use k8s_openapi::apimachinery::pkg::apis::meta;

    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
        let _reference = generator.subschema_for::<T>();
    }

    let mut generator = SchemaSettings::draft07()
        .with(|settings| {
            settings.definitions_path = "/definitions".into();
            settings.meta_schema = None;
            settings.transforms = Vec::new();
        })
        .into_generator();
    let g = &mut generator;
    add::<core::v1::Binding>(g);
    add::<core::v1::ConfigMap>(g);
    add::<core::v1::Endpoints>(g);
    add::<core::v1::Event>(g);
    add::<core::v1::Namespace>(g);
    add::<core::v1::Node>(g);
    add::<core::v1::PersistentVolumeClaim>(g);
    add::<core::v1::PersistentVolume>(g);
    add::<core::v1::Pod>(g);
    add::<core::v1::Secret>(g);
    add::<core::v1::ServiceAccount>(g);
    add::<core::v1::Service>(g);
    add::<apps::v1::DaemonSet>(g);
    add::<apps::v1::Deployment>(g);
    add::<apps::v1::ReplicaSet>(g);
    add::<apps::v1::StatefulSet>(g);
    add::<events::v1::Event>(g);
    add::<networking::v1::IngressClass>(g);
    add::<networking::v1::Ingress>(g);
    add::<networking::v1::NetworkPolicy>(g);
    add::<storage::v1::StorageClass>(g);
    add::<coordination::v1::Lease>(g);
    add::<discovery::v1::EndpointSlice>(g);
    add::<autoscaling::v1::Scale>(g);
    add::<policy::v1::Eviction>(g);
    add::<meta::v1::DeleteOptions>(g);
    add::<meta::v1::Status>(g);
    add::<meta::v1::WatchEvent<k8s_openapi::apimachinery::pkg::runtime::RawExtension>>(g);
    add::<meta::v1::Patch>(g);
    add::<meta::v1::ListMeta>(g);
    add::<meta::v1::APIResourceList>(g);
    generator.take_definitions(false).into_iter().collect()
}

/// Shape the generated definitions the way upstream publishes them.
fn build_definitions() -> BTreeMap<String, Value> {
    let mut definitions = generate_raw_definitions();

    // The WatchEvent generic may be named after its parameter; upstream has one.
    if !definitions.contains_key(WATCH_EVENT) {
        if let Some(name) = definitions
            .keys()
            .find(|name| name.contains("WatchEvent"))
            .cloned()
        {
            let schema = definitions.remove(&name).unwrap_or(Value::Null);
            definitions.insert(WATCH_EVENT.to_string(), schema);
        }
    }

    for schema in definitions.values_mut() {
        // k8s-openapi marks `metadata` required because its Rust field is not
        // an Option; upstream never requires it, and kubectl 1.27's
        // client-side validation would reject manifests relying on that.
        if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|field| field != "metadata");
            if required.is_empty() {
                if let Some(object) = schema.as_object_mut() {
                    object.remove("required");
                }
            }
        }
    }

    // Upstream describes both as strings with a format; kubectl's validators
    // and `explain` understand that form (a bare vendor extension reads as
    // "no type").
    if let Some(schema) = definitions.get_mut(INT_OR_STRING) {
        let description = schema.get("description").cloned().unwrap_or(Value::Null);
        *schema = json!({"description": description, "type": "string", "format": "int-or-string"});
    }
    if let Some(schema) = definitions.get_mut(QUANTITY) {
        let description = schema.get("description").cloned().unwrap_or(Value::Null);
        *schema = json!({"description": description, "type": "string"});
    }

    for (definition, property, merge_key, strategy) in PATCH_METADATA {
        let Some(property_schema) = definitions
            .get_mut(*definition)
            .and_then(|schema| schema.pointer_mut(&format!("/properties/{property}")))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if let Some(merge_key) = merge_key {
            property_schema.insert("x-kubernetes-patch-merge-key".into(), json!(merge_key));
        }
        property_schema.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
    }

    for info in registry::resources() {
        let gvk = json!([{"group": info.group, "kind": info.kind, "version": info.version}]);
        let name = definition_name(info.group, info.version, info.kind);
        if let Some(object) = definitions.get_mut(&name).and_then(Value::as_object_mut) {
            object.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
        if info.is_create_only() {
            continue;
        }
        let item_name = definition_name(info.group, info.version, info.kind);
        let list_gvk =
            json!([{"group": info.group, "kind": info.list_kind, "version": info.version}]);
        definitions.insert(
            list_definition_name(info),
            json!({
                "description": format!("{} is a list of {} objects.", info.list_kind, info.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {
                        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                        "type": "string"
                    },
                    "items": {
                        "description": format!("Items is the list of {} objects.", info.kind),
                        "type": "array",
                        "items": {"$ref": format!("{V2_REF_PREFIX}{item_name}")}
                    },
                    "kind": {
                        "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                        "type": "string"
                    },
                    "metadata": {
                        "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                        "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
                    }
                },
                "required": ["items"],
                "x-kubernetes-group-version-kind": list_gvk
            }),
        );
    }

    let tag = |definitions: &mut BTreeMap<String, Value>, name: &str, gvks: Value| {
        if let Some(object) = definitions.get_mut(name).and_then(Value::as_object_mut) {
            object.insert("x-kubernetes-group-version-kind".into(), gvks);
        }
    };
    tag(
        &mut definitions,
        "io.k8s.api.autoscaling.v1.Scale",
        json!([{"group": "autoscaling", "kind": "Scale", "version": "v1"}]),
    );
    tag(
        &mut definitions,
        "io.k8s.api.policy.v1.Eviction",
        json!([{"group": "policy", "kind": "Eviction", "version": "v1"}]),
    );
    tag(
        &mut definitions,
        STATUS,
        json!([{"group": "", "kind": "Status", "version": "v1"}]),
    );
    // DeleteOptions and WatchEvent are registered in every group upstream.
    for (name, kind) in [
        (DELETE_OPTIONS, "DeleteOptions"),
        (WATCH_EVENT, "WatchEvent"),
    ] {
        let mut gvks: Vec<Value> = registry::group_versions()
            .into_iter()
            .map(|(group, version)| json!({"group": group, "kind": kind, "version": version}))
            .collect();
        gvks.push(json!({"group": "autoscaling", "kind": kind, "version": "v1"}));
        gvks.push(json!({"group": "policy", "kind": kind, "version": "v1"}));
        tag(&mut definitions, name, Value::Array(gvks));
    }
    definitions
}

/// The shaped definitions, v2 reference form.
pub(crate) fn definitions() -> &'static BTreeMap<String, Value> {
    static DEFINITIONS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DEFINITIONS.get_or_init(build_definitions)
}

/// Every definition name referenced from `value`, directly.
fn collect_references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                if key == "$ref" {
                    if let Some(name) = child.as_str().and_then(|r| r.strip_prefix(V2_REF_PREFIX)) {
                        found.insert(name.to_string());
                    }
                } else {
                    collect_references(child, found);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_references(item, found)),
        _ => {}
    }
}

/// The closure of `roots` under `$ref`.
fn reachable_definitions(roots: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let all = definitions();
    let mut reached = BTreeSet::new();
    let mut pending: Vec<String> = roots.into_iter().collect();
    while let Some(name) = pending.pop() {
        let Some(schema) = all.get(&name) else {
            continue;
        };
        if !reached.insert(name) {
            continue;
        }
        let mut references = BTreeSet::new();
        collect_references(schema, &mut references);
        pending.extend(references.into_iter().filter(|r| !reached.contains(r)));
    }
    reached
}

/// Rewrite a v2 schema into its OpenAPI 3 form: refs under
/// `#/components/schemas/`, and a `$ref` with sibling keywords wrapped in
/// `allOf`, since OpenAPI 3.0 ignores siblings of `$ref` (upstream does the same).
fn to_v3_schema(value: &Value) -> Value {
    match value {
        Value::Object(object) => {
            let mut converted = Map::new();
            for (key, child) in object {
                if key == "$ref" {
                    let target = child.as_str().unwrap_or_default();
                    let target = target.replacen(V2_REF_PREFIX, V3_REF_PREFIX, 1);
                    converted.insert(key.clone(), Value::String(target));
                } else {
                    converted.insert(key.clone(), to_v3_schema(child));
                }
            }
            if converted.len() > 1 {
                if let Some(reference) = converted.remove("$ref") {
                    let mut wrapped = Map::new();
                    wrapped.insert("allOf".into(), json!([{"$ref": reference}]));
                    wrapped.extend(converted);
                    return Value::Object(wrapped);
                }
            }
            Value::Object(converted)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3_schema).collect()),
        other => other.clone(),
    }
}

/// One query or path parameter of an operation.
struct Parameter {
    name: &'static str,
    location: &'static str,
    kind: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, kind: &'static str, description: &'static str) -> Parameter {
    Parameter {
        name,
        location: "query",
        kind,
        description,
    }
}

const PRETTY: Parameter = query(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
);
const DRY_RUN: Parameter = query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Parameter = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const FIELD_VALIDATION: Parameter = query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: Parameter = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const LIST_PARAMETERS: &[Parameter] = &[
    query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion."),
    query("continue", "string", "The continue option should be set when retrieving more results from the server."),
    query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    query("limit", "integer", "limit is a maximum number of responses to return for a list call."),
    query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
    query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    query("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`."),
    query("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
    query("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
];
const DELETE_PARAMETERS: &[Parameter] = &[
    query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately."),
    query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7."),
    query("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
];

/// What an operation reads or writes.
#[derive(Clone, Copy, PartialEq)]
enum Body {
    None,
    Object,
    Patch,
    DeleteOptions,
}

/// One HTTP operation on one path, in a form both documents render.
struct Operation {
    method: &'static str,
    operation_id: String,
    description: String,
    action: &'static str,
    gvk: (String, String, String),
    parameters: Vec<&'static Parameter>,
    body: Body,
    /// Definition name of the request body when `body` is `Object`.
    request: Option<String>,
    /// Definition name of the response, or None for plain text / streams.
    response: Option<String>,
    response_code: &'static str,
}

/// One path with its operations and path-level parameters.
struct PathItem {
    path: String,
    path_parameters: Vec<&'static str>,
    operations: Vec<Operation>,
}

/// "Core", "Apps", "Networking", ... as upstream operation ids spell them.
fn operation_group_word(group: &str, version: &str) -> String {
    let label = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    let mut word = String::new();
    let mut chars = label.chars();
    if let Some(first) = chars.next() {
        word.extend(first.to_uppercase());
        word.extend(chars);
    }
    let mut version_chars = version.chars();
    if let Some(first) = version_chars.next() {
        word.extend(first.to_uppercase());
        word.extend(version_chars);
    }
    word
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every path of one resource with its operations, upstream style.
fn resource_paths(info: &ResourceInfo) -> Vec<PathItem> {
    let prefix = format!("/{}", group_version_path(info.group, info.version));
    let word = operation_group_word(info.group, info.version);
    let scope_word = if info.namespaced { "Namespaced" } else { "" };
    let collection_path = if info.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{prefix}/{}", info.plural)
    };
    let item_path = format!("{collection_path}/{{name}}");
    let gvk = |kind: &str| {
        (
            info.group.to_string(),
            info.version.to_string(),
            kind.to_string(),
        )
    };
    let object = definition_name(info.group, info.version, info.kind);
    let mut paths = Vec::new();
    let collection_parameters: Vec<&'static str> = if info.namespaced {
        vec!["namespace", "pretty"]
    } else {
        vec!["pretty"]
    };
    let item_parameters: Vec<&'static str> = if info.namespaced {
        vec!["name", "namespace", "pretty"]
    } else {
        vec!["name", "pretty"]
    };
    let writes: Vec<&'static Parameter> = vec![&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION];
    let has = |verb: &str| info.verbs.contains(&verb);

    let mut collection_operations = Vec::new();
    if has("list") {
        collection_operations.push(Operation {
            method: "get",
            operation_id: format!("list{word}{scope_word}{}", info.kind),
            description: format!("list or watch objects of kind {}", info.kind),
            action: "list",
            gvk: gvk(info.kind),
            parameters: LIST_PARAMETERS.iter().collect(),
            body: Body::None,
            request: None,
            response: Some(list_definition_name(info)),
            response_code: "200",
        });
    }
    if has("create") {
        collection_operations.push(Operation {
            method: "post",
            operation_id: format!("create{word}{scope_word}{}", info.kind),
            description: format!("create a {}", info.kind),
            action: "post",
            gvk: gvk(info.kind),
            parameters: writes.clone(),
            body: Body::Object,
            request: Some(object.clone()),
            response: Some(object.clone()),
            response_code: "201",
        });
    }
    if has("deletecollection") {
        let mut parameters: Vec<&'static Parameter> = LIST_PARAMETERS.iter().collect();
        parameters.push(&DRY_RUN);
        parameters.extend(DELETE_PARAMETERS.iter());
        collection_operations.push(Operation {
            method: "delete",
            operation_id: format!("delete{word}Collection{scope_word}{}", info.kind),
            description: format!("delete collection of {}", info.kind),
            action: "deletecollection",
            gvk: gvk(info.kind),
            parameters,
            body: Body::DeleteOptions,
            request: None,
            response: Some(STATUS.to_string()),
            response_code: "200",
        });
    }
    if !collection_operations.is_empty() {
        paths.push(PathItem {
            path: collection_path.clone(),
            path_parameters: collection_parameters,
            operations: collection_operations,
        });
    }
    if info.namespaced && has("list") {
        paths.push(PathItem {
            path: format!("{prefix}/{}", info.plural),
            path_parameters: vec!["pretty"],
            operations: vec![Operation {
                method: "get",
                operation_id: format!("list{word}{}ForAllNamespaces", info.kind),
                description: format!("list or watch objects of kind {}", info.kind),
                action: "list",
                gvk: gvk(info.kind),
                parameters: LIST_PARAMETERS.iter().collect(),
                body: Body::None,
                request: None,
                response: Some(list_definition_name(info)),
                response_code: "200",
            }],
        });
    }

    let mut item_operations = Vec::new();
    if has("get") {
        item_operations.push(Operation {
            method: "get",
            operation_id: format!("read{word}{scope_word}{}", info.kind),
            description: format!("read the specified {}", info.kind),
            action: "get",
            gvk: gvk(info.kind),
            parameters: Vec::new(),
            body: Body::None,
            request: None,
            response: Some(object.clone()),
            response_code: "200",
        });
    }
    if has("update") {
        item_operations.push(Operation {
            method: "put",
            operation_id: format!("replace{word}{scope_word}{}", info.kind),
            description: format!("replace the specified {}", info.kind),
            action: "put",
            gvk: gvk(info.kind),
            parameters: writes.clone(),
            body: Body::Object,
            request: Some(object.clone()),
            response: Some(object.clone()),
            response_code: "200",
        });
    }
    if has("patch") {
        let mut parameters = writes.clone();
        parameters.push(&FORCE);
        item_operations.push(Operation {
            method: "patch",
            operation_id: format!("patch{word}{scope_word}{}", info.kind),
            description: format!("partially update the specified {}", info.kind),
            action: "patch",
            gvk: gvk(info.kind),
            parameters,
            body: Body::Patch,
            request: None,
            response: Some(object.clone()),
            response_code: "200",
        });
    }
    if has("delete") {
        let mut parameters: Vec<&'static Parameter> = vec![&DRY_RUN];
        parameters.extend(DELETE_PARAMETERS.iter());
        item_operations.push(Operation {
            method: "delete",
            operation_id: format!("delete{word}{scope_word}{}", info.kind),
            description: format!("delete a {}", info.kind),
            action: "delete",
            gvk: gvk(info.kind),
            parameters,
            body: Body::DeleteOptions,
            request: None,
            response: Some(STATUS.to_string()),
            response_code: "200",
        });
    }
    if !item_operations.is_empty() {
        paths.push(PathItem {
            path: item_path.clone(),
            path_parameters: item_parameters.clone(),
            operations: item_operations,
        });
    }

    for subresource in info.subresources {
        let sub_word = {
            let mut chars = subresource.name.chars();
            let mut word = String::new();
            if let Some(first) = chars.next() {
                word.extend(first.to_uppercase());
                word.extend(chars);
            }
            word
        };
        let returned = definition_name(subresource.group, subresource.version, subresource.kind);
        let returned_gvk = (
            subresource.group.to_string(),
            subresource.version.to_string(),
            subresource.kind.to_string(),
        );
        let is_connect = subresource.kind.ends_with("Options");
        let path = format!("{item_path}/{}", subresource.name);
        let mut operations = Vec::new();
        for verb in subresource.verbs {
            let (method, action, prefix_word) = match (*verb, is_connect) {
                ("get", true) => ("get", "connect", "connectGet"),
                ("create", true) => ("post", "connect", "connectPost"),
                ("update", true) => ("put", "connect", "connectPut"),
                ("patch", true) => ("patch", "connect", "connectPatch"),
                ("delete", true) => ("delete", "connect", "connectDelete"),
                ("get", false) => ("get", "get", "read"),
                ("create", false) => ("post", "post", "create"),
                ("update", false) => ("put", "put", "replace"),
                ("patch", false) => ("patch", "patch", "patch"),
                _ => continue,
            };
            let text_response = is_connect || subresource.name == "log";
            let parameters: Vec<&'static Parameter> = match (method, is_connect) {
                (_, true) | ("get", _) => Vec::new(),
                ("patch", false) => vec![&DRY_RUN, &FIELD_MANAGER, &FIELD_VALIDATION, &FORCE],
                _ => writes.clone(),
            };
            let body = match (method, is_connect) {
                (_, true) | ("get", _) => Body::None,
                ("patch", _) => Body::Patch,
                _ => Body::Object,
            };
            operations.push(Operation {
                method,
                operation_id: format!("{prefix_word}{word}{scope_word}{}{sub_word}", info.kind),
                description: format!(
                    "{action} {} of the specified {}",
                    subresource.name, info.kind
                ),
                action,
                gvk: returned_gvk.clone(),
                parameters,
                body,
                request: (body == Body::Object).then(|| returned.clone()),
                response: (!text_response).then(|| returned.clone()),
                response_code: if method == "post" && !is_connect {
                    "201"
                } else {
                    "200"
                },
            });
        }
        if !operations.is_empty() {
            paths.push(PathItem {
                path,
                path_parameters: item_parameters.clone(),
                operations,
            });
        }
    }
    paths
}

fn path_parameter(name: &str) -> Parameter {
    match name {
        "name" => Parameter {
            name: "name",
            location: "path",
            kind: "string",
            description: "name of the resource",
        },
        "namespace" => Parameter {
            name: "namespace",
            location: "path",
            kind: "string",
            description: "object name and auth scope, such as for teams and projects",
        },
        _ => PRETTY,
    }
}

const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

fn v2_parameter(parameter: &Parameter) -> Value {
    let mut rendered = json!({
        "description": parameter.description,
        "in": parameter.location,
        "name": parameter.name,
        "type": parameter.kind,
        "uniqueItems": true,
    });
    if parameter.location == "path" {
        rendered["required"] = json!(true);
    }
    rendered
}

fn v3_parameter(parameter: &Parameter) -> Value {
    let mut rendered = json!({
        "name": parameter.name,
        "in": parameter.location,
        "description": parameter.description,
        "schema": {"type": parameter.kind, "uniqueItems": true},
    });
    if parameter.location == "path" {
        rendered["required"] = json!(true);
    }
    rendered
}

fn gvk_extension(gvk: &(String, String, String)) -> Value {
    json!({"group": gvk.0, "kind": gvk.2, "version": gvk.1})
}

fn tag_of(group: &str, version: &str) -> String {
    let label = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("{label}_{version}")
}

fn render_v2_path(item: &PathItem, tag: &str) -> Value {
    let mut rendered = Map::new();
    for operation in &item.operations {
        let mut parameters: Vec<Value> = Vec::new();
        match operation.body {
            Body::None => {}
            Body::Object => parameters.push(json!({
                "in": "body", "name": "body", "required": true,
                "schema": {"$ref": format!("{V2_REF_PREFIX}{}", operation.request.clone().unwrap_or_default())}
            })),
            Body::Patch => parameters.push(json!({
                "in": "body", "name": "body", "required": true,
                "schema": {"$ref": format!("{V2_REF_PREFIX}{PATCH}")}
            })),
            Body::DeleteOptions => parameters.push(json!({
                "in": "body", "name": "body",
                "schema": {"$ref": format!("{V2_REF_PREFIX}{DELETE_OPTIONS}")}
            })),
        }
        parameters.extend(operation.parameters.iter().map(|p| v2_parameter(p)));
        let response = match &operation.response {
            Some(name) => {
                json!({"description": "OK", "schema": {"$ref": format!("{V2_REF_PREFIX}{name}")}})
            }
            None => json!({"description": "OK", "schema": {"type": "string"}}),
        };
        let consumes: Vec<&str> = match operation.body {
            Body::Patch => PATCH_CONTENT_TYPES.to_vec(),
            _ => vec!["*/*"],
        };
        rendered.insert(
            operation.method.to_string(),
            json!({
                "consumes": consumes,
                "description": operation.description,
                "operationId": operation.operation_id,
                "parameters": parameters,
                "produces": ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
                "responses": {
                    operation.response_code: response,
                    "401": {"description": "Unauthorized"}
                },
                "schemes": ["https"],
                "tags": [tag],
                "x-kubernetes-action": operation.action,
                "x-kubernetes-group-version-kind": gvk_extension(&operation.gvk),
            }),
        );
    }
    let path_parameters: Vec<Value> = item
        .path_parameters
        .iter()
        .map(|name| v2_parameter(&path_parameter(name)))
        .collect();
    rendered.insert("parameters".into(), Value::Array(path_parameters));
    Value::Object(rendered)
}

fn render_v3_path(item: &PathItem, tag: &str) -> Value {
    let schema_ref = |name: &str| json!({"$ref": format!("{V3_REF_PREFIX}{name}")});
    let mut rendered = Map::new();
    for operation in &item.operations {
        let mut rendered_operation = json!({
            "tags": [tag],
            "description": operation.description,
            "operationId": operation.operation_id,
            "parameters": operation.parameters.iter().map(|p| v3_parameter(p)).collect::<Vec<_>>(),
        });
        match operation.body {
            Body::None => {}
            Body::Object => {
                let schema = schema_ref(operation.request.as_deref().unwrap_or_default());
                rendered_operation["requestBody"] = json!({
                    "content": {"*/*": {"schema": schema}},
                    "required": true
                });
            }
            Body::Patch => {
                let content: Map<String, Value> = PATCH_CONTENT_TYPES
                    .iter()
                    .map(|content_type| {
                        (
                            content_type.to_string(),
                            json!({"schema": schema_ref(PATCH)}),
                        )
                    })
                    .collect();
                rendered_operation["requestBody"] = json!({"content": content, "required": true});
            }
            Body::DeleteOptions => {
                rendered_operation["requestBody"] =
                    json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}});
            }
        }
        let content = match &operation.response {
            Some(name) => json!({
                "application/json": {"schema": schema_ref(name)},
                "application/yaml": {"schema": schema_ref(name)},
                "application/vnd.kubernetes.protobuf": {"schema": schema_ref(name)}
            }),
            None => json!({"*/*": {"schema": {"type": "string"}}}),
        };
        rendered_operation["responses"] = json!({
            operation.response_code: {"description": "OK", "content": content},
            "401": {"description": "Unauthorized"}
        });
        rendered_operation["x-kubernetes-action"] = json!(operation.action);
        rendered_operation["x-kubernetes-group-version-kind"] = gvk_extension(&operation.gvk);
        rendered.insert(operation.method.to_string(), rendered_operation);
    }
    let path_parameters: Vec<Value> = item
        .path_parameters
        .iter()
        .map(|name| v3_parameter(&path_parameter(name)))
        .collect();
    rendered.insert("parameters".into(), Value::Array(path_parameters));
    Value::Object(rendered)
}

/// Definitions every document carries: what the verbs themselves read and write.
fn common_roots() -> Vec<String> {
    [
        DELETE_OPTIONS,
        STATUS,
        WATCH_EVENT,
        PATCH,
        API_RESOURCE_LIST,
    ]
    .iter()
    .map(|name| name.to_string())
    .collect()
}

/// Definitions a group-version's resources read and write.
fn roots_of_group_version(group: &str, version: &str) -> Vec<String> {
    let mut roots = common_roots();
    for info in registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        roots.push(definition_name(info.group, info.version, info.kind));
        roots.push(list_definition_name(info));
        for subresource in info.subresources {
            roots.push(definition_name(
                subresource.group,
                subresource.version,
                subresource.kind,
            ));
        }
    }
    roots
}

fn build_v2() -> Value {
    let all = definitions();
    let mut roots = common_roots();
    for (group, version) in registry::group_versions() {
        roots.extend(roots_of_group_version(group, version));
    }
    let reached = reachable_definitions(roots);
    let rendered_definitions: Map<String, Value> = reached
        .iter()
        .map(|name| (name.clone(), all[name].clone()))
        .collect();
    let mut paths = BTreeMap::new();
    for info in registry::resources() {
        let tag = tag_of(info.group, info.version);
        for item in resource_paths(info) {
            paths.insert(item.path.clone(), render_v2_path(&item, &tag));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": rendered_definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey"
            }
        },
        "security": [{"BearerToken": []}]
    })
}

fn build_v3_document(group: &str, version: &str) -> Value {
    let all = definitions();
    let reached = reachable_definitions(roots_of_group_version(group, version));
    let schemas: Map<String, Value> = reached
        .iter()
        .map(|name| (name.clone(), to_v3_schema(&all[name])))
        .collect();
    let tag = tag_of(group, version);
    let mut paths = BTreeMap::new();
    for info in registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        for item in resource_paths(info) {
            paths.insert(item.path.clone(), render_v3_path(&item, &tag));
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header"
                }
            }
        },
        "security": [{"BearerToken": []}]
    })
}

/// The v3 documents keyed by index path, with the hash of each.
fn v3_documents() -> &'static BTreeMap<String, (Value, String)> {
    static DOCUMENTS: OnceLock<BTreeMap<String, (Value, String)>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        registry::group_versions()
            .into_iter()
            .map(|(group, version)| {
                let document = build_v3_document(group, version);
                let bytes = serde_json::to_vec(&document).unwrap_or_default();
                let hash = Sha256::digest(&bytes)
                    .iter()
                    .map(|byte| format!("{byte:02X}"))
                    .collect::<String>();
                (group_version_path(group, version), (document, hash))
            })
            .collect()
    })
}

/// The Swagger 2.0 document served at /openapi/v2.
pub fn openapi_v2() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build_v2)
}

/// The media type kubectl and client-go ask `/openapi/v2` for (Accept).
pub const OPENAPI_V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The Content-Type to answer with: the same name with `.` for `@`, because
/// Go's MIME parser (and so kubectl) rejects `@` in a media type.
pub const OPENAPI_V2_PROTOBUF_RESPONSE_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The Swagger 2.0 document as gnostic's `openapi.v2.Document` protobuf,
/// served at /openapi/v2 when the Accept header names
/// [`OPENAPI_V2_PROTOBUF_CONTENT_TYPE`], with Content-Type
/// [`OPENAPI_V2_PROTOBUF_RESPONSE_CONTENT_TYPE`] (kubectl 1.27 accepts
/// nothing else).
pub fn openapi_v2_protobuf() -> &'static [u8] {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    DOCUMENT.get_or_init(|| crate::openapi_proto::encode_document(openapi_v2()))
}

/// The index served at /openapi/v3: `{"paths": {"api/v1": {"serverRelativeURL": ...}, ...}}`.
pub fn openapi_v3_index() -> Value {
    let paths: Map<String, Value> = v3_documents()
        .iter()
        .map(|(path, (_, hash))| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// The content hash of the v3 document at `path`, as the index advertises it
/// (clients cache a document forever under its hash).
pub fn openapi_v3_hash(path: &str) -> Option<&'static str> {
    v3_documents().get(path).map(|(_, hash)| hash.as_str())
}

/// The OpenAPI 3 document for one path of the index ("api/v1", "apis/apps/v1", ...).
pub fn openapi_v3_document(path: &str) -> Option<&'static Value> {
    v3_documents()
        .get(path.trim_matches('/'))
        .map(|(document, _)| document)
}

/// Paths of fields in `obj` that the schema of `info` does not know, in the
/// form upstream's strict decoder reports them: `spec.containers[0].foo`.
pub fn unknown_fields(info: &ResourceInfo, obj: &Value) -> Vec<String> {
    let name = definition_name(info.group, info.version, info.kind);
    let mut unknown = Vec::new();
    let Some(schema) = definitions().get(&name) else {
        return unknown;
    };
    let Some(object) = obj.as_object() else {
        return unknown;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    for (key, value) in object {
        if key == "apiVersion" || key == "kind" {
            continue;
        }
        match properties.and_then(|p| p.get(key)) {
            Some(field_schema) => walk(field_schema, value, key, &mut unknown),
            None => unknown.push(key.clone()),
        }
    }
    unknown
}

/// Follow `$ref`s (with or without siblings) to the schema that describes a value.
fn resolve(schema: &Value) -> &Value {
    let mut current = schema;
    // Bounded: definitions never chain refs more than a couple of times.
    for _ in 0..8 {
        let Some(target) = current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(V2_REF_PREFIX))
            .and_then(|name| definitions().get(name))
        else {
            break;
        };
        current = target;
    }
    current
}

fn walk(schema: &Value, value: &Value, path: &str, unknown: &mut Vec<String>) {
    let schema = resolve(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(object) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if properties.is_none() && additional.is_none() {
                // A free-form object (RawExtension, FieldsV1) or a leaf type
                // that happens to receive an object: nothing to check here.
                return;
            }
            for (key, child) in object {
                let child_path = format!("{path}.{key}");
                if let Some(child_schema) = properties.and_then(|p| p.get(key)) {
                    walk(child_schema, child, &child_path, unknown);
                } else if let Some(additional) = additional {
                    if additional.is_object() {
                        walk(additional, child, &child_path, unknown);
                    }
                } else {
                    unknown.push(child_path);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{index}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
        registry::find_kind(api_version, kind).expect("kind is served")
    }

    #[test]
    fn every_served_kind_has_a_tagged_definition_and_list() {
        for resource in registry::resources() {
            let name = definition_name(resource.group, resource.version, resource.kind);
            let schema = definitions()
                .get(&name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(
                schema["x-kubernetes-group-version-kind"][0]["kind"], resource.kind,
                "{name}"
            );
            if !resource.is_create_only() {
                assert!(definitions().contains_key(&list_definition_name(resource)));
            }
        }
    }

    #[test]
    fn pod_spec_containers_property_carries_merge_metadata() {
        let document = openapi_v3_document("api/v1").unwrap();
        let containers = &document["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]
            ["properties"]["containers"];
        expect![[r##"
            {
              "description": "List of containers belonging to the pod. Containers cannot currently be added or removed. There must be at least one container in a Pod. Cannot be updated.",
              "type": "array",
              "items": {
                "$ref": "#/components/schemas/io.k8s.api.core.v1.Container"
              },
              "x-kubernetes-patch-merge-key": "name",
              "x-kubernetes-patch-strategy": "merge"
            }"##]]
        .assert_eq(&serde_json::to_string_pretty(containers).unwrap());
    }

    #[test]
    fn v3_wraps_refs_with_siblings_in_all_of() {
        let document = openapi_v3_document("apis/apps/v1").unwrap();
        let metadata = &document["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
            ["properties"]["metadata"];
        assert_eq!(
            metadata["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(metadata.get("$ref").is_none());
        let schemas = document["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
        assert!(schemas.contains_key(DELETE_OPTIONS));
        // Only what apps/v1 reaches: no Services or NetworkPolicies.
        assert!(!schemas.contains_key("io.k8s.api.core.v1.Service"));
        assert!(!schemas.contains_key("io.k8s.api.networking.v1.NetworkPolicy"));
    }

    #[test]
    fn index_lists_every_group_version() {
        let index = openapi_v3_index();
        let paths: Vec<&String> = index["paths"].as_object().unwrap().keys().collect();
        expect![[r#"
            [
                "api/v1",
                "apis/apps/v1",
                "apis/coordination.k8s.io/v1",
                "apis/discovery.k8s.io/v1",
                "apis/events.k8s.io/v1",
                "apis/networking.k8s.io/v1",
                "apis/storage.k8s.io/v1",
            ]
        "#]]
        .assert_debug_eq(&paths);
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = openapi_v3_hash("apis/apps/v1").unwrap();
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
        assert_eq!(hash.len(), 64);
    }

    /// kubectl looks for a PATCH operation tagged with the kind's GVK that
    /// declares `fieldValidation` as a query parameter.
    #[test]
    fn patch_operations_declare_field_validation() {
        let document = openapi_v3_document("api/v1").unwrap();
        let patch = &document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        expect![[r#"
            {"group":"","kind":"Pod","version":"v1"}"#]]
        .assert_eq(&patch["x-kubernetes-group-version-kind"].to_string());
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let v2_patch = &openapi_v2()["paths"]
            ["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(v2_patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(v2_patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let namespace_patch = &openapi_v2()["paths"]["/api/v1/namespaces/{name}"]["patch"];
        assert_eq!(namespace_patch["operationId"], "patchCoreV1Namespace");
    }

    #[test]
    fn v2_references_resolve_and_leaves_match_upstream() {
        let document = openapi_v2();
        let definitions = document["definitions"].as_object().unwrap();
        let mut references = BTreeSet::new();
        collect_references(document, &mut references);
        for reference in &references {
            assert!(definitions.contains_key(reference), "dangling {reference}");
        }
        expect![[r#"{"type":"string","format":"int-or-string"}"#]].assert_eq(
            &json!({
                "type": definitions[INT_OR_STRING]["type"],
                "format": definitions[INT_OR_STRING]["format"]
            })
            .to_string(),
        );
        assert!(definitions["io.k8s.api.core.v1.Pod"]
            .get("required")
            .is_none());
        assert_eq!(
            definitions["io.k8s.api.core.v1.Container"]["required"],
            json!(["name"])
        );
    }

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  labels: {app: web, tier: frontend}
  annotations: {example.com/owner: team-a}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 10
  nodeSelector: {kubernetes.io/os: linux}
  securityContext: {runAsNonRoot: false}
  initContainers:
  - name: init
    image: busybox:1.36
    command: [sh, -c, "echo ready > /work/ready"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: nginx
    image: nginx:1.27
    imagePullPolicy: IfNotPresent
    ports:
    - {name: http, containerPort: 80, protocol: TCP}
    env:
    - {name: MODE, value: production}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 1, memory: 128Mi}
    readinessProbe:
      httpGet: {path: /, port: http}
      periodSeconds: 5
    livenessProbe:
      tcpSocket: {port: 80}
    volumeMounts:
    - {name: work, mountPath: /usr/share/nginx/html, readOnly: true}
    - {name: config, mountPath: /etc/nginx/conf.d}
  volumes:
  - name: work
    emptyDir: {}
  - name: config
    configMap: {name: nginx-config, defaultMode: 420, items: [{key: default.conf, path: default.conf}]}
  tolerations:
  - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
"#;

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  revisionHistoryLimit: 5
  selector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [frontend]}]
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}
  template:
    metadata:
      labels: {app: web, tier: frontend}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{containerPort: 80}]
        startupProbe:
          exec: {command: [cat, /tmp/healthy]}
          failureThreshold: 30
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: web}}
status:
  replicas: 3
  conditions: [{type: Available, status: "True", lastUpdateTime: "2024-01-01T00:00:00Z"}]
"#;

    const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080, protocol: TCP}
  - {name: https, port: 443, targetPort: 8443}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  externalTrafficPolicy: Local
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv4]
"#;

    fn parse(manifest: &str) -> Value {
        serde_yaml::from_str(manifest).unwrap()
    }

    #[test]
    fn realistic_manifests_have_no_unknown_fields() {
        for (api_version, kind, manifest) in [
            ("v1", "Pod", POD),
            ("apps/v1", "Deployment", DEPLOYMENT),
            ("v1", "Service", SERVICE),
        ] {
            let found = unknown_fields(info(api_version, kind), &parse(manifest));
            assert!(found.is_empty(), "{kind}: {found:?}");
        }
    }

    #[test]
    fn misspelled_and_misplaced_fields_are_reported_with_paths() {
        let mut pod = parse(POD);
        pod["spec"]["containers"][0]["imagee"] = json!("nginx");
        pod["metadata"]["foo"] = json!("bar");
        pod["spec"]["volumes"][1]["configMap"]["items"][0]["mode2"] = json!(1);
        pod["spec"]["containers"][0]["resources"]["requests"]["gpu"] = json!("1");
        pod["top"] = json!(1);
        expect![[r#"
            [
                "metadata.foo",
                "spec.containers[0].imagee",
                "spec.volumes[1].configMap.items[0].mode2",
                "top",
            ]
        "#]]
        .assert_debug_eq(&unknown_fields(info("v1", "Pod"), &pod));

        let mut deployment = parse(DEPLOYMENT);
        deployment["spec"]["template"]["spec"]["containers"][0]["port"] = json!(80);
        deployment["spec"]["strategy"]["rollingUpdate"]["maxSurgee"] = json!(1);
        expect![[r#"
            [
                "spec.strategy.rollingUpdate.maxSurgee",
                "spec.template.spec.containers[0].port",
            ]
        "#]]
        .assert_debug_eq(&unknown_fields(info("apps/v1", "Deployment"), &deployment));
    }
}
