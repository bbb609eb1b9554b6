//! The one error type of this crate, and its rendering as a Kubernetes `Status`.

use podnet_model::validation::FieldCause;
use serde_json::{json, Value};

/// Everything the API server can fail with: request errors that become a
/// `Status` reply with an HTTP code, and startup errors of [`crate::Server`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (body, query or path); 400.
    #[error("{0}")]
    BadRequest(String),
    /// No or a wrong bearer token; 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// The request is understood but not allowed; 403.
    #[error("{message}")]
    Forbidden {
        /// Group of the resource ("" for core).
        group: String,
        /// Plural resource name as upstream puts it in `details.kind`.
        resource: String,
        /// Object name.
        name: String,
        /// Human message.
        message: String,
    },
    /// The object, or the path, does not exist; 404.
    #[error("{}", not_found_message(resource, name))]
    NotFound {
        /// Group of the resource ("" for core).
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name (empty for unknown paths).
        name: String,
    },
    /// An object with that name already exists; 409.
    #[error("{}", qualified(group, resource, name, "already exists"))]
    AlreadyExists {
        /// Group of the resource ("" for core).
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
    },
    /// A precondition or optimistic-concurrency check failed; 409.
    #[error("Operation cannot be fulfilled on {}: {message}", qualified(group, resource, name, "").trim_end())]
    Conflict {
        /// Group of the resource ("" for core).
        group: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// What was in conflict.
        message: String,
    },
    /// Server-side apply found fields owned by other managers; 409.
    #[error("{}", podnet_model::ssa::conflict_message(conflicts, api_version))]
    ApplyConflict {
        /// Group of the resource ("" for core).
        group: String,
        /// The applied object's apiVersion, as upstream names it in the message.
        api_version: String,
        /// Plural resource name.
        resource: String,
        /// Object name.
        name: String,
        /// The conflicting fields and their managers.
        conflicts: Vec<podnet_model::ssa::ApplyConflict>,
    },
    /// Validation failed; 422 with one cause per field.
    #[error("{kind} \"{name}\" is invalid: {}", invalid_summary(causes))]
    Invalid {
        /// Group of the kind ("" for core).
        group: String,
        /// The object's kind (upstream puts the kind, not the resource, here).
        kind: String,
        /// Object name.
        name: String,
        /// The failing fields.
        causes: Vec<FieldCause>,
    },
    /// The requested resourceVersion has been compacted; 410 reason Expired.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The resourceVersion asked for.
        requested: i64,
        /// The oldest one still retained.
        oldest: i64,
    },
    /// The verb is not supported on this path; 405.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// The request body's content type is not supported; 415.
    #[error("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {0})")]
    UnsupportedMediaType(String),
    /// The node agent serving a pod's streams could not be reached or answered badly; 502-ish
    /// (upstream reports these as 500).
    #[error("error dialing backend: {0}")]
    Backend(String),
    /// An unexpected internal failure; 500.
    #[error("internal error: {0}")]
    Internal(String),
    /// The store failed.
    #[error("storage error: {0}")]
    Store(#[from] podnet_store::StoreError),
    /// A file in the data directory could not be read or written.
    #[error("cannot access {path}: {source} (check the data directory's permissions)")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Generating or loading certificates failed.
    #[error("certificate setup failed: {0} (remove ca.* and server.* from the data directory to regenerate)")]
    Certificate(String),
    /// Binding the listen socket or the TLS setup failed.
    #[error("cannot listen: {0}")]
    Listen(String),
}

/// Model errors come from what the client sent (selectors, patches): 400.
impl From<podnet_model::error::ModelError> for ApiError {
    fn from(error: podnet_model::error::ModelError) -> ApiError {
        ApiError::BadRequest(error.to_string())
    }
}

fn not_found_message(resource: &str, name: &str) -> String {
    if name.is_empty() {
        "the server could not find the requested resource".to_string()
    } else {
        format!("{resource} \"{name}\" not found")
    }
}

fn qualified(group: &str, resource: &str, name: &str, tail: &str) -> String {
    let gr = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    format!("{gr} \"{name}\" {tail}")
}

fn invalid_summary(causes: &[FieldCause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// A 404 for a path the server does not serve.
    pub fn path_not_found() -> ApiError {
        ApiError::NotFound {
            group: String::new(),
            resource: String::new(),
            name: String::new(),
        }
    }

    /// The HTTP status code of this error.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound { .. } => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::Expired { .. } => 410,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Store(podnet_store::StoreError::Compacted { .. }) => 410,
            _ => 500,
        }
    }

    /// The upstream `reason` of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Expired { .. } => "Expired",
            ApiError::Store(podnet_store::StoreError::Compacted { .. }) => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            _ => "InternalError",
        }
    }

    /// The `Status` object kubectl reads.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            } if !name.is_empty() => Some(json!({"name": name, "group": group, "kind": resource})),
            ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            }
            | ApiError::Forbidden {
                group,
                resource,
                name,
                ..
            } => Some(json!({"name": name, "group": group, "kind": resource})),
            ApiError::ApplyConflict {
                group,
                resource,
                name,
                conflicts,
                ..
            } => Some(json!({
                "name": name, "group": group, "kind": resource,
                "causes": conflicts.iter().map(|c| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{}\"", c.manager),
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => Some(json!({
                "name": name, "group": group, "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.message, "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        if let ApiError::Unauthorized = self {
            status["message"] = json!("Unauthorized");
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn statuses_match_upstream_shapes() {
        let not_found = ApiError::NotFound {
            group: String::new(),
            resource: "pods".into(),
            name: "web".into(),
        };
        expect![[r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"web\" not found","reason":"NotFound","code":404,"details":{"name":"web","group":"","kind":"pods"}}"#]]
        .assert_eq(&not_found.to_status().to_string());
        let conflict = ApiError::Conflict {
            group: "apps".into(),
            resource: "deployments".into(),
            name: "web".into(),
            message: "the object has been modified; please apply your changes to the latest version and try again".into(),
        };
        expect![[r#"Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again"#]]
        .assert_eq(&conflict.to_string());
        let invalid = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "web".into(),
            causes: vec![FieldCause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "spec.containers[0].image".into(),
            }],
        };
        expect![[r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \"web\" is invalid: spec.containers[0].image: Required value","reason":"Invalid","code":422,"details":{"name":"web","group":"","kind":"Pod","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"}]}}"#]]
        .assert_eq(&invalid.to_status().to_string());
    }
}
