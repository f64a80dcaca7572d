//! The operator API: tenants listed, looked at, suspended and resumed with the
//! operator key; a wrong key is refused and repeated failures throttled; a suspended
//! tenant is refused every way in and its streams end on every instance, other tenants
//! untouched, and resuming gives it back as it was.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Answer, PASSWORD, TEST_OPERATOR_KEY, TestApp, room_with_bob, spawn_app, spawn_app_with,
};
use crate::ws::{Ending, WsClient};

/// A call of the operator API with `key` in `X-Operator-Key`.
async fn operator(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .header("x-operator-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    TestApp::answer(request.send().await.expect("an answer")).await
}

fn slugs(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tenant| tenant["slug"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_operator_lists_tenants_a_page_at_a_time_finds_them_by_slug_and_gets_one() {
    let app = spawn_app().await;
    for slug in ["shop-a", "shop-b", "shop-c", "zoo"] {
        app.create_tenant(slug).await;
    }
    let first = operator(
        &app,
        Method::GET,
        "/v1/operator/tenants?slug=shop-&limit=2",
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect(200);
    assert_eq!(slugs(&first), ["shop-a", "shop-b"]);
    assert_eq!(first["next_cursor"], "shop-b");
    let second = operator(
        &app,
        Method::GET,
        "/v1/operator/tenants?slug=shop-&limit=2&cursor=shop-b",
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect(200);
    assert_eq!(slugs(&second), ["shop-c"]);
    assert!(second["next_cursor"].is_null());
    let all = operator(
        &app,
        Method::GET,
        "/v1/operator/tenants",
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect(200);
    assert_eq!(slugs(&all), ["shop-a", "shop-b", "shop-c", "zoo"]);
    assert_eq!(all["items"][3]["suspended"], false);

    let id = all["items"][3]["id"].as_str().unwrap();
    let zoo = operator(
        &app,
        Method::GET,
        &format!("/v1/operator/tenants/{id}"),
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect(200);
    assert_eq!(zoo["slug"], "zoo");
    let unknown = uuid::Uuid::now_v7();
    operator(
        &app,
        Method::GET,
        &format!("/v1/operator/tenants/{unknown}"),
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect_error(404, "tenant_not_found");
    operator(
        &app,
        Method::GET,
        "/v1/operator/tenants?limit=0",
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect_error(422, "invalid_limit");
}

#[tokio::test]
async fn a_wrong_operator_key_is_refused_and_repeated_failures_are_throttled() {
    let app = spawn_app_with(|config| config.login_failures_per_address = 3).await;
    let owner = app.create_tenant("acme").await.owner;
    // A tenant's own owner is no operator.
    app.get("/v1/operator/tenants", &owner.token)
        .await
        .expect_error(401, "invalid_operator_key");
    for _ in 0..2 {
        operator(&app, Method::GET, "/v1/operator/tenants", "wrong", None)
            .await
            .expect_error(401, "invalid_operator_key");
    }
    let throttled = operator(
        &app,
        Method::GET,
        "/v1/operator/tenants",
        TEST_OPERATOR_KEY,
        None,
    )
    .await;
    assert!(throttled.headers.contains_key("retry-after"));
    throttled.expect_error(429, "operator_key_throttled");

    let without = spawn_app_with(|config| config.operator_key = None).await;
    operator(
        &without,
        Method::GET,
        "/v1/operator/tenants",
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect_error(403, "operator_api_disabled");
}

/// Reads an event stream until it ends; answers whether it did within `limit`.
async fn ends_within(events: reqwest::Response, limit: Duration) -> bool {
    let mut body = events.bytes_stream();
    tokio::time::timeout(limit, async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_every_way_in_its_streams_end_everywhere_and_resuming_restores_it()
 {
    let a = spawn_app().await;
    // The periodic recheck is far away: only the suspension itself can end the streams.
    let b = a
        .spawn_peer_with(|config| config.token_recheck_seconds = 3600)
        .await;
    let (owner, bob, room_id) = room_with_bob(&a).await;
    let sent = a
        .send(&owner.token, &room_id, "kept through the suspension")
        .await;
    let key = a.api_key(&owner).await;
    let other = a.create_tenant("other").await.owner;
    let mut on_a = WsClient::connect(&a, &owner.token).await;
    on_a.subscribe(&room_id, None).await;
    let mut on_b = WsClient::connect(&b, &bob.token).await;
    on_b.subscribe(&room_id, None).await;
    let events = b.open_events(&bob.token, &room_id, "").await;
    assert_eq!(events.status(), 200);

    let suspended_at = Instant::now();
    let tenant = operator(
        &a,
        Method::POST,
        &format!("/v1/operator/tenants/{}/suspend", owner.tenant_id),
        TEST_OPERATOR_KEY,
        Some(json!({"reason": "unpaid invoice"})),
    )
    .await
    .expect(200);
    assert_eq!(tenant["suspended"], true);
    assert_eq!(tenant["suspended_reason"], "unpaid invoice");
    for socket in [&mut on_a, &mut on_b] {
        let ending = tokio::time::timeout(Duration::from_secs(1), socket.ending())
            .await
            .expect("the WebSocket ends within a second");
        assert_eq!(ending, Ending::Closed(4001));
    }
    let left = Duration::from_secs(1).saturating_sub(suspended_at.elapsed());
    assert!(
        ends_within(events, left + Duration::from_millis(200)).await,
        "the event stream ends within a second"
    );
    println!(
        "streams on both instances ended {} ms after the suspension",
        suspended_at.elapsed().as_millis()
    );

    // Every way in answers the same refusal, on every instance.
    for app in [&a, &b] {
        app.get("/v1/users/me", &owner.token)
            .await
            .expect_error(403, "tenant_suspended");
    }
    a.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": bob.refresh_token}),
    )
    .await
    .expect_error(403, "tenant_suspended");
    a.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": PASSWORD}),
    )
    .await
    .expect_error(403, "tenant_suspended");
    a.post(
        "/v1/auth/register",
        None,
        json!({"tenant": "acme", "username": "carol", "password": PASSWORD}),
    )
    .await
    .expect_error(403, "tenant_suspended");
    a.acting(Method::GET, "/v1/users/me", &key, &bob.user_id, None)
        .await
        .expect_error(403, "tenant_suspended");
    let upgrade = b
        .client
        .get(format!("{}/v1/ws", b.address))
        .bearer_auth(&bob.token)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    TestApp::answer(upgrade)
        .await
        .expect_error(403, "tenant_suspended");
    // Another tenant does not notice.
    a.get("/v1/users/me", &other.token).await.expect(200);
    let listed = operator(
        &a,
        Method::GET,
        "/v1/operator/tenants?slug=acme",
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect(200);
    assert_eq!(listed["items"][0]["suspended"], true);

    let resumed = operator(
        &b,
        Method::POST,
        &format!("/v1/operator/tenants/{}/resume", owner.tenant_id),
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect(200);
    assert_eq!(resumed["suspended"], false);
    assert!(resumed["suspended_at"].is_null());
    // The same tokens and key work again, and nothing was lost.
    let history = a
        .get(&format!("/v1/rooms/{room_id}/messages"), &bob.token)
        .await
        .expect(200);
    assert_eq!(history["items"][0]["id"], sent["id"]);
    a.acting(Method::GET, "/v1/users/me", &key, &bob.user_id, None)
        .await
        .expect(200);
    a.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": bob.refresh_token}),
    )
    .await
    .expect(200);
}
