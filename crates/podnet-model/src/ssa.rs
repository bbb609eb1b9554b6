//! Server-side apply: field ownership in `metadata.managedFields` and conflicts.

use crate::registry::ResourceInfo;
use serde_json::Value;

/// A field owned by another manager that an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    pub manager: String,
    /// The field path as upstream prints it, e.g. `.spec.replicas`.
    pub field: String,
}

/// Apply `applied` (the manager's full intent) onto `live` (None: create).
/// Returns the new object with managedFields updated, or the conflicts when
/// `force` is false and another manager owns a field whose value would change.
pub fn apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<ApplyConflict>> {
    let _ = (info, live, applied, manager, force, now);
    unimplemented!("owned by the server-side apply work")
}

/// Record an ordinary write (create/update/patch) by `manager` in managedFields.
pub fn record_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    now: &str,
) {
    let _ = (info, old, new, manager, operation, now);
    unimplemented!("owned by the server-side apply work")
}
