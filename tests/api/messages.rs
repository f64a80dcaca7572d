//! Messages: sending, idempotency, history paging, edits, deletion, reactions, read
//! markers and unread counts, and the event each change appends.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::helpers::{TestApp, id_of, room_with_bob, spawn_app};

fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_sent_message_carries_its_sender_and_appends_a_created_event() {
    let app = spawn_app().await;
    let (_, bob, room_id) = room_with_bob(&app).await;
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &bob.token,
        json!({"display_name": "Bobby"}),
    )
    .await
    .expect(200);
    let message = app.send(&bob.token, &room_id, "hello").await;
    assert_eq!(message["body"], "hello");
    assert_eq!(message["kind"], "text");
    assert_eq!(message["sender"]["username"], "bob");
    assert_eq!(message["deleted"], false);
    let events = app
        .get(
            &format!(
                "/v1/rooms/{room_id}/event-log?after={}",
                message["seq"].as_i64().unwrap() - 1
            ),
            &bob.token,
        )
        .await
        .expect(200);
    let event = &events["items"][0];
    assert_eq!(event["type"], "message.created");
    assert_eq!(event["seq"], message["seq"]);
    assert_eq!(event["actor_id"], bob.user_id.as_str());
    assert_eq!(event["data"]["id"], message["id"]);
    assert_eq!(event["data"]["sender"]["display_name"], "Bobby");
    assert_eq!(events["last_seq"], message["seq"]);
}

#[tokio::test]
async fn messages_with_attachments_and_replies_are_kept_as_sent() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let first = app.send(&bob.token, &room_id, "look").await;
    let image = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&bob.token),
            json!({"kind": "image", "attachment": {"url": "https://cdn.example/cat.png", "mime_type": "image/png", "size": 1234, "name": "cat.png"}, "reply_to_id": first["id"]}),
        )
        .await
        .expect(201);
    assert_eq!(image["attachment"]["mime_type"], "image/png");
    assert_eq!(image["attachment"]["size"], 1234);
    assert_eq!(image["reply_to_id"], first["id"]);
    let system = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&owner.token),
            json!({"kind": "system", "body": "Maintenance at noon"}),
        )
        .await
        .expect(201);
    assert_eq!(system["kind"], "system");
}

#[tokio::test]
async fn bad_messages_answer_4xx_with_their_codes_and_change_nothing() {
    let app = spawn_app().await;
    let (_, bob, room_id) = room_with_bob(&app).await;
    let other_room = id_of(&app.create_room(&bob.token, "other", "private").await);
    let elsewhere = app.send(&bob.token, &other_room, "elsewhere").await;
    let outsider = app.register("acme", "outsider").await;
    let path = format!("/v1/rooms/{room_id}/messages");
    let before = app.snapshot().await;
    for (token, body, status, code, field) in [
        (
            &bob.token,
            json!({"body": ""}),
            422,
            "empty_body",
            Some("body"),
        ),
        (
            &bob.token,
            json!({"body": "  \n "}),
            422,
            "empty_body",
            Some("body"),
        ),
        (&bob.token, json!({}), 422, "empty_body", Some("body")),
        (
            &bob.token,
            json!({"body": "x".repeat(16 * 1024 + 1)}),
            422,
            "body_too_long",
            Some("body"),
        ),
        (
            &bob.token,
            json!({"body": "é".repeat(8 * 1024 + 1)}),
            422,
            "body_too_long",
            Some("body"),
        ),
        (
            &bob.token,
            json!({"kind": "image"}),
            422,
            "attachment_required",
            Some("attachment"),
        ),
        (
            &bob.token,
            json!({"kind": "file", "attachment": {"url": "ftp://x"}}),
            422,
            "invalid_url",
            Some("attachment.url"),
        ),
        (
            &bob.token,
            json!({"kind": "file", "attachment": {"url": "https://x.example/f", "size": -1}}),
            422,
            "invalid_size",
            Some("attachment.size"),
        ),
        (
            &bob.token,
            json!({"kind": "file", "attachment": {"url": "https://x.example/f", "name": "n".repeat(256)}}),
            422,
            "invalid_name",
            Some("attachment.name"),
        ),
        (
            &bob.token,
            json!({"body": "hi", "reply_to_id": elsewhere["id"]}),
            422,
            "invalid_reply_to",
            Some("reply_to_id"),
        ),
        (
            &bob.token,
            json!({"body": "hi", "client_id": ""}),
            422,
            "invalid_client_id",
            Some("client_id"),
        ),
        (
            &bob.token,
            json!({"body": "hi", "client_id": "c".repeat(101)}),
            422,
            "invalid_client_id",
            Some("client_id"),
        ),
        (
            &bob.token,
            json!({"kind": "system", "body": "I am the law"}),
            403,
            "forbidden",
            None,
        ),
        (
            &outsider.token,
            json!({"body": "let me in"}),
            403,
            "not_a_member",
            None,
        ),
    ] {
        let error = app
            .post(&path, Some(token), body)
            .await
            .expect_error(status, code);
        assert_eq!(error["field"].as_str(), field, "{code}");
    }
    app.post(
        &path,
        Some(&bob.token),
        json!({"kind": "video", "body": "x"}),
    )
    .await
    .expect_error(422, "invalid_kind");
    let error = app
        .post(&path, Some(&bob.token), json!({"body": ["not", "text"]}))
        .await
        .expect_error(422, "invalid_type");
    assert_eq!(error["field"], "body");
    app.post(
        &format!("/v1/rooms/{}/messages", uuid::Uuid::now_v7()),
        Some(&bob.token),
        json!({"body": "hi"}),
    )
    .await
    .expect_error(404, "room_not_found");
    assert_eq!(app.snapshot().await, before);
    // The limit is exactly 16 KiB.
    app.post(
        &path,
        Some(&bob.token),
        json!({"body": "x".repeat(16 * 1024)}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn the_same_client_id_sent_twice_yields_one_message() {
    let app = spawn_app().await;
    let (_, bob, room_id) = room_with_bob(&app).await;
    let path = format!("/v1/rooms/{room_id}/messages");
    let first = app
        .post(
            &path,
            Some(&bob.token),
            json!({"body": "once", "client_id": "abc-1"}),
        )
        .await
        .expect(201);
    let again = app
        .post(
            &path,
            Some(&bob.token),
            json!({"body": "once", "client_id": "abc-1"}),
        )
        .await
        .expect(200);
    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["seq"], again["seq"]);
    // Concurrent retries also collapse into one.
    let retries = (0..8).map(|_| {
        app.post(
            &path,
            Some(&bob.token),
            json!({"body": "race", "client_id": "abc-2"}),
        )
    });
    let answers = futures_util::future::join_all(retries).await;
    let ids: std::collections::HashSet<String> = answers
        .into_iter()
        .map(|answer| {
            assert!(
                answer.status == 200 || answer.status == 201,
                "{}",
                answer.body
            );
            id_of(&answer.body)
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let history = app.get(&path, &bob.token).await.expect(200);
    assert_eq!(history["items"].as_array().unwrap().len(), 2);
    assert_eq!(app.count_rows("messages").await, 2);
}

#[tokio::test]
async fn a_hundred_concurrent_sends_from_ten_connections_get_gapless_seqs() {
    let app = spawn_app().await;
    let (_, bob, room_id) = room_with_bob(&app).await;
    let start_seq = app
        .get(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect(200)["last_seq"]
        .as_i64()
        .unwrap();
    let clients: Vec<reqwest::Client> = (0..10)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        })
        .collect();
    let mut sends = Vec::new();
    for (index, client) in clients.iter().cycle().take(100).enumerate() {
        let request = client
            .post(format!("{}/v1/rooms/{room_id}/messages", app.address))
            .bearer_auth(&bob.token)
            .json(&json!({"body": format!("message {index}")}));
        sends.push(async move { TestApp::answer(request.send().await.unwrap()).await });
    }
    let answers = futures_util::future::join_all(sends).await;
    let mut message_seqs: Vec<i64> = answers
        .into_iter()
        .map(|answer| answer.expect(201)["seq"].as_i64().unwrap())
        .collect();
    message_seqs.sort_unstable();
    let expected: Vec<i64> = (start_seq + 1..=start_seq + 100).collect();
    assert_eq!(message_seqs, expected, "no gap and no duplicate");
    let events = app
        .get(
            &format!("/v1/rooms/{room_id}/event-log?limit=1000"),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(
        seqs(&events),
        (1..=start_seq + 100).collect::<Vec<_>>(),
        "the whole log is gapless from 1"
    );
}

#[tokio::test]
async fn history_pages_before_after_and_around_a_seq() {
    let app = spawn_app().await;
    let (_, bob, room_id) = room_with_bob(&app).await;
    let mut message_seqs = Vec::new();
    for index in 0..10 {
        message_seqs.push(
            app.send(&bob.token, &room_id, &format!("m{index}")).await["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    let path = format!("/v1/rooms/{room_id}/messages");
    let newest = app
        .get(&format!("{path}?limit=4"), &bob.token)
        .await
        .expect(200);
    assert_eq!(seqs(&newest), message_seqs[6..].to_vec());
    assert_eq!(newest["has_more_before"], true);
    assert_eq!(newest["has_more_after"], false);
    let before = app
        .get(
            &format!("{path}?limit=4&before={}", message_seqs[6]),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(seqs(&before), message_seqs[2..6].to_vec());
    let after = app
        .get(
            &format!("{path}?limit=3&after={}", message_seqs[1]),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(seqs(&after), message_seqs[2..5].to_vec());
    assert_eq!(after["has_more_after"], true);
    let around = app
        .get(
            &format!("{path}?limit=5&around={}", message_seqs[5]),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(seqs(&around), message_seqs[3..8].to_vec());
    let all = app
        .get(&format!("{path}?limit=200"), &bob.token)
        .await
        .expect(200);
    assert_eq!(all["items"].as_array().unwrap().len(), 10);
    assert_eq!(all["has_more_before"], false);
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("before=5&after=2", "conflicting_cursors"),
        ("before=-1", "invalid_seq"),
    ] {
        app.get(&format!("{path}?{query}"), &bob.token)
            .await
            .expect_error(422, code);
    }
    app.get(&format!("{path}?before=abc"), &bob.token)
        .await
        .expect_error(400, "invalid_parameter");
}

#[tokio::test]
async fn only_the_author_edits_and_every_earlier_version_is_kept() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let message = app.send(&bob.token, &room_id, "first").await;
    let path = format!("/v1/rooms/{room_id}/messages/{}", id_of(&message));
    app.patch(&path, &owner.token, json!({"body": "hijack"}))
        .await
        .expect_error(403, "not_the_author");
    app.patch(&path, &bob.token, json!({"body": "second"}))
        .await
        .expect(200);
    let edited = app
        .patch(&path, &bob.token, json!({"body": "third"}))
        .await
        .expect(200);
    assert_eq!(edited["body"], "third");
    assert!(edited["edited_at"].is_string());
    assert_eq!(
        edited["seq"], message["seq"],
        "an edit keeps the message's place"
    );
    let versions = app
        .get(&format!("{path}/versions"), &bob.token)
        .await
        .expect(200);
    let bodies: Vec<&str> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first", "second"]);
    let before = app.snapshot().await;
    app.patch(&path, &bob.token, json!({"body": ""}))
        .await
        .expect_error(422, "empty_body");
    app.patch(
        &path,
        &bob.token,
        json!({"body": "x".repeat(16 * 1024 + 1)}),
    )
    .await
    .expect_error(422, "body_too_long");
    assert_eq!(app.snapshot().await, before);
    let events = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &bob.token)
        .await
        .expect(200);
    let last = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "message.edited");
    assert_eq!(last["data"]["body"], "third");
}

#[tokio::test]
async fn a_deleted_message_is_a_tombstone_in_history_and_its_event_says_so() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let mine = app.send(&bob.token, &room_id, "secret").await;
    let path = format!("/v1/rooms/{room_id}/messages/{}", id_of(&mine));
    app.patch(&path, &bob.token, json!({"body": "secret v2"}))
        .await
        .expect(200);
    app.delete(&path, &carol.token)
        .await
        .expect_error(403, "forbidden");
    app.delete(&path, &bob.token).await.expect(204);
    let tombstone = app.get(&path, &carol.token).await.expect(200);
    assert_eq!(tombstone["deleted"], true);
    assert_eq!(tombstone["body"], "");
    let versions = app
        .get(&format!("{path}/versions"), &bob.token)
        .await
        .expect(200);
    assert!(
        versions["items"].as_array().unwrap().is_empty(),
        "earlier versions are erased too"
    );
    let history = app
        .get(&format!("/v1/rooms/{room_id}/messages"), &carol.token)
        .await
        .expect(200);
    assert_eq!(
        history["items"].as_array().unwrap().last().unwrap()["deleted"],
        true
    );
    let events = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &carol.token)
        .await
        .expect(200);
    let last = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "message.deleted");
    assert_eq!(last["data"]["message_id"], mine["id"]);
    assert_eq!(last["data"]["message_seq"], mine["seq"]);
    // Deleting again changes nothing; a tombstone cannot be edited.
    let events_before = app.count_rows("room_events").await;
    app.delete(&path, &bob.token).await.expect(204);
    assert_eq!(app.count_rows("room_events").await, events_before);
    app.patch(&path, &bob.token, json!({"body": "back"}))
        .await
        .expect_error(409, "message_deleted");
    // A room admin deletes anyone's message.
    let carols = app.send(&carol.token, &room_id, "spam").await;
    app.delete(
        &format!("/v1/rooms/{room_id}/messages/{}", id_of(&carols)),
        &owner.token,
    )
    .await
    .expect(204);
}

#[tokio::test]
async fn reactions_count_once_per_user_and_emoji() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let message = app.send(&bob.token, &room_id, "react to me").await;
    let path = format!("/v1/rooms/{room_id}/messages/{}/reactions", id_of(&message));
    app.post(&path, Some(&bob.token), json!({"emoji": "👍"}))
        .await
        .expect(200);
    app.post(&path, Some(&bob.token), json!({"emoji": "👍"}))
        .await
        .expect(200);
    let reacted = app
        .post(&path, Some(&owner.token), json!({"emoji": "👍"}))
        .await
        .expect(200);
    app.post(&path, Some(&owner.token), json!({"emoji": "🎉"}))
        .await
        .expect(200);
    assert_eq!(
        reacted["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}])
    );
    let seen_by_bob = app
        .get(
            &format!("/v1/rooms/{room_id}/messages/{}", id_of(&message)),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(
        seen_by_bob["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "🎉", "count": 1, "me": false}])
    );
    let removed = app
        .delete(&format!("{path}/%F0%9F%91%8D"), &bob.token)
        .await
        .expect(200);
    assert_eq!(
        removed["reactions"][0],
        json!({"emoji": "👍", "count": 1, "me": false})
    );
    let events = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &bob.token)
        .await
        .expect(200);
    let types: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "reaction.added").count(),
        3,
        "a repeated reaction appends nothing"
    );
    assert_eq!(*types.last().unwrap(), "reaction.removed");
    let last = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"]["count"], 1);
    assert_eq!(last["data"]["user"]["username"], "bob");
    let before = app.snapshot().await;
    for emoji in ["", "a b", &"x".repeat(33)] {
        app.post(&path, Some(&bob.token), json!({"emoji": emoji}))
            .await
            .expect_error(422, "invalid_emoji");
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn read_markers_drive_unread_counts_per_room_and_in_total() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let second_room = id_of(&app.create_room(&owner.token, "second", "private").await);
    app.add_member(&owner.token, &second_room, &bob.user_id)
        .await;
    let mut last = Value::Null;
    for index in 0..3 {
        last = app.send(&owner.token, &room_id, &format!("m{index}")).await;
    }
    app.send(&owner.token, &second_room, "other").await;
    app.send(&bob.token, &room_id, "my own messages are never unread")
        .await;
    let unread = app.get("/v1/users/me/unread", &bob.token).await.expect(200);
    assert_eq!(unread["total"], 4);
    let marker = app
        .post(
            &format!("/v1/rooms/{room_id}/read"),
            Some(&bob.token),
            json!({"seq": last["seq"].as_i64().unwrap() - 1}),
        )
        .await
        .expect(200);
    assert_eq!(marker["unread_count"], 1);
    // The marker never moves back and never past the end.
    let marker = app
        .post(
            &format!("/v1/rooms/{room_id}/read"),
            Some(&bob.token),
            json!({"seq": 0}),
        )
        .await
        .expect(200);
    assert_eq!(marker["unread_count"], 1);
    let marker = app
        .post(
            &format!("/v1/rooms/{room_id}/read"),
            Some(&bob.token),
            json!({"seq": 1_000_000}),
        )
        .await
        .expect(200);
    assert_eq!(marker["unread_count"], 0);
    let room = app
        .get(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect(200);
    assert_eq!(marker["last_read_seq"], room["last_seq"]);
    let unread = app.get("/v1/users/me/unread", &bob.token).await.expect(200);
    assert_eq!(
        unread,
        json!({"total": 1, "mention_total": 0,
               "rooms": [{"room_id": second_room, "unread_count": 1, "mention_count": 0}]})
    );
    app.post(
        &format!("/v1/rooms/{room_id}/read"),
        Some(&bob.token),
        json!({"seq": -1}),
    )
    .await
    .expect_error(422, "invalid_seq");
}

#[tokio::test]
async fn the_event_log_pages_after_a_seq() {
    let app = spawn_app().await;
    let (_, bob, room_id) = room_with_bob(&app).await;
    for index in 0..5 {
        app.send(&bob.token, &room_id, &format!("m{index}")).await;
    }
    let path = format!("/v1/rooms/{room_id}/event-log");
    let page = app
        .get(&format!("{path}?after=2&limit=3"), &bob.token)
        .await
        .expect(200);
    assert_eq!(seqs(&page), vec![3, 4, 5]);
    assert_eq!(page["last_seq"], 7);
    let rest = app
        .get(&format!("{path}?after=5"), &bob.token)
        .await
        .expect(200);
    assert_eq!(seqs(&rest), vec![6, 7]);
    app.get(&format!("{path}?limit=0"), &bob.token)
        .await
        .expect_error(422, "invalid_limit");
    app.get(&format!("{path}?after=-1"), &bob.token)
        .await
        .expect_error(422, "invalid_seq");
}

#[tokio::test]
async fn a_batch_with_one_invalid_message_commits_the_others_and_answers_each_sender() {
    // One writer: while its first write is in flight, the other sends wait and go as
    // one batch.
    let app = crate::helpers::spawn_app_with(|config| config.write_workers = 1).await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let second_room = id_of(&app.create_room(&bob.token, "second", "private").await);
    let path = format!("/v1/rooms/{room_id}/messages");
    let mut sends = Vec::new();
    for index in 0..60 {
        let (token, target, body) = match index {
            17 => (
                &bob.token,
                path.clone(),
                json!({"body": "x".repeat(16 * 1024 + 1)}),
            ),
            31 => (
                &owner.token,
                path.clone(),
                json!({"kind": "system", "body": "by the owner"}),
            ),
            32 => (
                &bob.token,
                path.clone(),
                json!({"kind": "system", "body": "not allowed"}),
            ),
            index if index % 3 == 0 => (
                &bob.token,
                format!("/v1/rooms/{second_room}/messages"),
                json!({"body": format!("second {index}")}),
            ),
            index => (
                &bob.token,
                path.clone(),
                json!({"body": format!("m{index}"), "client_id": format!("c{index}")}),
            ),
        };
        let app = &app;
        sends.push(async move { (index, app.post(&target, Some(token), body).await) });
    }
    let answers = futures_util::future::join_all(sends).await;
    let stats = &app.state.as_ref().unwrap().writer.stats;
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    let batched = stats
        .batched_items
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("{batches} batches carried {batched} of 60 sends");
    assert!(batches >= 1 && batched >= 10, "the sends were batched");
    let mut accepted = 0;
    for (index, answer) in answers {
        match index {
            17 => {
                answer.expect_error(422, "body_too_long");
            }
            32 => {
                answer.expect_error(403, "forbidden");
            }
            _ => {
                let message = answer.expect(201);
                assert!(message["seq"].as_i64().unwrap() > 0);
                accepted += 1;
            }
        }
    }
    assert_eq!(accepted, 58);
    // Each room's log is gapless, and holds exactly the accepted messages.
    for room in [&room_id, &second_room] {
        let events = app
            .get(
                &format!("/v1/rooms/{room}/event-log?limit=1000"),
                &bob.token,
            )
            .await
            .expect(200);
        assert_eq!(
            seqs(&events),
            (1..=events["last_seq"].as_i64().unwrap()).collect::<Vec<_>>()
        );
    }
    assert_eq!(app.count_rows("messages").await, 58);
}

#[tokio::test]
async fn every_bad_send_in_a_batch_is_refused_by_the_same_rules_as_a_lone_send() {
    // One writer whose lone first send waits for a lock held here on its sender's row
    // (which the message's foreign key check takes a share of; a busy room would only
    // send it aside): every send made meanwhile queues behind it, and they are written
    // as one batch once the lock is released, whatever the timing.
    let app = crate::helpers::spawn_app_with(|config| config.write_workers = 1).await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let archived = id_of(&app.create_room(&owner.token, "old", "private").await);
    app.add_member(&owner.token, &archived, &bob.user_id).await;
    app.post(
        &format!("/v1/rooms/{archived}/archive"),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect(200);
    let not_bobs = id_of(&app.create_room(&owner.token, "owners", "private").await);
    let earlier = app
        .post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&bob.token),
            json!({"body": "earlier", "client_id": "dup"}),
        )
        .await
        .expect(201);

    let locker = crate::helpers::RowLock::hold(&app.database_url, "users", &owner.user_id).await;
    let stats = app.state.as_ref().unwrap().writer.stats.clone();
    let first = {
        let (app, client) = (app.address.clone(), app.client.clone());
        let (token, room_id) = (owner.token.clone(), room_id.clone());
        tokio::spawn(async move {
            client
                .post(format!("{app}/v1/rooms/{room_id}/messages"))
                .bearer_auth(token)
                .json(&json!({"body": "first"}))
                .send()
                .await
                .map(|response| response.status().as_u16())
        })
    };
    // The earlier send and this one were written alone.
    wait_until(|| stats.single_writes.load(Ordering::Relaxed) == 2).await;

    let in_room = format!("/v1/rooms/{room_id}/messages");
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "too long",
            in_room.clone(),
            json!({"body": "x".repeat(16 * 1024 + 1)}),
            422,
            "body_too_long",
        ),
        (
            "blank",
            in_room.clone(),
            json!({"body": " \n "}),
            422,
            "empty_body",
        ),
        (
            "image without file",
            in_room.clone(),
            json!({"kind": "image"}),
            422,
            "attachment_required",
        ),
        (
            "system by a member",
            in_room.clone(),
            json!({"kind": "system", "body": "hi"}),
            403,
            "forbidden",
        ),
        (
            "reply to nothing",
            in_room.clone(),
            json!({"body": "re", "reply_to_id": uuid::Uuid::now_v7()}),
            422,
            "invalid_reply_to",
        ),
        (
            "not a member",
            format!("/v1/rooms/{not_bobs}/messages"),
            json!({"body": "hi"}),
            403,
            "not_a_member",
        ),
        (
            "archived",
            format!("/v1/rooms/{archived}/messages"),
            json!({"body": "hi"}),
            409,
            "room_archived",
        ),
        (
            "no such room",
            format!("/v1/rooms/{}/messages", uuid::Uuid::now_v7()),
            json!({"body": "hi"}),
            404,
            "room_not_found",
        ),
        (
            "repeated client id",
            in_room.clone(),
            json!({"body": "again", "client_id": "dup"}),
            200,
            "",
        ),
        (
            "new",
            in_room.clone(),
            json!({"body": "new", "client_id": "fresh"}),
            201,
            "",
        ),
    ];
    let sends = futures_util::future::join_all(
        cases
            .iter()
            .map(|(_, path, body, _, _)| app.post(path, Some(&bob.token), body.clone())),
    );
    let release = async {
        wait_until(|| stats.waiting.load(Ordering::Relaxed) == cases.len() as u64).await;
        locker.release().await;
    };
    let (answers, ()) = tokio::join!(sends, release);
    assert_eq!(first.await.unwrap().unwrap(), 201);
    assert_eq!(stats.batches.load(Ordering::Relaxed), 1, "one batch");
    assert_eq!(
        stats.batched_items.load(Ordering::Relaxed),
        cases.len() as u64
    );
    for ((name, _, _, status, code), answer) in cases.iter().zip(answers) {
        if code.is_empty() {
            let message = answer.expect(*status);
            if *name == "repeated client id" {
                assert_eq!(message["id"], earlier["id"], "{name}");
            }
        } else {
            answer.expect_error(*status, code);
        }
    }
    assert_eq!(app.count_rows("messages").await, 3);
}

/// Polls a condition every 10 ms for up to 10 s.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the condition did not come true within 10 s");
}

#[tokio::test]
async fn batched_messages_reach_subscribers_in_order() {
    let app = crate::helpers::spawn_app_with(|config| config.write_workers = 1).await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let mut client = crate::ws::WsClient::connect(&app, &bob.token).await;
    let start = client.subscribe(&room_id, None).await;
    let path = format!("/v1/rooms/{room_id}/messages");
    let sends = (0..40).map(|index| {
        app.post(
            &path,
            Some(&owner.token),
            json!({"body": format!("b{index}")}),
        )
    });
    for answer in futures_util::future::join_all(sends).await {
        answer.expect(201);
    }
    let events = client.events_until(&room_id, start + 40).await;
    let received: Vec<i64> = crate::ws::seqs_of(&events);
    assert_eq!(received, (start + 1..=start + 40).collect::<Vec<_>>());
    assert!(
        app.state
            .as_ref()
            .unwrap()
            .writer
            .stats
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn text_with_a_nul_character_is_refused_with_422_and_other_sends_of_its_batch_go_through() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let path = format!("/v1/rooms/{room_id}/messages");
    // Sent together, so that they can share a write batch.
    let sends = (0..20).map(|index| {
        let (token, body) = if index % 4 == 0 {
            (&bob.token, format!("bad \u{0} {index}"))
        } else {
            (&owner.token, format!("good {index}"))
        };
        let app = &app;
        let path = &path;
        async move {
            (
                index,
                app.post(path, Some(token), json!({"body": body})).await,
            )
        }
    });
    for (index, answer) in futures_util::future::join_all(sends).await {
        if index % 4 == 0 {
            let error = answer.expect_error(422, "invalid_text");
            assert_eq!(error["field"], "body");
        } else {
            answer.expect(201);
        }
    }
    assert_eq!(app.count_rows("messages").await, 15);
    app.post(
        "/v1/auth/register",
        None,
        json!({"tenant": "acme", "username": "nul\u{0}user", "password": crate::helpers::PASSWORD}),
    )
    .await
    .expect_error(422, "invalid_text");
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &bob.token,
        json!({"display_name": "Bob\u{0}"}),
    )
    .await
    .expect_error(422, "invalid_text");
}
