//! The OpenAPI document: the committed file is what the code generates, every
//! operation is fully described, and the server serves the document and its UI.

use std::path::Path;

use crate::helpers::spawn_app;

#[test]
fn the_committed_openapi_document_is_what_the_code_generates() {
    let generated = hark::api::spec_yaml();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed.trim_end() != generated.trim_end() {
        std::fs::write(&path, format!("{}\n", generated.trim_end())).unwrap();
        panic!("openapi/openapi.yaml was out of date and has been rewritten; commit it and re-run");
    }
}

#[test]
fn every_operation_has_an_id_a_summary_a_tag_and_documented_errors() {
    let spec: serde_json::Value = hark::api::document::value().clone();
    let paths = spec["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let name = format!("{method} {path}");
            assert!(
                operation["operationId"].is_string(),
                "{name} has no operationId"
            );
            assert!(operation["summary"].is_string(), "{name} has no summary");
            assert!(
                operation["tags"]
                    .as_array()
                    .is_some_and(|tags| !tags.is_empty()),
                "{name} has no tag"
            );
            let responses = operation["responses"].as_object().unwrap();
            if !["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
                for status in ["400", "401", "404", "422", "500"] {
                    assert!(
                        responses.contains_key(status),
                        "{name} does not document {status}"
                    );
                }
            }
            // The WebSocket also takes its token in a first frame, so it declares none.
            if path.starts_with("/v1/")
                && !path.starts_with("/v1/auth/")
                && path != "/v1/tenants"
                && path != "/v1/ws"
            {
                assert!(
                    operation["security"].is_array(),
                    "{name} has no security requirement"
                );
            }
        }
    }
    assert!(operations >= 20, "only {operations} operations");
    assert!(spec["components"]["securitySchemes"]["bearerAuth"].is_object());
}

#[tokio::test]
async fn the_server_serves_the_document_and_a_browsable_ui() {
    let app = spawn_app().await;
    let json = reqwest::get(format!("{}/openapi.json", app.address))
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    let json: serde_json::Value = json.json().await.unwrap();
    assert!(json["openapi"].as_str().unwrap().starts_with("3."));
    let yaml = reqwest::get(format!("{}/openapi.yaml", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(yaml.contains("operationId: login"));
    let ui = reqwest::get(format!("{}/docs", app.address)).await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().to_lowercase().contains("swagger"));
}

#[test]
fn every_request_body_has_an_example() {
    let spec: serde_json::Value = hark::api::document::value().clone();
    let schemas = &spec["components"]["schemas"];
    let mut missing = Vec::new();
    let mut bodies = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(schema) =
                operation["requestBody"]["content"]["application/json; charset=utf-8"]["schema"]
                    .as_object()
                    .or_else(|| {
                        operation["requestBody"]["content"]["application/json"]["schema"]
                            .as_object()
                    })
            else {
                continue;
            };
            bodies += 1;
            let name = schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
            if schemas[name]["example"].is_null() {
                missing.push(format!("{method} {path} ({name})"));
            }
        }
    }
    assert!(bodies >= 15, "only {bodies} request bodies were found");
    assert!(
        missing.is_empty(),
        "request bodies without an example: {missing:?}"
    );
}

#[test]
fn optional_properties_are_nullable_and_references_are_not_wrapped_in_all_of() {
    let spec = hark::api::document::value();
    assert_eq!(spec["openapi"], "3.1.0");
    let message = &spec["components"]["schemas"]["Message"]["properties"];
    assert_eq!(
        message["edited_at"]["type"],
        serde_json::json!(["string", "null"])
    );
    assert_eq!(
        message["sender"]["anyOf"][1],
        serde_json::json!({"type": "null"}),
        "an optional reference may be null"
    );
    let text = serde_json::to_string(spec).unwrap();
    assert!(!text.contains("allOf"), "no allOf wrappers are left");
}

/// The `op` of every frame the server writes, read from the code that writes them:
/// `"op": "…"` literals and the event frame's `op: "…"`.
fn server_frame_ops() -> std::collections::BTreeSet<String> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/realtime");
    let mut ops = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let source = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for marker in ["\"op\": \"", "op: \""] {
            for (index, _) in source.match_indices(marker) {
                let rest = &source[index + marker.len()..];
                let op = &rest[..rest.find('"').unwrap()];
                ops.insert(op.to_owned());
            }
        }
    }
    ops
}

#[test]
fn every_frame_the_server_sends_is_in_the_asyncapi_document() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/asyncapi.yaml");
    let document: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(document["asyncapi"].as_str().unwrap().starts_with("3."));
    let messages = &document["components"]["messages"];
    let schemas = &document["components"]["schemas"];
    // The ops of the messages the server sends, per the document's `send` operations.
    let mut documented = std::collections::BTreeSet::new();
    for operation in document["operations"].as_object().unwrap().values() {
        let replies = operation["reply"]["messages"].as_array().cloned();
        let sent = if operation["action"] == "send" {
            operation["messages"].as_array().cloned()
        } else {
            None
        };
        for reference in sent.into_iter().chain(replies).flatten() {
            let name = reference["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            let schema_ref = messages[name]["payload"]["$ref"].as_str().unwrap();
            let schema = &schemas[schema_ref.rsplit('/').next().unwrap()];
            documented.insert(
                schema["properties"]["op"]["const"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    let sent = server_frame_ops();
    println!("server frames in the code: {sent:?}; documented as sent: {documented:?}");
    assert!(
        sent.len() >= 8,
        "found the server's frames in the code: {sent:?}"
    );
    let missing: Vec<_> = sent.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "frames missing from openapi/asyncapi.yaml: {missing:?}"
    );
    // And every client op the server accepts is documented as received.
    for op in hark::realtime::protocol::CLIENT_OPS {
        let documented = messages
            .as_object()
            .unwrap()
            .values()
            .any(|message| message["name"] == *op);
        assert!(
            documented,
            "client op {op} is missing from openapi/asyncapi.yaml"
        );
    }
}
