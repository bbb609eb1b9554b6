//! podnet-store: a versioned key-value store with watch, the persistence under
//! the API server. One global revision (the resourceVersion), values are the
//! objects' JSON bytes, keys are `/<group or "core">/<plural>/<namespace or "-">/<name>`.
//! Backends: SQLite (embedded default, durable before acknowledging) and
//! in-memory (tests); an etcd backend can follow behind the same trait.

mod error;
pub use error::StoreError;

/// A stored value and its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key.
    pub create_revision: i64,
    /// Revision of the last write to the key (the object's resourceVersion).
    pub mod_revision: i64,
}

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
/// unsubscribes.
pub struct WatchStream {
    pub receiver: tokio::sync::mpsc::Receiver<Result<Event, StoreError>>,
}

/// The store contract shared by every backend. Methods are synchronous and
/// fast (callers in async code may call them directly or via spawn_blocking).
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> Result<Option<Record>, StoreError>;
    /// Keys starting with `prefix`, in key order, after `start_after`, at most `limit`.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StoreError>;
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
    /// Fails with Compacted when `after_revision` is older than the oldest retained revision.
    fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError>;
    fn current_revision(&self) -> Result<i64, StoreError>;
    /// Forget history up to and including `revision`.
    fn compact(&self, revision: i64) -> Result<(), StoreError>;
}
