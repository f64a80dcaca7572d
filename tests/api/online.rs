//! Who is online in the tenant: a user with a subscription (to a room or their own
//! feed) on any instance is listed by `GET /v1/users?online=true`, leaves it when
//! their last one ends, and keeps a `last_seen_at`.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Session, TestApp, spawn_app};
use crate::ws::WsClient;

/// The usernames `GET /v1/users?online=…` answers.
async fn usernames(app: &TestApp, viewer: &Session, online: bool) -> Vec<String> {
    let page = app
        .get(&format!("/v1/users?online={online}"), &viewer.token)
        .await
        .expect(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls until the online listing holds (or lacks) `username`.
async fn until_listed(app: &TestApp, viewer: &Session, username: &str, listed: bool) {
    for _ in 0..100 {
        if usernames(app, viewer, true)
            .await
            .iter()
            .any(|name| name == username)
            == listed
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{username} never became {}",
        if listed { "online" } else { "offline" }
    );
}

#[tokio::test]
async fn a_user_subscribed_on_another_instance_is_listed_online_until_they_go() {
    let a = spawn_app().await;
    let b = a.spawn_peer().await;
    let tenant = a.create_tenant("acme").await;
    let bob = a.register("acme", "bob").await;
    let carol = a.register("acme", "carol").await;
    let globex = a.create_tenant("globex").await;
    assert!(usernames(&a, &tenant.owner, true).await.is_empty());

    let mut socket = WsClient::connect(&b, &bob.token).await;
    socket.subscribe(&bob.user_id, None).await;
    until_listed(&a, &tenant.owner, "bob", true).await;
    assert_eq!(usernames(&a, &tenant.owner, true).await, ["bob"]);
    let offline = usernames(&a, &tenant.owner, false).await;
    assert!(offline.contains(&"carol".to_owned()) && !offline.contains(&"bob".to_owned()));
    assert!(
        usernames(&a, &globex.owner, true).await.is_empty(),
        "another tenant sees nobody of acme online"
    );

    socket.close().await;
    until_listed(&a, &tenant.owner, "bob", false).await;
    // The instance records comings and goings a moment after them.
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = a
            .get(&format!("/v1/users/{}", bob.user_id), &tenant.owner.token)
            .await
            .expect(200);
        if seen["last_seen_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen["last_seen_at"].is_string(), "{seen}");
    let carols = a
        .get(&format!("/v1/users/{}", carol.user_id), &tenant.owner.token)
        .await
        .expect(200);
    assert!(carols["last_seen_at"].is_null(), "carol never connected");
}

/// The next presence frame on a connection, skipping events and answers.
async fn next_presence(socket: &mut WsClient) -> Value {
    loop {
        let frame = socket
            .next(crate::ws::WAIT)
            .await
            .expect("a presence frame in time");
        if frame["op"] == "presence" {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_feed_hears_users_who_share_a_room_come_and_go_and_nobody_else() {
    let a = spawn_app().await;
    let b = a.spawn_peer().await;
    let (owner, bob, _room_id) = crate::helpers::room_with_bob(&a).await;
    let carol = a.register("acme", "carol").await;
    let mut feed = WsClient::connect(&b, &bob.token).await;
    feed.subscribe(&bob.user_id, None).await;

    // Carol shares no room with bob: her coming is not his business.
    let mut carols = WsClient::connect(&a, &carol.token).await;
    carols.subscribe(&carol.user_id, None).await;
    until_listed(&a, &owner, "carol", true).await;
    let mut owners = WsClient::connect(&a, &owner.token).await;
    owners.subscribe(&owner.user_id, None).await;
    let online = next_presence(&mut feed).await;
    assert_eq!(online["room_id"], bob.user_id.as_str());
    assert_eq!(online["user"]["username"], "owner");
    assert_eq!(online["status"], "online");

    owners.close().await;
    let offline = next_presence(&mut feed).await;
    assert_eq!(offline["user"]["username"], "owner");
    assert_eq!(offline["status"], "offline");
    drop(carols);
}
