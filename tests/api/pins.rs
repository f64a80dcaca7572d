//! Pins: room owners and admins (or members, where the room allows it) pin messages,
//! at most 50 per room; the pinned list and the room's log say so.

use serde_json::json;

use crate::helpers::{TestApp, id_of, room_with_bob, spawn_app};

/// The ids of a room's pinned messages, most recently pinned first.
async fn pinned(app: &TestApp, token: &str, room_id: &str) -> Vec<String> {
    app.get(&format!("/v1/rooms/{room_id}/pins"), token)
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

#[tokio::test]
async fn room_admins_pin_and_unpin_and_the_log_says_so() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let first = id_of(&app.send(&bob.token, &room_id, "rules").await);
    let second = id_of(&app.send(&bob.token, &room_id, "schedule").await);
    let pin = |id: &str| format!("/v1/rooms/{room_id}/messages/{id}/pin");

    let pinned_first = app
        .request(reqwest::Method::PUT, &pin(&first), Some(&owner.token), None)
        .await
        .expect(200);
    assert_eq!(pinned_first["pinned_by"], owner.user_id.as_str());
    assert!(pinned_first["pinned_at"].is_string());
    app.request(
        reqwest::Method::PUT,
        &pin(&second),
        Some(&owner.token),
        None,
    )
    .await
    .expect(200);
    // Pinning again changes nothing.
    let log_before = app
        .get(
            &format!("/v1/rooms/{room_id}/event-log?after=0"),
            &bob.token,
        )
        .await
        .expect(200)["last_seq"]
        .clone();
    app.request(
        reqwest::Method::PUT,
        &pin(&second),
        Some(&owner.token),
        None,
    )
    .await
    .expect(200);
    assert_eq!(
        pinned(&app, &bob.token, &room_id).await,
        [second.clone(), first.clone()]
    );

    app.delete(&pin(&first), &owner.token).await.expect(200);
    assert_eq!(pinned(&app, &bob.token, &room_id).await, [second]);
    let log = app
        .get(
            &format!("/v1/rooms/{room_id}/event-log?after={log_before}"),
            &bob.token,
        )
        .await
        .expect(200);
    let types: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message.unpinned"]);
    assert_eq!(log["items"][0]["data"]["message_id"], first.as_str());
}

#[tokio::test]
async fn members_pin_only_where_the_room_allows_it() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let message = id_of(&app.send(&bob.token, &room_id, "mine").await);
    let pin = format!("/v1/rooms/{room_id}/messages/{message}/pin");
    let before = app.snapshot().await;
    app.request(reqwest::Method::PUT, &pin, Some(&bob.token), None)
        .await
        .expect_error(403, "forbidden");
    assert_eq!(app.snapshot().await, before);
    app.patch(
        &format!("/v1/rooms/{room_id}"),
        &owner.token,
        json!({"members_can_pin": true}),
    )
    .await
    .expect(200);
    app.request(reqwest::Method::PUT, &pin, Some(&bob.token), None)
        .await
        .expect(200);
    assert_eq!(pinned(&app, &owner.token, &room_id).await, [message]);
}

#[tokio::test]
async fn a_room_holds_at_most_fifty_pins_and_deleted_messages_cannot_be_pinned() {
    let app = spawn_app().await;
    let (owner, _bob, room_id) = room_with_bob(&app).await;
    for n in 0..50 {
        let id = id_of(&app.send(&owner.token, &room_id, &format!("m{n}")).await);
        app.request(
            reqwest::Method::PUT,
            &format!("/v1/rooms/{room_id}/messages/{id}/pin"),
            Some(&owner.token),
            None,
        )
        .await
        .expect(200);
    }
    let one_more = id_of(&app.send(&owner.token, &room_id, "one more").await);
    let before = app.snapshot().await;
    app.request(
        reqwest::Method::PUT,
        &format!("/v1/rooms/{room_id}/messages/{one_more}/pin"),
        Some(&owner.token),
        None,
    )
    .await
    .expect_error(422, "too_many_pins");
    assert_eq!(app.snapshot().await, before);
    assert_eq!(pinned(&app, &owner.token, &room_id).await.len(), 50);

    app.delete(
        &format!("/v1/rooms/{room_id}/messages/{one_more}"),
        &owner.token,
    )
    .await
    .expect(204);
    app.request(
        reqwest::Method::PUT,
        &format!("/v1/rooms/{room_id}/messages/{one_more}/pin"),
        Some(&owner.token),
        None,
    )
    .await
    .expect_error(409, "message_deleted");
}
