//! Webhooks: endpoints managed by administrators and API keys, deliveries signed as
//! Standard Webhooks says (verified with the reference library), at least once,
//! in order per room, through failing receivers, rotations, replays and refusals.

use std::{collections::HashMap, time::Duration};

use serde_json::{Value, json};

use crate::helpers::{
    Received, Receiver, TestApp, fresh_database, id_of, room_with_bob, spawn_app, spawn_app_with,
    spawn_process,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// Creates an endpoint as the given administrator; answers (webhook id, secret).
async fn create_webhook(app: &TestApp, token: &str, url: &str, types: &[&str]) -> (String, String) {
    let created = app
        .post(
            "/v1/webhooks",
            Some(token),
            json!({"url": url, "event_types": types, "description": "test"}),
        )
        .await
        .expect(201);
    (
        id_of(&created["webhook"]),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the endpoint's last `count` deliveries are recorded as delivered (a
/// receiver counts a delivery as it answers; the instance records it just after), and
/// answers the first page of the list.
async fn settled(app: &TestApp, token: &str, webhook_id: &str, count: usize) -> Value {
    let mut page = Value::Null;
    for _ in 0..200 {
        page = app
            .get(&format!("/v1/webhooks/{webhook_id}/deliveries"), token)
            .await
            .expect(200);
        let items = page["items"].as_array().unwrap();
        if items.len() >= count
            && items[..count]
                .iter()
                .all(|item| item["state"] == "delivered")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    page
}

/// The seqs of the message.created deliveries, per room, in the order they arrived.
fn seqs_by_room(received: &[Received]) -> HashMap<String, Vec<i64>> {
    let mut rooms: HashMap<String, Vec<i64>> = HashMap::new();
    for delivery in received {
        let data = &delivery.body["data"];
        rooms
            .entry(data["room_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(data["seq"].as_i64().unwrap());
    }
    rooms
}

/// Whether each room's seqs only ever go up, a repeat of an earlier delivery aside.
fn in_order_but_for_repeats(seqs: &[i64]) -> bool {
    let mut highest = 0;
    seqs.iter().all(|&seq| {
        let fine = seq > highest || seqs.iter().filter(|&&s| s == seq).count() > 1;
        highest = highest.max(seq);
        fine
    })
}

#[tokio::test]
async fn every_event_reaches_the_endpoint_signed_and_in_room_order() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (_, secret) = create_webhook(
        &app,
        &owner.token,
        &receiver.url,
        &["message.created", "message.edited"],
    )
    .await;

    let mut sent = Vec::new();
    for n in 0..20 {
        sent.push(app.send(&bob.token, &room_id, &format!("hello {n}")).await);
    }
    let first = id_of(&sent[0]);
    app.patch(
        &format!("/v1/rooms/{room_id}/messages/{first}"),
        &bob.token,
        json!({"body": "hello, edited"}),
    )
    .await
    .expect(200);

    let received = receiver.wait_for_accepted(21, PATIENCE).await;
    println!("received {} deliveries", received.len());
    assert_eq!(received.len(), 21);
    assert!(
        received
            .iter()
            .all(|delivery| delivery.verifies_with(&secret))
    );
    let types: Vec<&str> = received
        .iter()
        .map(|d| d.body["type"].as_str().unwrap())
        .collect();
    assert!(types[..20].iter().all(|t| *t == "message.created"));
    assert_eq!(types[20], "message.edited");
    let seqs: Vec<i64> = received
        .iter()
        .map(|d| d.body["data"]["seq"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = sent.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    println!("seqs delivered: {seqs:?}");
    assert_eq!(seqs[..20], expected[..]);
    let message = &received[0].body["data"]["data"];
    assert_eq!(message["body"], "hello 0");
    assert_eq!(received[0].body["data"]["tenant_id"], owner.tenant_id);
    let ids: std::collections::HashSet<String> = received.iter().map(Received::id).collect();
    assert_eq!(ids.len(), 21, "every delivery has its own webhook-id");
    assert!(
        received
            .iter()
            .all(|d| d.headers["content-type"] == "application/json")
    );
}

#[tokio::test]
async fn a_receiver_that_fails_its_first_attempts_gets_every_delivery_under_the_same_webhook_id() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer_next(&[500, 502, 503]);
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (webhook_id, secret) =
        create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;

    for n in 0..5 {
        app.send(&bob.token, &room_id, &format!("n{n}")).await;
    }
    let accepted = receiver.wait_for_accepted(5, PATIENCE).await;
    let all = receiver.received();
    println!(
        "answers: {:?}",
        all.iter()
            .map(|d| (d.answered, d.body["data"]["seq"].clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(accepted.len(), 5);
    assert!(all.iter().all(|delivery| delivery.verifies_with(&secret)));
    // The first delivery was tried four times, always as the same message, before any later one.
    let first_id = all[0].id();
    assert!(all[..4].iter().all(|d| d.id() == first_id));
    assert_eq!(seqs_by_room(&accepted)[&room_id], vec![3, 4, 5, 6, 7]);

    let page = settled(&app, &owner.token, &webhook_id, 5).await;
    let items = page["items"].as_array().unwrap();
    println!("the first delivery as listed: {}", items[4]);
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|item| item["state"] == "delivered"));
    assert_eq!(items[4]["attempts"], 4);
    assert_eq!(items[4]["webhook_message_id"], first_id);
    assert_eq!(items[4]["last_status"], 204);
    assert!(items[4]["latency_ms"].is_number());
    assert_eq!(items[0]["attempts"], 1);
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_everything_once_back_in_each_rooms_order() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer_always(503);
    let tenant = app.create_tenant("acme").await;
    let owner = tenant.owner.clone();
    let (webhook_id, secret) =
        create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;
    let mut rooms = Vec::new();
    for name in ["a", "b", "c"] {
        rooms.push(id_of(&app.create_room(&owner.token, name, "private").await));
    }
    for n in 0..10 {
        for room in &rooms {
            app.send(&owner.token, room, &format!("{n}")).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let failing = app
        .get(&format!("/v1/webhooks/{webhook_id}"), &owner.token)
        .await
        .expect(200);
    println!("while the receiver is down: {failing}");
    assert_eq!(failing["backlog"], 30);
    assert!(failing["failing_since"].is_string());
    assert!(receiver.accepted().is_empty());

    receiver.answer_always(200);
    let accepted = receiver.wait_for_accepted(30, PATIENCE).await;
    assert_eq!(accepted.len(), 30);
    settled(&app, &owner.token, &webhook_id, 30).await;
    assert!(receiver.received().iter().all(|d| d.verifies_with(&secret)));
    for (room, seqs) in seqs_by_room(&accepted) {
        println!("room {room}: {seqs:?}");
        assert_eq!(seqs, (2..12).collect::<Vec<i64>>());
    }
    let recovered = app
        .get(&format!("/v1/webhooks/{webhook_id}"), &owner.token)
        .await
        .expect(200);
    assert_eq!(recovered["backlog"], 0);
    assert!(recovered["failing_since"].is_null());
}

#[tokio::test]
async fn an_endpoint_that_answers_410_is_disabled_and_enabling_it_delivers_what_waited() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    receiver.answer_next(&[410]);
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (webhook_id, _) =
        create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;
    app.send(&bob.token, &room_id, "one").await;
    let path = format!("/v1/webhooks/{webhook_id}");
    let mut webhook = Value::Null;
    for _ in 0..100 {
        webhook = app.get(&path, &owner.token).await.expect(200);
        if webhook["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("after a 410: {webhook}");
    assert_eq!(webhook["enabled"], false);
    assert_eq!(webhook["disabled_reason"], "gone");
    // Events while disabled are not queued for it; what was pending waits.
    app.send(&bob.token, &room_id, "two").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);

    let enabled = app
        .patch(&path, &owner.token, json!({"enabled": true}))
        .await
        .expect(200);
    assert_eq!(enabled["enabled"], true);
    assert!(enabled["disabled_reason"].is_null());
    let accepted = receiver.wait_for_accepted(1, PATIENCE).await;
    assert_eq!(accepted[0].body["data"]["data"]["body"], "one");
}

#[tokio::test]
async fn after_a_rotation_deliveries_verify_with_the_new_secret_and_the_old_one_during_the_grace() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (webhook_id, old) =
        create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;
    let rotated = app
        .post(
            &format!("/v1/webhooks/{webhook_id}/rotate-secret"),
            Some(&owner.token),
            json!({}),
        )
        .await
        .expect(200);
    let new = rotated["secret"].as_str().unwrap();
    println!("rotated: {rotated}");
    assert_ne!(new, old);
    assert!(new.starts_with("whsec_"));
    assert!(rotated["webhook"]["previous_secret_until"].is_string());
    app.send(&bob.token, &room_id, "after the rotation").await;
    let accepted = receiver.wait_for_accepted(1, PATIENCE).await;
    println!(
        "signature header: {:?}",
        accepted[0].headers["webhook-signature"]
    );
    assert!(accepted[0].verifies_with(new));
    assert!(accepted[0].verifies_with(&old));
    assert!(!accepted[0].verifies_with("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
}

#[tokio::test]
async fn a_replay_sends_again_what_was_delivered_under_the_same_webhook_ids_in_order() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (webhook_id, secret) =
        create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    for n in 0..5 {
        app.send(&bob.token, &room_id, &format!("n{n}")).await;
    }
    let first = receiver.wait_for_accepted(5, PATIENCE).await;
    settled(&app, &owner.token, &webhook_id, 5).await;
    let replay = app
        .post(
            &format!("/v1/webhooks/{webhook_id}/replay"),
            Some(&owner.token),
            json!({"since": before}),
        )
        .await
        .expect(202);
    assert_eq!(replay["queued"], 5);
    let all = receiver.wait_for_accepted(10, PATIENCE).await;
    assert_eq!(all.len(), 10);
    assert!(all.iter().all(|d| d.verifies_with(&secret)));
    let first_ids: Vec<String> = first.iter().map(Received::id).collect();
    let again: Vec<String> = all[5..].iter().map(Received::id).collect();
    assert_eq!(first_ids, again);
    let future = chrono::Utc::now() + chrono::Duration::seconds(60);
    let none = app
        .post(
            &format!("/v1/webhooks/{webhook_id}/replay"),
            Some(&owner.token),
            json!({"since": future}),
        )
        .await
        .expect(202);
    assert_eq!(none["queued"], 0);
}

#[tokio::test]
async fn a_test_event_reaches_the_endpoint_whatever_its_event_types() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let tenant = app.create_tenant("acme").await;
    let (webhook_id, secret) =
        create_webhook(&app, &tenant.owner.token, &receiver.url, &["member.joined"]).await;
    let queued = app
        .post(
            &format!("/v1/webhooks/{webhook_id}/test"),
            Some(&tenant.owner.token),
            json!({}),
        )
        .await
        .expect(202);
    let accepted = receiver.wait_for_accepted(1, PATIENCE).await;
    assert_eq!(accepted[0].body["type"], "webhook.test");
    assert_eq!(accepted[0].id(), queued["webhook_message_id"]);
    assert!(accepted[0].verifies_with(&secret));
}

#[tokio::test]
async fn urls_that_are_not_https_or_name_a_private_address_are_refused_unless_allowed() {
    let app = spawn_app_with(|config| config.webhook_allow_private = false).await;
    let tenant = app.create_tenant("acme").await;
    let before = app.count_rows("webhooks").await;
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.0.0.8/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x",
        "https://localhost/x",
        "https://user:secret@hooks.example.com/x",
        "ftp://hooks.example.com/x",
    ] {
        let refused = app
            .post(
                "/v1/webhooks",
                Some(&tenant.owner.token),
                json!({"url": url, "event_types": ["*"]}),
            )
            .await
            .expect_error(422, "invalid_url");
        println!("{url}: {}", refused["message"]);
        assert_eq!(refused["field"], "url");
    }
    assert_eq!(app.count_rows("webhooks").await, before);
    let created = app
        .post(
            "/v1/webhooks",
            Some(&tenant.owner.token),
            json!({"url": "https://hooks.example.com/x", "event_types": ["*"]}),
        )
        .await
        .expect(201);
    // A change of URL is held to the same rule, and a refused one changes nothing.
    let path = format!("/v1/webhooks/{}", id_of(&created["webhook"]));
    app.patch(
        &path,
        &tenant.owner.token,
        json!({"url": "https://10.0.0.8/x"}),
    )
    .await
    .expect_error(422, "invalid_url");
    assert_eq!(
        app.get(&path, &tenant.owner.token).await.expect(200)["url"],
        "https://hooks.example.com/x"
    );
}

#[tokio::test]
async fn a_private_address_is_refused_on_every_attempt_not_only_when_the_url_is_set() {
    let app = spawn_app_with(|config| config.webhook_allow_private = false).await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (webhook_id, _) = create_webhook(
        &app,
        &owner.token,
        "https://hooks.example.com/x",
        &["message.created"],
    )
    .await;
    // A URL stored while the operator allowed private addresses: here, set behind the
    // API's back, as the administrator of the database could.
    let (client, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "update hark.webhooks set url = $1 where id = $2::text::uuid",
            &[&receiver.url, &webhook_id],
        )
        .await
        .unwrap();
    app.send(&bob.token, &room_id, "to a private address").await;
    let path = format!("/v1/webhooks/{webhook_id}/deliveries");
    let mut items = Value::Null;
    for _ in 0..100 {
        items = app.get(&path, &owner.token).await.expect(200)["items"].clone();
        if items[0]["attempts"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("the delivery: {}", items[0]);
    assert_eq!(items[0]["state"], "pending");
    assert!(items[0]["last_error"].as_str().unwrap().contains("https"));
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn only_owners_admins_and_api_keys_manage_webhooks_and_another_tenants_are_not_found() {
    let app = spawn_app().await;
    let (owner, bob, _) = room_with_bob(&app).await;
    let body = json!({"url": "https://hooks.example.com/x", "event_types": ["message.created"]});
    app.post("/v1/webhooks", Some(&bob.token), body.clone())
        .await
        .expect_error(403, "forbidden");
    app.get("/v1/webhooks", &bob.token)
        .await
        .expect_error(403, "forbidden");

    let key = app
        .post(
            "/v1/api-keys",
            Some(&owner.token),
            json!({"name": "backend"}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_key = TestApp::answer(
        app.client
            .post(format!("{}/v1/webhooks", app.address))
            .header("x-api-key", &key)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
    .expect(201);
    let webhook_id = id_of(&by_key["webhook"]);
    let listed = app.get("/v1/webhooks", &owner.token).await.expect(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(listed["items"][0].get("secret").is_none());

    let other = app.create_tenant("globex").await;
    for answer in [
        app.get(&format!("/v1/webhooks/{webhook_id}"), &other.owner.token)
            .await,
        app.patch(
            &format!("/v1/webhooks/{webhook_id}"),
            &other.owner.token,
            json!({"enabled": false}),
        )
        .await,
        app.delete(&format!("/v1/webhooks/{webhook_id}"), &other.owner.token)
            .await,
        app.get(
            &format!("/v1/webhooks/{webhook_id}/deliveries"),
            &other.owner.token,
        )
        .await,
    ] {
        answer.expect_error(404, "webhook_not_found");
    }
    app.post(
        "/v1/webhooks",
        Some(&owner.token),
        json!({"url": "https://hooks.example.com/x", "event_types": ["message.sent"]}),
    )
    .await
    .expect_error(422, "invalid_event_types");
    app.delete(&format!("/v1/webhooks/{webhook_id}"), &owner.token)
        .await
        .expect(204);
    app.get(&format!("/v1/webhooks/{webhook_id}"), &owner.token)
        .await
        .expect_error(404, "webhook_not_found");
}

#[tokio::test]
async fn an_instance_killed_mid_delivery_loses_nothing_and_another_delivers_it_under_the_same_id() {
    let database_url = fresh_database().await;
    let env = [
        ("HARK_WEBHOOK_LEASE_SECONDS", "3".to_owned()),
        ("HARK_WEBHOOK_TIMEOUT_MS", "1000".to_owned()),
    ];
    let (mut first, app) = spawn_process(&database_url, &env).await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (_, secret) = create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;
    // The receiver holds each request a while, so that the instance dies with one open.
    receiver.pause(Duration::from_millis(800));
    let mut sent = Vec::new();
    for n in 0..10 {
        sent.push(
            app.send(&bob.token, &room_id, &format!("n{n}")).await["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(receiver.wait_for_arrivals(1, PATIENCE).await, 1);
    first.kill().await.unwrap();
    receiver.pause(Duration::ZERO);

    let (_second, _) = spawn_process(&database_url, &env).await;
    let accepted = receiver.wait_for_accepted(11, PATIENCE).await;
    let ids: Vec<String> = accepted.iter().map(Received::id).collect();
    let seqs = seqs_by_room(&accepted).remove(&room_id).unwrap();
    println!("seqs as delivered: {seqs:?}");
    assert!(accepted.iter().all(|d| d.verifies_with(&secret)));
    let mut distinct = seqs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, sent, "every message was delivered");
    assert!(in_order_but_for_repeats(&seqs));
    // The delivery cut short went again under its webhook-id: a repeat the receiver
    // recognises, and the only one.
    assert_eq!(ids.len(), 11);
    assert_eq!(ids[0], ids[1]);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 10);
}

#[tokio::test]
async fn a_delivery_failing_past_the_retry_period_is_given_up_and_the_rooms_later_ones_follow() {
    let app = spawn_app_with(|config| config.webhook_retry_for_seconds = 1).await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (webhook_id, _) =
        create_webhook(&app, &owner.token, &receiver.url, &["message.created"]).await;
    receiver.answer_always(500);
    app.send(&bob.token, &room_id, "doomed").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.answer_always(204);
    app.send(&bob.token, &room_id, "after it").await;
    let accepted = receiver.wait_for_accepted(1, PATIENCE).await;
    assert_eq!(accepted[0].body["data"]["data"]["body"], "after it");
    let failed = app
        .get(
            &format!("/v1/webhooks/{webhook_id}/deliveries?state=failed"),
            &owner.token,
        )
        .await
        .expect(200);
    println!("given up: {}", failed["items"][0]);
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        failed["items"][0]["payload"]["data"]["data"]["body"],
        "doomed"
    );
    assert_eq!(failed["items"][0]["last_status"], 500);
    assert!(failed["items"][0]["attempts"].as_i64().unwrap() >= 2);
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled_and_the_tenants_other_endpoints_hear_of_it() {
    let app = spawn_app_with(|config| config.webhook_disable_after_seconds = 1).await;
    let failing = Receiver::start().await;
    failing.answer_always(500);
    let watching = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let (failing_id, _) =
        create_webhook(&app, &owner.token, &failing.url, &["message.created"]).await;
    let (_, secret) =
        create_webhook(&app, &owner.token, &watching.url, &["webhook.disabled"]).await;
    app.send(&bob.token, &room_id, "into the void").await;
    let heard = watching.wait_for_accepted(1, PATIENCE).await;
    println!("the other endpoint heard: {}", heard[0].body);
    assert_eq!(heard[0].body["type"], "webhook.disabled");
    assert_eq!(heard[0].body["data"]["webhook_id"], failing_id);
    assert_eq!(heard[0].body["data"]["reason"], "failing");
    assert!(heard[0].verifies_with(&secret));
    let disabled = app
        .get(&format!("/v1/webhooks/{failing_id}"), &owner.token)
        .await
        .expect(200);
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_reason"], "failing");
    assert_eq!(disabled["backlog"], 1);
}

#[tokio::test]
async fn users_and_the_tenants_settings_are_heard_in_the_order_they_changed() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner;
    let (_, secret) = create_webhook(
        &app,
        &owner.token,
        &receiver.url,
        &[
            "user.created",
            "user.updated",
            "user.deleted",
            "tenant.updated",
        ],
    )
    .await;
    let bob = app.register("acme", "bob").await;
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &owner.token,
        json!({"display_name": "Robert"}),
    )
    .await
    .expect(200);
    app.patch("/v1/tenant", &owner.token, json!({"name": "Acme Inc."}))
        .await
        .expect(200);
    app.delete(&format!("/v1/users/{}", bob.user_id), &owner.token)
        .await
        .expect(204);

    let heard = receiver.wait_for_accepted(4, PATIENCE).await;
    let types: Vec<&str> = heard
        .iter()
        .map(|d| d.body["type"].as_str().unwrap())
        .collect();
    println!("heard: {types:?}");
    assert_eq!(
        types,
        [
            "user.created",
            "user.updated",
            "tenant.updated",
            "user.deleted"
        ]
    );
    assert!(heard.iter().all(|d| d.verifies_with(&secret)));
    assert!(
        heard
            .iter()
            .all(|d| d.body["data"]["tenant_id"] == owner.tenant_id)
    );
    assert_eq!(heard[0].body["data"]["user"]["username"], "bob");
    assert_eq!(heard[1].body["data"]["user"]["display_name"], "Robert");
    assert_eq!(heard[2].body["data"]["tenant"]["name"], "Acme Inc.");
    assert_eq!(heard[3].body["data"]["user_id"], bob.user_id);
}

#[tokio::test]
async fn a_rooms_deletion_is_heard_after_its_last_event() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner;
    let (_, secret) = create_webhook(
        &app,
        &owner.token,
        &receiver.url,
        &["member.joined", "room.deleted"],
    )
    .await;
    let room_id = id_of(&app.create_room(&owner.token, "doomed", "private").await);
    app.delete(&format!("/v1/rooms/{room_id}"), &owner.token)
        .await
        .expect(204);
    let heard = receiver.wait_for_accepted(2, PATIENCE).await;
    println!(
        "heard: {:?}",
        heard.iter().map(|d| &d.body).collect::<Vec<_>>()
    );
    assert_eq!(heard[0].body["type"], "member.joined");
    assert_eq!(heard[0].body["data"]["room_id"], room_id);
    assert_eq!(heard[1].body["type"], "room.deleted");
    assert_eq!(heard[1].body["data"]["room_id"], room_id);
    assert_eq!(heard[1].body["data"]["actor_id"], owner.user_id);
    assert!(heard[1].body["data"]["last_seq"].as_i64().unwrap() >= 1);
    assert!(heard.iter().all(|d| d.verifies_with(&secret)));
}

#[tokio::test]
async fn a_message_is_followed_by_a_notification_naming_the_members_not_connected() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_webhook(
        &app,
        &owner.token,
        &receiver.url,
        &["message.created", "notification.message"],
    )
    .await;
    // Bob is connected (his feed); carol is not.
    let mut socket = crate::ws::WsClient::connect(&app, &bob.token).await;
    socket.subscribe(&bob.user_id, None).await;
    for _ in 0..100 {
        if app.count_rows("user_connections").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count_rows("user_connections").await,
        1,
        "bob's connection is recorded"
    );

    let message = app.send(&owner.token, &room_id, "anyone?").await;
    let received = receiver.wait_for_accepted(2, PATIENCE).await;
    let types: Vec<_> = received.iter().map(|r| r.body["type"].clone()).collect();
    assert_eq!(
        types,
        [json!("message.created"), json!("notification.message")]
    );
    let notification = &received[1];
    assert!(notification.verifies_with(&secret));
    assert_eq!(notification.body["data"]["message"]["id"], message["id"]);
    assert_eq!(notification.body["data"]["room_id"], room_id.as_str());
    assert_eq!(
        notification.body["data"]["user_ids"],
        json!([carol.user_id]),
        "neither the sender nor the connected member"
    );

    // Once bob is gone too, both are named.
    socket.close().await;
    for _ in 0..100 {
        if app.count_rows("user_connections").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.send(&owner.token, &room_id, "hello?").await;
    let received = receiver.wait_for_accepted(4, PATIENCE).await;
    let mut named: Vec<String> = received[3].body["data"]["user_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    named.sort();
    let mut expected = vec![bob.user_id.clone(), carol.user_id.clone()];
    expected.sort();
    assert_eq!(named, expected);
}

#[tokio::test]
async fn the_fan_out_answers_how_many_outbox_rows_it_took() {
    // The deliverer fans out again at once after a full batch; that needs the count,
    // which the function answered as an integer the call could not read (each call
    // logged a warning and a backlog went out one batch per second).
    let app = spawn_app_with(|config| config.webhook_concurrency = 0).await;
    let tenant = app.create_tenant("acme").await;
    create_webhook(
        &app,
        &tenant.owner.token,
        "https://hooks.example.com/a",
        &["message.created"],
    )
    .await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "busy", "private")
            .await,
    );
    for n in 0..3 {
        app.send(&tenant.owner.token, &room_id, &format!("m{n}"))
            .await;
    }
    let db = &app.state.as_ref().expect("an in-process instance").db;
    let taken = db.webhook_fanout(1).await.expect("the fan-out's count");
    assert_eq!(taken, 1);
    assert!(db.webhook_fanout(100).await.expect("the fan-out's count") >= 1);
}

#[tokio::test]
async fn a_mention_is_followed_by_a_notification_naming_who_was_mentioned() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let receiver = Receiver::start().await;
    let (_, secret) = create_webhook(
        &app,
        &owner.token,
        &receiver.url,
        &["message.created", "message.pinned", "notification.mention"],
    )
    .await;
    let message = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&owner.token),
            json!({"body": "@bob over to you", "mentions": [bob.user_id]}),
        )
        .await
        .expect(201);
    app.request(
        reqwest::Method::PUT,
        &format!("/v1/rooms/{room_id}/messages/{}/pin", id_of(&message)),
        Some(&owner.token),
        None,
    )
    .await
    .expect(200);
    let received = receiver.wait_for_accepted(3, PATIENCE).await;
    let types: Vec<_> = received.iter().map(|r| r.body["type"].clone()).collect();
    assert_eq!(
        types,
        [
            json!("message.created"),
            json!("notification.mention"),
            json!("message.pinned")
        ]
    );
    let mention = &received[1];
    assert!(mention.verifies_with(&secret));
    assert_eq!(mention.body["data"]["message"]["id"], message["id"]);
    assert_eq!(mention.body["data"]["user_ids"], json!([bob.user_id]));
    // An edit that adds carol tells of carol alone.
    app.patch(
        &format!("/v1/rooms/{room_id}/messages/{}", id_of(&message)),
        &owner.token,
        json!({"body": "@bob @carol over to you", "mentions": [bob.user_id, carol.user_id]}),
    )
    .await
    .expect(200);
    let received = receiver.wait_for_accepted(4, PATIENCE).await;
    assert_eq!(received[3].body["type"], "notification.mention");
    assert_eq!(received[3].body["data"]["user_ids"], json!([carol.user_id]));
}
