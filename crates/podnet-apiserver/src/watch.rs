//! Watches: the store's events for a collection turned into the
//! `{"type": ..., "object": ...}` lines kubectl reads, with selectors,
//! bookmarks, timeouts and Table rendering.

use crate::objects::collection_prefix;
use crate::request::{Query, ResourceTarget};
use crate::rest::{decode_record, Rest};
use crate::ApiError;
use bytes::Bytes;
use podnet_model::registry::ResourceInfo;
use podnet_model::selector::{FieldSelector, LabelSelector};
use podnet_model::table::{self, IncludeObject};
use podnet_store::{EventKind, StoreError};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How event objects are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    Object,
    Table(IncludeObject),
    PartialMetadata,
}

/// Everything a watch needs, parsed from the request.
pub struct WatchRequest {
    pub info: &'static ResourceInfo,
    pub prefix: String,
    pub resource_version: Option<i64>,
    pub send_initial: bool,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: the end of the initial ADDED events is
    /// marked with a BOOKMARK carrying `k8s.io/initial-events-end`.
    pub initial_events_requested: bool,
    pub timeout: Duration,
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
    pub rendering: Rendering,
    pub bookmark_interval: Duration,
}

impl WatchRequest {
    pub fn parse(
        target: &ResourceTarget,
        query: &Query,
        rendering: Rendering,
    ) -> Result<WatchRequest, ApiError> {
        let info = target.info;
        let labels = match query.get("labelSelector") {
            Some(s) if !s.is_empty() => Some(LabelSelector::parse(s)?),
            _ => None,
        };
        let mut field_expression = query.get("fieldSelector").unwrap_or("").to_string();
        // A watch of one object (`GET .../pods/x?watch=1` on the legacy path) is a
        // watch of the collection restricted by name.
        if let Some(name) = &target.name {
            if !field_expression.is_empty() {
                field_expression.push(',');
            }
            field_expression.push_str(&format!("metadata.name={name}"));
        }
        let fields = if field_expression.is_empty() {
            None
        } else {
            Some(FieldSelector::parse(info, &field_expression)?)
        };
        let (resource_version, send_initial) = match query.get("resourceVersion") {
            None | Some("") | Some("0") => (None, true),
            Some(rv) => (
                Some(rv.parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!("resourceVersion {rv:?} is not an integer"))
                })?),
                false,
            ),
        };
        let initial_events_requested = query.get("sendInitialEvents") == Some("true");
        let send_initial = match query.get("sendInitialEvents") {
            Some("true") => true,
            Some("false") => false,
            _ => send_initial,
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(t) if !t.is_empty() => Duration::from_secs(t.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("timeoutSeconds {t:?} is not an integer"))
            })?),
            // Upstream spreads watch lifetimes between its minimum and twice that.
            _ => {
                use rand::Rng;
                Duration::from_secs(rand::rng().random_range(1800..3600))
            }
        };
        let prefix = collection_prefix(
            info,
            if info.namespaced {
                target.namespace.as_deref()
            } else {
                None
            },
        );
        Ok(WatchRequest {
            info,
            prefix,
            resource_version,
            send_initial,
            bookmarks: query.flag("allowWatchBookmarks"),
            initial_events_requested,
            timeout,
            labels,
            fields,
            rendering,
            bookmark_interval: Duration::from_secs(15),
        })
    }

    /// Whether events go out as the stored bytes (with the resourceVersion
    /// spliced in): plain objects, nothing to select.
    fn passes_stored_bytes(&self) -> bool {
        self.rendering == Rendering::Object && self.labels.is_none() && self.fields.is_none()
    }

    fn selects(&self, obj: &Value) -> bool {
        self.labels.as_ref().is_none_or(|s| s.matches_object(obj))
            && self.fields.as_ref().is_none_or(|s| s.matches(obj))
    }
}

/// One watch event as it goes on the wire (before rendering).
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub object: Value,
}

/// Which event (if any) a selecting watcher sees for a store change: objects
/// moving into the selection are ADDED, out of it DELETED.
pub fn classify(
    kind: EventKind,
    previous_selected: bool,
    current_selected: bool,
) -> Option<&'static str> {
    match kind {
        EventKind::Added => current_selected.then_some("ADDED"),
        EventKind::Deleted => previous_selected.then_some("DELETED"),
        EventKind::Modified => match (previous_selected, current_selected) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

fn render(request: &WatchRequest, event: &WatchEvent, first: &mut bool) -> Bytes {
    let object = match request.rendering {
        Rendering::Object => event.object.clone(),
        Rendering::PartialMetadata => crate::objects::partial_metadata(&event.object),
        Rendering::Table(include) if event.kind != "ERROR" && event.kind != "BOOKMARK" => {
            let mut table = table::table(
                request.info,
                std::slice::from_ref(&event.object),
                jiff::Timestamp::now(),
                include,
                *first,
            );
            *first = false;
            table["metadata"]["resourceVersion"] =
                event.object["metadata"]["resourceVersion"].clone();
            table
        }
        Rendering::Table(_) => event.object.clone(),
    };
    let mut line = serde_json::to_vec(&json!({"type": event.kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    Bytes::from(line)
}

fn event_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Added => "ADDED",
        EventKind::Modified => "MODIFIED",
        EventKind::Deleted => "DELETED",
    }
}

/// Wire lines of recent events for watchers that pass the stored bytes on,
/// keyed by revision: a revision names exactly one change (its kind and
/// object), so every such watcher sends the same line. The first watcher to
/// reach an event encodes it; the others share its `Bytes`. Bounded: one
/// slot per `revision % LINE_CACHE_CAPACITY`, each with its own lock, so a
/// newer revision replaces an older one and watchers of different events
/// never wait for each other (a watcher that far behind encodes its own).
pub struct LineCache {
    slots: Box<[Mutex<CachedLine>]>,
}

/// A slot's line and the revision it belongs to.
type CachedLine = Option<(i64, Bytes)>;

/// Lines kept: about two group-commit batches of events for the most
/// watched collections, a few MiB of pods.
const LINE_CACHE_CAPACITY: usize = 2048;

impl Default for LineCache {
    fn default() -> Self {
        LineCache {
            slots: (0..LINE_CACHE_CAPACITY).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl LineCache {
    fn slot(&self, revision: i64) -> std::sync::MutexGuard<'_, CachedLine> {
        let index = revision.rem_euclid(LINE_CACHE_CAPACITY as i64) as usize;
        // A slot is replaced whole: a poisoned lock is usable.
        self.slots[index]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The line of a live store event passed on as stored.
    fn line(&self, event: &podnet_store::Event) -> Option<Bytes> {
        let revision = event.record.mod_revision;
        if let Some((cached, line)) = self.slot(revision).as_ref() {
            if *cached == revision {
                return Some(line.clone());
            }
        }
        // Encoded outside the lock: watchers of other events go on meanwhile.
        let line = stored_bytes_line(event_type(event.kind), &event.record)?;
        let mut slot = self.slot(revision);
        // Never replace a newer revision's line with an older one.
        if slot.as_ref().is_none_or(|(cached, _)| *cached < revision) {
            *slot = Some((revision, line.clone()));
        }
        Some(line)
    }
}

/// The wire line of an event built from the stored bytes, without decoding
/// them (see [`crate::raw`]); `None` when they need the decoder.
fn stored_bytes_line(kind: &str, record: &podnet_store::Record) -> Option<Bytes> {
    let object = crate::raw::with_resource_version(&record.value, record.mod_revision)?;
    let mut line = Vec::with_capacity(object.len() + kind.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(&object);
    line.extend_from_slice(b"}\n");
    Some(Bytes::from(line))
}

/// An initial event: already on the wire, or to be rendered.
enum Initial {
    Line(Bytes),
    Event(WatchEvent),
}

fn error_event(error: &ApiError) -> WatchEvent {
    WatchEvent {
        kind: "ERROR",
        object: error.to_status(),
    }
}

/// Start a watch; the returned receiver yields the encoded lines. The task
/// ends on timeout, on a store error (sent as an ERROR event) or when the
/// receiver is dropped.
pub fn start(rest: &Rest, request: WatchRequest) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    let mut initial = Vec::new();
    let after = match request.resource_version {
        Some(rv) if !request.send_initial => rv,
        _ => {
            let mut start_after = None;
            let mut revision = None;
            loop {
                let page = rest
                    .store
                    .list(&request.prefix, start_after.as_deref(), Some(500))?;
                revision.get_or_insert(page.revision);
                for record in &page.records {
                    if request.passes_stored_bytes() {
                        if let Some(line) = stored_bytes_line("ADDED", record) {
                            initial.push(Initial::Line(line));
                            continue;
                        }
                    }
                    let obj = decode_record(request.info, record)?;
                    if request.selects(&obj) {
                        initial.push(Initial::Event(WatchEvent {
                            kind: "ADDED",
                            object: obj,
                        }));
                    }
                }
                match page.continue_after {
                    Some(after) => start_after = Some(after),
                    None => break,
                }
            }
            revision.unwrap_or(0)
        }
    };
    let stream = match rest.store.watch(&request.prefix, after) {
        Ok(stream) => Some(stream),
        Err(StoreError::Compacted { requested, oldest }) => {
            let error = error_event(&ApiError::Expired { requested, oldest });
            let mut first = true;
            let line = render(&request, &error, &mut first);
            let _ = sender.try_send(line);
            None
        }
        Err(e) => return Err(e.into()),
    };
    let Some(mut stream) = stream else {
        return Ok(receiver);
    };
    let lines = Arc::clone(&rest.watch_lines);
    tokio::spawn(async move {
        let mut first = true;
        let mut last_revision = after;
        for event in initial {
            let line = match event {
                Initial::Line(line) => line,
                Initial::Event(event) => render(&request, &event, &mut first),
            };
            if sender.send(line).await.is_err() {
                return;
            }
        }
        if request.initial_events_requested && request.bookmarks {
            // The end of the initial state, as upstream marks it for informers.
            let bookmark = bookmark_event(&request, last_revision, true);
            if sender
                .send(render(&request, &bookmark, &mut first))
                .await
                .is_err()
            {
                return;
            }
        }
        let deadline = tokio::time::sleep(request.timeout);
        tokio::pin!(deadline);
        let mut bookmark_timer = tokio::time::interval(request.bookmark_interval);
        bookmark_timer.tick().await;
        let mut events = Vec::with_capacity(EVENTS_PER_WAKE);
        let mut outgoing: Vec<Bytes> = Vec::new();
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = sender.closed() => return,
                _ = bookmark_timer.tick(), if request.bookmarks => {
                    let bookmark = bookmark_event(&request, last_revision, false);
                    if sender.send(render(&request, &bookmark, &mut first)).await.is_err() {
                        return;
                    }
                }
                received = stream.receiver.recv_many(&mut events, EVENTS_PER_WAKE) => {
                    if received == 0 {
                        return;
                    }
                    // Everything queued goes out as one piece: one hand-over
                    // to the connection per group commit, not one per event.
                    let mut ended = false;
                    for next in events.drain(..) {
                        let event = match next {
                            Ok(event) => event,
                            // A watcher that fell too far behind is closed like
                            // any ended watch: the client re-watches from the
                            // last resourceVersion it saw (or re-lists on 410).
                            Err(StoreError::WatcherTooSlow { prefix, capacity }) => {
                                tracing::info!(%prefix, capacity, last_revision, "closing a watch that fell behind");
                                ended = true;
                                break;
                            }
                            Err(e) => {
                                let error = match e {
                                    StoreError::Compacted { requested, oldest } => ApiError::Expired { requested, oldest },
                                    other => ApiError::Store(other),
                                };
                                outgoing.push(render(&request, &error_event(&error), &mut first));
                                ended = true;
                                break;
                            }
                        };
                        last_revision = event.record.mod_revision;
                        if request.passes_stored_bytes() {
                            if let Some(line) = lines.line(&event) {
                                outgoing.push(line);
                                continue;
                            }
                        }
                        if let Some(wire) = to_wire_event(&request, &event) {
                            outgoing.push(render(&request, &wire, &mut first));
                        }
                    }
                    if !outgoing.is_empty() && sender.send(crate::server::joined(&mut outgoing)).await.is_err() {
                        return;
                    }
                    if ended {
                        return;
                    }
                }
            }
        }
    });
    Ok(receiver)
}

/// Most store events a watch takes from its queue at once.
const EVENTS_PER_WAKE: usize = 256;

fn bookmark_event(request: &WatchRequest, revision: i64, initial_end: bool) -> WatchEvent {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    WatchEvent {
        kind: "BOOKMARK",
        object: json!({
            "kind": request.info.kind,
            "apiVersion": request.info.api_version(),
            "metadata": metadata,
        }),
    }
}

fn to_wire_event(request: &WatchRequest, event: &podnet_store::Event) -> Option<WatchEvent> {
    let current = decode_record(request.info, &event.record).ok()?;
    let previous_selected = match &event.prev {
        Some(prev) => decode_record(request.info, prev)
            .map(|obj| request.selects(&obj))
            .unwrap_or(false),
        // A delete without the previous value carries the last value itself.
        None => event.kind == EventKind::Deleted && request.selects(&current),
    };
    let current_selected = event.kind != EventKind::Deleted && request.selects(&current);
    let previous_selected = if event.kind == EventKind::Deleted && event.prev.is_some() {
        previous_selected || request.selects(&current)
    } else {
        previous_selected
    };
    classify(event.kind, previous_selected, current_selected).map(|kind| WatchEvent {
        kind,
        object: current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_changes_become_added_and_deleted() {
        assert_eq!(classify(EventKind::Modified, false, true), Some("ADDED"));
        assert_eq!(classify(EventKind::Modified, true, false), Some("DELETED"));
        assert_eq!(classify(EventKind::Modified, true, true), Some("MODIFIED"));
        assert_eq!(classify(EventKind::Modified, false, false), None);
        assert_eq!(classify(EventKind::Added, false, false), None);
        assert_eq!(classify(EventKind::Deleted, true, false), Some("DELETED"));
    }
}
