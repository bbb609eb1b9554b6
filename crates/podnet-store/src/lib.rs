//! podnet-store: a versioned key-value store with watch, the persistence under
//! the API server. One global revision (the resourceVersion), values are the
//! objects' JSON bytes, keys are `/<group or "core">/<plural>/<namespace or "-">/<name>`.
//! Backends: SQLite (embedded default, durable before acknowledging) and
//! in-memory (tests); an etcd backend can follow behind the same trait.
//!
//! Layout: `write` decides what a create/update/delete means (pure, shared by
//! both backends so they cannot drift), `watch` fans committed events out and
//! replays history without gaps, `sqlite` batches concurrent writes into one
//! durable transaction (group commit), `compaction` plans and runs history
//! trimming. Revisions are never reused, not even after deletes or compaction.

mod compaction;
mod error;
mod memory;
mod sqlite;
mod watch;
mod write;

pub use compaction::{spawn_auto_compaction, AutoCompaction, CompactionPlanner, Retention};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// Tuning shared by the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Events a watcher may have pending before it is closed with
    /// [`StoreError::WatcherTooSlow`]. Bounded so that a stalled client costs
    /// a fixed amount of memory and never slows writers down.
    pub watch_buffer: usize,
    /// Most writes the SQLite backend commits in one transaction (one fsync).
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            watch_buffer: 1024,
            max_batch: 512,
        }
    }
}

/// `list`'s limit: `None` and `Some(0)` both mean unlimited, as `limit=0`
/// does in the Kubernetes API.
pub(crate) fn effective_limit(limit: Option<usize>) -> usize {
    match limit {
        None | Some(0) => usize::MAX,
        Some(limit) => limit,
    }
}

/// A stored value and its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    /// The stored bytes; shared, so that handing one event to many watchers
    /// copies no values.
    pub value: bytes::Bytes,
    /// Revision of the write that created the key.
    pub create_revision: i64,
    /// Revision of the last write to the key (the object's resourceVersion).
    pub mod_revision: i64,
}

/// What a write did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change, delivered to watchers in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For Added/Modified the new value; for Deleted the last value, with
    /// `mod_revision` set to the revision of the delete.
    pub record: Record,
    /// The value before this change (Modified, Deleted).
    pub prev: Option<Record>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub records: Vec<Record>,
    /// The store revision the page was read at.
    pub revision: i64,
    /// Key to continue after, if more records remain.
    pub continue_after: Option<String>,
}

/// A live stream of events for a key prefix, in revision order. Dropping it
/// unsubscribes. An `Err` item is always the last one: the stream ends after
/// it ([`StoreError::WatcherTooSlow`] when the reader fell behind,
/// [`StoreError::Compacted`] when compaction overtook a replay).
pub struct WatchStream {
    /// Events are shared between the watchers that receive them.
    pub receiver: tokio::sync::mpsc::Receiver<Result<std::sync::Arc<Event>, StoreError>>,
}

/// The store contract shared by every backend. Methods are synchronous and
/// fast (callers in async code may call them directly or via spawn_blocking).
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Record>, StoreError>;
    /// Keys starting with `prefix`, in key order, after `start_after`, at most `limit`
    /// (`None` or `Some(0)`: no limit).
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StoreError>;
    /// Number of keys starting with `prefix`.
    fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        Ok(self.list(prefix, None, None)?.records.len() as u64)
    }
    /// Fails with AlreadyExists if the key exists. Returns the new revision.
    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError>;
    /// Fails with NotFound, or Conflict when `expected_mod_revision` is given and differs.
    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError>;
    /// Fails with NotFound, or Conflict on a stale expected revision. Returns the deleted record
    /// with `mod_revision` set to the delete's revision.
    fn delete(&self, key: &str, expected_mod_revision: Option<i64>) -> Result<Record, StoreError>;
    /// Events for keys under `prefix` with revision > `after_revision` (0 = from now).
    /// A past revision first replays the event log, then continues live, with
    /// no gap and no duplicate between the two.
    /// Fails with Compacted when `after_revision` is older than the oldest retained revision.
    fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError>;
    fn current_revision(&self) -> Result<i64, StoreError>;
    /// Forget history up to and including `revision` (a revision beyond the
    /// current one compacts up to the current one). Watches may then start
    /// only after `revision` or later.
    fn compact(&self, revision: i64) -> Result<(), StoreError>;
}
