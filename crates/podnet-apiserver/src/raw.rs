//! Stored objects as bytes: the store keeps each object's JSON without its
//! resourceVersion (the revision is the record's). Clients that want the
//! object as it is (watch events, plain lists) get the stored bytes with
//! `"resourceVersion":"N"` spliced into the top-level `metadata`, found by
//! a scan of the JSON's structure instead of a parse into a `Value` and a
//! serialization back: for a watch with many watchers that is most of the
//! work saved.

/// The stored object `raw` with `metadata.resourceVersion` set to
/// `revision`. `None` when `raw` is not an object with `apiVersion`, `kind`
/// and an object `metadata` at the top level (callers then decode it).
pub fn with_resource_version(raw: &[u8], revision: i64) -> Option<Vec<u8>> {
    let members = members(raw)?;
    let has = |name: &[u8]| members.iter().any(|(key, _)| *key == name);
    if !(has(b"\"apiVersion\"") && has(b"\"kind\"")) {
        return None;
    }
    let (_, metadata) = members.iter().find(|(key, _)| *key == b"\"metadata\"")?;
    if metadata.first() != Some(&b'{') {
        return None;
    }
    // `metadata` borrows from `raw`: its offset there, just past the brace.
    let body = metadata.as_ptr() as usize - raw.as_ptr() as usize + 1;
    let mut rest = Scanner {
        bytes: raw,
        at: body,
    };
    rest.skip_whitespace();
    let empty = rest.peek()? == b'}';
    let mut out = Vec::with_capacity(raw.len() + 40);
    out.extend_from_slice(&raw[..body]);
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&raw[body..]);
    Some(out)
}

/// The members of the JSON object `raw`, in order: each key as it appears
/// (with its quotes) and its value's bytes. `None` when `raw` is not an
/// object.
pub fn members(raw: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut scanner = Scanner { bytes: raw, at: 0 };
    scanner.skip_whitespace();
    scanner.expect(b'{')?;
    let mut members = Vec::new();
    loop {
        scanner.skip_whitespace();
        match scanner.peek()? {
            b'}' => return Some(members),
            b',' => {
                scanner.at += 1;
                continue;
            }
            _ => {}
        }
        let key = scanner.string()?;
        scanner.skip_whitespace();
        scanner.expect(b':')?;
        scanner.skip_whitespace();
        let start = scanner.at;
        scanner.skip_value()?;
        members.push((key, &raw[start..scanner.at]));
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// A string with its quotes, as it appears in the input.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        self.expect(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(&self.bytes[start..self.at]);
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    /// Skip one value of any type (nested objects and arrays included).
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                // Numbers, true, false, null: up to the next delimiter.
                while !matches!(
                    self.peek()?,
                    b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spliced(value: &Value, revision: i64) -> Option<Value> {
        let raw = serde_json::to_vec(value).unwrap();
        with_resource_version(&raw, revision).map(|out| serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn resource_version_lands_in_the_top_level_metadata() {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "spec": {"metadata": {"x": "not this one"}, "list": [1, {"a": "}"}, "\"quoted\\"], "n": -1.5e3, "t": true, "z": null},
            "metadata": {"name": "web", "labels": {"a": "b,}"}},
            "status": {"phase": "Pending"},
        });
        let mut expected = pod.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(spliced(&pod, 42), Some(expected));
        let empty = json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {}});
        assert_eq!(
            spliced(&empty, 7),
            Some(
                json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}})
            )
        );
        let spaced = br#" { "apiVersion" : "v1" , "kind":"ConfigMap", "metadata" : { } } "#;
        let out: Value =
            serde_json::from_slice(&with_resource_version(spaced, 3).unwrap()).unwrap();
        assert_eq!(out["metadata"], json!({"resourceVersion": "3"}));
    }

    #[test]
    fn members_are_found_with_their_values() {
        let raw = br#" {"a" : 1, "b\"c": {"x": [1, "}"]}, "d": "e" } "#;
        let found = members(raw).unwrap();
        let found: Vec<(&str, &str)> = found
            .iter()
            .map(|(k, v)| {
                (
                    std::str::from_utf8(k).unwrap(),
                    std::str::from_utf8(v).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("\"a\"", "1"),
                ("\"b\\\"c\"", r#"{"x": [1, "}"]}"#),
                ("\"d\"", "\"e\""),
            ]
        );
        assert_eq!(members(b"[1]"), None);
        assert_eq!(members(b"{\"a\": 1"), None);
    }

    #[test]
    fn unexpected_shapes_are_left_to_the_decoder() {
        assert_eq!(spliced(&json!({"metadata": {"name": "x"}}), 1), None);
        assert_eq!(
            spliced(
                &json!({"apiVersion": "v1", "kind": "Pod", "metadata": null}),
                1
            ),
            None
        );
        assert_eq!(spliced(&json!([1, 2]), 1), None);
        assert_eq!(
            with_resource_version(b"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{", 1),
            None
        );
        assert_eq!(with_resource_version(b"", 1), None);
    }
}
