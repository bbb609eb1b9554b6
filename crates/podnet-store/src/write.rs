//! The semantics of a write, decided without I/O: given the key's current
//! record and the revision the write would get, either the event the write
//! produces or the reason it is refused. Both backends apply these events, so
//! they cannot disagree on what create/update/delete mean.

use crate::{Event, EventKind, Record, StoreError};

/// A write request as a value.
#[derive(Debug, Clone)]
pub(crate) enum WriteOperation {
    Create {
        key: String,
        value: bytes::Bytes,
    },
    Update {
        key: String,
        value: bytes::Bytes,
        expected_mod_revision: Option<i64>,
    },
    Delete {
        key: String,
        expected_mod_revision: Option<i64>,
    },
}

impl WriteOperation {
    pub(crate) fn key(&self) -> &str {
        match self {
            WriteOperation::Create { key, .. }
            | WriteOperation::Update { key, .. }
            | WriteOperation::Delete { key, .. } => key,
        }
    }
}

/// Decides the outcome of `operation` against the key's `current` record, the
/// write receiving `revision` if it succeeds.
pub(crate) fn plan_write(
    operation: &WriteOperation,
    current: Option<&Record>,
    revision: i64,
) -> Result<Event, StoreError> {
    match operation {
        WriteOperation::Create { key, value } => {
            if current.is_some() {
                return Err(StoreError::AlreadyExists(key.clone()));
            }
            Ok(Event {
                kind: EventKind::Added,
                record: Record {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: revision,
                    mod_revision: revision,
                },
                prev: None,
            })
        }
        WriteOperation::Update {
            key,
            value,
            expected_mod_revision,
        } => {
            let current = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_expected_revision(key, current, *expected_mod_revision)?;
            Ok(Event {
                kind: EventKind::Modified,
                record: Record {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: current.create_revision,
                    mod_revision: revision,
                },
                prev: Some(current.clone()),
            })
        }
        WriteOperation::Delete {
            key,
            expected_mod_revision,
        } => {
            let current = current.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            check_expected_revision(key, current, *expected_mod_revision)?;
            Ok(Event {
                kind: EventKind::Deleted,
                record: Record {
                    mod_revision: revision,
                    ..current.clone()
                },
                prev: Some(current.clone()),
            })
        }
    }
}

fn check_expected_revision(
    key: &str,
    current: &Record,
    expected_mod_revision: Option<i64>,
) -> Result<(), StoreError> {
    match expected_mod_revision {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            actual: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// The exclusive upper bound of the key range that starts with `prefix`, in
/// byte (= code point) order, or `None` when the range is unbounded (empty
/// prefix, or a prefix made only of the largest code point). Every key `k`
/// with `prefix <= k < bound` starts with `prefix`, which lets SQLite answer
/// prefix scans from the primary-key index.
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut characters: Vec<char> = prefix.chars().collect();
    while let Some(last) = characters.pop() {
        let next = match last as u32 {
            // Skip the surrogate gap, which holds no `char`.
            0xD7FF => Some('\u{E000}'),
            code => char::from_u32(code + 1),
        };
        if let Some(next) = next {
            characters.push(next);
            return Some(characters.into_iter().collect());
        }
        // `last` was char::MAX: carry into the previous character.
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: &str, create_revision: i64, mod_revision: i64) -> Record {
        Record {
            key: key.to_owned(),
            value: bytes::Bytes::copy_from_slice(value.as_bytes()),
            create_revision,
            mod_revision,
        }
    }

    #[test]
    fn create_of_existing_key_is_refused() {
        let existing = record("/core/pods/a/x", "{}", 3, 5);
        let operation = WriteOperation::Create {
            key: "/core/pods/a/x".into(),
            value: bytes::Bytes::from_static(b"{}"),
        };
        let error = plan_write(&operation, Some(&existing), 6).unwrap_err();
        assert!(matches!(error, StoreError::AlreadyExists(key) if key == "/core/pods/a/x"));
    }

    #[test]
    fn update_keeps_create_revision_and_reports_previous_value() {
        let existing = record("k", "old", 3, 5);
        let operation = WriteOperation::Update {
            key: "k".into(),
            value: bytes::Bytes::from_static(b"new"),
            expected_mod_revision: Some(5),
        };
        let event = plan_write(&operation, Some(&existing), 9).unwrap();
        assert_eq!(event.kind, EventKind::Modified);
        assert_eq!(event.record, record("k", "new", 3, 9));
        assert_eq!(event.prev, Some(existing));
    }

    #[test]
    fn stale_expected_revision_is_a_conflict() {
        let existing = record("k", "v", 3, 5);
        let operation = WriteOperation::Delete {
            key: "k".into(),
            expected_mod_revision: Some(4),
        };
        let error = plan_write(&operation, Some(&existing), 9).unwrap_err();
        assert!(matches!(
            error,
            StoreError::Conflict {
                expected: 4,
                actual: 5,
                ..
            }
        ));
    }

    #[test]
    fn delete_reports_last_value_at_delete_revision() {
        let existing = record("k", "v", 3, 5);
        let operation = WriteOperation::Delete {
            key: "k".into(),
            expected_mod_revision: None,
        };
        let event = plan_write(&operation, Some(&existing), 9).unwrap();
        assert_eq!(event.kind, EventKind::Deleted);
        assert_eq!(event.record, record("k", "v", 3, 9));
        assert_eq!(event.prev, Some(existing));
    }

    #[test]
    fn missing_key_update_and_delete_are_not_found() {
        for operation in [
            WriteOperation::Update {
                key: "k".into(),
                value: bytes::Bytes::new(),
                expected_mod_revision: None,
            },
            WriteOperation::Delete {
                key: "k".into(),
                expected_mod_revision: None,
            },
        ] {
            let error = plan_write(&operation, None, 1).unwrap_err();
            assert!(matches!(error, StoreError::NotFound(key) if key == "k"));
        }
    }

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(
            prefix_upper_bound("/core/pods/"),
            Some("/core/pods0".into())
        );
        assert_eq!(prefix_upper_bound("a\u{D7FF}"), Some("a\u{E000}".into()));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".into()));
        assert_eq!(prefix_upper_bound("\u{10FFFF}\u{10FFFF}"), None);
    }
}
