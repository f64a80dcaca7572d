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
        json!({"users": 3, "rooms": 3, "members_per_room": 2, "webhook_endpoints": 1,
               "messages_per_day": null, "attachment_bytes_per_day": null, "connections": null})
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
    // A roll-up that began while the other tenant's sends were being written counts
    // acme's and not all of theirs: both are awaited.
    let (usage, theirs) = loop {
        let usage = app.get("/v1/tenant/usage", &owner.token).await.expect(200);
        let theirs = app
            .operator(
                Method::GET,
                &format!("/v1/operator/tenants/{}/usage", other.tenant_id),
                TEST_OPERATOR_KEY,
                None,
            )
            .await
            .expect(200);
        let day = &usage["days"][0];
        if day["messages"] == 4
            && day["peak_connected_users"].as_i64() >= Some(1)
            && theirs["days"][0]["messages"] == 2
        {
            break (usage, theirs);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the roll-up counts: {usage}, and theirs: {theirs}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    println!("acme's usage, rolled up: {}", usage["days"][0]);
    assert_eq!(usage["days"][0]["day"], today.as_str());
    assert_eq!(usage["days"][0]["active_users"], 2);
    assert_eq!(usage["monthly_active_users"], 2);
    assert_eq!(theirs["days"][0]["day"], today.as_str());
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

fn over_the_day(answer: crate::helpers::Answer, quota: &str) {
    let error = answer.expect_error(429, "quota_exceeded");
    assert_eq!(error["field"], quota, "{error}");
}

#[tokio::test]
async fn a_tenant_writes_at_most_its_messages_per_day_even_when_sends_arrive_together() {
    let app = spawn_app_with(|_| {}).await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let other = app.create_tenant("globex").await.owner;
    let other_room = id_of(&app.create_room(&other.token, "elsewhere", "private").await);
    set_quotas(&app, &owner.tenant_id, json!({"messages_per_day": 6})).await;
    app.send(&owner.token, &room_id, "before the rush").await;

    // REST and WebSocket sends at once: they are batched, and the batch stops at the
    // quota item by item.
    let path = format!("/v1/rooms/{room_id}/messages");
    let rest = (0..6).map(|n| {
        let (app, path, token) = (&app, &path, &bob.token);
        async move {
            app.post(path, Some(token), json!({"body": format!("rest {n}")}))
                .await
                .status
        }
    });
    let mut socket = crate::ws::WsClient::connect(&app, &owner.token).await;
    for n in 0..4 {
        socket
            .send(json!({"op": "send", "ref": format!("w{n}"), "room_id": room_id, "body": format!("ws {n}")}))
            .await;
    }
    let statuses = futures_util::future::join_all(rest).await;
    let mut accepted = statuses.iter().filter(|status| **status == 201).count();
    for n in 0..4 {
        let answer = socket.answer(&format!("w{n}")).await;
        if answer["op"] == "ack" {
            accepted += 1;
        } else {
            assert_eq!(answer["code"], "quota_exceeded", "{answer}");
            assert_eq!(answer["field"], "messages_per_day", "{answer}");
        }
    }
    assert_eq!(accepted, 5, "6 a day, one sent before: {statuses:?}");
    assert_eq!(app.count_rows("messages").await, 6);
    over_the_day(
        app.post(&path, Some(&bob.token), json!({"body": "one more"}))
            .await,
        "messages_per_day",
    );

    let usage = app.get("/v1/tenant/usage", &owner.token).await.expect(200);
    assert_eq!(usage["messages_per_day"], json!({"used": 6, "quota": 6}));
    // Another tenant writes on.
    app.send(&other.token, &other_room, "unaffected").await;
}

#[tokio::test]
async fn attachment_metadata_past_the_tenants_daily_bytes_is_refused_and_plain_messages_go_on() {
    let app = spawn_app_with(|config| config.quota_attachment_bytes_per_day = Some(400)).await;
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let path = format!("/v1/rooms/{room_id}/messages");
    let attachment = json!({"url": "https://files.example/a.png", "name": "a.png", "mime_type": "image/png", "size": 1000});
    let mut sent = 0;
    loop {
        let answer = app
            .post(
                &path,
                Some(&bob.token),
                json!({"body": "", "kind": "image", "attachment": attachment}),
            )
            .await;
        if answer.status == 429 {
            over_the_day(answer, "attachment_bytes_per_day");
            break;
        }
        answer.expect(201);
        sent += 1;
        assert!(sent < 10, "the quota never refused");
    }
    let before = app.count_rows("messages").await;
    app.send(&bob.token, &room_id, "words still go").await;
    assert_eq!(app.count_rows("messages").await, before + 1);
    let usage = app.get("/v1/tenant/usage", &bob.token).await;
    println!(
        "{sent} attachments within 400 bytes a day; usage as the owner sees it: {}",
        usage.body
    );
}

#[tokio::test]
async fn a_tenants_connections_across_two_instances_stop_at_its_quota() {
    let app = spawn_app_with(|config| config.quota_connections = Some(2)).await;
    let peer = app
        .spawn_peer_with(|config| config.quota_connections = Some(2))
        .await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let first = crate::ws::WsClient::connect(&app, &owner.token).await;
    let second = peer.open_events(&bob.token, &room_id, "").await;
    assert_eq!(second.status(), 200);
    // The peer's stream reaches the fleet's count at its next sync, which it brings
    // on at once; then a third connection is refused on either instance.
    connections_reach(&app, &owner.token, 2).await;
    for instance in [&app, &peer] {
        let third = instance.open_events(&owner.token, &room_id, "").await;
        let refused = TestApp::answer(third).await;
        let error = refused.expect_error(429, "quota_exceeded");
        assert_eq!(error["field"], "connections");
    }
    // A WebSocket that authenticates by its first frame is told so, and closed with
    // 4008 (back off), not as if its token were bad.
    let mut by_frame = crate::ws::WsClient::connect_path(&peer, "/v1/ws").await;
    by_frame
        .send(json!({"op": "auth", "ref": "a", "token": owner.token}))
        .await;
    let answer = by_frame.answer("a").await;
    assert_eq!(
        (answer["code"].clone(), answer["field"].clone()),
        (json!("quota_exceeded"), json!("connections"))
    );
    assert_eq!(by_frame.ending().await, crate::ws::Ending::Closed(4008));
    // One ends, and a connection is admitted again.
    drop(first);
    connections_reach(&app, &owner.token, 1).await;
    let again = peer.open_events(&owner.token, &room_id, "").await;
    assert_eq!(again.status(), 200);
}

/// Waits until the tenant's usage counts `expected` connections (the instances sync
/// their counts as connections come and go).
async fn connections_reach(app: &TestApp, token: &str, expected: i64) {
    for _ in 0..100 {
        let usage = app.get("/v1/tenant/usage", token).await.expect(200);
        if usage["connections"]["used"] == expected {
            assert_eq!(usage["connections"]["quota"], 2);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the tenant never counted {expected} connections");
}

#[tokio::test]
async fn metrics_label_only_the_configured_number_of_busiest_tenants() {
    let app = spawn_app_with(|config| {
        config.usage_rollup_seconds = 1;
        config.metrics_tenants = 2;
    })
    .await;
    for (slug, messages) in [("busiest", 3), ("busy", 2), ("quiet", 1)] {
        let owner = app.create_tenant(slug).await.owner;
        let room = id_of(&app.create_room(&owner.token, "talk", "private").await);
        for n in 0..messages {
            app.send(&owner.token, &room, &format!("message {n}")).await;
        }
    }
    let series =
        |slug: &str| format!("hark_tenant_usage{{figure=\"messages_today\",tenant=\"{slug}\"}}");
    let mut text = String::new();
    for _ in 0..100 {
        text = reqwest::get(format!("{}/metrics", app.address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains(&format!("{} 3", series("busiest")))
            && text.contains(&format!("{} 2", series("busy")))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(text.contains(&format!("{} 3", series("busiest"))), "{text}");
    assert!(text.contains(&format!("{} 2", series("busy"))), "{text}");
    assert!(
        !text.contains(&series("quiet")),
        "only two tenants are labelled: {text}"
    );
    assert!(
        text.contains("hark_tenant_usage{figure=\"monthly_active_users\",tenant=\"busiest\"} 1")
    );
}
