//! Threads: replies carry the thread's first message as `parent_id` (one level), the
//! first message keeps the thread's summary, the room's main timeline leaves replies
//! out unless sent there too, and each participant has a read position and unread
//! count. Replies are sent on every path (REST, WebSocket, batched) and their events
//! go through the room's log like any other.

use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, id_of, room_with_bob, spawn_app};
use crate::ws::{WsClient, seqs_of};

/// Sends a reply in a thread and answers it.
async fn reply(app: &TestApp, token: &str, room_id: &str, parent_id: &str, body: &str) -> Value {
    app.post(
        &format!("/v1/rooms/{room_id}/messages"),
        Some(token),
        json!({"body": body, "parent_id": parent_id}),
    )
    .await
    .expect(201)
}

/// The bodies of a room's main timeline, oldest first.
async fn timeline(app: &TestApp, token: &str, room_id: &str) -> Vec<String> {
    app.get(&format!("/v1/rooms/{room_id}/messages"), token)
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The room's threads as listed to `session`.
async fn threads(app: &TestApp, session: &Session, room_id: &str) -> Vec<Value> {
    app.get(&format!("/v1/rooms/{room_id}/threads"), &session.token)
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_reply_updates_its_threads_summary_and_stays_out_of_the_main_timeline() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let parent = app.send(&owner.token, &room_id, "lunch?").await;
    let parent_id = id_of(&parent);

    let first = reply(&app, &bob.token, &room_id, &parent_id, "yes").await;
    assert_eq!(first["parent_id"], parent_id.as_str());
    assert_eq!(first["show_in_room"], false);
    let shown = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&owner.token),
            json!({"body": "noon then", "parent_id": parent_id, "show_in_room": true}),
        )
        .await
        .expect(201);

    let thread = app
        .get(
            &format!("/v1/rooms/{room_id}/messages/{parent_id}/replies"),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(thread["parent"]["reply_count"], 2);
    assert_eq!(thread["parent"]["last_reply_at"], shown["created_at"]);
    assert_eq!(
        thread["parent"]["thread_participants"],
        json!([bob.user_id, owner.user_id])
    );
    let bodies: Vec<&str> = thread["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["yes", "noon then"]);
    assert_eq!(thread["has_more"], false);
    // The main timeline has the first message and the reply sent there too.
    assert_eq!(
        timeline(&app, &bob.token, &room_id).await,
        ["lunch?", "noon then"]
    );
    // The event log has every reply, in seq order, with its thread.
    let log = app
        .get(
            &format!("/v1/rooms/{room_id}/event-log?after=0"),
            &bob.token,
        )
        .await
        .expect(200);
    let replies: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["data"]["parent_id"] == parent_id.as_str())
        .collect();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["seq"], first["seq"]);
}

#[tokio::test]
async fn replies_are_paged_by_seq() {
    let app = spawn_app().await;
    let (owner, _bob, room_id) = room_with_bob(&app).await;
    let parent_id = id_of(&app.send(&owner.token, &room_id, "thread").await);
    let mut seqs = Vec::new();
    for n in 0..5 {
        seqs.push(
            reply(&app, &owner.token, &room_id, &parent_id, &format!("r{n}")).await["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    let replies = format!("/v1/rooms/{room_id}/messages/{parent_id}/replies");
    let first = app
        .get(&format!("{replies}?limit=2"), &owner.token)
        .await
        .expect(200);
    assert_eq!(seqs_of(first["items"].as_array().unwrap()), seqs[..2]);
    assert_eq!(first["has_more"], true);
    let rest = app
        .get(&format!("{replies}?after={}", seqs[1]), &owner.token)
        .await
        .expect(200);
    assert_eq!(seqs_of(rest["items"].as_array().unwrap()), seqs[2..]);
    assert_eq!(rest["has_more"], false);
}

#[tokio::test]
async fn bad_parents_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let parent_id = id_of(&app.send(&owner.token, &room_id, "thread").await);
    let reply_id = id_of(&reply(&app, &bob.token, &room_id, &parent_id, "a reply").await);
    let other_room = id_of(&app.create_room(&owner.token, "other", "private").await);
    let elsewhere = id_of(&app.send(&owner.token, &other_room, "elsewhere").await);
    let deleted = id_of(&app.send(&owner.token, &room_id, "gone").await);
    app.delete(
        &format!("/v1/rooms/{room_id}/messages/{deleted}"),
        &owner.token,
    )
    .await
    .expect(204);

    let before = app.snapshot().await;
    let messages = format!("/v1/rooms/{room_id}/messages");
    for parent in [
        &reply_id,
        &elsewhere,
        &deleted,
        &uuid::Uuid::now_v7().to_string(),
    ] {
        app.post(
            &messages,
            Some(&bob.token),
            json!({"body": "x", "parent_id": parent}),
        )
        .await
        .expect_error(422, "invalid_parent");
    }
    // Over the WebSocket alike.
    let mut socket = WsClient::connect(&app, &bob.token).await;
    socket
        .send(json!({"op": "send", "ref": "r", "room_id": room_id, "body": "x", "parent_id": reply_id}))
        .await;
    assert_eq!(socket.answer("r").await["code"], "invalid_parent");
    socket.close().await;
    assert_eq!(app.snapshot().await, before);

    // A reply is not a thread: its replies and read position are 404.
    app.get(
        &format!("/v1/rooms/{room_id}/messages/{reply_id}/replies"),
        &bob.token,
    )
    .await
    .expect_error(404, "thread_not_found");
    app.post(
        &format!("/v1/rooms/{room_id}/threads/{reply_id}/read"),
        Some(&bob.token),
        json!({"seq": 1}),
    )
    .await
    .expect_error(404, "thread_not_found");
}

#[tokio::test]
async fn concurrent_replies_over_websockets_are_all_counted_on_the_thread() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let parent_id = id_of(&app.send(&owner.token, &room_id, "count us").await);
    // Pipelined sends from two sockets: the writer batches them, a batch may hold the
    // same thread's replies more than once.
    let mut sockets = [
        WsClient::connect(&app, &owner.token).await,
        WsClient::connect(&app, &bob.token).await,
    ];
    for (n, socket) in sockets.iter_mut().enumerate() {
        for i in 0..20 {
            socket
                .send(
                    json!({"op": "send", "ref": format!("{n}-{i}"), "room_id": room_id,
                             "body": format!("reply {n}-{i}"), "parent_id": parent_id}),
                )
                .await;
        }
    }
    for (n, socket) in sockets.iter_mut().enumerate() {
        for i in 0..20 {
            let answer = socket.answer(&format!("{n}-{i}")).await;
            assert_eq!(answer["op"], "ack", "{answer}");
        }
    }
    let thread = app
        .get(
            &format!("/v1/rooms/{room_id}/messages/{parent_id}/replies?limit=200"),
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(thread["parent"]["reply_count"], 40);
    assert_eq!(thread["items"].as_array().unwrap().len(), 40);
    assert_eq!(
        thread["parent"]["thread_participants"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn participants_have_a_read_position_and_unread_replies_per_thread() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let quiet_id = id_of(&app.send(&owner.token, &room_id, "no replies").await);
    let older_id = id_of(&app.send(&owner.token, &room_id, "older thread").await);
    let newer_id = id_of(&app.send(&bob.token, &room_id, "newer thread").await);
    reply(&app, &bob.token, &room_id, &older_id, "first").await;
    reply(&app, &owner.token, &room_id, &newer_id, "a").await;
    let last = reply(&app, &owner.token, &room_id, &newer_id, "b").await;

    // Newest activity first; the thread without replies is not listed.
    let listed = threads(&app, &bob, &room_id).await;
    let ids: Vec<&str> = listed
        .iter()
        .map(|t| t["message"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [newer_id.as_str(), older_id.as_str()]);
    assert!(!ids.contains(&quiet_id.as_str()));
    // Bob started the newer thread: two replies of the owner are unread; he replied
    // in the older one and has read up to his reply.
    assert_eq!(listed[0]["participating"], true);
    assert_eq!(listed[0]["unread_count"], 2);
    assert_eq!(listed[1]["unread_count"], 0);
    // Carol takes part in neither.
    let carols = threads(&app, &carol, &room_id).await;
    assert_eq!(carols[0]["participating"], false);
    assert_eq!(carols[0]["unread_count"], Value::Null);

    let marker = app
        .post(
            &format!("/v1/rooms/{room_id}/threads/{newer_id}/read"),
            Some(&bob.token),
            json!({"seq": last["seq"]}),
        )
        .await
        .expect(200);
    assert_eq!(marker["unread_count"], 0);
    assert_eq!(marker["last_read_seq"], last["seq"]);
    assert_eq!(threads(&app, &bob, &room_id).await[0]["unread_count"], 0);
    // Replies to threads do not count in the room's unread messages.
    let unread = app
        .get("/v1/users/me/unread", &carol.token)
        .await
        .expect(200);
    let room = unread["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|room| room["room_id"] == room_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(room["unread_count"], 3);

    // Pages follow the cursor.
    let page = app
        .get(&format!("/v1/rooms/{room_id}/threads?limit=1"), &bob.token)
        .await
        .expect(200);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/v1/rooms/{room_id}/threads?limit=1&cursor={cursor}"),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(next["items"][0]["message"]["id"], older_id.as_str());
    assert_eq!(next["next_cursor"], Value::Null);
    app.get(
        &format!("/v1/rooms/{room_id}/threads?cursor=not-a-cursor"),
        &bob.token,
    )
    .await
    .expect_error(422, "invalid_cursor");
}
