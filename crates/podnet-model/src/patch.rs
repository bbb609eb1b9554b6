//! JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

use crate::registry::ResourceInfo;
use crate::ModelError;
use serde_json::Value;

/// Apply an RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, ModelError> {
    let _ = (doc, patch);
    unimplemented!("owned by the patch work")
}

/// Apply an RFC 7386 merge patch.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let _ = (doc, patch);
    unimplemented!("owned by the patch work")
}

/// Apply a strategic merge patch with upstream merge keys and directives
/// (`$patch`, `$setElementOrder/<field>`, `$retainKeys`, `$deleteFromPrimitiveList/<field>`).
pub fn strategic_merge_patch(
    info: &ResourceInfo,
    doc: &Value,
    patch: &Value,
) -> Result<Value, ModelError> {
    let _ = (info, doc, patch);
    unimplemented!("owned by the patch work")
}
