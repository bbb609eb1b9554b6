//! Label selectors (string form and LabelSelector objects) and field selectors.
//!
//! The string grammar and the matching rules follow upstream's
//! `k8s.io/apimachinery/pkg/labels` and `pkg/fields`: `!=` and `notin` also
//! match objects that lack the label, keys are qualified names (optional DNS
//! subdomain prefix and `/`), values are label values (63 characters at most).
//! Field selectors only accept the fields upstream supports for each kind;
//! anything else is refused with upstream's `field label not supported: <f>`.

use crate::registry::ResourceInfo;
use crate::ModelError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// How one label requirement compares the label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LabelOperator {
    /// `key=value` / `key==value`: the label exists with this value.
    Equals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label exists with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label does not exist.
    DoesNotExist,
    /// `key>3`: the label exists and is an integer greater than the value.
    GreaterThan,
    /// `key<3`: the label exists and is an integer less than the value.
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    /// Sorted and deduplicated (empty for Exists / DoesNotExist).
    pub values: BTreeSet<String>,
}

impl LabelRequirement {
    /// Whether a label map (`metadata.labels`, possibly absent) satisfies this term.
    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let label_value = labels
            .and_then(|labels| labels.get(&self.key))
            .map(|value| value.as_str().unwrap_or_default());
        match self.operator {
            LabelOperator::Equals | LabelOperator::In => {
                label_value.is_some_and(|value| self.values.contains(value))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                label_value.is_none_or(|value| !self.values.contains(value))
            }
            LabelOperator::Exists => label_value.is_some(),
            LabelOperator::DoesNotExist => label_value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(Ok(actual)) = label_value.map(str::parse::<i64>) else {
                    return false;
                };
                // Parsing validated that exactly one integer value is present.
                let Some(Ok(bound)) = self.values.iter().next().map(|v| v.parse::<i64>()) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined_values = self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            LabelOperator::Equals => write!(f, "{}={}", self.key, joined_values),
            LabelOperator::NotEquals => write!(f, "{}!={}", self.key, joined_values),
            LabelOperator::In => write!(f, "{} in ({})", self.key, joined_values),
            LabelOperator::NotIn => write!(f, "{} notin ({})", self.key, joined_values),
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{}", self.key, joined_values),
            LabelOperator::LessThan => write!(f, "{}<{}", self.key, joined_values),
        }
    }
}

/// A parsed label selector: a conjunction of requirements.
///
/// The default value (no requirements) matches every object. A selector built
/// from a JSON `null` matches nothing, as upstream's
/// `LabelSelectorAsSelector(nil)` does; callers for which an absent selector
/// means "everything" (e.g. list filtering) simply don't build one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    matches_nothing: bool,
}

impl LabelSelector {
    /// Parse the string form: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::InvalidSelector {
            selector: s.to_string(),
            reason,
        };
        let tokens = lex_label_selector(s).map_err(invalid)?;
        let mut parser = LabelSelectorParser {
            tokens,
            position: 0,
        };
        let mut requirements = parser.parse_requirements().map_err(invalid)?;
        requirements.sort();
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Build from a `metav1.LabelSelector` JSON object (matchLabels, matchExpressions).
    ///
    /// `null` yields a selector that matches nothing; `{}` matches everything.
    pub fn from_object(v: &Value) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::InvalidSelector {
            selector: v.to_string(),
            reason,
        };
        let object = match v {
            Value::Null => {
                return Ok(LabelSelector {
                    requirements: Vec::new(),
                    matches_nothing: true,
                })
            }
            Value::Object(object) => object,
            _ => return Err(invalid("a label selector must be an object".to_string())),
        };
        let mut requirements = Vec::new();
        if let Some(match_labels) = object.get("matchLabels").filter(|m| !m.is_null()) {
            let match_labels = match_labels
                .as_object()
                .ok_or_else(|| invalid("matchLabels must be an object of strings".to_string()))?;
            for (key, value) in match_labels {
                let value = value.as_str().ok_or_else(|| {
                    invalid(format!("matchLabels value for {key:?} must be a string"))
                })?;
                validate_label_key(key).map_err(invalid)?;
                validate_label_value(value).map_err(invalid)?;
                requirements.push(LabelRequirement {
                    key: key.clone(),
                    operator: LabelOperator::Equals,
                    values: BTreeSet::from([value.to_string()]),
                });
            }
        }
        if let Some(expressions) = object.get("matchExpressions").filter(|m| !m.is_null()) {
            let expressions = expressions
                .as_array()
                .ok_or_else(|| invalid("matchExpressions must be a list".to_string()))?;
            for expression in expressions {
                requirements.push(requirement_from_expression(expression).map_err(invalid)?);
            }
        }
        requirements.sort();
        Ok(LabelSelector {
            requirements,
            matches_nothing: false,
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches_labels(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }

    /// Whether a label map satisfies the selector.
    pub fn matches_labels(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        !self.matches_nothing
            && self
                .requirements
                .iter()
                .all(|requirement| requirement.matches_labels(labels))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// True when the selector selects every object (no requirements).
    pub fn is_everything(&self) -> bool {
        !self.matches_nothing && self.requirements.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        write!(f, "{}", parts.join(","))
    }
}

fn requirement_from_expression(expression: &Value) -> Result<LabelRequirement, String> {
    let key = expression
        .get("key")
        .and_then(Value::as_str)
        .ok_or("matchExpressions entry needs a string key")?;
    validate_label_key(key)?;
    let operator_name = expression
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("matchExpressions entry needs an operator")?;
    let values: Vec<&str> = match expression.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| v.as_str().ok_or("matchExpressions values must be strings"))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("matchExpressions values must be a list".to_string()),
    };
    let operator = match operator_name {
        "In" => LabelOperator::In,
        "NotIn" => LabelOperator::NotIn,
        "Exists" => LabelOperator::Exists,
        "DoesNotExist" => LabelOperator::DoesNotExist,
        other => return Err(format!("{other:?} is not a valid label selector operator")),
    };
    match operator {
        LabelOperator::In | LabelOperator::NotIn if values.is_empty() => {
            return Err(format!(
                "values: Required value: must be specified when `operator` is 'In' or 'NotIn' (key {key:?})"
            ))
        }
        LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => {
            return Err(format!(
                "values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist' (key {key:?})"
            ))
        }
        _ => {}
    }
    for value in &values {
        validate_label_value(value)?;
    }
    Ok(LabelRequirement {
        key: key.to_string(),
        operator,
        values: values.into_iter().map(str::to_string).collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelToken {
    Identifier(String),
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Bang,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
}

impl fmt::Display for LabelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            LabelToken::Identifier(identifier) => identifier.as_str(),
            LabelToken::In => "in",
            LabelToken::NotIn => "notin",
            LabelToken::Equals => "=",
            LabelToken::DoubleEquals => "==",
            LabelToken::NotEquals => "!=",
            LabelToken::Bang => "!",
            LabelToken::GreaterThan => ">",
            LabelToken::LessThan => "<",
            LabelToken::OpenParen => "(",
            LabelToken::CloseParen => ")",
            LabelToken::Comma => ",",
        };
        f.write_str(text)
    }
}

fn is_label_special_character(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex_label_selector(input: &str) -> Result<Vec<LabelToken>, String> {
    let characters: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < characters.len() {
        let c = characters[index];
        if c.is_whitespace() {
            index += 1;
            continue;
        }
        if is_label_special_character(c) {
            let next = characters.get(index + 1).copied();
            let (token, width) = match (c, next) {
                ('=', Some('=')) => (LabelToken::DoubleEquals, 2),
                ('=', _) => (LabelToken::Equals, 1),
                ('!', Some('=')) => (LabelToken::NotEquals, 2),
                ('!', _) => (LabelToken::Bang, 1),
                ('(', _) => (LabelToken::OpenParen, 1),
                (')', _) => (LabelToken::CloseParen, 1),
                (',', _) => (LabelToken::Comma, 1),
                ('>', _) => (LabelToken::GreaterThan, 1),
                _ => (LabelToken::LessThan, 1),
            };
            tokens.push(token);
            index += width;
            continue;
        }
        let start = index;
        while index < characters.len()
            && !characters[index].is_whitespace()
            && !is_label_special_character(characters[index])
        {
            index += 1;
        }
        let word: String = characters[start..index].iter().collect();
        tokens.push(match word.as_str() {
            "in" => LabelToken::In,
            "notin" => LabelToken::NotIn,
            _ => LabelToken::Identifier(word),
        });
    }
    Ok(tokens)
}

struct LabelSelectorParser {
    tokens: Vec<LabelToken>,
    position: usize,
}

impl LabelSelectorParser {
    fn peek(&self) -> Option<&LabelToken> {
        self.tokens.get(self.position)
    }

    fn next_token(&mut self) -> Option<LabelToken> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn parse_requirements(&mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut requirements = Vec::new();
        if self.tokens.is_empty() {
            return Ok(requirements);
        }
        loop {
            requirements.push(self.parse_requirement()?);
            match self.next_token() {
                None => return Ok(requirements),
                Some(LabelToken::Comma) => {
                    if self.peek().is_none() {
                        return Err("found ',' at the end, expected: identifier".to_string());
                    }
                }
                Some(other) => return Err(format!("found '{other}', expected: ',' or 'end'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let negated = if self.peek() == Some(&LabelToken::Bang) {
            self.position += 1;
            true
        } else {
            false
        };
        let key = match self.next_token() {
            Some(LabelToken::Identifier(key)) => key,
            Some(other) => return Err(format!("found '{other}', expected: identifier")),
            None => return Err("found end of input, expected: identifier".to_string()),
        };
        validate_label_key(&key)?;
        let at_term_end = matches!(self.peek(), None | Some(LabelToken::Comma));
        if negated || at_term_end {
            if negated && !at_term_end {
                return Err(format!(
                    "found '{}', expected: ',' or 'end' after !{key}",
                    self.peek().map(|t| t.to_string()).unwrap_or_default()
                ));
            }
            let operator = if negated {
                LabelOperator::DoesNotExist
            } else {
                LabelOperator::Exists
            };
            return Ok(LabelRequirement {
                key,
                operator,
                values: BTreeSet::new(),
            });
        }
        let operator = match self.next_token() {
            Some(LabelToken::Equals | LabelToken::DoubleEquals) => LabelOperator::Equals,
            Some(LabelToken::NotEquals) => LabelOperator::NotEquals,
            Some(LabelToken::In) => LabelOperator::In,
            Some(LabelToken::NotIn) => LabelOperator::NotIn,
            Some(LabelToken::GreaterThan) => LabelOperator::GreaterThan,
            Some(LabelToken::LessThan) => LabelOperator::LessThan,
            Some(other) => {
                return Err(format!(
                    "found '{other}', expected: '=', '!=', '==', 'in', notin'"
                ))
            }
            None => return Err("found end of input, expected: operator".to_string()),
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.parse_value_set()?,
            _ => BTreeSet::from([self.parse_single_value()?]),
        };
        for value in &values {
            validate_label_value(value)?;
        }
        if matches!(
            operator,
            LabelOperator::GreaterThan | LabelOperator::LessThan
        ) {
            let value = values.iter().next().cloned().unwrap_or_default();
            if value.parse::<i64>().is_err() {
                return Err(format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer (got {value:?})"
                ));
            }
        }
        Ok(LabelRequirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `!=`, `>` or `<`; an absent value means "".
    fn parse_single_value(&mut self) -> Result<String, String> {
        match self.peek() {
            None | Some(LabelToken::Comma) => Ok(String::new()),
            Some(LabelToken::Identifier(_)) => match self.next_token() {
                Some(LabelToken::Identifier(value)) => Ok(value),
                _ => Err("expected an identifier".to_string()),
            },
            // Keywords are fine as values: `a=in` selects the value "in".
            Some(LabelToken::In) => {
                self.position += 1;
                Ok("in".to_string())
            }
            Some(LabelToken::NotIn) => {
                self.position += 1;
                Ok("notin".to_string())
            }
            Some(other) => Err(format!("found '{other}', expected: identifier")),
        }
    }

    /// `(a, b, )`: empty members are the empty value, as upstream parses them.
    fn parse_value_set(&mut self) -> Result<BTreeSet<String>, String> {
        match self.next_token() {
            Some(LabelToken::OpenParen) => {}
            Some(other) => return Err(format!("found '{other}', expected: '('")),
            None => return Err("found end of input, expected: '('".to_string()),
        }
        let mut values = BTreeSet::new();
        let mut expecting_value = true;
        loop {
            match self.next_token() {
                Some(LabelToken::CloseParen) => {
                    if expecting_value {
                        values.insert(String::new());
                    }
                    return Ok(values);
                }
                Some(LabelToken::Comma) => {
                    if expecting_value {
                        values.insert(String::new());
                    }
                    expecting_value = true;
                }
                Some(LabelToken::Identifier(value)) if expecting_value => {
                    values.insert(value);
                    expecting_value = false;
                }
                Some(other) => {
                    return Err(format!("found '{other}', expected: ',', ')' or identifier"))
                }
                None => return Err("found end of input, expected: ')'".to_string()),
            }
        }
    }
}

fn is_alphanumeric_ascii(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A qualified name's name part: 63 characters at most, alphanumerics at both
/// ends, `-`, `_` and `.` inside.
fn validate_qualified_name_part(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name part must be non-empty".to_string());
    }
    if name.len() > 63 {
        return Err(format!(
            "name part {name:?} must be no more than 63 characters"
        ));
    }
    let valid = name.starts_with(is_alphanumeric_ascii)
        && name.ends_with(is_alphanumeric_ascii)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(format!(
            "name part {name:?} must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: lowercase labels joined by dots, 253 characters at most.
fn validate_dns_subdomain(prefix: &str) -> Result<(), String> {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if prefix.len() > 253 || !prefix.split('.').all(label_ok) {
        return Err(format!(
            "prefix part {prefix:?} must be a lowercase RFC 1123 subdomain"
        ));
    }
    Ok(())
}

/// Label keys are qualified names: `[prefix/]name`.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let result = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() {
                Err("prefix part must be non-empty".to_string())
            } else {
                validate_dns_subdomain(prefix).and_then(|()| validate_qualified_name_part(name))
            }
        }
        None => validate_qualified_name_part(key),
    };
    result.map_err(|reason| format!("invalid label key {key:?}: {reason}"))
}

/// Label values: empty, or up to 63 alphanumerics with `-_.` inside.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    validate_qualified_name_part(value).map_err(|_| {
        format!(
            "invalid label value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)"
        )
    })
}

/// How a field selector term compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One `field op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A parsed field selector: `metadata.name=x,status.phase!=Running`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parse and check the fields against what `info` supports (error names the field).
    pub fn parse(info: &ResourceInfo, s: &str) -> Result<Self, ModelError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(s, ',') {
            if term.trim().is_empty() {
                continue;
            }
            let requirement =
                parse_field_term(&term).map_err(|reason| ModelError::InvalidSelector {
                    selector: s.to_string(),
                    reason,
                })?;
            if !supported_fields(info).contains(&requirement.field.as_str()) {
                return Err(ModelError::UnsupportedFieldLabel {
                    field: requirement.field,
                });
            }
            requirements.push(requirement);
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the object's selectable fields satisfy every term.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = selectable_field_value(obj, &requirement.field);
            match requirement.operator {
                FieldOperator::Equals => actual == requirement.value,
                FieldOperator::NotEquals => actual != requirement.value,
            }
        })
    }

    /// The terms, in the order given.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value required by an `=` term on `field`, if any (lets a caller
    /// narrow a list, e.g. `metadata.name` or `spec.nodeName`).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

/// Split on `separator` unless preceded by a backslash (escapes are kept for
/// the term parser).
fn split_unescaped(input: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    parts.push(current);
    parts
}

fn parse_field_term(term: &str) -> Result<FieldRequirement, String> {
    // Find the first unescaped operator; `!=` and `==` before `=`.
    let characters: Vec<char> = term.chars().collect();
    let mut index = 0;
    while index < characters.len() {
        let c = characters[index];
        if c == '\\' {
            index += 2;
            continue;
        }
        let next = characters.get(index + 1).copied();
        let found = match (c, next) {
            ('!', Some('=')) => Some((FieldOperator::NotEquals, 2)),
            ('=', Some('=')) => Some((FieldOperator::Equals, 2)),
            ('=', _) => Some((FieldOperator::Equals, 1)),
            _ => None,
        };
        if let Some((operator, width)) = found {
            let field: String = characters[..index].iter().collect();
            let raw_value: String = characters[index + width..].iter().collect();
            let field = field.trim().to_string();
            if field.is_empty() {
                return Err(format!(
                    "invalid field selector term {term:?}: missing field"
                ));
            }
            return Ok(FieldRequirement {
                field,
                operator,
                value: unescape_field_value(&raw_value)?,
            });
        }
        index += 1;
    }
    Err(format!(
        "invalid selector: '{term}'; can't understand '{term}'"
    ))
}

fn unescape_field_value(raw: &str) -> Result<String, String> {
    let mut value = String::new();
    let mut characters = raw.chars();
    while let Some(c) = characters.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match characters.next() {
            Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
            Some(other) => {
                return Err(format!(
                    "invalid field selector value {raw:?}: unrecognized escape sequence \\{other}"
                ))
            }
            None => {
                return Err(format!(
                    "invalid field selector value {raw:?}: unterminated escape sequence"
                ))
            }
        }
    }
    Ok(value)
}

/// The fields upstream lets each kind be selected by.
pub fn supported_fields(info: &ResourceInfo) -> &'static [&'static str] {
    const METADATA: &[&str] = &["metadata.name", "metadata.namespace"];
    match (info.group, info.kind) {
        ("", "Pod") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Secret") => &["metadata.name", "metadata.namespace", "type"],
        ("", "Node") => &["metadata.name", "metadata.namespace", "spec.unschedulable"],
        ("", "Namespace") => &["metadata.name", "metadata.namespace", "status.phase"],
        ("apps", "ReplicaSet") => &["metadata.name", "metadata.namespace", "status.replicas"],
        _ => METADATA,
    }
}

/// The string value a field selector compares against: absent fields are "",
/// booleans and numbers print as upstream formats them.
fn selectable_field_value(obj: &Value, field: &str) -> String {
    let pointer = match field {
        // Upstream selects on the Event's source component.
        "source" => "/source/component".to_string(),
        "metadata.namespace" if obj.pointer("/metadata/namespace").is_none() => {
            return String::new()
        }
        _ => format!("/{}", field.replace('.', "/")),
    };
    let value = obj.pointer(&pointer);
    match (field, value) {
        // A pod's podIP is the first of status.podIPs when that list is set.
        ("status.podIP", _) => obj
            .pointer("/status/podIPs/0/ip")
            .or(value)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ("spec.hostNetwork" | "spec.unschedulable", None) => "false".to_string(),
        ("status.replicas", None) => "0".to_string(),
        (_, Some(Value::String(text))) => text.clone(),
        (_, Some(Value::Bool(flag))) => flag.to_string(),
        (_, Some(Value::Number(number))) => number.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(group: &'static str, kind: &'static str) -> ResourceInfo {
        ResourceInfo {
            group,
            version: "v1",
            kind,
            list_kind: "List",
            plural: "things",
            singular: "thing",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: &[],
            subresources: &[],
        }
    }

    fn labeled(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "labels": labels}})
    }

    fn matches(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .matches_object(&labeled(labels))
    }

    #[test]
    fn equality_operators() {
        assert!(matches("app=web", json!({"app": "web"})));
        assert!(matches("app==web", json!({"app": "web"})));
        assert!(!matches("app=web", json!({"app": "db"})));
        assert!(!matches("app=web", json!({})));
        assert!(matches("app!=web", json!({"app": "db"})));
        assert!(matches("app!=web", json!({})));
        assert!(!matches("app!=web", json!({"app": "web"})));
        assert!(matches("app=", json!({"app": ""})));
        assert!(!matches("app=", json!({"app": "x"})));
    }

    #[test]
    fn set_operators() {
        assert!(matches("env in (prod, dev)", json!({"env": "dev"})));
        assert!(!matches("env in (prod,dev)", json!({"env": "qa"})));
        assert!(!matches("env in (prod,dev)", json!({})));
        assert!(matches("env notin (prod,dev)", json!({"env": "qa"})));
        assert!(matches("env notin (prod,dev)", json!({})));
        assert!(!matches("env notin (prod,dev)", json!({"env": "prod"})));
        assert!(matches("env in (prod,)", json!({"env": ""})));
        assert!(matches("env in ()", json!({"env": ""})));
    }

    #[test]
    fn existence_operators() {
        assert!(matches("tier", json!({"tier": "x"})));
        assert!(!matches("tier", json!({})));
        assert!(matches("!tier", json!({})));
        assert!(!matches("!tier", json!({"tier": ""})));
        assert!(matches(" ! tier , app = web ", json!({"app": "web"})));
    }

    #[test]
    fn numeric_operators() {
        assert!(matches("rank>3", json!({"rank": "4"})));
        assert!(!matches("rank>3", json!({"rank": "3"})));
        assert!(matches("rank<3", json!({"rank": "-1"})));
        assert!(!matches("rank<3", json!({"rank": "x"})));
        assert!(LabelSelector::parse("rank>x").is_err());
    }

    #[test]
    fn conjunction_whitespace_and_prefixes() {
        let selector =
            LabelSelector::parse("app.kubernetes.io/name = web,  env in (a,b),!gone").unwrap();
        assert_eq!(selector.requirements().len(), 3);
        assert!(selector.matches_object(&labeled(
            json!({"app.kubernetes.io/name": "web", "env": "b"})
        )));
        assert!(!selector.matches_object(&labeled(
            json!({"app.kubernetes.io/name": "web", "env": "b", "gone": "1"})
        )));
        assert_eq!(
            selector.to_string(),
            "app.kubernetes.io/name=web,env in (a,b),!gone"
        );
        assert!(LabelSelector::parse("").unwrap().is_everything());
    }

    #[test]
    fn invalid_selectors_are_refused() {
        for bad in [
            "a=b,",
            "a in b",
            "a in (b",
            "-a=b",
            "a=-b",
            "Example.com/a=b",
            "/a=b",
            "a b",
            "!a=b",
            "a=(b)",
            "a=b=c",
            &format!("a={}", "x".repeat(64)),
            &format!("{}=b", "k".repeat(64)),
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
        let message = LabelSelector::parse("a in b").unwrap_err().to_string();
        assert_eq!(
            message,
            r#"invalid selector "a in b": found 'b', expected: '('"#
        );
    }

    #[test]
    fn label_selector_objects() {
        let selector = LabelSelector::from_object(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]}
            ]
        }))
        .unwrap();
        assert!(
            selector.matches_object(&labeled(json!({"app": "web", "env": "prod", "tier": "1"})))
        );
        assert!(!selector.matches_object(&labeled(
            json!({"app": "web", "env": "prod", "tier": "1", "zone": "b"})
        )));
        assert!(!selector.matches_object(&labeled(
            json!({"app": "web", "env": "prod", "tier": "1", "canary": "y"})
        )));
        let everything = LabelSelector::from_object(&json!({})).unwrap();
        assert!(everything.matches_object(&json!({"metadata": {}})));
        let nothing = LabelSelector::from_object(&Value::Null).unwrap();
        assert!(!nothing.matches_object(&labeled(json!({"app": "web"}))));
        assert!(LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}]})
        )
        .is_err());
        assert!(LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
        )
        .is_err());
        assert!(LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
        )
        .is_err());
    }

    #[test]
    fn field_selectors_on_pods() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}]}
        });
        let pods = info("", "Pod");
        let check = |s: &str| FieldSelector::parse(&pods, s).unwrap().matches(&pod);
        assert!(check("spec.nodeName=node1"));
        assert!(check("spec.nodeName==node1,status.phase!=Pending"));
        assert!(!check("spec.nodeName!=node1"));
        assert!(check("metadata.name=web-1,metadata.namespace=default"));
        assert!(check("status.podIP=10.244.1.5"));
        assert!(check("spec.hostNetwork=false"));
        assert!(check("status.nominatedNodeName="));
        assert!(check(""));
        let error = FieldSelector::parse(&pods, "spec.containers=x").unwrap_err();
        assert_eq!(
            error.to_string(),
            "field label not supported: spec.containers"
        );
        assert!(FieldSelector::parse(&pods, "nonsense").is_err());
    }

    #[test]
    fn field_selectors_per_kind() {
        let event = json!({
            "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u1"},
            "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"}
        });
        let events = info("", "Event");
        let selector = FieldSelector::parse(
            &events,
            "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid=u1",
        )
        .unwrap();
        assert!(selector.matches(&event));
        assert!(FieldSelector::parse(&events, "source=default-scheduler")
            .unwrap()
            .matches(&event));
        let secrets = info("", "Secret");
        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        assert!(FieldSelector::parse(&secrets, "type=kubernetes.io/tls")
            .unwrap()
            .matches(&secret));
        let nodes = info("", "Node");
        assert!(FieldSelector::parse(&nodes, "spec.unschedulable=true")
            .unwrap()
            .matches(&json!({"spec": {"unschedulable": true}})));
        let replica_sets = info("apps", "ReplicaSet");
        assert!(FieldSelector::parse(&replica_sets, "status.replicas!=0")
            .unwrap()
            .matches(&json!({"status": {"replicas": 2}})));
        let config_maps = info("", "ConfigMap");
        assert!(FieldSelector::parse(&config_maps, "type=x").is_err());
        let escaped = FieldSelector::parse(&config_maps, r"metadata.name=a\,b").unwrap();
        assert!(escaped.matches(&json!({"metadata": {"name": "a,b"}})));
        assert_eq!(escaped.required_value("metadata.name"), Some("a,b"));
    }
}
