//! A small informer: one watch stream feeding a local cache, driven by the
//! controller loop that owns it (no background task, so the loop decides when
//! its view of the cluster is consistent enough to act on).

use std::fmt::Debug;
use std::hash::Hash;

use futures::stream::BoxStream;
use futures::StreamExt;
use kube::runtime::reflector::store::{Store, Writer};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};

pub(crate) struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    writer: Writer<K>,
    store: Store<K>,
    stream: BoxStream<'static, Result<Event<K>, watcher::Error>>,
    synced: bool,
    what: String,
    dynamic_type: K::DynamicType,
}

impl<K> Informer<K>
where
    K: Resource + Clone + Debug + Send + Sync + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    pub(crate) fn new(api: Api<K>, config: watcher::Config, what: impl Into<String>) -> Self {
        Self::with_dynamic_type(api, config, what, K::DynamicType::default())
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Debug + Send + Sync + serde::de::DeserializeOwned + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    pub(crate) fn with_dynamic_type(
        api: Api<K>,
        config: watcher::Config,
        what: impl Into<String>,
        dynamic_type: K::DynamicType,
    ) -> Self {
        let writer = Writer::new(dynamic_type.clone());
        let store = writer.as_reader();
        let stream = watcher::watcher(api, config).default_backoff().boxed();
        Informer {
            writer,
            store,
            stream,
            synced: false,
            what: what.into(),
            dynamic_type,
        }
    }

    /// The cache; complete once [`Informer::synced`] is true.
    pub(crate) fn store(&self) -> &Store<K> {
        &self.store
    }

    /// One cached object by namespace and name (a map lookup, not a scan).
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<K>> {
        let mut reference =
            kube::runtime::reflector::ObjectRef::new_with(name, self.dynamic_type.clone());
        if !namespace.is_empty() {
            reference = reference.within(namespace);
        }
        self.store.get(&reference)
    }

    /// True once the initial list has been fully received.
    pub(crate) fn synced(&self) -> bool {
        self.synced
    }

    /// Waits for the next watch event and applies it to the cache. Watch errors
    /// are logged and retried with backoff by the underlying stream, so this
    /// returns `None` only if the stream itself ends.
    pub(crate) async fn next_event(&mut self) -> Option<Event<K>> {
        loop {
            match self.stream.next().await? {
                Ok(event) => {
                    self.writer.apply_watcher_event(&event);
                    if matches!(event, Event::InitDone) {
                        self.synced = true;
                    }
                    return Some(event);
                }
                Err(error) => {
                    tracing::warn!(informer = %self.what, %error, "watch failed; retrying with backoff");
                }
            }
        }
    }
}
