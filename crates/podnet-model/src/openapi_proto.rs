//! The Swagger 2.0 document in the protobuf form kubectl asks for.
//!
//! kubectl before 1.30 (and client-go's `OpenAPISchema()`) fetch `/openapi/v2`
//! with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`
//! and fail on anything else ("proto: cannot parse invalid wire-format
//! data"). The message layout is gnostic's `openapi.v2.Document`; only the
//! fields the JSON document uses are written. Vendor extensions, defaults and
//! enums travel as YAML text (JSON is valid YAML), which is how that schema
//! carries free-form values.

use serde_json::{Map, Value};

/// Encode a Swagger 2.0 JSON document as an `openapi.v2.Document` message.
pub fn encode_document(document: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(object) = document.as_object() else {
        return out;
    };
    put_string(&mut out, 1, str_of(object, "swagger"));
    if let Some(info) = object.get("info").and_then(Value::as_object) {
        let mut info_message = Vec::new();
        put_string(&mut info_message, 1, str_of(info, "title"));
        put_string(&mut info_message, 2, str_of(info, "version"));
        put_string(&mut info_message, 3, str_of(info, "description"));
        put_message(&mut out, 2, &info_message);
    }
    put_string(&mut out, 3, str_of(object, "host"));
    put_string(&mut out, 4, str_of(object, "basePath"));
    put_strings(&mut out, 5, object.get("schemes"));
    put_strings(&mut out, 6, object.get("consumes"));
    put_strings(&mut out, 7, object.get("produces"));
    if let Some(paths) = object.get("paths").and_then(Value::as_object) {
        let mut paths_message = Vec::new();
        for (path, item) in paths {
            let mut named = Vec::new();
            put_string(&mut named, 1, path);
            put_message(&mut named, 2, &encode_path_item(item));
            put_message(&mut paths_message, 2, &named);
        }
        put_message(&mut out, 8, &paths_message);
    }
    if let Some(definitions) = object.get("definitions").and_then(Value::as_object) {
        let mut definitions_message = Vec::new();
        for (name, schema) in definitions {
            put_message(&mut definitions_message, 1, &named_schema(name, schema));
        }
        put_message(&mut out, 9, &definitions_message);
    }
    for requirement in object
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut requirement_message = Vec::new();
        for (name, scopes) in requirement.as_object().into_iter().flatten() {
            let mut scopes_message = Vec::new();
            put_strings(&mut scopes_message, 1, Some(scopes));
            let mut named = Vec::new();
            put_string(&mut named, 1, name);
            put_message_always(&mut named, 2, &scopes_message);
            put_message(&mut requirement_message, 1, &named);
        }
        put_message_always(&mut out, 12, &requirement_message);
    }
    if let Some(definitions) = object.get("securityDefinitions").and_then(Value::as_object) {
        let mut definitions_message = Vec::new();
        for (name, scheme) in definitions {
            let Some(scheme) = scheme.as_object() else {
                continue;
            };
            let mut item = Vec::new();
            match str_of(scheme, "type") {
                "apiKey" => {
                    let mut api_key = Vec::new();
                    put_string(&mut api_key, 1, "apiKey");
                    put_string(&mut api_key, 2, str_of(scheme, "name"));
                    put_string(&mut api_key, 3, str_of(scheme, "in"));
                    put_string(&mut api_key, 4, str_of(scheme, "description"));
                    put_message(&mut item, 2, &api_key);
                }
                "basic" => {
                    let mut basic = Vec::new();
                    put_string(&mut basic, 1, "basic");
                    put_string(&mut basic, 2, str_of(scheme, "description"));
                    put_message(&mut item, 1, &basic);
                }
                _ => continue,
            }
            let mut named = Vec::new();
            put_string(&mut named, 1, name);
            put_message(&mut named, 2, &item);
            put_message(&mut definitions_message, 1, &named);
        }
        put_message(&mut out, 13, &definitions_message);
    }
    put_vendor_extensions(&mut out, 16, object);
    out
}

fn encode_path_item(item: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(item) = item.as_object() else {
        return out;
    };
    for (method, field_number) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(operation) = item.get(method).and_then(Value::as_object) {
            put_message_always(&mut out, field_number, &encode_operation(operation));
        }
    }
    for parameter in item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_message_always(&mut out, 9, &encode_parameters_item(parameter));
    }
    put_vendor_extensions(&mut out, 10, item);
    out
}

fn encode_operation(operation: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    put_strings(&mut out, 1, operation.get("tags"));
    put_string(&mut out, 2, str_of(operation, "summary"));
    put_string(&mut out, 3, str_of(operation, "description"));
    put_string(&mut out, 5, str_of(operation, "operationId"));
    put_strings(&mut out, 6, operation.get("produces"));
    put_strings(&mut out, 7, operation.get("consumes"));
    for parameter in operation
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_message_always(&mut out, 8, &encode_parameters_item(parameter));
    }
    if let Some(responses) = operation.get("responses").and_then(Value::as_object) {
        let mut responses_message = Vec::new();
        for (code, response) in responses {
            let Some(response) = response.as_object() else {
                continue;
            };
            let mut response_message = Vec::new();
            put_string(&mut response_message, 1, str_of(response, "description"));
            if let Some(schema) = response.get("schema") {
                let mut schema_item = Vec::new();
                put_message_always(&mut schema_item, 1, &encode_schema(schema));
                put_message_always(&mut response_message, 2, &schema_item);
            }
            let mut response_value = Vec::new();
            put_message_always(&mut response_value, 1, &response_message);
            let mut named = Vec::new();
            put_string(&mut named, 1, code);
            put_message_always(&mut named, 2, &response_value);
            put_message(&mut responses_message, 1, &named);
        }
        put_message_always(&mut out, 9, &responses_message);
    }
    put_strings(&mut out, 10, operation.get("schemes"));
    put_bool(&mut out, 11, operation.get("deprecated"));
    put_vendor_extensions(&mut out, 13, operation);
    out
}

/// A `ParametersItem`: a body parameter or a query/path/header one.
fn encode_parameters_item(parameter: &Value) -> Vec<u8> {
    let mut parameter_message = Vec::new();
    let Some(object) = parameter.as_object() else {
        return parameter_message;
    };
    let location = str_of(object, "in");
    if location == "body" {
        let mut body = Vec::new();
        put_string(&mut body, 1, str_of(object, "description"));
        put_string(&mut body, 2, str_of(object, "name"));
        put_string(&mut body, 3, location);
        put_bool(&mut body, 4, object.get("required"));
        if let Some(schema) = object.get("schema") {
            put_message_always(&mut body, 5, &encode_schema(schema));
        }
        put_vendor_extensions(&mut body, 6, object);
        put_message_always(&mut parameter_message, 1, &body);
    } else {
        // Query and form parameters share a layout with an allowEmptyValue at
        // 5; path and header ones start their type at 5.
        let (variant, type_field, unique_field, extension_field) = match location {
            "query" => (3, 6, 20, 23),
            "formData" => (2, 6, 20, 23),
            "header" => (1, 5, 19, 22),
            _ => (4, 5, 19, 22),
        };
        let mut sub_schema = Vec::new();
        put_bool(&mut sub_schema, 1, object.get("required"));
        put_string(&mut sub_schema, 2, location);
        put_string(&mut sub_schema, 3, str_of(object, "description"));
        put_string(&mut sub_schema, 4, str_of(object, "name"));
        put_string(&mut sub_schema, type_field, str_of(object, "type"));
        put_bool(&mut sub_schema, unique_field, object.get("uniqueItems"));
        put_vendor_extensions(&mut sub_schema, extension_field, object);
        let mut non_body = Vec::new();
        put_message_always(&mut non_body, variant, &sub_schema);
        put_message_always(&mut parameter_message, 2, &non_body);
    }
    let mut item = Vec::new();
    put_message_always(&mut item, 1, &parameter_message);
    item
}

fn named_schema(name: &str, schema: &Value) -> Vec<u8> {
    let mut named = Vec::new();
    put_string(&mut named, 1, name);
    put_message_always(&mut named, 2, &encode_schema(schema));
    named
}

fn encode_schema(schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(object) = schema.as_object() else {
        return out;
    };
    put_string(&mut out, 1, str_of(object, "$ref"));
    put_string(&mut out, 2, str_of(object, "format"));
    put_string(&mut out, 3, str_of(object, "title"));
    put_string(&mut out, 4, str_of(object, "description"));
    if let Some(default) = object.get("default") {
        put_message_always(&mut out, 5, &encode_any(default));
    }
    for (key, field_number) in [("multipleOf", 6), ("maximum", 7), ("minimum", 9)] {
        if let Some(number) = object.get(key).and_then(Value::as_f64) {
            put_tag(&mut out, field_number, 1);
            out.extend_from_slice(&number.to_le_bytes());
        }
    }
    put_bool(&mut out, 8, object.get("exclusiveMaximum"));
    put_bool(&mut out, 10, object.get("exclusiveMinimum"));
    for (key, field_number) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        if let Some(number) = object.get(key).and_then(Value::as_i64) {
            put_tag(&mut out, field_number, 0);
            put_varint(&mut out, number as u64);
        }
    }
    put_string(&mut out, 13, str_of(object, "pattern"));
    put_bool(&mut out, 16, object.get("uniqueItems"));
    put_strings(&mut out, 19, object.get("required"));
    for value in object
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_message_always(&mut out, 20, &encode_any(value));
    }
    match object.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Vec::new();
            put_tag(&mut item, 2, 0);
            put_varint(&mut item, u64::from(*allowed));
            put_message_always(&mut out, 21, &item);
        }
        Some(additional @ Value::Object(_)) => {
            let mut item = Vec::new();
            put_message_always(&mut item, 1, &encode_schema(additional));
            put_message_always(&mut out, 21, &item);
        }
        _ => {}
    }
    match object.get("type") {
        Some(Value::String(single)) => {
            let mut type_item = Vec::new();
            put_string(&mut type_item, 1, single);
            put_message_always(&mut out, 22, &type_item);
        }
        Some(many @ Value::Array(_)) => {
            let mut type_item = Vec::new();
            put_strings(&mut type_item, 1, Some(many));
            put_message_always(&mut out, 22, &type_item);
        }
        _ => {}
    }
    match object.get("items") {
        Some(one @ Value::Object(_)) => {
            let mut items = Vec::new();
            put_message_always(&mut items, 1, &encode_schema(one));
            put_message_always(&mut out, 23, &items);
        }
        Some(Value::Array(many)) => {
            let mut items = Vec::new();
            for schema in many {
                put_message_always(&mut items, 1, &encode_schema(schema));
            }
            put_message_always(&mut out, 23, &items);
        }
        _ => {}
    }
    for schema in object
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_message_always(&mut out, 24, &encode_schema(schema));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let mut properties_message = Vec::new();
        for (name, schema) in properties {
            put_message(&mut properties_message, 1, &named_schema(name, schema));
        }
        put_message_always(&mut out, 25, &properties_message);
    }
    put_string(&mut out, 26, str_of(object, "discriminator"));
    put_bool(&mut out, 27, object.get("readOnly"));
    put_vendor_extensions(&mut out, 31, object);
    out
}

/// An `Any` holding a free-form value as YAML text.
fn encode_any(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let text = serde_json::to_string(value).unwrap_or_default();
    put_tag(&mut out, 2, 2);
    put_varint(&mut out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    out
}

/// Every `x-` key of an object as `NamedAny` entries.
fn put_vendor_extensions(out: &mut Vec<u8>, field_number: u32, object: &Map<String, Value>) {
    for (key, value) in object.iter().filter(|(key, _)| key.starts_with("x-")) {
        let mut named = Vec::new();
        put_string(&mut named, 1, key);
        put_message_always(&mut named, 2, &encode_any(value));
        put_message(out, field_number, &named);
    }
}

fn str_of<'a>(object: &'a Map<String, Value>, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_tag(out: &mut Vec<u8>, field_number: u32, wire_type: u8) {
    put_varint(out, (u64::from(field_number) << 3) | u64::from(wire_type));
}

/// A proto3 string field; empty strings are the default and are not written.
fn put_string(out: &mut Vec<u8>, field_number: u32, text: &str) {
    if text.is_empty() {
        return;
    }
    put_tag(out, field_number, 2);
    put_varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// A repeated string field from a JSON array of strings.
fn put_strings(out: &mut Vec<u8>, field_number: u32, values: Option<&Value>) {
    for text in values
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        put_tag(out, field_number, 2);
        put_varint(out, text.len() as u64);
        out.extend_from_slice(text.as_bytes());
    }
}

fn put_bool(out: &mut Vec<u8>, field_number: u32, value: Option<&Value>) {
    if value == Some(&Value::Bool(true)) {
        put_tag(out, field_number, 0);
        put_varint(out, 1);
    }
}

/// An embedded message, left out when empty (an element of a repeated field).
fn put_message(out: &mut Vec<u8>, field_number: u32, message: &[u8]) {
    if !message.is_empty() {
        put_message_always(out, field_number, message);
    }
}

/// An embedded message written even when empty: its presence is meaningful
/// (a oneof arm, an operation without fields).
fn put_message_always(out: &mut Vec<u8>, field_number: u32, message: &[u8]) {
    put_tag(out, field_number, 2);
    put_varint(out, message.len() as u64);
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Split a message into (field number, wire type, payload) triples.
    fn fields(mut bytes: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
        fn varint(bytes: &mut &[u8]) -> u64 {
            let mut value = 0u64;
            let mut shift = 0;
            loop {
                let byte = bytes[0];
                *bytes = &bytes[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return value;
                }
                shift += 7;
            }
        }
        let mut found = Vec::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            let wire_type = (key & 7) as u8;
            let payload = match wire_type {
                0 => varint(&mut bytes).to_le_bytes().to_vec(),
                1 => {
                    let (head, tail) = bytes.split_at(8);
                    bytes = tail;
                    head.to_vec()
                }
                2 => {
                    let length = varint(&mut bytes) as usize;
                    let (head, tail) = bytes.split_at(length);
                    bytes = tail;
                    head.to_vec()
                }
                other => panic!("unexpected wire type {other}"),
            };
            found.push((key >> 3, wire_type, payload));
        }
        found
    }

    fn field(bytes: &[u8], number: u64) -> Vec<Vec<u8>> {
        fields(bytes)
            .into_iter()
            .filter(|(field_number, _, _)| *field_number == number)
            .map(|(_, _, payload)| payload)
            .collect()
    }

    #[test]
    fn document_round_trips_through_the_wire_format() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {
                "patch": {
                    "operationId": "patchCoreV1NamespacedPod",
                    "parameters": [{"in": "query", "name": "fieldValidation", "type": "string", "uniqueItems": true}],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.Pod"}}},
                    "x-kubernetes-group-version-kind": {"group": "", "kind": "Pod", "version": "v1"}
                },
                "parameters": [{"in": "path", "name": "name", "required": true, "type": "string"}]
            }},
            "definitions": {"io.k8s.api.core.v1.Pod": {
                "type": "object",
                "properties": {"spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec"}},
                "additionalProperties": {"type": "string"},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Pod", "version": "v1"}]
            }}
        });
        let bytes = encode_document(&document);
        assert_eq!(field(&bytes, 1), [b"2.0".to_vec()]);
        let info = &field(&bytes, 2)[0];
        assert_eq!(field(info, 2), [b"v1.33.0".to_vec()]);

        let paths = &field(&bytes, 8)[0];
        let named_path = &field(paths, 2)[0];
        assert_eq!(
            field(named_path, 1),
            [b"/api/v1/namespaces/{namespace}/pods/{name}".to_vec()]
        );
        let path_item = &field(named_path, 2)[0];
        let patch = &field(path_item, 8)[0];
        assert_eq!(field(patch, 5), [b"patchCoreV1NamespacedPod".to_vec()]);
        // parameters[0] → Parameter → NonBodyParameter → query sub-schema → name
        let parameter = &field(&field(patch, 8)[0], 1)[0];
        let query = &field(&field(parameter, 2)[0], 3)[0];
        assert_eq!(field(query, 4), [b"fieldValidation".to_vec()]);
        assert_eq!(field(query, 2), [b"query".to_vec()]);
        let extension = &field(patch, 13)[0];
        assert_eq!(
            field(extension, 1),
            [b"x-kubernetes-group-version-kind".to_vec()]
        );
        let yaml = &field(&field(extension, 2)[0], 2)[0];
        assert_eq!(
            String::from_utf8_lossy(yaml),
            r#"{"group":"","kind":"Pod","version":"v1"}"#
        );
        let path_parameter = &field(&field(path_item, 9)[0], 1)[0];
        let path_sub_schema = &field(&field(path_parameter, 2)[0], 4)[0];
        assert_eq!(field(path_sub_schema, 5), [b"string".to_vec()]);

        let definitions = &field(&bytes, 9)[0];
        let pod = &field(definitions, 1)[0];
        assert_eq!(field(pod, 1), [b"io.k8s.api.core.v1.Pod".to_vec()]);
        let schema = &field(pod, 2)[0];
        assert_eq!(field(&field(schema, 22)[0], 1), [b"object".to_vec()]);
        let property = &field(&field(schema, 25)[0], 1)[0];
        let property_schema = &field(property, 2)[0];
        assert_eq!(
            field(property_schema, 1),
            [b"#/definitions/io.k8s.api.core.v1.PodSpec".to_vec()]
        );
        let additional = &field(schema, 21)[0];
        assert_eq!(
            field(&field(&field(additional, 1)[0], 22)[0], 1),
            [b"string".to_vec()]
        );
    }

    #[test]
    fn whole_v2_document_encodes() {
        let bytes = encode_document(crate::schema::openapi_v2());
        let definitions = &field(&bytes, 9)[0];
        assert!(field(definitions, 1).len() > 100);
        assert!(field(&field(&bytes, 8)[0], 2).len() > 50);
    }
}
