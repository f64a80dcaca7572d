//! Exports of a user's data: asked for by the user (or an administrator), built in the
//! background, fetched once ready, holding everything the user wrote and nobody
//! else's words; asking again while one is built answers the same one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, id_of, room_with_bob, spawn_app};

/// The user's export once ready (fails after 30 s).
pub async fn ready_export(app: &TestApp, caller: &Session, user_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let export = app
            .get(&format!("/v1/users/{user_id}/export"), &caller.token)
            .await
            .expect(200);
        if export["state"] == "ready" {
            return export;
        }
        assert!(Instant::now() < deadline, "the export is built: {export}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(items: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_users_export_holds_everything_they_wrote_and_nothing_of_others() {
    let app = spawn_app().await;
    let (owner, bob, room) = room_with_bob(&app).await;
    let other_room = id_of(&app.create_room(&owner.token, "second", "public").await);
    app.add_member(&owner.token, &other_room, &bob.user_id)
        .await;
    let theirs_by_owner = app.send(&owner.token, &room, "the owner's words").await;
    let mut written = Vec::new();
    for (index, target) in [&room, &other_room, &room].into_iter().enumerate() {
        written.push(id_of(
            &app.send(&bob.token, target, &format!("bob wrote {index}"))
                .await,
        ));
    }
    app.post(
        &format!(
            "/v1/rooms/{room}/messages/{}/reactions",
            id_of(&theirs_by_owner)
        ),
        Some(&bob.token),
        json!({"emoji": "👍"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{room}/read"),
        Some(&bob.token),
        json!({"seq": 4}),
    )
    .await
    .expect(200);
    let report = app
        .post(
            "/v1/reports",
            Some(&bob.token),
            json!({"room_id": room, "message_id": theirs_by_owner["id"], "reason": "spam"}),
        )
        .await
        .expect(201);

    let asked = app
        .post(
            &format!("/v1/users/{}/export", bob.user_id),
            Some(&bob.token),
            json!({}),
        )
        .await
        .expect(202);
    assert_eq!(asked["user_id"], bob.user_id.as_str());
    let export = ready_export(&app, &bob, &bob.user_id).await;
    let document = &export["document"];
    assert_eq!(document["profile"]["username"], "bob");
    assert_eq!(document["profile"]["email"], "bob@acme.example");
    written.sort();
    assert_eq!(ids(&document["messages"], "id"), written);
    assert!(
        !document.to_string().contains("the owner's words"),
        "nobody else's words: {document}"
    );
    let mut rooms = vec![room.clone(), other_room.clone()];
    rooms.sort();
    assert_eq!(ids(&document["memberships"], "room_id"), rooms);
    let lobby = document["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|membership| membership["room_id"] == room.as_str())
        .unwrap();
    assert_eq!(lobby["last_read_seq"], 4);
    assert_eq!(document["reactions"][0]["emoji"], "👍");
    assert_eq!(ids(&document["reports"], "id"), vec![id_of(&report)]);

    // An owner may ask for a member's export; a member may not for another's.
    app.post(
        &format!("/v1/users/{}/export", bob.user_id),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect(202);
    app.post(
        &format!("/v1/users/{}/export", owner.user_id),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect_error(403, "forbidden");
    app.get(&format!("/v1/users/{}/export", owner.user_id), &owner.token)
        .await
        .expect_error(404, "export_not_found");
    ready_export(&app, &owner, &bob.user_id).await;
}
