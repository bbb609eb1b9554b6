//! The SQLite backend: the embedded default.
//!
//! One committer thread owns the only writing connection. Callers hand it
//! their write and wait; whatever has queued up while the previous batch was
//! being made durable becomes the next batch: one `BEGIN IMMEDIATE … COMMIT`
//! and so one fsync (WAL, `synchronous=FULL`) for all of them. Each caller is
//! answered only after its batch is durable, and its result is its own (a
//! conflict refuses that write alone). Reads use a small pool of connections
//! that WAL lets run beside the writer.
//!
//! The database must be owned by one process: the committer keeps the current
//! revision in memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSql, Type};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use crate::watch::{HistoryChunk, HistorySource, WatchHub};
use crate::write::{plan_write, prefix_upper_bound, WriteOperation};
use crate::{Event, EventKind, ListPage, Record, Store, StoreError, StoreOptions, WatchStream};

/// `kv` holds current values, `log` one row per revision for watches (kept
/// until compaction), `meta` the revision counter and the compaction mark.
/// The revision counter lives in `meta` rather than being derived from the
/// tables, so that it is never reused after deletes and compaction.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY NOT NULL,
    key TEXT NOT NULL,
    -- 0 added, 1 modified, 2 deleted
    kind INTEGER NOT NULL,
    -- the new value; for a delete the last value
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    -- the value before a modification (a delete's previous value is `value`)
    prev_value BLOB,
    -- the mod_revision before a modification or delete
    prev_mod_revision INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
";

const META_REVISION: &str = "revision";
const META_COMPACTED_REVISION: &str = "compacted_revision";

/// Readers kept open between calls; more are opened under load and closed after.
const IDLE_READERS_KEPT: usize = 8;

/// Longest wait for more writes before committing a batch smaller than the
/// previous one (see `Committer::run`).
const GROUP_COMMIT_LINGER: Duration = Duration::from_micros(300);

/// How long a connection waits for a lock (checkpoints) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

enum Command {
    Write(WriteOperation),
    Compact(i64),
}

struct WriteRequest {
    command: Command,
    reply: mpsc::SyncSender<Result<Option<Event>, StoreError>>,
}

struct SqliteShared {
    path: PathBuf,
    idle_readers: Mutex<Vec<Connection>>,
    /// Highest durable revision (may be ahead of the watch hub's published one).
    committed_revision: AtomicI64,
    compacted_revision: AtomicI64,
}

/// A [`Store`] in a SQLite database file.
pub struct SqliteStore {
    shared: Arc<SqliteShared>,
    hub: Arc<WatchHub>,
    requests: Option<mpsc::Sender<WriteRequest>>,
    committer: Option<JoinHandle<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_options(path, StoreOptions::default())
    }

    pub fn open_with_options(
        path: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let connection = open_writer(&path)?;
        let revision = read_meta(&connection, META_REVISION)?;
        let compacted_revision = read_meta(&connection, META_COMPACTED_REVISION)?;
        let shared = Arc::new(SqliteShared {
            path: path.clone(),
            idle_readers: Mutex::new(Vec::new()),
            committed_revision: AtomicI64::new(revision),
            compacted_revision: AtomicI64::new(compacted_revision),
        });
        let hub = Arc::new(WatchHub::new(revision, options.watch_buffer));
        let committer = Committer {
            connection,
            revision,
            compacted_revision,
            shared: Arc::clone(&shared),
            hub: Arc::clone(&hub),
            max_batch: options.max_batch.max(1),
        };
        let (requests, received_requests) = mpsc::channel();
        let committer = std::thread::Builder::new()
            .name("podnet-store-commit".into())
            .spawn(move || committer.run(received_requests))
            .map_err(|spawn_error| {
                StoreError::Backend(format!(
                    "cannot start the writer thread for {}: {spawn_error}",
                    path.display()
                ))
            })?;
        Ok(SqliteStore {
            shared,
            hub,
            requests: Some(requests),
            committer: Some(committer),
        })
    }

    /// The revision up to which history has been forgotten (0 = none).
    pub fn compacted_revision(&self) -> i64 {
        self.shared.compacted_revision.load(Ordering::SeqCst)
    }

    /// Number of watchers receiving live events. A dropped watch stream stops
    /// being counted once the next event is published.
    pub fn live_watcher_count(&self) -> usize {
        self.hub.live_watcher_count()
    }

    fn submit(&self, command: Command) -> Result<Option<Event>, StoreError> {
        let writer_stopped = || {
            StoreError::Backend(format!(
                "the writer thread of {} has stopped: restart the server",
                self.shared.path.display()
            ))
        };
        let requests = self.requests.as_ref().ok_or_else(writer_stopped)?;
        let (reply, replied) = mpsc::sync_channel(1);
        requests
            .send(WriteRequest { command, reply })
            .map_err(|_| writer_stopped())?;
        replied.recv().map_err(|_| writer_stopped())?
    }

    fn write(&self, operation: WriteOperation) -> Result<Event, StoreError> {
        self.submit(Command::Write(operation))?.ok_or_else(|| {
            StoreError::Backend("the writer answered a write without its event".into())
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the request channel ends the committer after the batch in
        // flight; joining makes sure the database is closed when drop returns.
        self.requests.take();
        if let Some(committer) = self.committer.take() {
            if committer.join().is_err() {
                tracing::error!(path = %self.shared.path.display(), "store writer thread panicked");
            }
        }
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|open_error| {
        StoreError::Backend(format!(
            "cannot open store database {}: {open_error}",
            path.display()
        ))
    })?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let journal_mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "store database {} cannot use write-ahead logging (journal mode stays {journal_mode}): put it on a local filesystem",
            path.display()
        )));
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged write
    // survives a power loss, not only a process crash.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|open_error| {
        StoreError::Backend(format!(
            "cannot open store database {} for reading: {open_error}",
            path.display()
        ))
    })?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "query_only", true)?;
    Ok(connection)
}

fn read_meta(connection: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(connection
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

fn write_meta(connection: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![name, value])?;
    Ok(())
}

fn read_record(connection: &Connection, key: &str) -> rusqlite::Result<Option<Record>> {
    connection
        .prepare_cached("SELECT value, create_revision, mod_revision FROM kv WHERE key = ?1")?
        .query_row([key], |row| {
            Ok(Record {
                key: key.to_owned(),
                value: row.get::<_, Vec<u8>>(0)?.into(),
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
            })
        })
        .optional()
}

fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Added => 0,
        EventKind::Modified => 1,
        EventKind::Deleted => 2,
    }
}

fn apply_event(connection: &Connection, event: &Event) -> rusqlite::Result<()> {
    let record = &event.record;
    match event.kind {
        EventKind::Added => {
            connection
                .prepare_cached(
                    "INSERT INTO kv (key, value, create_revision, mod_revision)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    record.key,
                    &record.value[..],
                    record.create_revision,
                    record.mod_revision
                ])?;
        }
        EventKind::Modified => {
            connection
                .prepare_cached("UPDATE kv SET value = ?2, mod_revision = ?3 WHERE key = ?1")?
                .execute(params![record.key, &record.value[..], record.mod_revision])?;
        }
        EventKind::Deleted => {
            connection
                .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([&record.key])?;
        }
    }
    let prev_value = match event.kind {
        EventKind::Modified => event.prev.as_ref().map(|prev| &prev.value[..]),
        EventKind::Added | EventKind::Deleted => None,
    };
    connection
        .prepare_cached(
            "INSERT INTO log (revision, key, kind, value, create_revision, prev_value, prev_mod_revision)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            record.mod_revision,
            record.key,
            kind_code(event.kind),
            &record.value[..],
            record.create_revision,
            prev_value,
            event.prev.as_ref().map(|prev| prev.mod_revision),
        ])?;
    Ok(())
}

fn corrupt_log_row(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        Type::Null,
        format!("store log row is corrupt: {what}").into(),
    )
}

fn event_from_log_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let revision: i64 = row.get(0)?;
    let key: String = row.get(1)?;
    let kind = match row.get::<_, i64>(2)? {
        0 => EventKind::Added,
        1 => EventKind::Modified,
        2 => EventKind::Deleted,
        _ => return Err(corrupt_log_row(2, "unknown event kind")),
    };
    let value = bytes::Bytes::from(row.get::<_, Vec<u8>>(3)?);
    let create_revision: i64 = row.get(4)?;
    let prev_value: Option<Vec<u8>> = row.get(5)?;
    let prev_mod_revision: Option<i64> = row.get(6)?;
    let prev = match kind {
        EventKind::Added => None,
        EventKind::Modified | EventKind::Deleted => {
            let prev_value = match kind {
                EventKind::Modified => prev_value
                    .ok_or_else(|| corrupt_log_row(5, "modification without prev_value"))?
                    .into(),
                _ => value.clone(),
            };
            Some(Record {
                key: key.clone(),
                value: prev_value,
                create_revision,
                mod_revision: prev_mod_revision
                    .ok_or_else(|| corrupt_log_row(6, "missing prev_mod_revision"))?,
            })
        }
    };
    Ok(Event {
        kind,
        record: Record {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

/// The `key` range for a prefix scan that resumes after `start_after`, as
/// SQL conditions the primary-key index answers.
struct KeyRange {
    lower: String,
    lower_inclusive: bool,
    upper: Option<String>,
}

impl KeyRange {
    fn new(prefix: &str, start_after: Option<&str>) -> KeyRange {
        let (lower, lower_inclusive) = match start_after {
            Some(start_after) if start_after >= prefix => (start_after.to_owned(), false),
            _ => (prefix.to_owned(), true),
        };
        KeyRange {
            lower,
            lower_inclusive,
            upper: prefix_upper_bound(prefix),
        }
    }

    /// The condition, with its parameters numbered from `first_parameter`.
    fn condition(&self, first_parameter: usize) -> String {
        let lower_operator = if self.lower_inclusive { ">=" } else { ">" };
        let mut condition = format!("key {lower_operator} ?{first_parameter}");
        if self.upper.is_some() {
            condition.push_str(&format!(" AND key < ?{}", first_parameter + 1));
        }
        condition
    }

    fn parameters(&self) -> Vec<&dyn ToSql> {
        let mut parameters: Vec<&dyn ToSql> = vec![&self.lower];
        if let Some(upper) = &self.upper {
            parameters.push(upper);
        }
        parameters
    }
}

/// SQLite's LIMIT for "at most `limit`" (negative means none).
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(-1)
}

impl SqliteShared {
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self
            .idle_readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => open_reader(&self.path)?,
        };
        let result = read(&mut connection);
        let mut idle_readers = self
            .idle_readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle_readers.len() < IDLE_READERS_KEPT {
            idle_readers.push(connection);
        }
        result
    }
}

impl HistorySource for SqliteShared {
    fn compacted_revision(&self) -> Result<i64, StoreError> {
        Ok(self.compacted_revision.load(Ordering::SeqCst))
    }

    fn read_history(
        &self,
        prefix: &str,
        after: i64,
        through: i64,
        limit: usize,
    ) -> Result<HistoryChunk, StoreError> {
        self.with_reader(|connection| {
            // One read transaction: the compaction mark and the rows come
            // from the same snapshot.
            let transaction = connection.transaction()?;
            let compacted = read_meta(&transaction, META_COMPACTED_REVISION)?;
            if after < compacted {
                return Err(StoreError::Compacted {
                    requested: after,
                    oldest: compacted,
                });
            }
            let range = KeyRange::new(prefix, None);
            let sql = format!(
                "SELECT revision, key, kind, value, create_revision, prev_value, prev_mod_revision
                 FROM log WHERE revision > ?1 AND revision <= ?2 AND {}
                 ORDER BY revision LIMIT ?{}",
                range.condition(3),
                3 + range.parameters().len(),
            );
            let mut parameters: Vec<&dyn ToSql> = vec![&after, &through];
            parameters.extend(range.parameters());
            let limit_parameter = sql_limit(limit);
            parameters.push(&limit_parameter);
            let events = transaction
                .prepare_cached(&sql)?
                .query_map(parameters.as_slice(), event_from_log_row)?
                .collect::<rusqlite::Result<Vec<Event>>>()?;
            let scanned_through = if events.len() == limit {
                events
                    .last()
                    .map_or(through, |event| event.record.mod_revision)
            } else {
                through
            };
            Ok(HistoryChunk {
                events,
                scanned_through,
            })
        })
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.shared
            .with_reader(|connection| Ok(read_record(connection, key)?))
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ListPage, StoreError> {
        let limit = crate::effective_limit(limit);
        self.shared.with_reader(|connection| {
            // The revision and the rows from one snapshot: the page is
            // exactly the state at `revision`, so a watch from it misses nothing.
            let transaction = connection.transaction()?;
            let revision = read_meta(&transaction, META_REVISION)?;
            let range = KeyRange::new(prefix, start_after);
            let sql = format!(
                "SELECT key, value, create_revision, mod_revision FROM kv
                 WHERE {} ORDER BY key LIMIT ?{}",
                range.condition(1),
                1 + range.parameters().len(),
            );
            let mut parameters = range.parameters();
            // One more than asked, to learn whether the list continues.
            let limit_parameter = sql_limit(limit.saturating_add(1));
            parameters.push(&limit_parameter);
            let mut records = transaction
                .prepare_cached(&sql)?
                .query_map(parameters.as_slice(), |row| {
                    Ok(Record {
                        key: row.get(0)?,
                        value: row.get::<_, Vec<u8>>(1)?.into(),
                        create_revision: row.get(2)?,
                        mod_revision: row.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<Record>>>()?;
            let continue_after = if records.len() > limit {
                records.truncate(limit);
                records.last().map(|record| record.key.clone())
            } else {
                None
            };
            Ok(ListPage {
                records,
                revision,
                continue_after,
            })
        })
    }

    fn count(&self, prefix: &str) -> Result<u64, StoreError> {
        self.shared.with_reader(|connection| {
            let range = KeyRange::new(prefix, None);
            let sql = format!("SELECT count(*) FROM kv WHERE {}", range.condition(1));
            let count: i64 = connection
                .prepare_cached(&sql)?
                .query_row(range.parameters().as_slice(), |row| row.get(0))?;
            Ok(count.max(0) as u64)
        })
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<i64, StoreError> {
        self.write(WriteOperation::Create {
            key: key.to_owned(),
            value: bytes::Bytes::copy_from_slice(value),
        })
        .map(|event| event.record.mod_revision)
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected_mod_revision: Option<i64>,
    ) -> Result<i64, StoreError> {
        self.write(WriteOperation::Update {
            key: key.to_owned(),
            value: bytes::Bytes::copy_from_slice(value),
            expected_mod_revision,
        })
        .map(|event| event.record.mod_revision)
    }

    fn delete(&self, key: &str, expected_mod_revision: Option<i64>) -> Result<Record, StoreError> {
        self.write(WriteOperation::Delete {
            key: key.to_owned(),
            expected_mod_revision,
        })
        .map(|event| event.record)
    }

    fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream, StoreError> {
        self.hub
            .watch(prefix, after_revision, Arc::clone(&self.shared) as _)
    }

    fn current_revision(&self) -> Result<i64, StoreError> {
        Ok(self.shared.committed_revision.load(Ordering::SeqCst))
    }

    fn compact(&self, revision: i64) -> Result<(), StoreError> {
        self.submit(Command::Compact(revision)).map(|_| ())
    }
}

/// The owner of the writing connection (runs on its own thread).
struct Committer {
    connection: Connection,
    revision: i64,
    compacted_revision: i64,
    shared: Arc<SqliteShared>,
    hub: Arc<WatchHub>,
    max_batch: usize,
}

struct BatchOutcome {
    /// One per request, in request order.
    results: Vec<Result<Option<Event>, StoreError>>,
    revision: i64,
    compacted_revision: i64,
}

impl Committer {
    fn run(mut self, requests: mpsc::Receiver<WriteRequest>) {
        let mut previous_batch_size = 0;
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            // Everything that queued up during the previous commit joins this
            // one: that is the group commit.
            while batch.len() < self.max_batch {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            // The callers answered by the previous commit are usually about
            // to send their next write. Without a short wait for them the
            // batches alternate between "everyone" and "the first one back",
            // halving the writes per fsync. The wait is bounded well below
            // an fsync and only happens when the last batch was bigger.
            let linger_until = Instant::now() + GROUP_COMMIT_LINGER;
            while batch.len() < previous_batch_size.min(self.max_batch) {
                let remaining = linger_until.saturating_duration_since(Instant::now());
                match requests.recv_timeout(remaining) {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            previous_batch_size = batch.len();
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        match self.execute(&batch) {
            Ok(outcome) => {
                self.revision = outcome.revision;
                self.compacted_revision = outcome.compacted_revision;
                self.shared
                    .committed_revision
                    .store(outcome.revision, Ordering::SeqCst);
                self.shared
                    .compacted_revision
                    .store(outcome.compacted_revision, Ordering::SeqCst);
                // Durable now: watchers may see it, then the callers hear back.
                self.hub.publish(
                    outcome
                        .results
                        .iter()
                        .filter_map(|result| result.as_ref().ok()?.as_ref()),
                );
                for (request, result) in batch.into_iter().zip(outcome.results) {
                    // A caller that gave up waiting is no reason to stop.
                    let _ = request.reply.send(result);
                }
            }
            Err(sqlite_error) => {
                tracing::error!(
                    path = %self.shared.path.display(),
                    error = %sqlite_error,
                    writes = batch.len(),
                    "store batch commit failed, nothing of it was written"
                );
                for request in batch {
                    let _ = request.reply.send(Err(StoreError::Backend(format!(
                        "writing to store database {} failed (the write was not applied): {sqlite_error}",
                        self.shared.path.display()
                    ))));
                }
            }
        }
    }

    /// One transaction for the whole batch. A refused write (conflict,
    /// missing key) changes nothing and does not consume a revision; an
    /// SQLite failure aborts the whole batch, as it would any of its writes.
    fn execute(&mut self, batch: &[WriteRequest]) -> rusqlite::Result<BatchOutcome> {
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut revision = self.revision;
        let mut compacted_revision = self.compacted_revision;
        let mut results = Vec::with_capacity(batch.len());
        for request in batch {
            match &request.command {
                Command::Write(operation) => {
                    let current = read_record(&transaction, operation.key())?;
                    match plan_write(operation, current.as_ref(), revision + 1) {
                        Ok(event) => {
                            apply_event(&transaction, &event)?;
                            revision += 1;
                            results.push(Ok(Some(event)));
                        }
                        Err(refusal) => results.push(Err(refusal)),
                    }
                }
                Command::Compact(requested) => {
                    // Never past the current revision: see `Store::compact`.
                    let target = (*requested).min(revision);
                    if target > compacted_revision {
                        transaction
                            .prepare_cached("DELETE FROM log WHERE revision <= ?1")?
                            .execute([target])?;
                        compacted_revision = target;
                    }
                    results.push(Ok(None));
                }
            }
        }
        if revision != self.revision {
            write_meta(&transaction, META_REVISION, revision)?;
        }
        if compacted_revision != self.compacted_revision {
            write_meta(&transaction, META_COMPACTED_REVISION, compacted_revision)?;
        }
        transaction.commit()?;
        Ok(BatchOutcome {
            results,
            revision,
            compacted_revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_range_conditions() {
        let range = KeyRange::new("/core/pods/", None);
        assert_eq!(range.condition(1), "key >= ?1 AND key < ?2");
        assert_eq!(range.lower, "/core/pods/");
        assert_eq!(range.upper.as_deref(), Some("/core/pods0"));

        let resumed = KeyRange::new("/core/pods/", Some("/core/pods/a/x"));
        assert_eq!(resumed.condition(3), "key > ?3 AND key < ?4");
        assert_eq!(resumed.lower, "/core/pods/a/x");

        // A continue key before the prefix does not widen the range.
        let before = KeyRange::new("/core/pods/", Some("/core/a"));
        assert_eq!(before.condition(1), "key >= ?1 AND key < ?2");

        let everything = KeyRange::new("", None);
        assert_eq!(everything.condition(1), "key >= ?1");
    }
}
