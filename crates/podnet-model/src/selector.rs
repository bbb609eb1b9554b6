//! Label selectors (string form and LabelSelector objects) and field selectors.

use crate::registry::ResourceInfo;
use crate::ModelError;
use serde_json::Value;

/// A parsed label selector: a conjunction of requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    // fields owned by the selector work
}

impl LabelSelector {
    /// Parse the string form: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let _ = s;
        unimplemented!("owned by the selector work")
    }
    /// Build from a `metav1.LabelSelector` JSON object (matchLabels, matchExpressions).
    pub fn from_object(v: &Value) -> Result<Self, ModelError> {
        let _ = v;
        unimplemented!("owned by the selector work")
    }
    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        let _ = obj;
        unimplemented!("owned by the selector work")
    }
}

/// A parsed field selector: `metadata.name=x,status.phase!=Running`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    // fields owned by the selector work
}

impl FieldSelector {
    /// Parse and check the fields against what `info` supports (error names the field).
    pub fn parse(info: &ResourceInfo, s: &str) -> Result<Self, ModelError> {
        let _ = (info, s);
        unimplemented!("owned by the selector work")
    }
    pub fn matches(&self, obj: &Value) -> bool {
        let _ = obj;
        unimplemented!("owned by the selector work")
    }
}
