//! Quotas: a creation past a tenant's quota (users, rooms, members per room, webhook
//! endpoints) is refused with 403 `quota_exceeded` naming the quota and writes
//! nothing, also under concurrency; the tenant's owners see their usage; the operator
//! gives a tenant quotas of its own and takes them back; other tenants count apart.
//! Usage figures (the day's messages, active and connected users) are rolled up per
//! tenant, and the operator sees them (in brief in the list of tenants) and the storage
//! by table.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TEST_OPERATOR_KEY, TestApp, id_of, spawn_app_with};

/// A server whose default quotas are small: 3 users, 2 rooms, 2 members per room and
/// 1 webhook endpoint per tenant.
async fn small_quotas() -> TestApp {
    spawn_app_with(|config| {
        config.quota_users = Some(3);
        config.quota_rooms = Some(2);
        config.quota_members_per_room = Some(2);
        config.quota_webhook_endpoints = 1;
    })
    .await
}

fn refused(answer: crate::helpers::Answer, quota: &str) {
    let error = answer.expect_error(403, "quota_exceeded");
    assert_eq!(error["field"], quota, "{error}");
}

async fn set_quotas(app: &TestApp, tenant_id: &str, quotas: Value) -> Value {
    app.operator(
        Method::PATCH,
        &format!("/v1/operator/tenants/{tenant_id}"),
        TEST_OPERATOR_KEY,
        Some(json!({ "quotas": quotas })),
    )
    .await
    .expect(200)
}

#[tokio::test]
async fn each_quota_refuses_the_creation_past_it_by_name_and_writes_nothing() {
    let app = small_quotas().await;
    let owner = app.create_tenant("acme").await.owner;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    refused(
        app.post(
            "/v1/auth/register",
            None,
            json!({"tenant": "acme", "username": "dave", "password": crate::helpers::PASSWORD}),
        )
        .await,
        "users",
    );
    let key = app.api_key(&owner).await;
    let backend = app
        .client
        .post(format!("{}/v1/backend/users", app.address))
        .header("x-api-key", &key)
        .json(&json!({"username": "erin"}))
        .send()
        .await
        .unwrap();
    refused(TestApp::answer(backend).await, "users");
    assert_eq!(app.count_rows("users").await, 3);

    let first = id_of(&app.create_room(&owner.token, "first", "private").await);
    app.create_room(&owner.token, "second", "private").await;
    refused(
        app.post(
            "/v1/rooms",
            Some(&owner.token),
            json!({"name": "third", "visibility": "private"}),
        )
        .await,
        "rooms",
    );
    refused(
        app.post(
            "/v1/rooms/direct",
            Some(&bob.token),
            json!({"user_id": carol.user_id}),
        )
        .await,
        "rooms",
    );
    assert_eq!(app.count_rows("rooms").await, 2);

    app.add_member(&owner.token, &first, &bob.user_id).await;
    refused(
        app.post(
            &format!("/v1/rooms/{first}/members"),
            Some(&owner.token),
            json!({"user_id": carol.user_id}),
        )
        .await,
        "members_per_room",
    );

    let webhook = json!({"url": "https://hooks.example.com/a", "event_types": ["*"]});
    app.post("/v1/webhooks", Some(&owner.token), webhook.clone())
        .await
        .expect(201);
    refused(
        app.post("/v1/webhooks", Some(&owner.token), webhook).await,
        "webhook_endpoints",
    );

    let usage = app.get("/v1/tenant/usage", &owner.token).await.expect(200);
    let quotas: serde_json::Map<String, Value> =
        ["users", "rooms", "members_per_room", "webhook_endpoints"]
            .into_iter()
            .map(|name| (name.to_owned(), usage[name].clone()))
            .collect();
    assert_eq!(
        Value::Object(quotas),
        json!({
            "users": {"used": 3, "quota": 3},
            "rooms": {"used": 2, "quota": 2},
            "members_per_room": {"used": 2, "quota": 2},
            "webhook_endpoints": {"used": 1, "quota": 1},
        })
    );
    app.get("/v1/tenant/usage", &bob.token)
        .await
        .expect_error(403, "forbidden");

    // Another tenant counts its own, under the same defaults.
    let other = app.create_tenant("other").await.owner;
    app.register("other", "bob").await;
    let theirs = app.get("/v1/tenant/usage", &other.token).await.expect(200);
    assert_eq!(theirs["users"], json!({"used": 2, "quota": 3}));
    assert_eq!(theirs["rooms"], json!({"used": 0, "quota": 2}));
}

#[tokio::test]
async fn the_operator_gives_a_tenant_its_own_quotas_and_takes_them_back() {
    let app = small_quotas().await;
    let owner = app.create_tenant("acme").await.owner;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    app.create_room(&owner.token, "first", "private").await;
    app.create_room(&owner.token, "second", "private").await;

    let tenant = set_quotas(&app, &owner.tenant_id, json!({"rooms": 3, "users": null})).await;
    assert_eq!(
        tenant["quotas"],
        json!({"users": 3, "rooms": 3, "members_per_room": 2, "webhook_endpoints": 1})
    );
    let direct = app
        .post(
            "/v1/rooms/direct",
            Some(&bob.token),
            json!({"user_id": carol.user_id}),
        )
        .await
        .expect(200);
    // Lowered below what the tenant has: nothing is taken away, nothing new is made,
    // and the direct room that exists is still answered.
    set_quotas(&app, &owner.tenant_id, json!({"rooms": 1})).await;
    let again = app
        .post(
            "/v1/rooms/direct",
            Some(&carol.token),
            json!({"user_id": bob.user_id}),
        )
        .await
        .expect(200);
    assert_eq!(again["id"], direct["id"]);
    refused(
        app.post(
            "/v1/rooms",
            Some(&owner.token),
            json!({"name": "fourth", "visibility": "private"}),
        )
        .await,
        "rooms",
    );
    // Back to the default.
    let tenant = set_quotas(&app, &owner.tenant_id, json!({"rooms": null})).await;
    assert_eq!(tenant["quotas"]["rooms"], 2);
    let negative = app
        .operator(
            Method::PATCH,
            &format!("/v1/operator/tenants/{}", owner.tenant_id),
            TEST_OPERATOR_KEY,
            Some(json!({"quotas": {"rooms": -1}})),
        )
        .await;
    assert!(negative.status.is_client_error());
}

#[tokio::test]
async fn concurrent_registrations_stop_exactly_at_the_users_quota() {
    let app = spawn_app_with(|config| config.quota_users = Some(5)).await;
    app.create_tenant("acme").await;
    let attempts = (0..20).map(|index| {
        app.post(
            "/v1/auth/register",
            None,
            json!({"tenant": "acme", "username": format!("user{index}"), "password": crate::helpers::PASSWORD}),
        )
    });
    let answers = futures_util::future::join_all(attempts).await;
    let created = answers
        .iter()
        .filter(|answer| answer.status.as_u16() == 201)
        .count();
    let refused = answers
        .iter()
        .filter(|answer| answer.status.as_u16() == 403 && answer.body["code"] == "quota_exceeded")
        .count();
    println!(
        "20 concurrent registrations under a quota of 5 users (the owner is one): {created} created, {refused} refused"
    );
    assert_eq!((created, refused), (4, 16));
    assert_eq!(app.count_rows("users").await, 5);
}

#[tokio::test]
async fn usage_figures_count_the_days_messages_and_active_and_connected_users_per_tenant() {
    let app = spawn_app_with(|config| config.usage_rollup_seconds = 1).await;
    let (owner, bob, room) = crate::helpers::room_with_bob(&app).await;
    let mut socket = crate::ws::WsClient::connect(&app, &bob.token).await;
    socket.subscribe(&room, None).await;
    for index in 0..3 {
        app.send(&owner.token, &room, &format!("owner {index}"))
            .await;
    }
    app.send(&bob.token, &room, "bob").await;
    let other = app.create_tenant("other").await.owner;
    let elsewhere = id_of(&app.create_room(&other.token, "elsewhere", "private").await);
    for index in 0..2 {
        app.send(&other.token, &elsewhere, &format!("other {index}"))
            .await;
    }

    let today = chrono::Utc::now().date_naive().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let usage = loop {
        let usage = app.get("/v1/tenant/usage", &owner.token).await.expect(200);
        let day = &usage["days"][0];
        if day["messages"] == 4 && day["peak_connected_users"].as_i64() >= Some(1) {
            break usage;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the roll-up counts: {usage}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    println!("acme's usage, rolled up: {}", usage["days"][0]);
    assert_eq!(usage["days"][0]["day"], today.as_str());
    assert_eq!(usage["days"][0]["active_users"], 2);
    assert_eq!(usage["monthly_active_users"], 2);

    let theirs = app
        .operator(
            Method::GET,
            &format!("/v1/operator/tenants/{}/usage", other.tenant_id),
            TEST_OPERATOR_KEY,
            None,
        )
        .await
        .expect(200);
    assert_eq!(theirs["days"][0]["messages"], 2);
    let listed = app
        .operator(
            Method::GET,
            "/v1/operator/tenants?slug=acme",
            TEST_OPERATOR_KEY,
            None,
        )
        .await
        .expect(200);
    assert_eq!(
        listed["items"][0]["usage"],
        json!({"messages_today": 4, "monthly_active_users": 2})
    );
    assert_eq!(theirs["users"]["used"], 1);
    let storage = app
        .operator(Method::GET, "/v1/operator/storage", TEST_OPERATOR_KEY, None)
        .await
        .expect(200);
    let messages = storage
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["table"] == "messages")
        .expect("the messages table is listed");
    assert!(messages["bytes"].as_i64().unwrap() > 0);
}
