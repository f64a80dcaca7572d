//! The published OpenAPI document: what poem-openapi generates (OpenAPI 3.0), rewritten
//! as OpenAPI 3.1 so that generated clients get the types the server really uses.
//!
//! Two things in the 3.0 form made generators produce wrong or no code:
//! - a property that refers to another schema and has its own description comes out
//!   as `allOf: [{$ref}, {description}]`, which openapi-python-client refuses for
//!   enums and TypeScript generators turn into `T & unknown`; 3.1 allows `$ref` with
//!   a sibling `description`, so it becomes that;
//! - optional properties are answered as `null` when absent (and `null` clears a
//!   field in patches), but nothing said they may be `null`; in 3.1 they become
//!   `type: [T, "null"]`, or `anyOf: [{$ref}, {type: "null"}]` for references.
//!
//! It also states two rules of text fields: an `email` property is an email address
//! ([`EMAIL_PATTERN`], which the edge enforces, as the SQL constraint behind it does);
//! and PostgreSQL text cannot hold U+0000, so strings without a pattern of their own
//! get one that excludes it (the server answers 422 `invalid_text` to such a string).

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

/// The document as JSON, built once.
static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let generated = super::service().spec();
    let mut document = serde_json::from_str(&generated).unwrap_or(Value::Null);
    upgrade(&mut document);
    document
});

/// The document as pretty JSON, as served at `/openapi.json`.
pub fn json() -> String {
    serde_json::to_string_pretty(&*DOCUMENT).unwrap_or_default()
}

/// The document as YAML, as served at `/openapi.yaml` and committed in
/// `openapi/openapi.yaml`.
pub fn yaml() -> String {
    serde_yaml::to_string(&*DOCUMENT).unwrap_or_default()
}

/// The document as a value, for code that reads it (route names for traces).
pub fn value() -> &'static Value {
    &DOCUMENT
}

/// Rewrites a generated OpenAPI 3.0 document as OpenAPI 3.1.
fn upgrade(document: &mut Value) {
    if let Some(version) = document.get_mut("openapi") {
        *version = json!("3.1.0");
    }
    visit(document);
}

/// Rewrites every schema object under `value`, depth first.
fn visit(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for child in object.values_mut() {
                visit(child);
            }
            unwrap_described_reference(object);
            if object.contains_key("properties") {
                give_emails_their_pattern(object);
                make_optional_properties_nullable(object);
            }
            exclude_nul_from_free_text(object);
        }
        Value::Array(items) => items.iter_mut().for_each(visit),
        _ => {}
    }
}

/// `allOf: [{$ref}, {description}]` becomes `{$ref, description}`.
fn unwrap_described_reference(object: &mut Map<String, Value>) {
    let Some(Value::Array(parts)) = object.get("allOf") else {
        return;
    };
    let reference = parts.iter().find_map(|part| part.get("$ref").cloned());
    let only_reference_and_description = parts.len() <= 2
        && parts.iter().all(|part| {
            part.as_object().is_some_and(|fields| {
                fields
                    .keys()
                    .all(|key| key == "$ref" || key == "description")
            })
        });
    if let (Some(reference), true) = (reference, only_reference_and_description) {
        object.remove("allOf");
        object.insert("$ref".to_owned(), reference);
    }
}

/// An email address: something, `@`, something with a dot, none of it spaces or
/// control characters. The classes are explicit, so the pattern means the same in
/// every regex dialect, and they exclude every character that PostgreSQL's `\s`
/// (the `users_email_format` constraint) takes for a space.
pub const EMAIL_PATTERN: &str = r"^[^@\u0000-\u0020\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+@[^@\u0000-\u0020\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+\.[^@\u0000-\u0020\u007f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$";

/// Every property named `email` gets [`EMAIL_PATTERN`].
fn give_emails_their_pattern(object: &mut Map<String, Value>) {
    if let Some(Value::Object(properties)) = object.get_mut("properties")
        && let Some(Value::Object(email)) = properties.get_mut("email")
    {
        email.insert("pattern".to_owned(), json!(EMAIL_PATTERN));
    }
}

/// A string schema without a format, an enumeration or a pattern excludes U+0000.
fn exclude_nul_from_free_text(object: &mut Map<String, Value>) {
    let is_string = match object.get("type") {
        Some(Value::String(kind)) => kind == "string",
        Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "string"),
        _ => false,
    };
    let constrained = ["format", "enum", "pattern"]
        .iter()
        .any(|key| object.contains_key(*key));
    if is_string && !constrained {
        object.insert("pattern".to_owned(), json!("^[^\\u0000]*$"));
    }
}

/// Every property not in `required` may be `null`.
fn make_optional_properties_nullable(object: &mut Map<String, Value>) {
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let Some(Value::Object(properties)) = object.get_mut("properties") else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        if required.contains(name) {
            continue;
        }
        let Value::Object(schema) = property else {
            continue;
        };
        if let Some(reference) = schema.remove("$ref") {
            schema.insert(
                "anyOf".to_owned(),
                json!([{"$ref": reference}, {"type": "null"}]),
            );
        } else if let Some(Value::String(kind)) = schema.get("type").cloned() {
            schema.insert("type".to_owned(), json!([kind, "null"]));
        }
    }
}
