//! Retention: with `retention_days` set, a tenant's messages older than that become
//! tombstones (seqs kept) and its event log loses what is both older and beyond the
//! replay window, in the background; a client that far behind is told to reset; a
//! tenant without retention keeps everything.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::helpers::{TestApp, id_of, room_with_bob, spawn_app_with};
use crate::ws::{WAIT, WsClient};

/// A server whose retention goes in small batches, with a short replay window.
async fn small_batches() -> TestApp {
    spawn_app_with(|config| {
        config.replay_window = 5;
        config.purge_batch = 4;
        config.purge_pause_ms = 1;
    })
    .await
}

/// Makes a room's messages and events up to `seq` three days old.
async fn age(app: &TestApp, room_id: &str, seq: i64) {
    let (client, connection) = tokio_postgres::connect(&app.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let room: uuid::Uuid = room_id.parse().unwrap();
    client
        .execute(
            "update hark.messages set created_at = created_at - interval '3 days'
             where room_id = $1 and seq <= $2",
            &[&room, &seq],
        )
        .await
        .unwrap();
    client
        .execute(
            "update hark.room_events set created_at = created_at - interval '3 days' where room_id = $1 and seq <= $2",
            &[&room, &seq],
        )
        .await
        .unwrap();
}

async fn history(app: &TestApp, token: &str, room_id: &str) -> Vec<Value> {
    app.get(&format!("/v1/rooms/{room_id}/messages?limit=100"), token)
        .await
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn first_logged_seq(app: &TestApp, token: &str, room_id: &str) -> i64 {
    app.get(&format!("/v1/rooms/{room_id}/event-log?after=0"), token)
        .await
        .expect(200)["items"][0]["seq"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn old_messages_become_tombstones_old_events_go_and_a_client_behind_them_resets() {
    let app = small_batches().await;
    let (owner, bob, room) = room_with_bob(&app).await;
    let mut seqs = Vec::new();
    for index in 0..20 {
        let sent = app
            .send(&owner.token, &room, &format!("message {index}"))
            .await;
        seqs.push(sent["seq"].as_i64().unwrap());
    }
    let cut = seqs[11];
    age(&app, &room, cut).await;
    // Another tenant's messages are as old, and it keeps everything.
    let other = app.create_tenant("other").await.owner;
    let other_room = id_of(&app.create_room(&other.token, "kept", "private").await);
    let kept = app.send(&other.token, &other_room, "kept for ever").await;
    age(&app, &other_room, kept["seq"].as_i64().unwrap()).await;

    let tenant = app
        .patch("/v1/tenant", &owner.token, json!({"retention_days": 1}))
        .await
        .expect(200);
    assert_eq!(tenant["retention_days"], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while first_logged_seq(&app, &bob.token, &room).await != cut + 1 {
        assert!(Instant::now() < deadline, "retention trims the event log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let messages = history(&app, &bob.token, &room).await;
    let by_seq = |seq: i64| {
        messages
            .iter()
            .find(|message| message["seq"] == seq)
            .unwrap_or_else(|| panic!("seq {seq} is in the history"))
            .clone()
    };
    for seq in &seqs[..12] {
        let message = by_seq(*seq);
        assert_eq!(
            (message["deleted"].clone(), message["body"].clone()),
            (json!(true), json!(""))
        );
    }
    for (index, seq) in seqs.iter().enumerate().skip(12) {
        assert_eq!(by_seq(*seq)["body"], format!("message {index}"));
    }
    println!(
        "after retention: messages up to seq {cut} are tombstones, the event log starts at {}",
        cut + 1
    );

    // A reader of the REST log behind the trimmed part is told so; from the start, or
    // from the trimmed part's end, it reads what the log holds.
    let trimmed = app
        .get(&format!("/v1/rooms/{room}/event-log?after=2"), &bob.token)
        .await
        .expect_error(410, "log_trimmed");
    assert_eq!(trimmed["field"], "after");
    let from_end = app
        .get(
            &format!("/v1/rooms/{room}/event-log?after={cut}"),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(from_end["items"][0]["seq"], cut + 1);

    // A client behind the trimmed part is told to reset; one within the window is not.
    let mut behind = WsClient::connect(&app, &bob.token).await;
    let acked = behind.subscribe(&room, Some(2)).await;
    assert_eq!(
        behind.next_not_presence(WAIT).await.unwrap(),
        json!({"op": "reset", "room_id": room, "seq": acked})
    );
    let mut close = WsClient::connect(&app, &bob.token).await;
    close.subscribe(&room, Some(acked - 3)).await;
    let replayed = close.events_until(&room, acked).await;
    assert_eq!(replayed.len(), 3);

    // The other tenant keeps everything.
    assert_eq!(
        history(&app, &other.token, &other_room).await[0]["body"],
        "kept for ever"
    );
    assert_eq!(first_logged_seq(&app, &other.token, &other_room).await, 1);
}

#[tokio::test]
async fn a_room_with_retention_of_its_own_loses_old_messages_while_the_tenants_other_rooms_keep_theirs()
 {
    let app = small_batches().await;
    let (owner, bob, room) = room_with_bob(&app).await;
    let other_room = id_of(&app.create_room(&owner.token, "kept", "private").await);
    for index in 0..10 {
        app.send(&owner.token, &room, &format!("short-lived {index}"))
            .await;
    }
    let kept = app.send(&owner.token, &other_room, "kept for ever").await;
    age(&app, &room, 10).await;
    age(&app, &other_room, kept["seq"].as_i64().unwrap()).await;

    for wrong in [json!(-1), json!(36501), json!(1.5)] {
        let refused = app
            .patch(
                &format!("/v1/rooms/{room}"),
                &owner.token,
                json!({ "retention_days": wrong }),
            )
            .await;
        assert_eq!(refused.status, 422, "{wrong}: {}", refused.body);
    }
    let updated = app
        .patch(
            &format!("/v1/rooms/{room}"),
            &owner.token,
            json!({"retention_days": 1}),
        )
        .await
        .expect(200);
    assert_eq!(updated["retention_days"], 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !history(&app, &bob.token, &room)
        .await
        .iter()
        .filter(|message| message["seq"].as_i64().unwrap() <= 10)
        .all(|message| message["deleted"] == true)
    {
        assert!(Instant::now() < deadline, "the room's retention applies");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = app.send(&owner.token, &room, "fresh").await;
    assert!(
        history(&app, &bob.token, &room)
            .await
            .iter()
            .any(|message| message["seq"] == fresh["seq"] && message["body"] == "fresh")
    );
    assert_eq!(
        history(&app, &owner.token, &other_room).await[0]["body"],
        "kept for ever"
    );
    let tenant = app.get("/v1/tenant", &owner.token).await.expect(200);
    assert_eq!(tenant["retention_days"], Value::Null);
}
