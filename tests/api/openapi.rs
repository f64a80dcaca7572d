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
    let spec: serde_json::Value = serde_json::from_str(&hark::api::service().spec()).unwrap();
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
    let spec: serde_json::Value = serde_json::from_str(&hark::api::service().spec()).unwrap();
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
