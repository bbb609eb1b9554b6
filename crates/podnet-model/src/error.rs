//! The one error type of this crate.

/// Everything that can go wrong in the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A selector string could not be parsed.
    #[error("invalid selector {selector:?}: {reason}")]
    InvalidSelector { selector: String, reason: String },
    /// A patch document could not be applied.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// A field selector names a field the resource cannot be selected by
    /// (the message is upstream's, which clients match on).
    #[error("field label not supported: {field}")]
    UnsupportedFieldLabel { field: String },
}
