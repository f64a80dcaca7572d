//! The OpenAPI document: the committed file is what the code generates, every
//! operation is fully described, the server serves the document and its UI, and
//! requests are held to the types the document declares.

use std::path::Path;

use hark::realtime::protocol::SERVER_OPS;
use serde_json::json;

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
            // The operator's operations take the operator key, a header they declare,
            // and no tenant's credentials.
            if path.starts_with("/v1/operator/") {
                assert!(
                    operation["parameters"]
                        .as_array()
                        .is_some_and(|parameters| parameters
                            .iter()
                            .any(|parameter| parameter["name"] == "X-Operator-Key")),
                    "{name} does not declare X-Operator-Key"
                );
                continue;
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

#[test]
fn every_server_frame_writes_the_op_it_is_listed_under() {
    use hark::realtime::protocol::ServerFrame;
    let user = serde_json::json!({"id": uuid::Uuid::nil()});
    let profile = hark::db::UserRef {
        id: uuid::Uuid::nil(),
        username: "u".to_owned(),
        display_name: None,
        avatar_url: None,
    };
    let room_id = uuid::Uuid::nil();
    // One of each variant: a new variant fails to compile in `op` until it is named.
    let frames = [
        ServerFrame::Ack {
            reference: None,
            result: serde_json::Value::Null,
        },
        ServerFrame::Error {
            reference: None,
            code: "c",
            message: "m",
            field: None,
        },
        ServerFrame::Pong {
            reference: Some("r"),
        },
        ServerFrame::Reset { room_id, seq: 1 },
        ServerFrame::Typing {
            room_id,
            user: &user,
            expires_in_ms: 1,
        },
        ServerFrame::Read {
            room_id,
            user: &user,
            seq: 1,
        },
        ServerFrame::Presence {
            room_id,
            user: &profile,
            status: "online",
        },
        ServerFrame::Unsubscribed {
            room_id,
            reason: "not_a_member",
        },
    ];
    for frame in &frames {
        let written: serde_json::Value = serde_json::from_str(&frame.text()).unwrap();
        assert_eq!(written["op"], frame.op());
        assert!(SERVER_OPS.contains(&frame.op()), "{} is listed", frame.op());
    }
    assert_eq!(
        frames.len() + 1,
        SERVER_OPS.len(),
        "every op is a variant, or `event`"
    );
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
    let sent: std::collections::BTreeSet<String> =
        SERVER_OPS.iter().map(|op| (*op).to_owned()).collect();
    println!("server frames in the code: {sent:?}; documented as sent: {documented:?}");
    assert_eq!(
        sent, documented,
        "the server's frames and those openapi/asyncapi.yaml says it sends differ"
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

#[tokio::test]
async fn a_json_value_of_the_wrong_type_answers_422_invalid_type_and_changes_nothing() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let message = app.send(&bob.token, &room_id, "as sent").await;
    let message_path = format!(
        "/v1/rooms/{room_id}/messages/{}",
        message["id"].as_str().unwrap()
    );
    let room_path = format!("/v1/rooms/{room_id}");
    let cases = [
        (
            reqwest::Method::POST,
            "/v1/rooms".to_owned(),
            json!({"name": "r", "topic": false}),
            "topic",
        ),
        (
            reqwest::Method::POST,
            "/v1/rooms".to_owned(),
            json!({"name": 123}),
            "name",
        ),
        (
            reqwest::Method::PATCH,
            room_path.clone(),
            json!({"topic": false}),
            "topic",
        ),
        (
            reqwest::Method::PATCH,
            message_path.clone(),
            json!({"body": false}),
            "body",
        ),
        (
            reqwest::Method::PATCH,
            "/v1/tenant".to_owned(),
            json!({"name": false}),
            "name",
        ),
        (
            reqwest::Method::PATCH,
            format!("/v1/users/{}", owner.user_id),
            json!({"display_name": false}),
            "display_name",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/rooms/{room_id}/messages"),
            json!({"kind": "image", "attachment": {"url": "https://x.example/a.png", "size": "big"}}),
            "attachment.size",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/rooms/{room_id}/read"),
            json!({"seq": "1"}),
            "seq",
        ),
    ];
    let events_before = app.count_rows("room_events").await;
    for (method, path, body, field) in cases {
        let error = app
            .request(
                method.clone(),
                &path,
                Some(&owner.token),
                Some(body.clone()),
            )
            .await
            .expect_error(422, "invalid_type");
        assert_eq!(error["field"], field, "{method} {path} {body}");
    }
    assert_eq!(app.count_rows("room_events").await, events_before);
    assert_eq!(app.count_rows("rooms").await, 1);
    let room = app.get(&room_path, &owner.token).await.expect(200);
    assert!(room["topic"].is_null());
    let tenant = app.get("/v1/tenant", &owner.token).await.expect(200);
    assert_eq!(tenant["name"], "Tenant acme");
    app.post(
        "/v1/rooms",
        Some(&owner.token),
        json!({"name": "r", "visibility": "secret"}),
    )
    .await
    .expect_error(422, "invalid_visibility");
}

#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_accepted_as_the_document_allows() {
    let app = spawn_app().await;
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let sent = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&bob.token),
            json!({"kind": "file", "attachment": {"url": "https://x.example/a.pdf", "size": 1452.0}}),
        )
        .await
        .expect(201);
    assert_eq!(sent["attachment"]["size"], 1452);
    app.post(
        &format!("/v1/rooms/{room_id}/read"),
        Some(&bob.token),
        json!({"seq": 1.0}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{room_id}/read"),
        Some(&bob.token),
        json!({"seq": 1.5}),
    )
    .await
    .expect_error(422, "invalid_type");
}

#[tokio::test]
async fn an_undeclared_method_answers_405_with_the_allowed_methods() {
    let app = spawn_app().await;
    let answer = app
        .request(reqwest::Method::PUT, "/v1/auth/login", None, None)
        .await;
    assert_eq!(answer.headers.get("allow").unwrap(), "POST");
    answer.expect_error(405, "method_not_allowed");
    let answer = app
        .request(
            reqwest::Method::PUT,
            "/v1/rooms/01a2352e-f743-7207-8aac-3175c41d1fc5",
            None,
            None,
        )
        .await;
    let allow = answer
        .headers
        .get("allow")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut methods: Vec<&str> = allow.split(", ").collect();
    methods.sort_unstable();
    assert_eq!(methods, ["DELETE", "GET", "PATCH"]);
}

#[test]
fn every_pattern_of_the_document_compiles_for_the_edges_checks() {
    fn patterns<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(object) => {
                if let Some(pattern) = object.get("pattern").and_then(|value| value.as_str()) {
                    found.push(pattern);
                }
                object.values().for_each(|child| patterns(child, found));
            }
            serde_json::Value::Array(items) => {
                items.iter().for_each(|child| patterns(child, found))
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    patterns(hark::api::document::value(), &mut found);
    assert!(found.len() > 10, "the document states patterns");
    for pattern in found {
        assert!(
            regex::Regex::new(pattern).is_ok(),
            "the edge cannot check {pattern}"
        );
    }
}
