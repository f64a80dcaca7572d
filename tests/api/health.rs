//! Probes and the HTTP edge: request ids, errors of unknown routes, body limits,
//! compression and CORS.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Answer, PASSWORD, TestApp, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let body = app
        .request(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_reports_the_database_and_the_listener_up() {
    let app = spawn_app().await;
    // The LISTEN connection comes up just after start: until then the instance says
    // it is not ready.
    let mut answer = app.request(Method::GET, "/readyz", None, None).await;
    for _ in 0..50 {
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.body["listener"], "down", "{}", answer.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = app.request(Method::GET, "/readyz", None, None).await;
    }
    let body = answer.expect(200);
    assert_eq!(
        body,
        json!({"status": "ready", "database": "up", "listener": "up"})
    );
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_is_unreachable() {
    // A server whose pool points at a port where nothing listens.
    let mut config = crate::helpers::test_config("postgres://postgres@127.0.0.1:1/none");
    config.db_pool_timeout_ms = 500;
    let db = hark::db::Database::connect(&config.database()).unwrap();
    let state = hark::startup::AppState::new(db, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(hark::startup::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let response = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "unready", "database": "down", "listener": "down"})
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sane_incoming_one_is_echoed() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc-123");

    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "a UUID is generated: {generated}");

    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "x".repeat(500).as_str());
}

#[tokio::test]
async fn an_unknown_route_answers_a_json_404_with_the_request_id() {
    let app = spawn_app().await;
    app.request(Method::GET, "/v1/nothing-here", None, None)
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn a_wrong_method_answers_405() {
    let app = spawn_app().await;
    app.request(Method::PUT, "/v1/auth/login", None, None)
        .await
        .expect_error(405, "method_not_allowed");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413_and_nothing_is_created() {
    let app = spawn_app().await;
    let huge = "x".repeat(70 * 1024);
    let body = json!({"slug": "big", "name": huge, "owner": {"username": "owner", "password": "correct horse battery staple"}});
    app.post("/v1/tenants", None, body.clone())
        .await
        .expect_error(413, "payload_too_large");

    // A chunked body without Content-Length is cut off at the limit too.
    let bytes = serde_json::to_vec(&body).unwrap();
    let stream = futures_util::stream::iter(
        bytes
            .chunks(4096)
            .map(|chunk| Ok::<_, std::io::Error>(chunk.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .client
        .post(format!("{}/v1/tenants", app.address))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    TestApp::answer(response)
        .await
        .expect_error(413, "payload_too_large");
    assert_eq!(app.count_rows("tenants").await, 0);
}

/// `bytes` compressed with gzip.
async fn gzip(bytes: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut compressed = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(bytes)
        .read_to_end(&mut compressed)
        .await
        .unwrap();
    compressed
}

async fn post_encoded(app: &TestApp, path: &str, encoding: &str, body: Vec<u8>) -> Answer {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .unwrap();
    TestApp::answer(response).await
}

#[tokio::test]
async fn a_compressed_body_is_held_to_the_limit_by_what_it_decompresses_to() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    // 5 MB of login compresses to a few kilobytes, far under the limit.
    let huge = json!({"tenant": "acme", "login": "x".repeat(5 << 20), "password": PASSWORD});
    let compressed = gzip(&serde_json::to_vec(&huge).unwrap()).await;
    assert!(compressed.len() < 64 * 1024);
    post_encoded(&app, "/v1/auth/login", "gzip", compressed)
        .await
        .expect_error(413, "payload_too_large");

    // A compressed body under the limit is read as usual.
    let login = json!({"tenant": "acme", "login": "owner", "password": PASSWORD});
    let compressed = gzip(&serde_json::to_vec(&login).unwrap()).await;
    let session = post_encoded(&app, "/v1/auth/login", "gzip", compressed)
        .await
        .expect(200);
    assert_eq!(session["user"]["id"], tenant.owner.user_id.as_str());
    post_encoded(
        &app,
        "/v1/auth/login",
        "compress",
        serde_json::to_vec(&login).unwrap(),
    )
    .await
    .expect_error(415, "unsupported_content_encoding");
    post_encoded(&app, "/v1/auth/login", "gzip", b"not gzip at all".to_vec())
        .await
        .expect_error(400, "invalid_body");
}

#[tokio::test]
async fn login_fields_longer_than_any_account_are_refused_before_they_are_counted() {
    let app = spawn_app_with(|config| config.login_failures_per_account = 2).await;
    app.create_tenant("acme").await;
    for _ in 0..4 {
        let answer = app
            .post(
                "/v1/auth/login",
                None,
                json!({"tenant": "acme", "login": "y".repeat(40_000), "password": "wrong password"}),
            )
            .await;
        let error = answer.expect_error(422, "invalid_login");
        assert_eq!(error["field"], "login");
    }
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "owner", "password": PASSWORD}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn malformed_json_answers_400_invalid_body() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/auth/login", app.address))
        .header("content-type", "application/json")
        .body("{\"tenant\":")
        .send()
        .await
        .unwrap();
    TestApp::answer(response)
        .await
        .expect_error(400, "invalid_body");
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_gzip() {
    let app = spawn_app().await;
    let response = reqwest::Client::builder()
        .no_gzip()
        .build()
        .unwrap()
        .get(format!("{}/openapi.json", app.address))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
}

#[tokio::test]
async fn cors_allows_no_origin_by_default() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn cors_allows_the_configured_origins_only() {
    let app =
        spawn_app_with(|config| config.cors_origins = vec!["https://app.example".to_owned()]).await;
    let preflight = app
        .client
        .request(Method::OPTIONS, format!("{}/v1/users/me", app.address))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    let other = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// The value of a metric line, by name and labels as they appear in the text.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|line| {
            line.starts_with(name_and_labels) && line[name_and_labels.len()..].starts_with(' ')
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name_and_labels} in:\n{text}"))
}

#[tokio::test]
async fn metrics_count_the_traffic() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let mut client = crate::ws::WsClient::connect(&app, &bob.token).await;
    let start = client.subscribe(&room_id, None).await;
    app.send(&owner.token, &room_id, "counted").await;
    client.events_until(&room_id, start + 1).await;
    let response = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for (name, at_least) in [
        (
            "hark_http_requests_total{operation=\"sendMessage\",status=\"201\"}",
            1.0,
        ),
        (
            "hark_http_request_duration_seconds_count{operation=\"sendMessage\"}",
            1.0,
        ),
        ("hark_websockets_open", 1.0),
        ("hark_subscriptions", 1.0),
        ("hark_listen_channels", 2.0),
        ("hark_listener_up", 1.0),
        ("hark_listener_connects_total", 1.0),
        ("hark_events_received_total", 1.0),
        ("hark_events_delivered_total", 1.0),
        ("hark_delivery_lag_seconds_count", 1.0),
        ("hark_write_batch_size_count", 1.0),
    ] {
        let value = metric(&text, name);
        assert!(value >= at_least, "{name} = {value}");
    }
    let usage = metric(&text, "hark_notification_queue_usage");
    assert!((0.0..=1.0).contains(&usage));
    let pooled = metric(&text, "hark_db_pool_connections{state=\"in_use\"}")
        + metric(&text, "hark_db_pool_connections{state=\"idle\"}");
    assert!(pooled >= 1.0, "the pool holds connections");
    metric(&text, "hark_db_pool_connections{state=\"waiting\"}");
}
