//! The Swagger 2.0 document in the protobuf form (gnostic's `openapi.v2.Document`)
//! that kubectl up to 1.29 insists on for `/openapi/v2`: it asks for
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes the
//! reply as protobuf whatever its Content-Type. Encoded by hand on the wire
//! format; only what clients read is carried: info, and every definition with
//! its schema and `x-kubernetes-*` extensions.

use serde_json::Value;

/// The Content-Type of the reply. Clients ask for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but that is
/// not a valid media type (Go's parser rejects the `@`), so the bytes go out as
/// an octet stream, as upstream sends them.
pub const MEDIA_TYPE: &str = "application/octet-stream";

struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Writer {
        Writer(Vec::new())
    }
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }
    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }
    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }
    fn string(&mut self, field: u32, value: &str) {
        if !value.is_empty() {
            self.bytes(field, value.as_bytes());
        }
    }
    fn message(&mut self, field: u32, message: Writer) {
        self.bytes(field, &message.0);
    }
    fn boolean(&mut self, field: u32, value: bool) {
        if value {
            self.key(field, 0);
            self.varint(1);
        }
    }
    fn int64(&mut self, field: u32, value: i64) {
        if value != 0 {
            self.key(field, 0);
            self.varint(value as u64);
        }
    }
    fn double(&mut self, field: u32, value: f64) {
        if value != 0.0 {
            self.key(field, 1);
            self.0.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// gnostic's `Any`: the value as YAML text (JSON is valid YAML).
fn any(value: &Value) -> Writer {
    let mut w = Writer::new();
    w.string(2, &value.to_string());
    w
}

fn named_any(name: &str, value: &Value) -> Writer {
    let mut w = Writer::new();
    w.string(1, name);
    w.message(2, any(value));
    w
}

fn schema(value: &Value) -> Writer {
    let mut w = Writer::new();
    let Some(map) = value.as_object() else {
        return w;
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
    let number = |key: &str| map.get(key).and_then(Value::as_f64).unwrap_or(0.0);
    let integer = |key: &str| map.get(key).and_then(Value::as_i64).unwrap_or(0);
    let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);
    w.string(1, text("$ref"));
    w.string(2, text("format"));
    w.string(3, text("title"));
    w.string(4, text("description"));
    if let Some(default) = map.get("default") {
        w.message(5, any(default));
    }
    w.double(6, number("multipleOf"));
    w.double(7, number("maximum"));
    w.boolean(8, flag("exclusiveMaximum"));
    w.double(9, number("minimum"));
    w.boolean(10, flag("exclusiveMinimum"));
    w.int64(11, integer("maxLength"));
    w.int64(12, integer("minLength"));
    w.string(13, text("pattern"));
    w.int64(14, integer("maxItems"));
    w.int64(15, integer("minItems"));
    w.boolean(16, flag("uniqueItems"));
    w.int64(17, integer("maxProperties"));
    w.int64(18, integer("minProperties"));
    for required in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.string(19, required.as_str().unwrap_or(""));
    }
    for value in map
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(20, any(value));
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Writer::new();
            item.key(2, 0);
            item.varint(u64::from(*allowed));
            w.message(21, item);
        }
        Some(nested @ Value::Object(_)) => {
            let mut item = Writer::new();
            item.message(1, schema(nested));
            w.message(21, item);
        }
        _ => {}
    }
    match map.get("type") {
        Some(Value::String(kind)) => {
            let mut item = Writer::new();
            item.string(1, kind);
            w.message(22, item);
        }
        Some(Value::Array(kinds)) => {
            let mut item = Writer::new();
            for kind in kinds.iter().filter_map(Value::as_str) {
                item.string(1, kind);
            }
            w.message(22, item);
        }
        _ => {}
    }
    match map.get("items") {
        Some(single @ Value::Object(_)) => {
            let mut item = Writer::new();
            item.message(1, schema(single));
            w.message(23, item);
        }
        Some(Value::Array(many)) => {
            let mut item = Writer::new();
            for one in many {
                item.message(1, schema(one));
            }
            w.message(23, item);
        }
        _ => {}
    }
    for part in map
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, schema(part));
    }
    if let Some(properties) = map.get("properties").and_then(Value::as_object) {
        let mut props = Writer::new();
        for (name, property) in properties {
            let mut named = Writer::new();
            named.string(1, name);
            named.message(2, schema(property));
            props.message(1, named);
        }
        w.message(25, props);
    }
    w.string(26, text("discriminator"));
    w.boolean(27, flag("readOnly"));
    if let Some(example) = map.get("example") {
        w.message(30, any(example));
    }
    for (name, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        w.message(31, named_any(name, value));
    }
    w
}

/// Encode a Swagger 2.0 JSON document as `openapi.v2.Document`.
pub fn encode_document(doc: &Value) -> Vec<u8> {
    let mut w = Writer::new();
    w.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Writer::new();
    info.string(1, doc["info"]["title"].as_str().unwrap_or("Kubernetes"));
    info.string(2, doc["info"]["version"].as_str().unwrap_or("v1.33.0"));
    w.message(2, info);
    // Paths are omitted: kubectl reads definitions (schemas and their
    // group-version-kind extensions) and nothing else from this document.
    w.message(8, Writer::new());
    if let Some(definitions) = doc["definitions"].as_object() {
        let mut defs = Writer::new();
        for (name, definition) in definitions {
            let mut named = Writer::new();
            named.string(1, name);
            named.message(2, schema(definition));
            defs.message(1, named);
        }
        w.message(9, defs);
    }
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use serde_json::json;

    // The subset of gnostic's messages needed to read the encoding back.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Document {
        #[prost(string, tag = "1")]
        swagger: String,
        #[prost(message, optional, tag = "2")]
        info: Option<Info>,
        #[prost(message, optional, tag = "9")]
        definitions: Option<Definitions>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Info {
        #[prost(string, tag = "1")]
        title: String,
        #[prost(string, tag = "2")]
        version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Definitions {
        #[prost(message, repeated, tag = "1")]
        additional_properties: Vec<NamedSchema>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedSchema {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<Schema>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Schema {
        #[prost(string, tag = "2")]
        format: String,
        #[prost(string, repeated, tag = "19")]
        required: Vec<String>,
        #[prost(message, optional, tag = "22")]
        r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "25")]
        properties: Option<Definitions>,
        #[prost(message, repeated, tag = "31")]
        vendor_extension: Vec<NamedAny>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        value: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedAny {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct AnyValue {
        #[prost(string, tag = "2")]
        yaml: String,
    }

    #[test]
    fn definitions_round_trip_through_gnostic_shapes() {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "definitions": {
            "a.B": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer", "format": "int32"}},
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "B", "version": "v1"}]}
        }});
        let decoded = Document::decode(encode_document(&doc).as_slice()).unwrap();
        assert_eq!(decoded.swagger, "2.0");
        assert_eq!(decoded.info.unwrap().version, "v1.33.0");
        let definition = &decoded.definitions.unwrap().additional_properties[0];
        assert_eq!(definition.name, "a.B");
        let schema = definition.value.clone().unwrap();
        assert_eq!(schema.r#type.unwrap().value, vec!["object"]);
        assert_eq!(schema.required, vec!["x"]);
        let x = &schema.properties.unwrap().additional_properties[0];
        assert_eq!(x.name, "x");
        assert_eq!(x.value.clone().unwrap().format, "int32");
        let extension = &schema.vendor_extension[0];
        assert_eq!(extension.name, "x-kubernetes-group-version-kind");
        assert_eq!(
            extension.value.clone().unwrap().yaml,
            r#"[{"group":"","kind":"B","version":"v1"}]"#
        );
    }
}
