//! Moderation and user safety: blocks, reports and the moderation queue, mutes and
//! bans in rooms, tenant-wide bans, slow mode, word filters and the audit log. Each
//! rule is tried on every path that could get past it: REST, WebSocket, an API key
//! acting as the user, and concurrent sends that the writer batches.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Receiver, Session, TestApp, id_of, room_with_bob, spawn_app};
use crate::ws::{Ending, WAIT, WsClient};

/// Makes a user of `acme` a tenant moderator (by its owner).
async fn moderator(app: &TestApp, owner: &Session, username: &str) -> Session {
    let session = app.register("acme", username).await;
    app.patch(
        &format!("/v1/users/{}", session.user_id),
        &owner.token,
        json!({"role": "moderator"}),
    )
    .await
    .expect(200);
    session
}

/// Sends over a WebSocket and answers the ack or error frame.
async fn ws_send(app: &TestApp, token: &str, room_id: &str, body: &str) -> Value {
    let mut client = WsClient::connect(app, token).await;
    client
        .send(json!({"op": "send", "ref": "s", "room_id": room_id, "body": body}))
        .await;
    let answer = client.answer("s").await;
    client.close().await;
    answer
}

/// Sends `body` as `sender` over REST, over a WebSocket, and by an API key acting as
/// them, and asserts that each path refuses it with `status` and `code`.
async fn refused_on_every_path(
    app: &TestApp,
    key: &str,
    sender: &Session,
    room_id: &str,
    body: &str,
    status: u16,
    code: &str,
) {
    let messages = format!("/v1/rooms/{room_id}/messages");
    app.post(&messages, Some(&sender.token), json!({ "body": body }))
        .await
        .expect_error(status, code);
    assert_eq!(
        ws_send(app, &sender.token, room_id, body).await["code"],
        code
    );
    app.acting(
        Method::POST,
        &messages,
        key,
        &sender.user_id,
        Some(json!({ "body": body })),
    )
    .await
    .expect_error(status, code);
}

/// The types of a room's events after `after`.
async fn event_types(app: &TestApp, token: &str, room_id: &str, after: i64) -> Vec<String> {
    app.get(
        &format!("/v1/rooms/{room_id}/event-log?after={after}"),
        token,
    )
    .await
    .expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect()
}

/// `count` sends of `user` to a room at once (the writer batches them); answers how
/// many were accepted, and the codes of the others.
async fn concurrent_sends(
    app: &TestApp,
    token: &str,
    room_id: &str,
    count: usize,
) -> (usize, Vec<String>) {
    let bodies = (0..count).map(|index| format!("at once {index}")).collect();
    concurrent_sends_of(app, token, room_id, bodies).await
}

/// These sends of `user` to a room at once; answers as [`concurrent_sends`].
async fn concurrent_sends_of(
    app: &TestApp,
    token: &str,
    room_id: &str,
    bodies: Vec<String>,
) -> (usize, Vec<String>) {
    let path = format!("/v1/rooms/{room_id}/messages");
    let answers = futures_util::future::join_all(
        bodies
            .into_iter()
            .map(|body| app.post(&path, Some(token), json!({ "body": body }))),
    )
    .await;
    let accepted = answers.iter().filter(|answer| answer.status == 201).count();
    let codes = answers
        .iter()
        .filter(|answer| answer.status != 201)
        .map(|answer| answer.body["code"].as_str().unwrap_or_default().to_owned())
        .collect();
    (accepted, codes)
}

#[tokio::test]
async fn a_block_keeps_both_users_from_writing_in_their_direct_room_on_every_path() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let key = app.api_key(&tenant.owner).await;
    let direct = app
        .post(
            "/v1/rooms/direct",
            Some(&carol.token),
            json!({"user_id": bob.user_id}),
        )
        .await
        .expect(200);
    let direct_id = id_of(&direct);
    let hello = app.send(&carol.token, &direct_id, "hello bob").await;

    let blocked = app
        .post(
            "/v1/users/me/blocks",
            Some(&bob.token),
            json!({"user_id": carol.user_id}),
        )
        .await
        .expect(200);
    assert_eq!(blocked["user"]["id"], carol.user_id.as_str());
    let before = app.snapshot().await;
    let messages = format!("/v1/rooms/{direct_id}/messages");
    refused_on_every_path(&app, &key, &carol, &direct_id, "hear me", 403, "blocked").await;
    app.post(
        &format!("/v1/rooms/{direct_id}/messages/{}/reactions", id_of(&hello)),
        Some(&carol.token),
        json!({"emoji": "👋"}),
    )
    .await
    .expect_error(403, "blocked");
    app.patch(
        &format!("/v1/rooms/{direct_id}/messages/{}", id_of(&hello)),
        &carol.token,
        json!({"body": "edited"}),
    )
    .await
    .expect_error(403, "blocked");
    // The blocker cannot write to them either until they unblock.
    app.post(&messages, Some(&bob.token), json!({"body": "and you?"}))
        .await
        .expect_error(403, "blocked");
    assert_eq!(
        app.snapshot().await,
        before,
        "refused writes changed nothing"
    );

    // A new direct room between them cannot be opened (dave's is refused the same way
    // once he is blocked).
    let dave = app.register("acme", "dave").await;
    app.post(
        "/v1/users/me/blocks",
        Some(&bob.token),
        json!({"user_id": dave.user_id}),
    )
    .await
    .expect(200);
    app.post(
        "/v1/rooms/direct",
        Some(&dave.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect_error(403, "blocked");

    // The list is the blocker's alone.
    let list = app.get("/v1/users/me/blocks", &bob.token).await.expect(200);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let theirs = app
        .get("/v1/users/me/blocks", &carol.token)
        .await
        .expect(200);
    assert_eq!(theirs["items"], json!([]));
    app.post(
        "/v1/users/me/blocks",
        Some(&bob.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect_error(422, "invalid_user_id");

    // Unblocked, they write again.
    app.delete(
        &format!("/v1/users/me/blocks/{}", carol.user_id),
        &bob.token,
    )
    .await
    .expect(204);
    app.send(&carol.token, &direct_id, "thanks").await;
}

#[tokio::test]
async fn a_blockers_history_marks_the_blocked_users_messages_and_their_feed_hears_of_it() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let spam = app.send(&carol.token, &room_id, "buy my stuff").await;
    app.post(
        "/v1/users/me/blocks",
        Some(&bob.token),
        json!({"user_id": carol.user_id}),
    )
    .await
    .expect(200);

    let history = app
        .get(&format!("/v1/rooms/{room_id}/messages"), &bob.token)
        .await
        .expect(200);
    let seen = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["id"] == spam["id"])
        .unwrap()
        .clone();
    assert_eq!(seen["hidden"], true);
    assert_eq!(seen["body"], "");
    assert_eq!(
        seen["seq"], spam["seq"],
        "the seq stays, so history has no gap"
    );
    let single = app
        .get(
            &format!("/v1/rooms/{room_id}/messages/{}", id_of(&spam)),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(single["hidden"], true);
    let owners = app
        .get(
            &format!("/v1/rooms/{room_id}/messages/{}", id_of(&spam)),
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(owners["body"], "buy my stuff");
    assert!(owners["hidden"].is_null());
    // Carol still writes in the group room; only bob's view changes.
    app.send(&carol.token, &room_id, "still here").await;

    let feed = app
        .get("/v1/users/me/event-log", &bob.token)
        .await
        .expect(200);
    let blocks: Vec<&Value> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "feed.blocks_changed")
        .collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["data"]["user_id"], carol.user_id.as_str());
    assert_eq!(blocks[0]["data"]["blocked"], true);
}

#[tokio::test]
async fn a_report_is_taken_once_and_a_moderator_resolves_it_with_an_action_in_one_call() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.add_member(&owner.token, &room_id, &carol.user_id).await;
    let mod_ = moderator(&app, &owner, "mod").await;
    let key = app.api_key(&owner).await;
    let abuse = app.send(&bob.token, &room_id, "you are all idiots").await;
    let message_id = id_of(&abuse);
    let report_body = json!({"room_id": room_id, "message_id": message_id, "reason": "harassment",
        "details": "insults everyone"});

    let report = app
        .post("/v1/reports", Some(&carol.token), report_body.clone())
        .await
        .expect(201);
    assert_eq!(report["state"], "open");
    assert_eq!(report["target_user"]["id"], bob.user_id.as_str());
    assert_eq!(report["message"]["body"], "you are all idiots");
    app.post("/v1/reports", Some(&carol.token), report_body.clone())
        .await
        .expect_error(409, "already_reported");
    app.post("/v1/reports", Some(&owner.token), report_body)
        .await
        .expect(201);
    app.post(
        "/v1/reports",
        Some(&bob.token),
        json!({"room_id": room_id, "message_id": message_id, "reason": "spam"}),
    )
    .await
    .expect_error(422, "invalid_target");
    let outsider = app.register("acme", "outsider").await;
    app.post(
        "/v1/reports",
        Some(&outsider.token),
        json!({"room_id": room_id, "message_id": message_id, "reason": "spam"}),
    )
    .await
    .expect_error(403, "not_a_member");
    let user_report = app
        .post(
            "/v1/reports",
            Some(&outsider.token),
            json!({"user_id": bob.user_id, "reason": "other", "details": "creepy"}),
        )
        .await
        .expect(201);
    app.post(
        "/v1/reports",
        Some(&outsider.token),
        json!({"user_id": bob.user_id, "reason": "spam"}),
    )
    .await
    .expect_error(409, "already_reported");

    // The queue: moderators and keys, not members.
    app.get("/v1/moderation/reports", &carol.token)
        .await
        .expect_error(403, "forbidden");
    let queue = app
        .get("/v1/moderation/reports?state=open", &mod_.token)
        .await
        .expect(200);
    assert_eq!(queue["items"].as_array().unwrap().len(), 3);
    let by_room = app
        .with_key(
            Method::GET,
            &format!("/v1/moderation/reports?room_id={room_id}"),
            &key,
            None,
        )
        .await
        .expect(200);
    assert_eq!(by_room["items"].as_array().unwrap().len(), 2);
    let first_page = app
        .get("/v1/moderation/reports?limit=2", &mod_.token)
        .await
        .expect(200);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let second_page = app
        .get(
            &format!("/v1/moderation/reports?limit=2&cursor={cursor}"),
            &mod_.token,
        )
        .await
        .expect(200);
    assert_eq!(second_page["items"].as_array().unwrap().len(), 1);

    // Deleting the message resolves both reports of it; the other stays open.
    let resolved = app
        .post(
            &format!("/v1/moderation/reports/{}/resolve", id_of(&report)),
            Some(&mod_.token),
            json!({"action": "delete_message", "note": "insults"}),
        )
        .await
        .expect(200);
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["action"], "delete_message");
    let gone = app
        .get(
            &format!("/v1/rooms/{room_id}/messages/{message_id}"),
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(gone["deleted"], true);
    let open = app
        .get("/v1/moderation/reports?state=open", &mod_.token)
        .await
        .expect(200);
    assert_eq!(open["items"].as_array().unwrap().len(), 1);
    assert_eq!(open["items"][0]["id"], user_report["id"]);
    app.post(
        &format!("/v1/moderation/reports/{}/resolve", id_of(&report)),
        Some(&mod_.token),
        json!({"action": "dismiss"}),
    )
    .await
    .expect_error(409, "report_resolved");
    // A user report has no message to delete or room to mute in.
    app.post(
        &format!("/v1/moderation/reports/{}/resolve", id_of(&user_report)),
        Some(&mod_.token),
        json!({"action": "mute"}),
    )
    .await
    .expect_error(422, "invalid_action");
    let audit = app
        .get("/v1/audit-log?action=report.resolve", &owner.token)
        .await
        .expect(200);
    assert_eq!(audit["items"][0]["actor_id"], mod_.user_id.as_str());
    assert_eq!(audit["items"][0]["data"]["action"], "delete_message");
    let deletion = app
        .get("/v1/audit-log?action=message.delete", &owner.token)
        .await
        .expect(200);
    assert_eq!(deletion["items"][0]["target_id"], message_id.as_str());
}

#[tokio::test]
async fn a_muted_member_reads_but_cannot_send_edit_or_react_on_any_path() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let key = app.api_key(&owner).await;
    let earlier = app.send(&bob.token, &room_id, "before the mute").await;
    let mut watcher = WsClient::connect(&app, &owner.token).await;
    let since = watcher.subscribe(&room_id, None).await;

    let mute = app
        .post(
            &format!("/v1/rooms/{room_id}/mutes"),
            Some(&owner.token),
            json!({"user_id": bob.user_id, "reason": "flooding"}),
        )
        .await
        .expect(200);
    assert_eq!(mute["kind"], "mute");
    assert!(mute["expires_at"].is_null());
    let event = watcher.events_until(&room_id, since + 1).await;
    assert_eq!(event[0]["type"], "member.muted");
    assert_eq!(event[0]["data"]["reason"], "flooding");

    let before = app.snapshot().await;
    let messages = format!("/v1/rooms/{room_id}/messages");
    refused_on_every_path(&app, &key, &bob, &room_id, "muted?", 403, "muted").await;
    let mut bobs = WsClient::connect(&app, &bob.token).await;
    bobs.send(json!({"op": "typing", "ref": "t", "room_id": room_id}))
        .await;
    assert_eq!(bobs.answer("t").await["code"], "muted", "no typing either");
    bobs.close().await;
    let (accepted, codes) = concurrent_sends(&app, &bob.token, &room_id, 12).await;
    assert_eq!(accepted, 0);
    assert!(codes.iter().all(|code| code == "muted"), "{codes:?}");
    app.patch(
        &format!("{messages}/{}", id_of(&earlier)),
        &bob.token,
        json!({"body": "edited"}),
    )
    .await
    .expect_error(403, "muted");
    app.post(
        &format!("{messages}/{}/reactions", id_of(&earlier)),
        Some(&bob.token),
        json!({"emoji": "👍"}),
    )
    .await
    .expect_error(403, "muted");
    assert_eq!(
        app.snapshot().await,
        before,
        "refused writes changed nothing"
    );
    // Reading goes on.
    app.get(&messages, &bob.token).await.expect(200);
    let mutes = app
        .get(&format!("/v1/rooms/{room_id}/mutes"), &owner.token)
        .await
        .expect(200);
    assert_eq!(mutes["items"][0]["user"]["id"], bob.user_id.as_str());
    app.get(&format!("/v1/rooms/{room_id}/mutes"), &bob.token)
        .await
        .expect_error(403, "forbidden");

    // Lifted, and then a mute that ends by itself.
    app.delete(
        &format!("/v1/rooms/{room_id}/mutes/{}", bob.user_id),
        &owner.token,
    )
    .await
    .expect(204);
    app.send(&bob.token, &room_id, "free again").await;
    app.post(
        &format!("/v1/rooms/{room_id}/mutes"),
        Some(&owner.token),
        json!({"user_id": bob.user_id, "duration_seconds": 1}),
    )
    .await
    .expect(200);
    app.post(&messages, Some(&bob.token), json!({"body": "muted again"}))
        .await
        .expect_error(403, "muted");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.send(&bob.token, &room_id, "the mute ended").await;
    let types = event_types(&app, &owner.token, &room_id, since).await;
    assert_eq!(
        types,
        [
            "member.muted",
            "member.unmuted",
            "message.created",
            "member.muted",
            "message.created"
        ]
    );
    // Nobody mutes the room's owner from below, nor themselves.
    app.post(
        &format!("/v1/rooms/{room_id}/mutes"),
        Some(&owner.token),
        json!({"user_id": owner.user_id}),
    )
    .await
    .expect_error(409, "cannot_restrict_self");

    // Leaving does not lift a mute: back in the room, the member is muted still.
    app.post(
        &format!("/v1/rooms/{room_id}/mutes"),
        Some(&owner.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{room_id}/leave"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect(204);
    app.add_member(&owner.token, &room_id, &bob.user_id).await;
    app.post(&messages, Some(&bob.token), json!({"body": "fresh start?"}))
        .await
        .expect_error(403, "muted");
}

#[tokio::test]
async fn a_banned_user_is_removed_and_cannot_come_back_by_id_code_or_admin_until_unbanned() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let owner = tenant.owner;
    let bob = app.register("acme", "bob").await;
    let room = app.create_room(&owner.token, "lobby", "public").await;
    let room_id = id_of(&room);
    let code = room["invite_code"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/rooms/{room_id}/join"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect(200);
    let mut bobs = WsClient::connect(&app, &bob.token).await;
    let since = bobs.subscribe(&room_id, None).await;

    app.post(
        &format!("/v1/rooms/{room_id}/bans"),
        Some(&owner.token),
        json!({"user_id": bob.user_id, "reason": "spam"}),
    )
    .await
    .expect(200);
    let left = bobs.events_until(&room_id, since + 1).await;
    assert_eq!(left[0]["type"], "member.left");
    assert_eq!(left[0]["data"]["reason"], "banned");
    let ended = bobs.next_not_presence(WAIT).await.unwrap();
    assert_eq!(ended["op"], "unsubscribed");
    assert_eq!(
        event_types(&app, &owner.token, &room_id, since).await,
        ["member.left", "member.banned"]
    );

    let before = app.snapshot().await;
    app.post(
        &format!("/v1/rooms/{room_id}/join"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect_error(403, "banned");
    app.post("/v1/rooms/join", Some(&bob.token), json!({"code": code}))
        .await
        .expect_error(403, "banned");
    app.post(
        &format!("/v1/rooms/{room_id}/members"),
        Some(&owner.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect_error(403, "banned");
    assert_eq!(app.snapshot().await, before);
    let bans = app
        .get(&format!("/v1/rooms/{room_id}/bans"), &owner.token)
        .await
        .expect(200);
    assert_eq!(bans["items"][0]["reason"], "spam");

    app.delete(
        &format!("/v1/rooms/{room_id}/bans/{}", bob.user_id),
        &owner.token,
    )
    .await
    .expect(204);
    app.post(
        &format!("/v1/rooms/{room_id}/join"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect(200);
    let audit = app
        .get(
            &format!("/v1/audit-log?target_id={}", bob.user_id),
            &owner.token,
        )
        .await
        .expect(200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["room.unban", "room.ban", "member.remove"]);
}

#[tokio::test]
async fn a_tenant_moderator_acts_in_rooms_they_are_not_in_but_never_above_their_rank() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let mod_ = moderator(&app, &owner, "mod").await;
    let admin = app.register("acme", "admin").await;
    app.patch(
        &format!("/v1/users/{}", admin.user_id),
        &owner.token,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    app.add_member(&owner.token, &room_id, &admin.user_id).await;
    let message = app.send(&bob.token, &room_id, "rude").await;

    // Not a member: reading stays closed, deleting and muting are open.
    app.get(&format!("/v1/rooms/{room_id}/messages"), &mod_.token)
        .await
        .expect_error(403, "not_a_member");
    app.delete(
        &format!("/v1/rooms/{room_id}/messages/{}", id_of(&message)),
        &mod_.token,
    )
    .await
    .expect(204);
    app.post(
        &format!("/v1/rooms/{room_id}/mutes"),
        Some(&mod_.token),
        json!({"user_id": bob.user_id, "duration_seconds": 600}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{room_id}/mutes"),
        Some(&mod_.token),
        json!({"user_id": admin.user_id}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        &format!("/v1/users/{}/ban", admin.user_id),
        Some(&mod_.token),
        json!({}),
    )
    .await
    .expect_error(403, "forbidden");
    // Moderators keep the filters they enforce but do not write them.
    app.post(
        "/v1/moderation/filters",
        Some(&mod_.token),
        json!({"term": "rude", "action": "block"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.get("/v1/moderation/filters", &mod_.token)
        .await
        .expect(200);
    app.get("/v1/audit-log", &mod_.token)
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn a_tenant_ban_ends_streams_at_once_and_refuses_logins_sessions_and_keys_until_lifted() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let key = app.api_key(&owner).await;
    let mut bobs = WsClient::connect(&app, &bob.token).await;
    bobs.subscribe(&room_id, None).await;
    let peer = app.spawn_peer().await;
    let mut on_peer = WsClient::connect(&peer, &bob.token).await;
    on_peer.subscribe(&room_id, None).await;

    let banned = app
        .post(
            &format!("/v1/users/{}/ban", bob.user_id),
            Some(&owner.token),
            json!({"reason": "harassment"}),
        )
        .await
        .expect(200);
    assert!(banned["banned_at"].is_string());
    assert_eq!(banned["ban_reason"], "harassment");
    for socket in [&mut bobs, &mut on_peer] {
        let ending = tokio::time::timeout(Duration::from_secs(1), socket.ending())
            .await
            .expect("the stream ends within a second");
        assert_eq!(ending, Ending::Closed(4001));
    }
    app.get("/v1/users/me", &bob.token)
        .await
        .expect_error(401, "token_revoked");
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": crate::helpers::PASSWORD}),
    )
    .await
    .expect_error(403, "user_banned");
    app.with_key(
        Method::POST,
        &format!("/v1/backend/users/{}/sessions", bob.user_id),
        &key,
        Some(json!({})),
    )
    .await
    .expect_error(403, "user_banned");
    app.acting(Method::GET, "/v1/users/me", &key, &bob.user_id, None)
        .await
        .expect_error(403, "user_banned");
    // Others see that the user is banned, not why.
    let carol = app.register("acme", "carol").await;
    let seen = app
        .get(&format!("/v1/users/{}", bob.user_id), &carol.token)
        .await
        .expect(200);
    assert!(seen["banned_at"].is_string());
    assert!(seen["ban_reason"].is_null());
    app.post(
        &format!("/v1/users/{}/ban", owner.user_id),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect_error(409, "cannot_restrict_self");

    app.post(
        &format!("/v1/users/{}/unban", bob.user_id),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect(200);
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": crate::helpers::PASSWORD}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn slow_mode_lets_one_message_through_per_interval_whatever_the_path_or_concurrency() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let key = app.api_key(&owner).await;
    let room = format!("/v1/rooms/{room_id}");
    app.patch(&room, &owner.token, json!({"slow_mode_seconds": 30}))
        .await
        .expect(200);
    app.patch(&room, &owner.token, json!({"slow_mode_seconds": 30_000}))
        .await
        .expect_error(422, "invalid_slow_mode_seconds");
    app.patch(&room, &bob.token, json!({"slow_mode_seconds": 0}))
        .await
        .expect_error(403, "forbidden");

    let (accepted, codes) = concurrent_sends(&app, &bob.token, &room_id, 16).await;
    assert_eq!(accepted, 1, "one message per interval: {codes:?}");
    assert!(codes.iter().all(|code| code == "slow_mode"), "{codes:?}");
    let refused = app
        .post(
            &format!("{room}/messages"),
            Some(&bob.token),
            json!({"body": "again"}),
        )
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["code"], "slow_mode");
    let wait: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    refused_on_every_path(&app, &key, &bob, &room_id, "again", 429, "slow_mode").await;

    // The room's owners and admins are exempt.
    let (accepted, _) = concurrent_sends(&app, &owner.token, &room_id, 5).await;
    assert_eq!(accepted, 5);

    // Off again, bob writes freely.
    app.patch(&room, &owner.token, json!({"slow_mode_seconds": 0}))
        .await
        .expect(200);
    let (accepted, _) = concurrent_sends(&app, &bob.token, &room_id, 3).await;
    assert_eq!(accepted, 3);
}

#[tokio::test]
async fn word_filters_block_or_flag_messages_ignoring_case_and_diacritics_on_every_path() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let key = app.api_key(&owner).await;
    for (term, action) in [
        ("đồ ngốc", "block"),
        ("дурак", "block"),
        ("casino*", "flag"),
        ("坏蛋", "block"),
    ] {
        app.post(
            "/v1/moderation/filters",
            Some(&owner.token),
            json!({"term": term, "action": action}),
        )
        .await
        .expect(201);
    }
    app.post(
        "/v1/moderation/filters",
        Some(&owner.token),
        json!({"term": "DO NGOC", "action": "flag"}),
    )
    .await
    .expect_error(409, "filter_exists");
    app.post(
        "/v1/moderation/filters",
        Some(&bob.token),
        json!({"term": "x", "action": "block"}),
    )
    .await
    .expect_error(403, "forbidden");

    let messages = format!("/v1/rooms/{room_id}/messages");
    let before = app.snapshot().await;
    for body in ["mày là ĐỒ NGỐC", "do ngoc!", "ты ДУРАК", "你是坏蛋吗 😀"] {
        app.post(&messages, Some(&bob.token), json!({"body": body}))
            .await
            .expect_error(422, "blocked_content");
    }
    refused_on_every_path(
        &app,
        &key,
        &bob,
        &room_id,
        "Đồ ngốc",
        422,
        "blocked_content",
    )
    .await;
    app.with_key(
        Method::POST,
        &format!("/v1/backend/rooms/{room_id}/messages"),
        &key,
        Some(json!({"body": "Дурак"})),
    )
    .await
    .expect_error(422, "blocked_content");
    assert_eq!(
        app.snapshot().await,
        before,
        "blocked messages wrote nothing"
    );

    // Whole words only: a longer word, or the words without their diacritics in
    // another language, pass.
    app.send(&bob.token, &room_id, "дураки и ngốcnghếch").await;
    let fine = app.send(&bob.token, &room_id, "see you at 5").await;
    app.patch(
        &format!("{messages}/{}", id_of(&fine)),
        &bob.token,
        json!({"body": "see you, đồ ngốc"}),
    )
    .await
    .expect_error(422, "blocked_content");

    // Flagged messages are accepted and queued, once each.
    let flagged = app.send(&bob.token, &room_id, "Best CASINOS in town").await;
    let queue = app
        .get("/v1/moderation/reports?state=open", &owner.token)
        .await
        .expect(200);
    let items = queue["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    assert_eq!(items[0]["reason"], "filtered");
    assert_eq!(items[0]["message_id"], flagged["id"]);
    assert!(items[0]["reporter"].is_null());
    assert_eq!(items[0]["target_user"]["id"], bob.user_id.as_str());

    // Sent at once, so that the writer batches them, each is judged alone: the blocked
    // ones fail, the others are written and the flagged ones queued.
    let bodies = (0..12)
        .map(|index| match index % 3 {
            0 => format!("casino night {index}"),
            1 => format!("đồ ngốc {index}"),
            _ => format!("plain {index}"),
        })
        .collect();
    let (accepted, codes) = concurrent_sends_of(&app, &bob.token, &room_id, bodies).await;
    assert_eq!(accepted, 8);
    assert_eq!(codes, vec!["blocked_content"; 4]);
    let queue = app
        .get("/v1/moderation/reports?state=open", &owner.token)
        .await
        .expect(200);
    assert_eq!(queue["items"].as_array().unwrap().len(), 5, "{queue}");

    // Removed, a filter stops applying.
    let filters = app
        .get("/v1/moderation/filters", &owner.token)
        .await
        .expect(200);
    let block_id = filters["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|filter| filter["term"] == "дурак")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("/v1/moderation/filters/{block_id}"), &owner.token)
        .await
        .expect(204);
    app.send(&bob.token, &room_id, "ты дурак").await;
}

#[tokio::test]
async fn the_audit_log_records_administrative_actions_and_nobody_can_change_it() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &owner.token,
        json!({"role": "moderator"}),
    )
    .await
    .expect(200);
    let key = app
        .post("/v1/api-keys", Some(&owner.token), json!({"name": "ops"}))
        .await
        .expect(201);
    let key_id = key["api_key"]["id"].as_str().unwrap().to_owned();
    let secret = key["key"].as_str().unwrap().to_owned();
    app.patch("/v1/tenant", &owner.token, json!({"name": "Acme Inc"}))
        .await
        .expect(200);
    app.with_key(
        Method::POST,
        "/v1/webhooks",
        &secret,
        Some(json!({"url": "https://hooks.example.com/a", "event_types": ["*"]})),
    )
    .await
    .expect(201);
    app.patch(
        &format!("/v1/rooms/{room_id}/members/{}", bob.user_id),
        &owner.token,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    app.delete(&format!("/v1/api-keys/{key_id}"), &owner.token)
        .await
        .expect(204);

    let log = app.get("/v1/audit-log", &owner.token).await.expect(200);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "api_key.revoke",
            "member.role_change",
            "webhook.create",
            "tenant.update",
            "api_key.create",
            "user.role_change"
        ]
    );
    let webhook = &log["items"][2];
    assert_eq!(webhook["actor_key_id"], key_id.as_str());
    assert!(webhook["actor_id"].is_null());
    assert_eq!(log["items"][5]["data"]["role"], "moderator");
    app.get("/v1/audit-log", &bob.token)
        .await
        .expect_error(403, "forbidden");
    let paged = app
        .get("/v1/audit-log?limit=4", &owner.token)
        .await
        .expect(200);
    let cursor = paged["next_cursor"].as_i64().unwrap();
    let rest = app
        .get(
            &format!("/v1/audit-log?limit=4&cursor={cursor}"),
            &owner.token,
        )
        .await
        .expect(200);
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);

    // The application's role may add entries and read them, never change them.
    let (client, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.batch_execute("set role hark_app").await.unwrap();
    for statement in [
        "update hark.audit_log set action = 'forged'",
        "delete from hark.audit_log",
    ] {
        let refused = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {:?}",
            refused.as_db_error()
        );
    }
}

#[tokio::test]
async fn reports_resolutions_mutes_and_bans_reach_the_tenants_webhooks() {
    let app = spawn_app().await;
    let receiver = Receiver::start().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    app.post(
        "/v1/webhooks",
        Some(&owner.token),
        json!({"url": receiver.url, "event_types":
            ["report.created", "report.resolved", "member.muted", "user.banned"]}),
    )
    .await
    .expect(201);
    let message = app.send(&bob.token, &room_id, "spam spam spam").await;
    let report = app
        .post(
            "/v1/reports",
            Some(&owner.token),
            json!({"room_id": room_id, "message_id": message["id"], "reason": "spam"}),
        )
        .await
        .expect(201);
    app.post(
        &format!("/v1/moderation/reports/{}/resolve", id_of(&report)),
        Some(&owner.token),
        json!({"action": "mute", "duration_seconds": 60}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/users/{}/ban", bob.user_id),
        Some(&owner.token),
        json!({"reason": "spam"}),
    )
    .await
    .expect(200);

    let delivered = receiver.wait_for_accepted(4, Duration::from_secs(30)).await;
    let mut types: Vec<&str> = delivered
        .iter()
        .map(|delivery| delivery.body["type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "member.muted",
            "report.created",
            "report.resolved",
            "user.banned"
        ]
    );
    let resolved = delivered
        .iter()
        .find(|delivery| delivery.body["type"] == "report.resolved")
        .unwrap();
    assert_eq!(resolved.body["data"]["report"]["action"], "mute");
}
