//! The one error type of this crate.

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {key} was modified (expected revision {expected}, found {actual}): re-read it and retry")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    #[error("revision {requested} has been compacted (oldest retained is {oldest}): list again and watch from the new revision")]
    Compacted { requested: i64, oldest: i64 },
    #[error("store backend failed: {0}")]
    Backend(String),
}
