//! Each user's own event feed: added to a room, a direct room opened with them,
//! removed, a room archived or deleted, a room with new messages, their read markers;
//! gapless per-user seqs, on the WebSocket (subscribing to their own id) and as SSE,
//! resumed like a room's.

use serde_json::{Value, json};

use crate::helpers::{id_of, spawn_app};
use crate::realtime::read_sse;
use crate::ws::{WAIT, WsClient};

/// The next feed event on a connection subscribed to `feed`, skipping other frames.
async fn next_feed_event(socket: &mut WsClient, feed: &str) -> Value {
    loop {
        let frame = socket.next(WAIT).await.expect("a feed event in time");
        if frame["op"] == "event" && frame["room_id"] == feed {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_direct_room_opened_by_another_user_reaches_the_feed_on_another_instance() {
    let a = spawn_app().await;
    let b = a.spawn_peer().await;
    let tenant = a.create_tenant("acme").await;
    let alice = a.register("acme", "alice").await;
    let bob = a.register("acme", "bob").await;
    let mut socket = WsClient::connect(&b, &bob.token).await;
    assert_eq!(socket.subscribe(&bob.user_id, Some(0)).await, 0);

    let room = a
        .post(
            "/v1/rooms/direct",
            Some(&alice.token),
            json!({"user_id": bob.user_id}),
        )
        .await
        .expect(200);
    let room_id = id_of(&room);
    let added = next_feed_event(&mut socket, &bob.user_id).await;
    assert_eq!(added["type"], "feed.room_added");
    assert_eq!(added["seq"], 1);
    assert_eq!(added["data"]["room_id"], room_id.as_str());
    assert_eq!(added["data"]["kind"], "direct");
    assert_eq!(added["actor_id"], alice.user_id.as_str());

    let first = a.send(&alice.token, &room_id, "hi bob").await;
    let unread = next_feed_event(&mut socket, &bob.user_id).await;
    assert_eq!(
        (unread["type"].as_str(), unread["seq"].as_i64()),
        (Some("feed.unread"), Some(2))
    );
    assert_eq!(unread["data"]["seq"], first["seq"]);
    // A second message leaves the room unread: no event, until bob reads.
    let second = a.send(&alice.token, &room_id, "are you there?").await;
    a.post(
        &format!("/v1/rooms/{room_id}/read"),
        Some(&bob.token),
        json!({"seq": second["seq"]}),
    )
    .await
    .expect(200);
    let read = next_feed_event(&mut socket, &bob.user_id).await;
    assert_eq!(
        (read["type"].as_str(), read["seq"].as_i64()),
        (Some("feed.read"), Some(3))
    );
    assert_eq!(read["data"]["unread_count"], 0);
    // Bob's own message does not make the room unread for him.
    a.send(&bob.token, &room_id, "here").await;
    a.send(&alice.token, &room_id, "great").await;
    let again = next_feed_event(&mut socket, &bob.user_id).await;
    assert_eq!(
        (again["type"].as_str(), again["seq"].as_i64()),
        (Some("feed.unread"), Some(4))
    );
    drop(tenant);
}

#[tokio::test]
async fn the_feed_hears_rooms_added_archived_left_and_deleted_and_resumes_over_sse() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner;
    let bob = app.register("acme", "bob").await;
    let kept = app.create_room(&owner.token, "kept", "private").await;
    let kept_id = id_of(&kept);
    let gone = app.create_room(&owner.token, "gone", "private").await;
    let gone_id = id_of(&gone);
    app.add_member(&owner.token, &kept_id, &bob.user_id).await;
    app.add_member(&owner.token, &gone_id, &bob.user_id).await;
    app.post(
        &format!("/v1/rooms/{kept_id}/archive"),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{kept_id}/leave"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect(204);
    app.delete(&format!("/v1/rooms/{gone_id}"), &owner.token)
        .await
        .expect(204);

    let expected = [
        ("feed.room_added", kept_id.as_str(), None),
        ("feed.room_added", gone_id.as_str(), None),
        ("feed.room_archived", kept_id.as_str(), None),
        ("feed.room_removed", kept_id.as_str(), Some("left")),
        ("feed.room_removed", gone_id.as_str(), Some("deleted")),
    ];
    let response = app
        .client
        .get(format!("{}/v1/users/me/events?since=0", app.address))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = read_sse(response, expected.len()).await;
    for (index, ((id, event_type, data), (kind, room, reason))) in
        events.iter().zip(expected).enumerate()
    {
        assert_eq!(id, &(index + 1).to_string(), "gapless per-user seqs");
        assert_eq!(event_type, kind);
        assert_eq!(data["data"]["room_id"], room);
        if let Some(reason) = reason {
            assert_eq!(data["data"]["reason"], reason);
        }
    }

    // An EventSource coming back resumes after its Last-Event-ID; REST pages agree.
    let resumed = app
        .client
        .get(format!(
            "{}/v1/users/me/events?token={}",
            app.address, bob.token
        ))
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    let rest = read_sse(resumed, 2).await;
    assert_eq!(rest[0].0, "4");
    assert_eq!(rest[1].0, "5");
    let page = app
        .get("/v1/users/me/event-log?after=2&limit=2", &bob.token)
        .await
        .expect(200);
    let seqs: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(3), json!(4)]);
    assert_eq!(page["last_seq"], 5);
    // The owner's feed is their own: their rooms, not bob's leaving.
    let owners = app
        .get("/v1/users/me/event-log", &owner.token)
        .await
        .expect(200);
    assert!(
        owners["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["room_id"] == owner.user_id.as_str())
    );
}

#[tokio::test]
async fn nobody_subscribes_to_another_users_feed() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let alice = app.register("acme", "alice").await;
    let bob = app.register("acme", "bob").await;
    let mut socket = WsClient::connect(&app, &alice.token).await;
    socket
        .send(json!({"op": "subscribe", "ref": "spy", "room_id": bob.user_id}))
        .await;
    let answer = socket.answer("spy").await;
    assert_eq!(answer["op"], "error");
    assert_eq!(answer["code"], "room_not_found");
    let stream = app.open_events(&alice.token, &bob.user_id, "").await;
    assert_eq!(stream.status(), 404);
}
