//! Request bodies held to the OpenAPI document, before any handler sees them. The
//! framework would otherwise take `false` or `12` for a string (and store `"false"`),
//! refuse `1452.0` for an integer that the document, as JSON Schema, allows, and name
//! a nested field without its parent. So the edge checks every JSON body of a
//! documented operation against its schema, the one statement of the bounds that
//! clients and fuzzers also read: a value of another type answers 422 `invalid_type`,
//! a value outside an enumeration, a length, a range or a pattern 422
//! `invalid_<field>` (`invalid_url` for URLs, `invalid_text` for U+0000), each with
//! the field's path; an integer written with a zero fraction is rewritten as one.
//! The SQL functions check the same bounds again, as data rules.

use std::collections::HashMap;
use std::sync::LazyLock;

use poem::http::Method;
use serde_json::Value;

use crate::error::ApiError;

/// The request body schema of each documented operation, by method and route.
static BODY_SCHEMAS: LazyLock<HashMap<(Method, &'static str), &'static Value>> =
    LazyLock::new(|| {
        let document = crate::api::document::value();
        let mut schemas = HashMap::new();
        let Some(paths) = document.get("paths").and_then(Value::as_object) else {
            return schemas;
        };
        for (route, item) in paths {
            let Some(operations) = item.as_object() else {
                continue;
            };
            for (method, operation) in operations {
                // The framework names the media type `application/json; charset=utf-8`.
                let schema = operation
                    .pointer("/requestBody/content")
                    .and_then(Value::as_object)
                    .and_then(|content| {
                        content
                            .iter()
                            .find(|(media_type, _)| media_type.starts_with("application/json"))
                    })
                    .and_then(|(_, media)| media.get("schema"));
                let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes());
                if let (Some(schema), Ok(method)) = (schema, method) {
                    schemas.insert((method, route.as_str()), schema);
                }
            }
        }
        schemas
    });

/// Whether an operation takes a JSON body that [`check_body`] checks.
pub fn has_body_schema(method: &Method, route: &str) -> bool {
    BODY_SCHEMAS.contains_key(&(method.clone(), route))
}

/// Checks a JSON body sent to `route` with `method`. Answers the body to pass on when
/// it had to be rewritten (integers written as floats), `None` when it passes as it
/// is (or is not JSON at all: the framework then answers `invalid_body`).
pub fn check_body(method: &Method, route: &str, body: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(schema) = BODY_SCHEMAS.get(&(method.clone(), route)) else {
        return Ok(None);
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return Ok(None);
    };
    let mut changed = false;
    if let Err(mismatch) = conform(&mut value, schema, "", &mut changed) {
        return Err(mismatch.into_error());
    }
    Ok(changed.then(|| serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())))
}

/// Why a value does not conform.
#[derive(Debug)]
enum Mismatch {
    /// A value of another JSON type: the field and the types allowed.
    Type { field: String, expected: String },
    /// A value out of the schema's bounds: the field and what it must be.
    Bound { field: String, rule: String },
    /// A string with U+0000, which no text field can hold.
    Nul { field: String },
}

impl Mismatch {
    fn into_error(self) -> ApiError {
        match self {
            Self::Type { field, expected } => ApiError::invalid(
                &field,
                "invalid_type",
                format!("`{field}` must be {expected}"),
            ),
            Self::Bound { field, rule } => {
                let name = field
                    .rsplit('.')
                    .next()
                    .unwrap_or(&field)
                    .split('[')
                    .next()
                    .unwrap_or_default();
                let code = if name == "url" || name.ends_with("_url") {
                    "invalid_url".to_owned()
                } else {
                    format!("invalid_{name}")
                };
                ApiError::invalid(&field, code, format!("`{field}` must be {rule}"))
            }
            Self::Nul { field } => ApiError::invalid(
                &field,
                "invalid_text",
                "Text may not contain the NUL character (U+0000)",
            ),
        }
    }
}

/// The pattern the document gives every free text field (see `api::document`).
const NO_NUL: &str = "^[^\\u0000]*$";

/// Whether `text` matches a pattern of the document (compiled once per pattern). The
/// document's patterns use explicit classes and `\uXXXX` escapes only, which mean
/// the same to ECMAScript (JSON Schema's dialect), Python and Rust.
fn matches(pattern: &'static str, text: &str) -> bool {
    static COMPILED: LazyLock<std::sync::Mutex<HashMap<&'static str, Option<regex::Regex>>>> =
        LazyLock::new(Default::default);
    let mut compiled = COMPILED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    compiled
        .entry(pattern)
        .or_insert_with(|| regex::Regex::new(pattern).ok())
        .as_ref()
        .is_none_or(|regex| regex.is_match(text))
}

/// Checks a string or a number against the bounds of its schema.
fn within_bounds(value: &Value, schema: &'static Value, field: &str) -> Result<(), Mismatch> {
    let bound = |rule: String| Mismatch::Bound {
        field: field_name(field),
        rule,
    };
    if let Value::String(text) = value {
        let length = text.chars().count();
        if let Some(most) = schema.get("maxLength").and_then(Value::as_u64)
            && length as u64 > most
        {
            return Err(bound(format!("at most {most} characters")));
        }
        if let Some(least) = schema.get("minLength").and_then(Value::as_u64)
            && (length as u64) < least
        {
            return Err(bound(format!("at least {least} characters")));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            if text.contains('\0') {
                return Err(Mismatch::Nul {
                    field: field_name(field),
                });
            }
            if pattern != NO_NUL && !matches(pattern, text) {
                return Err(bound(format!("of the form {pattern}")));
            }
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(least) = schema.get("minimum").and_then(Value::as_f64)
            && number < least
        {
            return Err(bound(format!("at least {least}")));
        }
        if let Some(most) = schema.get("maximum").and_then(Value::as_f64)
            && number > most
        {
            return Err(bound(format!("at most {most}")));
        }
    }
    Ok(())
}

/// A schema with its `$ref` followed (to `#/components/schemas/…`).
fn resolve(schema: &'static Value) -> &'static Value {
    let mut schema = schema;
    for _ in 0..8 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let pointer = reference.trim_start_matches('#');
        match crate::api::document::value().pointer(pointer) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

/// Checks `value` against `schema`, rewriting integers written as floats; `field` is
/// the value's path from the body's top (`owner.username`).
fn conform(
    value: &mut Value,
    schema: &'static Value,
    field: &str,
    changed: &mut bool,
) -> Result<(), Mismatch> {
    let schema = resolve(schema);
    if let Some(Value::Array(branches)) = schema.get("anyOf") {
        let mut first_mismatch = None;
        for branch in branches {
            let mut attempt = value.clone();
            let mut attempt_changed = false;
            match conform(&mut attempt, branch, field, &mut attempt_changed) {
                Ok(()) => {
                    *value = attempt;
                    *changed |= attempt_changed;
                    return Ok(());
                }
                Err(mismatch) => {
                    first_mismatch.get_or_insert(mismatch);
                }
            }
        }
        return first_mismatch.map_or(Ok(()), Err);
    }
    if let Some(Value::Array(parts)) = schema.get("allOf") {
        for part in parts {
            conform(value, part, field, changed)?;
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(kind)) => vec![kind.as_str()],
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|kind| fits(value, kind, changed)) {
        return Err(Mismatch::Type {
            field: field_name(field),
            expected: describe(&types),
        });
    }
    if let (Some(Value::Array(allowed)), Value::String(_)) = (schema.get("enum"), &*value)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(Mismatch::Bound {
            field: field_name(field),
            rule: format!("one of {}", names.join(", ")),
        });
    }
    within_bounds(value, schema, field)?;
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = schema.get("properties") {
                for (name, child) in object.iter_mut() {
                    if let Some(property) = properties.get(name) {
                        conform(child, property, &join(field, name), changed)?;
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    conform(item, item_schema, &format!("{field}[{index}]"), changed)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether `value` is of JSON Schema type `kind`; an integer written with a zero
/// fraction is one, and is rewritten as such.
fn fits(value: &mut Value, kind: &str, changed: &mut bool) -> bool {
    match kind {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "number" => value.is_number(),
        "integer" => {
            if value.is_i64() || value.is_u64() {
                return true;
            }
            match value.as_f64() {
                // Whole numbers within i64's range (2^63, exactly representable).
                Some(float)
                    if float.fract() == 0.0 && float.abs() < 9_223_372_036_854_775_808.0 =>
                {
                    *value = Value::from(float as i64);
                    *changed = true;
                    true
                }
                _ => false,
            }
        }
        _ => true,
    }
}

fn join(field: &str, name: &str) -> String {
    if field.is_empty() {
        name.to_owned()
    } else {
        format!("{field}.{name}")
    }
}

/// The body itself is named `body`.
fn field_name(field: &str) -> String {
    if field.is_empty() {
        "body".to_owned()
    } else {
        field.to_owned()
    }
}

fn describe(types: &[&str]) -> String {
    let named: Vec<String> = types
        .iter()
        .map(|kind| match *kind {
            "null" => "null".to_owned(),
            "integer" => "an integer".to_owned(),
            "object" => "an object".to_owned(),
            "array" => "an array".to_owned(),
            other => format!("a {other}"),
        })
        .collect();
    named.join(" or ")
}
