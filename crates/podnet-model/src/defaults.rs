//! Defaulting, as upstream's defaulters do it (the values `kubectl get -o yaml` shows).

use crate::registry::ResourceInfo;
use serde_json::Value;

/// Fill in the defaults of a new or updated object in place.
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    let _ = (info, obj);
    unimplemented!("owned by the defaults work")
}
