//! OpenTelemetry traces: two `hark` processes export to an in-process OTLP collector,
//! and one message's way from a client's request on one instance to a socket on the
//! other is one trace.

use std::collections::HashMap;
use std::time::Duration;

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use serde_json::json;

use crate::helpers::{room_with_bob, spawn_process, terminate};
use crate::ws::WsClient;

/// The trace id the client puts in its `traceparent`.
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The client's own span id, which the HTTP server span must name as its parent.
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_on_one_instance_and_fanned_out_on_another_is_one_trace() {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let endpoint = collector.endpoint();
    let database_url = crate::helpers::fresh_database().await;
    let otel = |service: &'static str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("HARK_LOG_FORMAT", "json".to_owned()),
        ]
    };
    let (server_a, a) = spawn_process(&database_url, &otel("hark-a")).await;
    let (server_b, b) = spawn_process(&database_url, &otel("hark-b")).await;

    let (_owner, bob, room_id) = room_with_bob(&a).await;
    let mut subscriber = WsClient::connect(&b, &bob.token).await;
    subscriber.subscribe(&room_id, None).await;

    let traceparent = format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01");
    let sent = a
        .client
        .post(format!("{}/v1/rooms/{room_id}/messages", a.address))
        .bearer_auth(&bob.token)
        .header("traceparent", &traceparent)
        .json(&json!({"body": "traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    let seq = sent.json::<serde_json::Value>().await.unwrap()["seq"]
        .as_i64()
        .unwrap();
    let events = subscriber.events_until(&room_id, seq).await;
    assert_eq!(
        events.last().unwrap()["data"]["body"],
        "traced",
        "B's subscriber got the message"
    );

    // SIGTERM flushes each instance's buffered spans before it exits.
    let (exit_a, log_a) = terminate(server_a).await;
    let (exit_b, _) = terminate(server_b).await;
    assert!(exit_a.success() && exit_b.success());

    let mut spans: Vec<ExportedSpan> = Vec::new();
    for _ in 0..50 {
        spans.extend(
            collector
                .exported_spans(1, Duration::from_millis(200))
                .await,
        );
        if spans
            .iter()
            .any(|span| span.name == "fan-out" && span.trace_id == CLIENT_TRACE_ID)
        {
            break;
        }
    }
    let trace: Vec<&ExportedSpan> = spans
        .iter()
        .filter(|span| span.trace_id == CLIENT_TRACE_ID)
        .collect();
    let by_id: HashMap<&str, &ExportedSpan> = trace
        .iter()
        .map(|span| (span.span_id.as_str(), *span))
        .collect();
    println!("spans exported: {}; in the client's trace:", spans.len());
    for span in &trace {
        let parent = by_id
            .get(span.parent_span_id.as_str())
            .map_or(span.parent_span_id.as_str(), |parent| parent.name.as_str());
        println!("  {} ({}) <- {parent}", span.name, span.kind);
    }

    let request = trace
        .iter()
        .find(|span| span.kind == "SPAN_KIND_SERVER" && span.name.starts_with("POST "))
        .expect("the HTTP server span is in the trace");
    assert_eq!(request.name, "POST /v1/rooms/{room_id}/messages");
    assert_eq!(
        request.parent_span_id, CLIENT_SPAN_ID,
        "traceparent honoured"
    );
    assert!(attribute(request, "http.route").contains("\"/v1/rooms/{room_id}/messages\""));
    assert!(attribute(request, "http.response.status_code").contains("201"));

    let sql = trace
        .iter()
        .find(|span| span.name == "SELECT hark_api.message_send")
        .expect("the SQL span of the send is in the trace");
    assert_eq!(sql.kind, "SPAN_KIND_CLIENT");
    assert!(attribute(sql, "db.system.name").contains("\"postgresql\""));

    let fan_out = trace
        .iter()
        .find(|span| span.name == "fan-out")
        .expect("B's fan-out span is in the trace");
    assert!(attribute(fan_out, "subscribers").contains("IntValue(1)"));
    let receive = by_id[fan_out.parent_span_id.as_str()];
    assert_eq!(receive.kind, "SPAN_KIND_CONSUMER");
    // Only B has a subscriber in the room, so only B listens on its channel: the
    // receive span is B's, and it descends from A's request.
    let mut ancestor = receive;
    while let Some(parent) = by_id.get(ancestor.parent_span_id.as_str()) {
        ancestor = parent;
    }
    assert_eq!(ancestor.span_id, request.span_id);

    let traced_lines: Vec<&str> = log_a
        .lines()
        .filter(|line| line.contains(&format!("\"trace_id\":\"{CLIENT_TRACE_ID}\"")))
        .collect();
    println!("A's log lines in the trace: {traced_lines:?}");
    assert!(
        traced_lines
            .iter()
            .any(|line| line.contains("\"span_id\":") && line.contains("\"status\":201")),
        "A logged the request as JSON with its trace and span ids"
    );
}

/// An attribute as the collector renders it (the protobuf value's debug form).
fn attribute<'a>(span: &'a ExportedSpan, name: &str) -> &'a str {
    span.attributes
        .get(name)
        .unwrap_or_else(|| panic!("{} has no attribute {name}", span.name))
}
