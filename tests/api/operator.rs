//! The operator API: tenants listed, looked at, suspended and resumed with the
//! operator key; a wrong key is refused and repeated failures throttled; a suspended
//! tenant is refused every way in and its streams end on every instance, other tenants
//! untouched, and resuming gives it back as it was.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::helpers::{
    PASSWORD, Session, TEST_OPERATOR_KEY, TestApp, id_of, room_with_bob, spawn_app, spawn_app_with,
};
use crate::ws::{Ending, WsClient};

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
    let first = app
        .operator(
            Method::GET,
            "/v1/operator/tenants?slug=shop-&limit=2",
            TEST_OPERATOR_KEY,
            None,
        )
        .await
        .expect(200);
    assert_eq!(slugs(&first), ["shop-a", "shop-b"]);
    assert_eq!(first["next_cursor"], "shop-b");
    let second = app
        .operator(
            Method::GET,
            "/v1/operator/tenants?slug=shop-&limit=2&cursor=shop-b",
            TEST_OPERATOR_KEY,
            None,
        )
        .await
        .expect(200);
    assert_eq!(slugs(&second), ["shop-c"]);
    assert!(second["next_cursor"].is_null());
    let all = app
        .operator(Method::GET, "/v1/operator/tenants", TEST_OPERATOR_KEY, None)
        .await
        .expect(200);
    assert_eq!(slugs(&all), ["shop-a", "shop-b", "shop-c", "zoo"]);
    assert_eq!(all["items"][3]["suspended"], false);

    let id = all["items"][3]["id"].as_str().unwrap();
    let zoo = app
        .operator(
            Method::GET,
            &format!("/v1/operator/tenants/{id}"),
            TEST_OPERATOR_KEY,
            None,
        )
        .await
        .expect(200);
    assert_eq!(zoo["slug"], "zoo");
    let unknown = uuid::Uuid::now_v7();
    app.operator(
        Method::GET,
        &format!("/v1/operator/tenants/{unknown}"),
        TEST_OPERATOR_KEY,
        None,
    )
    .await
    .expect_error(404, "tenant_not_found");
    app.operator(
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
        app.operator(Method::GET, "/v1/operator/tenants", "wrong", None)
            .await
            .expect_error(401, "invalid_operator_key");
    }
    let throttled = app
        .operator(Method::GET, "/v1/operator/tenants", TEST_OPERATOR_KEY, None)
        .await;
    assert!(throttled.headers.contains_key("retry-after"));
    throttled.expect_error(429, "operator_key_throttled");

    let without = spawn_app_with(|config| config.operator_key = None).await;
    without
        .operator(Method::GET, "/v1/operator/tenants", TEST_OPERATOR_KEY, None)
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
    let tenant = a
        .operator(
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
    let listed = a
        .operator(
            Method::GET,
            "/v1/operator/tenants?slug=acme",
            TEST_OPERATOR_KEY,
            None,
        )
        .await
        .expect(200);
    assert_eq!(listed["items"][0]["suspended"], true);

    let resumed = b
        .operator(
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

/// Rows of a tenant in every table of the schema that has a `tenant_id`, read from
/// the catalog (a table added later is counted with no change here).
async fn rows_by_table(app: &TestApp, tenant_id: &str) -> BTreeMap<String, i64> {
    let (client, connection) = tokio_postgres::connect(&app.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tenant: uuid::Uuid = tenant_id.parse().unwrap();
    let tables = client
        .query(
            "select table_name::text from information_schema.columns
             where table_schema = 'hark' and column_name = 'tenant_id' order by 1",
            &[],
        )
        .await
        .unwrap();
    let mut rows = BTreeMap::new();
    for table in tables {
        let table: String = table.get(0);
        let count: i64 = client
            .query_one(
                &format!("select count(*) from hark.{table} where tenant_id = $1"),
                &[&tenant],
            )
            .await
            .unwrap()
            .get(0);
        rows.insert(table, count);
    }
    rows
}

/// A tenant with something in most tables: members, a direct room, messages with a
/// thread reply, a mention, a reaction, an edit, read markers, a block, a mute (and
/// its audit entry), a report, a word filter, an API key and a webhook endpoint.
async fn busy_tenant(app: &TestApp, slug: &str) -> (Session, Session) {
    let owner = app.create_tenant(slug).await.owner;
    let bob = app.register(slug, "bob").await;
    let carol = app.register(slug, "carol").await;
    let room = id_of(&app.create_room(&owner.token, "lobby", "private").await);
    app.add_member(&owner.token, &room, &bob.user_id).await;
    let first = app.send(&owner.token, &room, "first").await;
    let messages = format!("/v1/rooms/{room}/messages");
    app.post(
        &messages,
        Some(&bob.token),
        json!({"body": "a reply", "parent_id": first["id"]}),
    )
    .await
    .expect(201);
    app.post(
        &messages,
        Some(&owner.token),
        json!({"body": "@bob look", "mentions": [bob.user_id]}),
    )
    .await
    .expect(201);
    let message = format!("{messages}/{}", first["id"].as_str().unwrap());
    app.post(
        &format!("{message}/reactions"),
        Some(&bob.token),
        json!({"emoji": "👋"}),
    )
    .await
    .expect(200);
    app.patch(&message, &owner.token, json!({"body": "first, edited"}))
        .await
        .expect(200);
    app.post(
        &format!("/v1/rooms/{room}/read"),
        Some(&bob.token),
        json!({"seq": 3}),
    )
    .await;
    app.post(
        "/v1/rooms/direct",
        Some(&bob.token),
        json!({"user_id": carol.user_id}),
    )
    .await
    .expect(200);
    app.post(
        "/v1/users/me/blocks",
        Some(&carol.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{room}/mutes"),
        Some(&owner.token),
        json!({"user_id": bob.user_id, "reason": "flooding"}),
    )
    .await
    .expect(200);
    app.post(
        "/v1/reports",
        Some(&bob.token),
        json!({"room_id": room, "message_id": first["id"], "reason": "spam"}),
    )
    .await
    .expect(201);
    app.post(
        "/v1/moderation/filters",
        Some(&owner.token),
        json!({"term": "spamword", "action": "flag"}),
    )
    .await
    .expect(201);
    app.api_key(&owner).await;
    app.post(
        "/v1/webhooks",
        Some(&owner.token),
        json!({"url": "https://hooks.example.com/a", "event_types": ["*"]}),
    )
    .await
    .expect(201);
    (owner, bob)
}

#[tokio::test]
async fn deleting_a_tenant_purges_every_row_of_it_in_batches_and_nothing_of_another() {
    // Small batches: the purge takes many short transactions.
    let app = spawn_app_with(|config| {
        config.purge_batch = 5;
        config.purge_pause_ms = 1;
    })
    .await;
    let (doomed, bob) = busy_tenant(&app, "doomed").await;
    let (kept, _) = busy_tenant(&app, "kept").await;
    let before = rows_by_table(&app, &doomed.tenant_id).await;
    let filled: Vec<&String> = before
        .iter()
        .filter(|(_, rows)| **rows > 0)
        .map(|(table, _)| table)
        .collect();
    println!(
        "the doomed tenant has rows in {} tables: {filled:?}",
        filled.len()
    );
    assert!(filled.len() >= 15, "{before:?}");
    // The webhook outbox is fanned out in the background: let it settle first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept_before = rows_by_table(&app, &kept.tenant_id).await;

    let path = format!("/v1/operator/tenants/{}", doomed.tenant_id);
    let deleted = app
        .operator(Method::DELETE, &path, TEST_OPERATOR_KEY, None)
        .await
        .expect(202);
    assert!(deleted["deleted_at"].is_string());
    app.get("/v1/users/me", &bob.token)
        .await
        .expect_error(401, "token_revoked");
    let deadline = Instant::now() + Duration::from_secs(60);
    let purged = loop {
        let tenant = app
            .operator(Method::GET, &path, TEST_OPERATOR_KEY, None)
            .await
            .expect(200);
        if tenant["purged_at"].is_string() {
            break tenant;
        }
        assert!(Instant::now() < deadline, "the purge finishes: {tenant}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total: i64 = before.values().sum();
    println!(
        "purged {} rows of the doomed tenant ({total} counted before the deletion) in batches of 5",
        purged["purged_rows"]
    );
    assert!(purged["purged_rows"].as_i64().unwrap() >= total);

    let after = rows_by_table(&app, &doomed.tenant_id).await;
    assert!(
        after.values().all(|rows| *rows == 0),
        "rows left: {after:?}"
    );
    assert_eq!(rows_by_table(&app, &kept.tenant_id).await, kept_before);
    // The tenant's own row stays, so its slug stays taken.
    app.post(
        "/v1/tenants",
        None,
        json!({"slug": "doomed", "name": "Again", "owner": {"username": "eve", "password": PASSWORD}}),
    )
    .await
    .expect_error(409, "slug_taken");
    app.get("/v1/users/me", &kept.token).await.expect(200);
}

#[tokio::test]
async fn a_purge_that_meets_another_instances_lock_goes_on_without_waiting_for_the_next_sweep() {
    let app = spawn_app_with(|config| {
        config.purge_batch = 5;
        config.purge_pause_ms = 1;
    })
    .await;
    let (doomed, _bob) = busy_tenant(&app, "doomed").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = format!("/v1/operator/tenants/{}", doomed.tenant_id);
    app.operator(Method::DELETE, &path, TEST_OPERATOR_KEY, None)
        .await
        .expect(202);
    // Another instance's batch holds the tenant's row for a while: this instance's
    // batches skip it meanwhile, and must come back once it is free rather than leave
    // the rest to the sweep a minute later.
    let lock = crate::helpers::RowLock::hold(&app.database_url, "tenants", &doomed.tenant_id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let tenant = app
            .operator(Method::GET, &path, TEST_OPERATOR_KEY, None)
            .await
            .expect(200);
        if tenant["purged_at"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the purge went on once the row was free: {tenant}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
