//! The REST verbs against the store: get, list, create, update, patch, delete,
//! deletecollection and the status, finalize, binding and scale subresources.
//! Everything here is synchronous; the store calls are short.

use crate::objects::{
    self, collection_prefix, comparable, desired_state, finalizers, meta_str, metadata_mut,
    now_rfc3339, object_key, resource_version,
};
use crate::request::{Query, ResourceTarget};
use crate::service_alloc::ServiceAllocator;
use crate::ApiError;
use base64::Engine;
use podnet_model::registry::{self, ResourceInfo};
use podnet_model::selector::{FieldSelector, LabelSelector};
use podnet_model::{defaults, patch, schema, ssa, validation};
use podnet_store::{Record, Store, StoreError};
use serde_json::{json, Value};
use std::sync::Arc;

/// Namespaces the server creates on first start; the first three cannot be deleted.
pub const BOOTSTRAP_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

const MODIFIED_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// As upstream's GuaranteedUpdate: a read-modify-write that lost a race with
/// another writer (e.g. the agent posting pod status) is tried again on the
/// newer object, so only explicit preconditions end in 409.
fn retry_lost_write_races(
    mut attempt: impl FnMut() -> Result<Reply, ApiError>,
) -> Result<Reply, ApiError> {
    const ATTEMPTS: usize = 16;
    for _ in 1..ATTEMPTS {
        match attempt() {
            Err(ApiError::Conflict { message, .. }) if message == MODIFIED_MESSAGE => {}
            other => return other,
        }
    }
    attempt()
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Per-request write options.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub field_manager: String,
    /// Whether the client named the manager (server-side apply requires it).
    pub field_manager_given: bool,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
}

impl WriteOptions {
    pub fn from_query(query: &Query, user_agent: &str) -> Result<WriteOptions, ApiError> {
        let field_validation = match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "fieldValidation parameter {other:?} is not one of Ignore, Warn, Strict"
                )))
            }
        };
        // Upstream names an anonymous manager after the client's user agent.
        let field_manager = match query.get("fieldManager") {
            Some(manager) if !manager.is_empty() => manager.to_string(),
            _ => user_agent
                .split('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        Ok(WriteOptions {
            field_manager_given: query.get("fieldManager").is_some_and(|m| !m.is_empty()),
            field_manager,
            dry_run: query.dry_run(),
            field_validation,
        })
    }
}

/// A successful reply: HTTP code, body and `Warning` headers.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply {
            code: 200,
            body,
            warnings: Vec::new(),
        }
    }
}

/// The objects of one store page of a LIST, after selection.
pub struct ListedPage {
    pub items: Vec<Value>,
    /// With `stored_bytes` and no selectors: the objects as JSON bytes
    /// straight from the store (resourceVersion spliced in), never decoded,
    /// instead of `items`.
    pub stored: Vec<bytes::Bytes>,
}

/// Store pages read while a LIST is written out.
const LIST_PAGE: usize = 500;

/// A LIST in progress: [`ListCursor::next_page`] reads the next store page
/// and returns the objects it selects. The list's resourceVersion is the
/// revision of its first page.
pub struct ListCursor {
    info: &'static ResourceInfo,
    prefix: String,
    start_after: Option<String>,
    label_selector: Option<LabelSelector>,
    field_selector: Option<FieldSelector>,
    limit: Option<usize>,
    stored_bytes: bool,
    taken: usize,
    revision: Option<i64>,
    continue_key: Option<String>,
    finished: bool,
}

impl ListCursor {
    /// Whether the request asked for at most `limit` objects (and so may get
    /// a continue token).
    pub fn limited(&self) -> bool {
        self.limit.is_some()
    }

    /// The next page's objects; `None` once the list is complete.
    pub fn next_page(&mut self, store: &dyn Store) -> Result<Option<ListedPage>, ApiError> {
        if self.finished {
            return Ok(None);
        }
        let page = store.list(&self.prefix, self.start_after.as_deref(), Some(LIST_PAGE))?;
        self.revision.get_or_insert(page.revision);
        let mut listed = ListedPage {
            items: Vec::new(),
            stored: Vec::new(),
        };
        let page_len = page.records.len();
        for (index, record) in page.records.iter().enumerate() {
            if self.stored_bytes {
                let bytes =
                    match crate::raw::with_resource_version(&record.value, record.mod_revision) {
                        Some(bytes) => bytes,
                        None => serde_json::to_vec(&decode_record(self.info, record)?)
                            .expect("JSON values serialize"),
                    };
                listed.stored.push(bytes::Bytes::from(bytes));
            } else {
                let obj = decode_record(self.info, record)?;
                if self
                    .label_selector
                    .as_ref()
                    .is_some_and(|s| !s.matches_object(&obj))
                    || self
                        .field_selector
                        .as_ref()
                        .is_some_and(|s| !s.matches(&obj))
                {
                    continue;
                }
                listed.items.push(obj);
            }
            self.taken += 1;
            if self.limit.is_some_and(|l| self.taken >= l) {
                let more_in_page = index + 1 < page_len;
                if more_in_page || page.continue_after.is_some() {
                    self.continue_key = Some(record.key.clone());
                }
                self.finished = true;
                return Ok(Some(listed));
            }
        }
        match page.continue_after {
            Some(after) => self.start_after = Some(after),
            None => self.finished = true,
        }
        Ok(Some(listed))
    }

    /// The revision the list is read at (0 before the first page).
    pub fn revision(&self) -> i64 {
        self.revision.unwrap_or(0)
    }

    /// The continue token, once the list is complete.
    pub fn continue_token(&self) -> Option<String> {
        self.continue_key
            .as_ref()
            .map(|key| encode_continue(key, &self.prefix, self.revision()))
    }
}

/// The API's state: the store and the service allocator. Cheap to clone.
#[derive(Clone)]
pub struct Rest {
    pub store: Arc<dyn Store>,
    /// Cluster IPs and node ports of the stored Services.
    pub services: Arc<ServiceAllocator>,
    /// Encoded watch events shared by the watchers of this store.
    pub watch_lines: Arc<crate::watch::LineCache>,
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

fn resource_group(info: &ResourceInfo) -> String {
    info.group.to_string()
}

fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        group: resource_group(info),
        resource: info.plural.to_string(),
        name: name.to_string(),
    }
}

fn conflict(info: &ResourceInfo, name: &str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        group: resource_group(info),
        resource: info.plural.to_string(),
        name: name.to_string(),
        message: message.into(),
    }
}

fn has_subresource(info: &ResourceInfo, name: &str) -> bool {
    info.subresources.iter().any(|s| s.name == name)
}

fn namespaces_info() -> &'static ResourceInfo {
    registry::find("", "v1", "namespaces").expect("registry serves namespaces")
}

/// The allocator for the Services already in `store`.
pub fn load_service_allocator(store: &dyn Store) -> Result<ServiceAllocator, ApiError> {
    let info = registry::find("", "v1", "services").expect("registry serves services");
    let prefix = collection_prefix(info, None);
    let mut services = Vec::new();
    let mut start_after = None;
    loop {
        let page = store.list(&prefix, start_after.as_deref(), Some(1000))?;
        for record in &page.records {
            services.push(decode_record(info, record)?);
        }
        match page.continue_after {
            Some(after) => start_after = Some(after),
            None => break,
        }
    }
    Ok(ServiceAllocator::from_services(&services))
}

/// Decode a stored record into the object clients see (resourceVersion injected).
pub fn decode_record(info: &ResourceInfo, record: &Record) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&record.value).map_err(|e| {
        ApiError::Internal(format!("stored object {} is not JSON: {e}", record.key))
    })?;
    if let Some(map) = obj.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| json!(info.api_version()));
        map.entry("kind").or_insert_with(|| json!(info.kind));
    }
    metadata_mut(&mut obj).insert(
        "resourceVersion".into(),
        json!(record.mod_revision.to_string()),
    );
    Ok(obj)
}

/// The stored form of `obj`: without its resourceVersion (the store's
/// revision is the version), which is removed from `obj` itself. Every
/// caller owns the object and sets the new version after the write, or
/// drops the object on failure, so no copy is made.
fn encode(obj: &mut Value) -> Vec<u8> {
    if let Some(metadata) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(obj).expect("a JSON value always serializes")
}

fn set_resource_version(obj: &mut Value, revision: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// Report unknown fields per `fieldValidation` and drop them.
fn check_unknown_fields(
    info: &ResourceInfo,
    obj: &mut Value,
    options: &WriteOptions,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if options.field_validation == FieldValidation::Ignore {
        return Ok(());
    }
    let unknown = schema::unknown_fields(info, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    if options.field_validation == FieldValidation::Strict {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    for field in &unknown {
        warnings.push(format!("unknown field \"{field}\""));
        objects::remove_field_path(obj, field);
    }
    Ok(())
}

fn invalid(info: &ResourceInfo, name: &str, causes: Vec<validation::FieldCause>) -> ApiError {
    ApiError::Invalid {
        group: info.group.to_string(),
        kind: info.kind.to_string(),
        name: name.to_string(),
        causes,
    }
}

/// Status-like fields a new object starts with, as upstream's create strategies set them.
fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    if has_subresource(info, "status") {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }
    match (info.group, info.kind) {
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "Namespace") => {
            let name = meta_str(obj, "name").unwrap_or_default().to_string();
            ensure_namespace_label(obj, &name);
            // Upstream requires the `kubernetes` finalizer on create so that the
            // namespace controller empties the namespace before it goes.
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            let mut spec_finalizers: Vec<Value> = obj["spec"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !spec_finalizers.contains(&json!("kubernetes")) {
                spec_finalizers.push(json!("kubernetes"));
            }
            obj["spec"]["finalizers"] = json!(spec_finalizers);
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "PersistentVolumeClaim") | ("", "PersistentVolume") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        _ => {}
    }
}

fn ensure_namespace_label(obj: &mut Value, name: &str) {
    let meta = metadata_mut(obj);
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
}

/// Preconditions carried by DeleteOptions.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From the request body (possibly empty) and query.
    pub fn parse(body: &[u8], query: &Query) -> Result<DeleteOptions, ApiError> {
        let mut options = DeleteOptions::default();
        let trimmed = String::from_utf8_lossy(body);
        if !trimmed.trim().is_empty() {
            let v: Value = serde_json::from_slice(body)
                .or_else(|_| serde_yaml::from_slice(body))
                .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions body: {e}")))?;
            options.grace_period_seconds = v["gracePeriodSeconds"].as_i64();
            options.propagation_policy = v["propagationPolicy"].as_str().map(str::to_string);
            if v["orphanDependents"] == json!(true) && options.propagation_policy.is_none() {
                options.propagation_policy = Some("Orphan".into());
            }
            options.precondition_uid = v["preconditions"]["uid"].as_str().map(str::to_string);
            options.precondition_resource_version = v["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            options.dry_run = v["dryRun"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("All")));
        }
        if let Some(grace) = query.get("gracePeriodSeconds") {
            options.grace_period_seconds = Some(grace.parse().map_err(|_| {
                ApiError::BadRequest(format!("gracePeriodSeconds {grace:?} is not an integer"))
            })?);
        }
        if let Some(policy) = query.get("propagationPolicy") {
            options.propagation_policy = Some(policy.to_string());
        }
        if query.dry_run() {
            options.dry_run = true;
        }
        if let Some(policy) = &options.propagation_policy {
            if !["Orphan", "Background", "Foreground"].contains(&policy.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy {policy:?} is not one of Orphan, Background, Foreground"
                )));
            }
        }
        Ok(options)
    }
}

/// The kinds of patch bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<PatchType, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(other.to_string())),
        }
    }
}

fn parse_document(body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(json_error) => {
            let looks_like_json = body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b'{' || *b == b'[');
            if looks_like_json {
                return Err(ApiError::BadRequest(format!(
                    "the request body is not valid JSON: {json_error}"
                )));
            }
            serde_yaml::from_slice::<Value>(body).map_err(|e| {
                ApiError::BadRequest(format!("error converting YAML to JSON: yaml: {e}"))
            })
        }
    }
}

impl Rest {
    fn namespace_of(&self, target: &ResourceTarget) -> Option<String> {
        if target.info.namespaced {
            target.namespace.clone()
        } else {
            None
        }
    }

    fn load(&self, info: &ResourceInfo, key: &str, name: &str) -> Result<Value, ApiError> {
        match self.store.get(key)? {
            Some(record) => decode_record(info, &record),
            None => Err(not_found(info, name)),
        }
    }

    /// GET of one object (also `status`).
    pub fn get(&self, target: &ResourceTarget, name: &str) -> Result<Value, ApiError> {
        let key = object_key(target.info, target.namespace.as_deref(), name);
        self.load(target.info, &key, name)
    }

    /// LIST with selectors and paging: the selected objects, decoded.
    pub fn list(&self, target: &ResourceTarget, query: &Query) -> Result<Vec<Value>, ApiError> {
        let mut cursor = self.list_cursor(target, query, false)?;
        let mut items = Vec::new();
        while let Some(page) = cursor.next_page(self.store.as_ref())? {
            items.extend(page.items);
        }
        Ok(items)
    }

    /// A LIST read page by page (see [`ListCursor`]), so that a large list
    /// can be encoded and sent while it is read.
    pub fn list_cursor(
        &self,
        target: &ResourceTarget,
        query: &Query,
        stored_bytes: bool,
    ) -> Result<ListCursor, ApiError> {
        let info = target.info;
        let label_selector = match query.get("labelSelector") {
            Some(s) if !s.is_empty() => Some(LabelSelector::parse(s)?),
            _ => None,
        };
        let field_selector = match query.get("fieldSelector") {
            Some(s) if !s.is_empty() => Some(FieldSelector::parse(info, s)?),
            _ => None,
        };
        let limit = match query.get("limit") {
            Some(l) if !l.is_empty() => match l.parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "limit {l:?} is not an integer"
                    )))
                }
            },
            _ => None,
        };
        let prefix = collection_prefix(info, self.namespace_of(target).as_deref());
        let start_after = match query.get("continue") {
            Some(token) if !token.is_empty() => Some(decode_continue(token, &prefix)?),
            _ => None,
        };
        let stored_bytes = stored_bytes && label_selector.is_none() && field_selector.is_none();
        Ok(ListCursor {
            info,
            prefix,
            start_after,
            label_selector,
            field_selector,
            limit,
            stored_bytes,
            taken: 0,
            revision: None,
            continue_key: None,
            finished: false,
        })
    }
    /// Whether `namespace` accepts new objects: 404 when missing, 403 when terminating.
    fn check_namespace_open(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let ns_info = namespaces_info();
        let key = object_key(ns_info, None, namespace);
        let ns = self.load(ns_info, &key, namespace)?;
        if ns.pointer("/metadata/deletionTimestamp").is_some()
            || ns.pointer("/status/phase") == Some(&json!("Terminating"))
        {
            return Err(ApiError::Forbidden {
                group: info.group.to_string(),
                resource: info.plural.to_string(),
                name: name.to_string(),
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    info.plural
                ),
            });
        }
        Ok(())
    }

    /// POST: create an object (the body is already decoded).
    pub fn create(
        &self,
        target: &ResourceTarget,
        mut obj: Value,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let mut warnings = Vec::new();
        if !obj.is_object() {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON or YAML object".into(),
            ));
        }
        check_type_meta(info, &mut obj)?;
        let namespace = self.namespace_of(target);
        {
            let meta = metadata_mut(&mut obj);
            if info.namespaced {
                match (&namespace, meta.get("namespace").and_then(Value::as_str)) {
                    (None, _) => {
                        return Err(ApiError::BadRequest(format!(
                            "{} are namespaced: create them under /namespaces/<namespace>/{}",
                            info.plural, info.plural
                        )))
                    }
                    (Some(path_ns), Some(body_ns)) if !body_ns.is_empty() && body_ns != path_ns => {
                        return Err(ApiError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request".into(),
                        ))
                    }
                    (Some(path_ns), _) => {
                        meta.insert("namespace".into(), json!(path_ns));
                    }
                }
            } else {
                meta.remove("namespace");
            }
            let has_name = meta
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if !has_name {
                match meta.get("generateName").and_then(Value::as_str) {
                    Some(prefix) if !prefix.is_empty() => {
                        let name = objects::generated_name(prefix);
                        meta.insert("name".into(), json!(name));
                    }
                    _ => {
                        return Err(invalid(
                            info,
                            "",
                            vec![validation::FieldCause {
                                reason: "FieldValueRequired".into(),
                                message: "Required value: name or generateName is required".into(),
                                field: "metadata.name".into(),
                            }],
                        ))
                    }
                }
            }
            for field in [
                "resourceVersion",
                "uid",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                meta.remove(field);
            }
        }
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        if let Some(ns) = &namespace {
            self.check_namespace_open(info, ns, &name)?;
        }
        check_unknown_fields(info, &mut obj, options, &mut warnings)?;
        prepare_for_create(info, &mut obj);
        let now = now_rfc3339();
        {
            let meta = metadata_mut(&mut obj);
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now));
        }
        if obj.get("spec").is_some() {
            metadata_mut(&mut obj).insert("generation".into(), json!(1));
        }
        defaults::apply_defaults(info, &mut obj);
        let causes = validation::validate_create(info, &obj);
        if !causes.is_empty() {
            return Err(invalid(info, &name, causes));
        }
        // Services get their cluster IP and node ports before they are
        // stored, so the create reply already carries them.
        let reservation = if is_service(info) {
            Some(self.services.reserve_for_create(&mut obj)?)
        } else {
            None
        };
        if obj.pointer("/metadata/managedFields").is_none() {
            ssa::record_update(info, None, &mut obj, &options.field_manager, "Update", &now);
        }
        let result = self.store_new(target, obj, options, warnings);
        if let Some(reservation) = reservation {
            match &result {
                Ok(_) if !options.dry_run => self.services.commit(reservation),
                _ => self.services.rollback(reservation),
            }
        }
        result
    }

    /// Persist a fully prepared new object.
    fn store_new(
        &self,
        target: &ResourceTarget,
        mut obj: Value,
        options: &WriteOptions,
        warnings: Vec<String>,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let key = object_key(info, self.namespace_of(target).as_deref(), &name);
        if options.dry_run {
            if self.store.get(&key)?.is_some() {
                return Err(already_exists(info, &name));
            }
            return Ok(Reply {
                code: 201,
                body: obj,
                warnings,
            });
        }
        let revision = match self.store.create(&key, &encode(&mut obj)) {
            Ok(revision) => revision,
            Err(StoreError::AlreadyExists(_)) => return Err(already_exists(info, &name)),
            Err(e) => return Err(e.into()),
        };
        set_resource_version(&mut obj, revision);
        if info.group.is_empty() && info.kind == "Namespace" {
            self.ensure_default_service_account(&name)?;
        }
        Ok(Reply {
            code: 201,
            body: obj,
            warnings,
        })
    }

    /// Every namespace gets a `default` ServiceAccount, as upstream's
    /// service account controller provides.
    pub fn ensure_default_service_account(&self, namespace: &str) -> Result<(), ApiError> {
        let Some(info) = registry::find("", "v1", "serviceaccounts") else {
            return Ok(());
        };
        let key = object_key(info, Some(namespace), "default");
        let mut account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": "default",
                "namespace": namespace,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now_rfc3339(),
            },
        });
        match self.store.create(&key, &encode(&mut account)) {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Create the bootstrap namespaces (and their service accounts) if missing.
    pub fn bootstrap(&self) -> Result<(), ApiError> {
        let info = namespaces_info();
        let target = ResourceTarget {
            info,
            namespace: None,
            name: None,
            subresource: None,
            legacy_watch: false,
        };
        let options = WriteOptions {
            field_manager: "podnet-apiserver".into(),
            field_manager_given: true,
            dry_run: false,
            field_validation: FieldValidation::Ignore,
        };
        for name in BOOTSTRAP_NAMESPACES {
            let key = object_key(info, None, name);
            if self.store.get(&key)?.is_some() {
                self.ensure_default_service_account(name)?;
                continue;
            }
            let mut obj = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": now_rfc3339(),
                },
            });
            // Built by hand rather than through create(): the model's defaulting
            // and validation are not needed for these fixed objects.
            prepare_for_create(info, &mut obj);
            match self.store_new(&target, obj, &options, Vec::new()) {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// PUT of an object or its status / finalize subresource.
    pub fn update(
        &self,
        target: &ResourceTarget,
        name: &str,
        mut obj: Value,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        if !obj.is_object() {
            return Err(ApiError::BadRequest(
                "the request body must be a JSON or YAML object".into(),
            ));
        }
        check_type_meta(info, &mut obj)?;
        match meta_str(&obj, "name") {
            Some(body_name) if body_name != name => {
                return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )))
            }
            _ => {}
        }
        let key = object_key(info, self.namespace_of(target).as_deref(), name);
        let old = self.load(info, &key, name)?;
        let mut warnings = Vec::new();
        check_unknown_fields(info, &mut obj, options, &mut warnings)?;
        let mut reply = self.write_update(
            target,
            &key,
            old,
            obj,
            options,
            ManagedFields::Record("Update"),
        )?;
        reply.warnings.extend(warnings);
        Ok(reply)
    }

    /// The shared tail of every update: carry immutable metadata over, keep the
    /// part a subresource does not own, bump generation, default, validate,
    /// record the manager, then write with the old revision as precondition
    /// (finishing a deletion once the last finalizer is gone).
    fn write_update(
        &self,
        target: &ResourceTarget,
        key: &str,
        old: Value,
        mut new: Value,
        options: &WriteOptions,
        managed: ManagedFields,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let name = meta_str(&old, "name").unwrap_or_default().to_string();
        let old_revision = resource_version(&old).unwrap_or(0);
        if let Some(requested) = meta_str(&new, "resourceVersion") {
            if !requested.is_empty() && requested != old_revision.to_string() {
                return Err(conflict(info, &name, MODIFIED_MESSAGE));
            }
        }
        new = match target.subresource.as_deref() {
            Some("status") => {
                let mut merged = old.clone();
                merged["status"] = new.get("status").cloned().unwrap_or(json!({}));
                merged
            }
            Some("finalize") => {
                let mut merged = old.clone();
                merged["spec"]["finalizers"] = new
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                merged
            }
            _ => {
                if has_subresource(info, "status") {
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            if let Some(map) = new.as_object_mut() {
                                map.remove("status");
                            }
                        }
                    }
                }
                new
            }
        };
        {
            let old_meta = old["metadata"].clone();
            let meta = metadata_mut(&mut new);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old_meta.get(field) {
                    Some(v) => {
                        meta.insert(field.into(), v.clone());
                    }
                    None => {
                        meta.remove(field);
                    }
                }
            }
            if !meta.contains_key("managedFields") {
                if let Some(fields) = old_meta.get("managedFields") {
                    meta.insert("managedFields".into(), fields.clone());
                }
            }
            meta.insert("resourceVersion".into(), json!(old_revision.to_string()));
            // A deleting object may lose finalizers but gain none.
            if old_meta.get("deletionTimestamp").is_some() {
                let old_finalizers = finalizers(&old);
                let added: Vec<String> = finalizers(&new)
                    .into_iter()
                    .filter(|f| !old_finalizers.contains(f))
                    .collect();
                if !added.is_empty() {
                    return Err(ApiError::Forbidden {
                        group: info.group.to_string(),
                        resource: info.plural.to_string(),
                        name: name.clone(),
                        message: format!(
                            "{} \"{name}\" is forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}",
                            info.plural
                        ),
                    });
                }
            }
        }
        if info.group.is_empty() && info.kind == "Namespace" {
            ensure_namespace_label(&mut new, &name);
        }
        let old_generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
        let generation = match old_generation {
            Some(g) if desired_state(&new) != desired_state(&old) => Some(g + 1),
            Some(g) => Some(g),
            None if new.get("spec").is_some() => Some(1),
            None => None,
        };
        if let Some(generation) = generation {
            metadata_mut(&mut new).insert("generation".into(), json!(generation));
        }
        if is_service(info) {
            crate::service_alloc::drop_type_dependent_fields(&mut new, &old);
        }
        defaults::carry_over_allocated_values(info, &mut new, &old);
        defaults::apply_defaults(info, &mut new);
        let causes = validation::validate_update(info, &new, &old);
        if !causes.is_empty() {
            return Err(invalid(info, &name, causes));
        }
        if is_service(info) {
            let reservation = self.services.reserve_for_update(&mut new, &old)?;
            let leaves_store = deletion_complete(info, &new);
            let stored = new.clone();
            let result = self.finish_update(target, key, &old, new, options, managed);
            match &result {
                Ok(_) if !options.dry_run => {
                    self.services.commit(reservation);
                    if leaves_store {
                        self.services.release(&old);
                        self.services.release(&stored);
                    }
                }
                _ => self.services.rollback(reservation),
            }
            return result;
        }
        self.finish_update(target, key, &old, new, options, managed)
    }

    /// Store an update that passed validation (or finish a deletion).
    fn finish_update(
        &self,
        target: &ResourceTarget,
        key: &str,
        old: &Value,
        mut new: Value,
        options: &WriteOptions,
        managed: ManagedFields,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let name = meta_str(old, "name").unwrap_or_default().to_string();
        let old_revision = resource_version(old).unwrap_or(0);
        if comparable(&new) == comparable(old) {
            // Upstream skips no-op writes: resourceVersion and watchers stay put.
            return Ok(Reply::ok(old.clone()));
        }
        if let ManagedFields::Record(operation) = managed {
            let now = now_rfc3339();
            let subresource_manager = options.field_manager.clone();
            ssa::record_update(
                info,
                Some(old),
                &mut new,
                &subresource_manager,
                operation,
                &now,
            );
        }
        if deletion_complete(info, &new) {
            if options.dry_run {
                return Ok(Reply::ok(new));
            }
            return match self.store.delete(key, Some(old_revision)) {
                Ok(record) => {
                    set_resource_version(&mut new, record.mod_revision);
                    Ok(Reply::ok(new))
                }
                Err(StoreError::Conflict { .. }) => Err(conflict(info, &name, MODIFIED_MESSAGE)),
                Err(StoreError::NotFound(_)) => Err(not_found(info, &name)),
                Err(e) => Err(e.into()),
            };
        }
        if options.dry_run {
            return Ok(Reply::ok(new));
        }
        match self
            .store
            .update(key, &encode(&mut new), Some(old_revision))
        {
            Ok(revision) => {
                set_resource_version(&mut new, revision);
                Ok(Reply::ok(new))
            }
            Err(StoreError::Conflict { .. }) => Err(conflict(info, &name, MODIFIED_MESSAGE)),
            Err(StoreError::NotFound(_)) => Err(not_found(info, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// PATCH of an object or its status (scale is handled by [`Rest::patch_scale`]).
    ///
    /// As upstream's guaranteed update, a write that loses a race with another
    /// writer is retried against the newest object: a patch only conflicts when
    /// it carries a resourceVersion precondition that no longer holds.
    pub fn patch(
        &self,
        target: &ResourceTarget,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        options: &WriteOptions,
        force: bool,
    ) -> Result<Reply, ApiError> {
        retry_lost_write_races(|| self.patch_once(target, name, patch_type, body, options, force))
    }

    fn patch_once(
        &self,
        target: &ResourceTarget,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        options: &WriteOptions,
        force: bool,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let key = object_key(info, self.namespace_of(target).as_deref(), name);
        let patch_doc = parse_document(body)?;
        let mut warnings = Vec::new();
        let existing = match self.store.get(&key)? {
            Some(record) => Some(decode_record(info, &record)?),
            None => None,
        };
        if patch_type == PatchType::Apply {
            let mut applied = patch_doc;
            if !applied.is_object() {
                return Err(ApiError::BadRequest(
                    "the apply patch must be a YAML or JSON object".into(),
                ));
            }
            check_type_meta(info, &mut applied)?;
            match meta_str(&applied, "name") {
                Some(applied_name) if applied_name == name => {}
                Some(applied_name) => {
                    return Err(ApiError::BadRequest(format!(
                        "the name of the object ({applied_name}) does not match the name on the URL ({name})"
                    )))
                }
                None => {
                    metadata_mut(&mut applied).insert("name".into(), json!(name));
                }
            }
            if let Some(ns) = self.namespace_of(target) {
                metadata_mut(&mut applied).insert("namespace".into(), json!(ns));
            }
            check_unknown_fields(info, &mut applied, options, &mut warnings)?;
            if !options.field_manager_given {
                return Err(ApiError::BadRequest(
                    "PATCH with application/apply-patch+yaml requires the fieldManager parameter"
                        .into(),
                ));
            }
            let now = now_rfc3339();
            let result = ssa::apply(
                info,
                existing.as_ref(),
                &applied,
                &options.field_manager,
                force,
                &now,
            )
            .map_err(|conflicts| ApiError::ApplyConflict {
                group: info.group.to_string(),
                api_version: info.api_version(),
                resource: info.plural.to_string(),
                name: name.to_string(),
                conflicts,
            })?;
            let mut reply = match existing {
                None => {
                    let create_target = ResourceTarget {
                        subresource: None,
                        ..target.clone()
                    };
                    self.create(&create_target, result, options)?
                }
                Some(old) => {
                    self.write_update(target, &key, old, result, options, ManagedFields::Keep)?
                }
            };
            reply.warnings.extend(warnings);
            return Ok(reply);
        }
        let old = existing.ok_or_else(|| not_found(info, name))?;
        let mut patched = match patch_type {
            PatchType::Json => patch::json_patch(&old, &patch_doc)?,
            PatchType::Merge => {
                if !patch_doc.is_object() {
                    return Err(ApiError::BadRequest(
                        "a merge patch must be a JSON object".into(),
                    ));
                }
                patch::merge_patch(&old, &patch_doc)
            }
            PatchType::Strategic => {
                if !patch_doc.is_object() {
                    return Err(ApiError::BadRequest(
                        "a strategic merge patch must be a JSON object".into(),
                    ));
                }
                patch::strategic_merge_patch(info, &old, &patch_doc)?
            }
            PatchType::Apply => unreachable!("handled above"),
        };
        check_unknown_fields(info, &mut patched, options, &mut warnings)?;
        let mut reply = self.write_update(
            target,
            &key,
            old,
            patched,
            options,
            ManagedFields::Record("Update"),
        )?;
        reply.warnings.extend(warnings);
        Ok(reply)
    }

    /// GET of the scale subresource.
    pub fn get_scale(&self, target: &ResourceTarget, name: &str) -> Result<Value, ApiError> {
        Ok(objects::scale_of(&self.get(target, name)?))
    }

    /// PUT (whole Scale) or PATCH (patch onto the Scale) of the scale subresource.
    pub fn write_scale(
        &self,
        target: &ResourceTarget,
        name: &str,
        change: ScaleChange<'_>,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let key = object_key(info, self.namespace_of(target).as_deref(), name);
        let old = self.load(info, &key, name)?;
        let current = objects::scale_of(&old);
        let scale = match change {
            ScaleChange::Replace(scale) => scale,
            ScaleChange::Patch(patch_type, body) => {
                let patch_doc = parse_document(body)?;
                match patch_type {
                    PatchType::Json => patch::json_patch(&current, &patch_doc)?,
                    // Scale has no lists, so strategic and apply reduce to a merge.
                    _ => patch::merge_patch(&current, &patch_doc),
                }
            }
        };
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                invalid(
                    info,
                    name,
                    vec![validation::FieldCause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value".into(),
                        field: "spec.replicas".into(),
                    }],
                )
            })?;
        if replicas < 0 {
            return Err(ApiError::Invalid {
                group: "autoscaling".into(),
                kind: "Scale".into(),
                name: name.to_string(),
                causes: vec![validation::FieldCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            });
        }
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(replicas);
        if let Some(rv) = meta_str(&scale, "resourceVersion") {
            metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        }
        let main = ResourceTarget {
            subresource: None,
            ..target.clone()
        };
        let reply = self.write_update(
            &main,
            &key,
            old,
            new,
            options,
            ManagedFields::Record("Update"),
        )?;
        Ok(Reply::ok(objects::scale_of(&reply.body)))
    }

    /// POST of a Binding: assign an unscheduled pod to a node.
    pub fn bind(
        &self,
        target: &ResourceTarget,
        pod_name: Option<&str>,
        binding: &Value,
    ) -> Result<Reply, ApiError> {
        let pods = registry::find("", "v1", "pods").expect("registry serves pods");
        let name = pod_name
            .or_else(|| meta_str(binding, "name"))
            .ok_or_else(|| ApiError::BadRequest("the binding names no pod (metadata.name)".into()))?
            .to_string();
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                invalid(
                    pods,
                    &name,
                    vec![validation::FieldCause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value".into(),
                        field: "target.name".into(),
                    }],
                )
            })?;
        let key = object_key(pods, target.namespace.as_deref(), &name);
        let old = self.load(pods, &key, &name)?;
        let binding_conflict = |message: String| ApiError::Conflict {
            group: String::new(),
            resource: "pods/binding".into(),
            name: name.clone(),
            message,
        };
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(binding_conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        if let Some(current) = old.pointer("/spec/nodeName").and_then(Value::as_str) {
            if !current.is_empty() {
                return Err(binding_conflict(format!(
                    "pod {name} is already assigned to node \"{current}\""
                )));
            }
        }
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!(node);
        let now = now_rfc3339();
        let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let conditions = new["status"]
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = conditions {
            list.retain(|c| c["type"] != "PodScheduled");
            list.push(condition);
        }
        let revision = resource_version(&old).unwrap_or(0);
        match self.store.update(&key, &encode(&mut new), Some(revision)) {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(conflict(pods, &name, MODIFIED_MESSAGE))
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Reply {
            code: 201,
            body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            warnings: Vec::new(),
        })
    }

    /// DELETE of one object.
    pub fn delete(
        &self,
        target: &ResourceTarget,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Reply, ApiError> {
        retry_lost_write_races(|| self.delete_once(target, name, options))
    }

    fn delete_once(
        &self,
        target: &ResourceTarget,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Reply, ApiError> {
        let info = target.info;
        let key = object_key(info, self.namespace_of(target).as_deref(), name);
        let old = self.load(info, &key, name)?;
        if let Some(uid) = &options.precondition_uid {
            let actual = meta_str(&old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(conflict(
                    info,
                    name,
                    format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = &options.precondition_resource_version {
            let actual = meta_str(&old, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(conflict(
                    info,
                    name,
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"),
                ));
            }
        }
        let is_namespace = info.group.is_empty() && info.kind == "Namespace";
        if is_namespace && ["default", "kube-system", "kube-public"].contains(&name) {
            return Err(ApiError::Forbidden {
                group: String::new(),
                resource: "namespaces".into(),
                name: name.to_string(),
                message: format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                ),
            });
        }
        let is_pod = info.group.is_empty() && info.kind == "Pod";
        let grace = if is_pod {
            let scheduled = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                old.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            if !scheduled || terminal {
                0
            } else {
                options
                    .grace_period_seconds
                    .or_else(|| {
                        old.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
                    .max(0)
            }
        } else {
            0
        };
        let mut new = old.clone();
        let already_deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        if already_deleting {
            // A repeated delete may only shorten the grace period (the agent
            // finishes a pod with gracePeriodSeconds=0).
            let current = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if is_pod && grace < current {
                metadata_mut(&mut new).insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        } else {
            let mut list = finalizers(&old);
            match options.propagation_policy.as_deref() {
                Some("Orphan") if !list.iter().any(|f| f == "orphan") => list.push("orphan".into()),
                Some("Foreground") if !list.iter().any(|f| f == "foregroundDeletion") => {
                    list.push("foregroundDeletion".into())
                }
                _ => {}
            }
            let deadline = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or_else(|_| jiff::Timestamp::now());
            let meta = metadata_mut(&mut new);
            if !list.is_empty() {
                meta.insert("finalizers".into(), json!(list));
            }
            meta.insert(
                "deletionTimestamp".into(),
                json!(objects::format_timestamp(deadline)),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if is_namespace {
                new["status"]["phase"] = json!("Terminating");
            }
        }
        let revision = resource_version(&old).unwrap_or(0);
        if deletion_complete(info, &new) {
            if options.dry_run {
                return Ok(Reply::ok(old));
            }
            return match self.store.delete(&key, Some(revision)) {
                Ok(record) => {
                    if is_service(info) {
                        self.services.release(&old);
                    }
                    let mut last = old;
                    set_resource_version(&mut last, record.mod_revision);
                    Ok(Reply::ok(last))
                }
                Err(StoreError::Conflict { .. }) => Err(conflict(info, name, MODIFIED_MESSAGE)),
                Err(StoreError::NotFound(_)) => Err(not_found(info, name)),
                Err(e) => Err(e.into()),
            };
        }
        // Upstream answers 202 for a pending deletion only when the client
        // asked for foreground cascading; 200 otherwise (graceful pods,
        // finalizers, namespaces).
        let pending_code = if options.propagation_policy.as_deref() == Some("Foreground") {
            202
        } else {
            200
        };
        if comparable(&new) == comparable(&old) || options.dry_run {
            return Ok(Reply {
                code: pending_code,
                body: new,
                warnings: Vec::new(),
            });
        }
        match self.store.update(&key, &encode(&mut new), Some(revision)) {
            Ok(revision) => {
                set_resource_version(&mut new, revision);
                Ok(Reply {
                    code: pending_code,
                    body: new,
                    warnings: Vec::new(),
                })
            }
            Err(StoreError::Conflict { .. }) => Err(conflict(info, name, MODIFIED_MESSAGE)),
            Err(e) => Err(e.into()),
        }
    }

    /// DELETE of a collection (with selectors); returns the list of affected objects.
    pub fn delete_collection(
        &self,
        target: &ResourceTarget,
        query: &Query,
        options: &DeleteOptions,
    ) -> Result<Reply, ApiError> {
        let listed = self.list(target, query)?;
        let mut affected = Vec::new();
        for obj in listed {
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            let object_target = ResourceTarget {
                namespace: meta_str(&obj, "namespace").map(str::to_string),
                name: Some(name.clone()),
                ..target.clone()
            };
            match self.delete(&object_target, &name, options) {
                Ok(reply) => affected.push(reply.body),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::ok(json!({
            "kind": target.info.list_kind,
            "apiVersion": target.info.api_version(),
            "metadata": {},
            "items": affected,
        })))
    }
}

/// Who records managedFields for an update.
#[derive(Debug, Clone, Copy)]
enum ManagedFields {
    /// Record an ordinary write with this operation.
    Record(&'static str),
    /// Server-side apply already did.
    Keep,
}

/// A change to a Scale subresource.
pub enum ScaleChange<'a> {
    Replace(Value),
    Patch(PatchType, &'a [u8]),
}

fn already_exists(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::AlreadyExists {
        group: info.group.to_string(),
        resource: info.plural.to_string(),
        name: name.to_string(),
    }
}

/// Whether a deleting object may now leave the store: no finalizers, its
/// grace period over (pods wait for the agent), and for namespaces the
/// namespace controller's `spec.finalizers` emptied too.
fn deletion_complete(info: &ResourceInfo, obj: &Value) -> bool {
    if obj.pointer("/metadata/deletionTimestamp").is_none() || !finalizers(obj).is_empty() {
        return false;
    }
    if obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0
    {
        return false;
    }
    if info.group.is_empty() && info.kind == "Namespace" {
        return obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
    }
    true
}

/// Check (and fill in) apiVersion and kind against the path's resource.
fn check_type_meta(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let expected_version = info.api_version();
    if let Some(version) = obj.get("apiVersion").and_then(Value::as_str) {
        if version != expected_version {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({version}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != info.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    obj["apiVersion"] = json!(expected_version);
    obj["kind"] = json!(info.kind);
    Ok(())
}

fn encode_continue(key: &str, prefix: &str, revision: i64) -> String {
    let start = key.strip_prefix(prefix).unwrap_or(key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<String, ApiError> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let start = value["start"].as_str().ok_or_else(bad)?;
    Ok(format!("{prefix}{start}"))
}

/// Decode a request body per its Content-Type (JSON, YAML, protobuf envelope).
pub fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: yaml: {e}"))),
        "application/json" | "" | "*/*" => parse_document(body),
        other => Err(ApiError::UnsupportedMediaType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue("/core/pods/default/web-7", "/core/pods/default/", 42);
        assert_eq!(
            decode_continue(&token, "/core/pods/default/").unwrap(),
            "/core/pods/default/web-7"
        );
        assert!(decode_continue("%%%", "/x/").is_err());
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        let err = decode_body("application/json", b"{\"a\": ").unwrap_err();
        assert_eq!(err.code(), 400);
        let err = decode_body("application/yaml", b"a: [b\nc: d: e").unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            decode_body("application/cbor", b"").unwrap_err().code(),
            415
        );
    }

    #[test]
    fn pods_wait_for_grace_before_leaving() {
        let pods = registry::find("", "v1", "pods").unwrap();
        let deleting =
            json!({"metadata": {"deletionTimestamp": "x", "deletionGracePeriodSeconds": 30}});
        assert!(!deletion_complete(pods, &deleting));
        let finished =
            json!({"metadata": {"deletionTimestamp": "x", "deletionGracePeriodSeconds": 0}});
        assert!(deletion_complete(pods, &finished));
        let namespaces = namespaces_info();
        let terminating =
            json!({"metadata": {"deletionTimestamp": "x"}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(!deletion_complete(namespaces, &terminating));
    }
}
