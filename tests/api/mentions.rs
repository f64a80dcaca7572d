//! Mentions: users of the room named by id (`mentions`) or everyone (`mention_room`),
//! counted per room apart from unread messages, listed for the mentioned user, told to
//! them in their feed, and taken back by an edit.

use serde_json::json;

use crate::helpers::{Session, TestApp, id_of, room_with_bob, spawn_app};
use crate::ws::WsClient;

/// The caller's mention count in a room (0 when the room is not listed).
async fn mention_count(app: &TestApp, session: &Session, room_id: &str) -> i64 {
    let unread = app
        .get("/v1/users/me/unread", &session.token)
        .await
        .expect(200);
    unread["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|room| room["room_id"] == room_id)
        .map_or(0, |room| room["mention_count"].as_i64().unwrap())
}

/// The ids of the messages that mention the caller, newest first.
async fn mentioned_in(app: &TestApp, session: &Session) -> Vec<String> {
    app.get("/v1/users/me/mentions", &session.token)
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

/// The types of the caller's feed events.
async fn feed_types(app: &TestApp, session: &Session) -> Vec<String> {
    app.get("/v1/users/me/event-log?after=0", &session.token)
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_mention_is_counted_listed_and_told_apart_from_unread_messages() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    app.send(&owner.token, &room_id, "just chatting").await;
    let mention = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&owner.token),
            json!({"body": "@bob look", "mentions": [bob.user_id]}),
        )
        .await
        .expect(201);
    assert_eq!(mention["mentions"], json!([bob.user_id]));

    let unread = app.get("/v1/users/me/unread", &bob.token).await.expect(200);
    assert_eq!(unread["total"], 2);
    assert_eq!(unread["mention_total"], 1);
    assert_eq!(mention_count(&app, &bob, &room_id).await, 1);
    assert_eq!(mentioned_in(&app, &bob).await, [id_of(&mention)]);
    let feed = app
        .get("/v1/users/me/event-log?after=0", &bob.token)
        .await
        .expect(200);
    let told = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["type"] == "feed.mention")
        .expect("a feed.mention")
        .clone();
    assert_eq!(told["data"]["message_id"], mention["id"]);
    assert_eq!(told["data"]["room_id"], room_id.as_str());
    // The sender is not mentioned by their own message, and reading clears the count.
    assert_eq!(mention_count(&app, &owner, &room_id).await, 0);
    let read = app
        .post(
            &format!("/v1/rooms/{room_id}/read"),
            Some(&bob.token),
            json!({"seq": mention["seq"]}),
        )
        .await
        .expect(200);
    assert_eq!(read["mention_count"], 0);
    assert_eq!(mention_count(&app, &bob, &room_id).await, 0);
    // The list keeps mentions read or not.
    assert_eq!(mentioned_in(&app, &bob).await.len(), 1);
}

#[tokio::test]
async fn an_edit_that_removes_a_mention_removes_it_from_the_counts() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let message = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&owner.token),
            json!({"body": "hi both", "mentions": [bob.user_id, carol.user_id]}),
        )
        .await
        .expect(201);
    let path = format!("/v1/rooms/{room_id}/messages/{}", id_of(&message));
    let edited = app
        .patch(
            &path,
            &owner.token,
            json!({"body": "hi carol", "mentions": [carol.user_id]}),
        )
        .await
        .expect(200);
    assert_eq!(edited["mentions"], json!([carol.user_id]));
    assert_eq!(mention_count(&app, &bob, &room_id).await, 0);
    assert!(mentioned_in(&app, &bob).await.is_empty());
    assert_eq!(mention_count(&app, &carol, &room_id).await, 1);
    // An edit without mentions keeps them; a deletion takes them all back.
    app.patch(&path, &owner.token, json!({"body": "hi carol!"}))
        .await
        .expect(200);
    assert_eq!(mention_count(&app, &carol, &room_id).await, 1);
    app.delete(&path, &owner.token).await.expect(204);
    assert_eq!(mention_count(&app, &carol, &room_id).await, 0);
    assert!(mentioned_in(&app, &carol).await.is_empty());
}

#[tokio::test]
async fn mentioning_the_room_is_for_room_admins_unless_the_room_allows_members() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let messages = format!("/v1/rooms/{room_id}/messages");
    let before = app.snapshot().await;
    app.post(
        &messages,
        Some(&bob.token),
        json!({"body": "@room hello", "mention_room": true}),
    )
    .await
    .expect_error(403, "mention_room_not_allowed");
    assert_eq!(app.snapshot().await, before);

    app.post(
        &messages,
        Some(&owner.token),
        json!({"body": "@room meeting", "mention_room": true}),
    )
    .await
    .expect(201);
    assert_eq!(mention_count(&app, &bob, &room_id).await, 1);
    assert_eq!(mention_count(&app, &carol, &room_id).await, 1);
    assert_eq!(mention_count(&app, &owner, &room_id).await, 0);
    assert!(
        feed_types(&app, &carol)
            .await
            .contains(&"feed.mention".to_owned())
    );

    app.patch(
        &format!("/v1/rooms/{room_id}"),
        &owner.token,
        json!({"members_can_mention_room": true}),
    )
    .await
    .expect(200);
    app.post(
        &messages,
        Some(&bob.token),
        json!({"body": "@room me too", "mention_room": true}),
    )
    .await
    .expect(201);
    assert_eq!(mention_count(&app, &carol, &room_id).await, 2);
}

#[tokio::test]
async fn mentions_of_non_members_are_refused_on_every_path_and_change_nothing() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let outsider = app.register("acme", "outsider").await;
    let foreign = app.create_tenant("other").await;
    let messages = format!("/v1/rooms/{room_id}/messages");
    let before = app.snapshot().await;
    for mentions in [
        json!([outsider.user_id]),
        json!([foreign.owner.user_id]),
        json!([bob.user_id, bob.user_id]),
        json!([uuid::Uuid::now_v7()]),
    ] {
        app.post(
            &messages,
            Some(&owner.token),
            json!({"body": "hey", "mentions": mentions}),
        )
        .await
        .expect_error(422, "invalid_mention");
    }
    let too_many: Vec<String> = (0..51).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let refused = app
        .post(
            &messages,
            Some(&owner.token),
            json!({"body": "hey", "mentions": too_many}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let mut socket = WsClient::connect(&app, &owner.token).await;
    socket
        .send(
            json!({"op": "send", "ref": "m", "room_id": room_id, "body": "hey",
                     "mentions": [outsider.user_id]}),
        )
        .await;
    assert_eq!(socket.answer("m").await["code"], "invalid_mention");
    socket.close().await;
    assert_eq!(app.snapshot().await, before);
    let sent = app.send(&owner.token, &room_id, "plain").await;
    let before_edit = app.snapshot().await;
    app.patch(
        &format!("/v1/rooms/{room_id}/messages/{}", id_of(&sent)),
        &owner.token,
        json!({"body": "edited", "mentions": [outsider.user_id]}),
    )
    .await
    .expect_error(422, "invalid_mention");
    assert_eq!(app.snapshot().await, before_edit);
}

#[tokio::test]
async fn a_user_who_blocked_the_sender_is_not_mentioned_by_them() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    app.post(
        "/v1/users/me/blocks",
        Some(&bob.token),
        json!({"user_id": owner.user_id}),
    )
    .await
    .expect(200);
    // The message is sent (a block in a group room hides, it does not silence), but
    // it reaches bob neither as a mention nor in his feed.
    app.post(
        &format!("/v1/rooms/{room_id}/messages"),
        Some(&owner.token),
        json!({"body": "@bob answer me", "mentions": [bob.user_id]}),
    )
    .await
    .expect(201);
    app.post(
        &format!("/v1/rooms/{room_id}/messages"),
        Some(&owner.token),
        json!({"body": "@room everyone", "mention_room": true}),
    )
    .await
    .expect(201);
    assert_eq!(mention_count(&app, &bob, &room_id).await, 0);
    assert!(mentioned_in(&app, &bob).await.is_empty());
    assert!(
        !feed_types(&app, &bob)
            .await
            .contains(&"feed.mention".to_owned())
    );
}
