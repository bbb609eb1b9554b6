//! LIST replies written as they are read: the envelope (List, Table or
//! PartialObjectMetadataList) goes out first, then the items one store page
//! at a time, each encoded straight into the body. A list of any size holds
//! at most a few pages in memory (the pages in the body's channel), never
//! every object decoded nor the whole body in one buffer.
//!
//! A list with `limit` (kubectl's chunks) is small by definition and needs
//! its continue token in the envelope, so it is read whole first and sent in
//! one piece.

use crate::objects::partial_metadata;
use crate::request::{Query, ResourceTarget};
use crate::rest::{ListedPage, Rest};
use crate::server::{full_body, Body};
use crate::watch::Rendering;
use crate::ApiError;
use bytes::Bytes;
use http::{header, Response};
use podnet_model::registry::ResourceInfo;
use podnet_model::table::{self, IncludeObject};
use serde_json::{json, Value};

/// Encoded pages waiting for the connection. Each is about 500 objects.
const PAGES_IN_FLIGHT: usize = 2;

/// A reply body larger than this gives its memory back to the system once
/// sent (see [`crate::memory`]).
const LARGE_BODY: usize = 4 * 1024 * 1024;

/// Renders the items of a list into its body.
struct Encoder {
    info: &'static ResourceInfo,
    rendering: Rendering,
    now: jiff::Timestamp,
    items: usize,
}

impl Encoder {
    /// The envelope up to the opening of its item array.
    fn head(&self, revision: i64, continue_token: Option<String>) -> Vec<u8> {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(token) = continue_token {
            metadata["continue"] = json!(token);
        }
        let mut head = match self.rendering {
            Rendering::Object => {
                let envelope = json!({
                    "kind": self.info.list_kind,
                    "apiVersion": self.info.api_version(),
                    "metadata": metadata,
                });
                let mut head = serde_json::to_vec(&envelope).expect("JSON values serialize");
                head.pop(); // the closing brace
                head.extend_from_slice(b",\"items\":[");
                head
            }
            Rendering::PartialMetadata => {
                let envelope = json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata,
                });
                let mut head = serde_json::to_vec(&envelope).expect("JSON values serialize");
                head.pop();
                head.extend_from_slice(b",\"items\":[");
                head
            }
            Rendering::Table(include) => {
                let mut envelope = table::table(self.info, &[], self.now, include, true);
                envelope["metadata"] = metadata;
                let mut head = serde_json::to_vec(&envelope).expect("JSON values serialize");
                // `table` puts the (empty) rows last: reopen them.
                debug_assert!(head.ends_with(b"[]}"), "a Table ends with its rows");
                head.truncate(head.len() - 2);
                head
            }
        };
        head.reserve(64 * 1024);
        head
    }

    /// Append one page's items to `out`.
    fn page(&mut self, page: ListedPage, out: &mut Vec<u8>) -> Result<(), ApiError> {
        for item in page.stored {
            self.separator(out);
            match self.rendering {
                Rendering::Table(include) => {
                    if !stored_table_row(self.info, &item, self.now, include, out) {
                        let object: Value = serde_json::from_slice(&item).map_err(|e| {
                            ApiError::Internal(format!("a stored object is not JSON: {e}"))
                        })?;
                        serde_json::to_writer(
                            &mut *out,
                            &table::row(self.info, object, self.now, include),
                        )
                        .expect("JSON values serialize");
                    }
                }
                Rendering::Object | Rendering::PartialMetadata => out.extend_from_slice(&item),
            }
        }
        for object in page.items {
            self.separator(out);
            match self.rendering {
                Rendering::Object => serde_json::to_writer(&mut *out, &object),
                Rendering::PartialMetadata => {
                    serde_json::to_writer(&mut *out, &partial_metadata(&object))
                }
                Rendering::Table(include) => serde_json::to_writer(
                    &mut *out,
                    &table::row(self.info, object, self.now, include),
                ),
            }
            .expect("JSON values serialize");
        }
        Ok(())
    }

    fn separator(&mut self, out: &mut Vec<u8>) {
        if self.items > 0 {
            out.push(b',');
        }
        self.items += 1;
    }

    fn tail(out: &mut Vec<u8>) {
        out.extend_from_slice(b"]}");
    }
}

/// A Table row from an object's JSON, decoding only what the cells need:
/// the object without `metadata.managedFields` (usually most of it). The
/// row's `object` copies the stored metadata as it is. False (and nothing
/// written) when the bytes are not an object with a metadata object.
fn stored_table_row(
    info: &'static ResourceInfo,
    item: &[u8],
    now: jiff::Timestamp,
    include: IncludeObject,
    out: &mut Vec<u8>,
) -> bool {
    let Some(members) = crate::raw::members(item) else {
        return false;
    };
    let Some(metadata) = members
        .iter()
        .find(|(key, _)| *key == b"\"metadata\"")
        .map(|(_, value)| *value)
    else {
        return false;
    };
    let Some(metadata_members) = crate::raw::members(metadata) else {
        return false;
    };
    let mut slim = Vec::with_capacity(item.len());
    slim.push(b'{');
    for (index, (key, value)) in members.iter().enumerate() {
        if index > 0 {
            slim.push(b',');
        }
        slim.extend_from_slice(key);
        slim.push(b':');
        if *key == b"\"metadata\"" {
            slim.push(b'{');
            let mut first = true;
            for (key, value) in &metadata_members {
                if *key == b"\"managedFields\"" {
                    continue;
                }
                if !first {
                    slim.push(b',');
                }
                first = false;
                slim.extend_from_slice(key);
                slim.push(b':');
                slim.extend_from_slice(value);
            }
            slim.push(b'}');
        } else {
            slim.extend_from_slice(value);
        }
    }
    slim.push(b'}');
    let Ok(object) = serde_json::from_slice::<Value>(&slim) else {
        return false;
    };
    let row = table::row(info, object, now, IncludeObject::None);
    let start = out.len();
    serde_json::to_writer(&mut *out, &row).expect("JSON values serialize");
    if out.last() != Some(&b'}') {
        out.truncate(start);
        return false;
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            out.pop();
            out.extend_from_slice(
                b",\"object\":{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
            );
            out.extend_from_slice(metadata);
            out.extend_from_slice(b"}}");
        }
        IncludeObject::Object => {
            out.pop();
            out.extend_from_slice(b",\"object\":");
            out.extend_from_slice(item);
            out.push(b'}');
        }
    }
    true
}

fn content_type(rendering: Rendering) -> &'static str {
    match rendering {
        Rendering::Table(_) => "application/json;as=Table;v=v1;g=meta.k8s.io",
        Rendering::Object | Rendering::PartialMetadata => "application/json",
    }
}

/// The reply to a LIST. Errors found before the first byte is sent (bad
/// selectors or continue token, an unreadable first page) are returned; a
/// later store failure ends the body early, so the client sees an
/// incomplete document rather than a wrong one.
pub fn list_response(
    rest: &Rest,
    target: &ResourceTarget,
    query: &Query,
    rendering: Rendering,
) -> Result<Response<Body>, ApiError> {
    // Plain lists copy the stored bytes and Tables decode only part of
    // them; metadata lists need objects.
    let stored_bytes = matches!(rendering, Rendering::Object | Rendering::Table(_));
    let mut cursor = rest.list_cursor(target, query, stored_bytes)?;
    let mut encoder = Encoder {
        info: target.info,
        rendering,
        now: jiff::Timestamp::now(),
        items: 0,
    };
    let first = cursor.next_page(rest.store.as_ref())?;
    let response = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type(rendering));
    if cursor.limited() || first.is_none() {
        let mut pages: Vec<ListedPage> = first.into_iter().collect();
        while let Some(page) = cursor.next_page(rest.store.as_ref())? {
            pages.push(page);
        }
        let mut body = encoder.head(cursor.revision(), cursor.continue_token());
        for page in pages {
            encoder.page(page, &mut body)?;
        }
        Encoder::tail(&mut body);
        return Ok(response
            .body(full_body(body))
            .expect("static response parts are valid"));
    }
    // Unlimited: no continue token, the envelope is known after one page.
    let mut chunk = encoder.head(cursor.revision(), None);
    if let Some(page) = first {
        encoder.page(page, &mut chunk)?;
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(PAGES_IN_FLIGHT);
    let store = rest.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut sent = 0usize;
        let mut chunk = chunk;
        loop {
            let page = match cursor.next_page(store.as_ref()) {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "a list failed while being sent; its reply ends early");
                    return;
                }
            };
            let last = page.is_none();
            let encoded = match page {
                Some(page) => encoder.page(page, &mut chunk),
                None => {
                    Encoder::tail(&mut chunk);
                    Ok(())
                }
            };
            if let Err(error) = encoded {
                tracing::warn!(%error, "a list failed while being sent; its reply ends early");
                return;
            }
            sent += chunk.len();
            let capacity = chunk.capacity();
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(capacity));
            if sender.blocking_send(Bytes::from(full)).is_err() || last {
                break;
            }
        }
        drop(chunk);
        drop(sender);
        if sent > LARGE_BODY {
            crate::memory::release_free_memory();
        }
    });
    Ok(response
        .body(crate::server::streaming_body(receiver))
        .expect("static response parts are valid"))
}
