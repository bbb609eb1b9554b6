//! The one error type of this crate.

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist (get of a missing key is `Ok(None)`, not this).
    #[error("key {0} not found")]
    NotFound(String),
    /// A create found the key already present.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// An update or delete named an `expected_mod_revision` that is no longer
    /// the key's current revision: someone else wrote it first.
    #[error("key {key} was modified (expected revision {expected}, found {actual}): re-read it and retry")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    /// A watch asked for history that compaction has already removed.
    /// `oldest` is the oldest revision a watch may still start after.
    #[error("revision {requested} has been compacted (oldest retained is {oldest}): list again and watch from the new revision")]
    Compacted { requested: i64, oldest: i64 },
    /// Sent as the last item of a watch stream whose reader fell behind by more
    /// than the per-watcher buffer; the stream ends right after it.
    #[error("watch on prefix {prefix} fell more than {capacity} events behind and was closed: list again and watch from the new revision")]
    WatcherTooSlow { prefix: String, capacity: usize },
    /// The storage engine failed (I/O, corruption, the writer thread stopped).
    #[error("store backend failed: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(sqlite_error: rusqlite::Error) -> Self {
        StoreError::Backend(format!("sqlite: {sqlite_error}"))
    }
}
