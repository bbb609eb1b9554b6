//! Protobuf request bodies: the `k8s\0` magic, a runtime.Unknown envelope,
//! and the typed message inside, converted to the JSON wire form. kubectl
//! 1.32+ `create <subcommand>` sends these.

use crate::ApiError;
use prost::Message;
use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

fn bad(what: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(format!(
        "the protobuf request body could not be decoded: {what}"
    ))
}

/// Decode a protobuf request body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf magic prefix"))?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(envelope).map_err(bad)?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let mut obj = convert::to_json(&api_version, &kind, &raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

/// Insert `value` under `key` unless it is empty (protobuf has no absent
/// strings or lists; JSON omits empty ones).
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        map.insert(key.to_string(), value);
    }
}

mod convert;
