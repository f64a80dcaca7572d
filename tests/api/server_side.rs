//! The server-side API: a tenant's backend acting as any of its users with an API key
//! (`Authorization: Bearer hark_sk_…` and `X-Hark-User`), system messages with no
//! sender, every room of the tenant, rooms created with their members, and users
//! deactivated and reactivated.

use serde_json::json;

use crate::helpers::{TestApp, id_of, room_with_bob, spawn_app};

#[tokio::test]
async fn a_key_acting_as_a_user_sends_edits_and_deletes_as_that_user_by_the_same_rules() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    let key = app.api_key(&owner).await;
    let messages = format!("/v1/rooms/{room_id}/messages");

    let sent = app
        .acting(
            reqwest::Method::POST,
            &messages,
            &key,
            &bob.user_id,
            Some(json!({"body": "from bob's backend", "client_id": "order-1"})),
        )
        .await
        .expect(201);
    assert_eq!(sent["sender"]["username"], "bob");
    let again = app
        .acting(
            reqwest::Method::POST,
            &messages,
            &key,
            &bob.user_id,
            Some(json!({"body": "from bob's backend", "client_id": "order-1"})),
        )
        .await
        .expect(200);
    assert_eq!(
        again["id"], sent["id"],
        "a client id is idempotent for a key too"
    );

    let message = format!("{messages}/{}", id_of(&sent));
    app.acting(
        reqwest::Method::PATCH,
        &message,
        &key,
        &bob.user_id,
        Some(json!({"body": "edited by the backend"})),
    )
    .await
    .expect(200);
    // The rules of the client hold: carol is not in the room, and the owner is not
    // the author.
    app.acting(
        reqwest::Method::POST,
        &messages,
        &key,
        &carol.user_id,
        Some(json!({"body": "intruding"})),
    )
    .await
    .expect_error(403, "not_a_member");
    app.acting(
        reqwest::Method::PATCH,
        &message,
        &key,
        &owner.user_id,
        Some(json!({"body": "not mine"})),
    )
    .await
    .expect_error(403, "not_the_author");
    app.acting(reqwest::Method::DELETE, &message, &key, &bob.user_id, None)
        .await
        .expect(204);

    let history = app.get(&messages, &owner.token).await.expect(200);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["deleted"], true);
    let log = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &owner.token)
        .await
        .expect(200);
    let types: Vec<_> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .filter(|kind| kind.starts_with("message."))
        .collect();
    assert_eq!(
        types,
        ["message.created", "message.edited", "message.deleted"]
    );
}

#[tokio::test]
async fn a_key_acting_as_a_user_lists_their_rooms_with_unread_counts() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    app.send(&owner.token, &room_id, "one").await;
    app.send(&owner.token, &room_id, "two").await;
    let key = app.api_key(&owner).await;
    let rooms = app
        .acting(reqwest::Method::GET, "/v1/rooms", &key, &bob.user_id, None)
        .await
        .expect(200);
    let items = rooms["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["unread_count"], 2);
    assert_eq!(items[0]["my_role"], "member");
    let unread = app
        .acting(
            reqwest::Method::GET,
            "/v1/users/me/unread",
            &key,
            &bob.user_id,
            None,
        )
        .await
        .expect(200);
    assert_eq!(unread["total"], 2);
}

#[tokio::test]
async fn a_key_acts_for_no_user_above_its_creator_and_stops_acting_once_revoked() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let bob = app.register("acme", "bob").await;
    let key = app.api_key(&admin).await;
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &tenant.owner.user_id,
        None,
    )
    .await
    .expect_error(403, "role_above_key");
    let me = app
        .acting(
            reqwest::Method::GET,
            "/v1/users/me",
            &key,
            &bob.user_id,
            None,
        )
        .await
        .expect(200);
    assert_eq!(me["username"], "bob");

    // Bob promoted above the key's creator: the same acting session is refused.
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &tenant.owner.token,
        json!({"role": "owner"}),
    )
    .await
    .expect(200);
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &bob.user_id,
        None,
    )
    .await
    .expect_error(403, "role_above_key");

    let carol = app.register("acme", "carol").await;
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &carol.user_id,
        None,
    )
    .await
    .expect(200);
    let keys = app.get("/v1/api-keys", &admin.token).await.expect(200);
    let key_id = keys["items"][0]["id"].as_str().unwrap();
    app.delete(&format!("/v1/api-keys/{key_id}"), &admin.token)
        .await
        .expect(204);
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &carol.user_id,
        None,
    )
    .await
    .expect_error(401, "invalid_api_key");
}

#[tokio::test]
async fn a_key_naming_no_user_or_a_user_it_cannot_see_is_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let key = app.api_key(&acme.owner).await;
    let answer = TestApp::answer(
        app.client
            .get(format!("{}/v1/users/me", app.address))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.expect_error(401, "acting_user_required");
    app.acting(reqwest::Method::GET, "/v1/users/me", &key, "bob", None)
        .await
        .expect_error(422, "invalid_acting_user");
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &uuid::Uuid::now_v7().to_string(),
        None,
    )
    .await
    .expect_error(404, "user_not_found");
    // Another tenant's user is a user that does not exist.
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &globex.owner.user_id,
        None,
    )
    .await
    .expect_error(404, "user_not_found");
    // A key is never read from the query, where URLs end up in logs.
    let streamed = app
        .client
        .get(format!(
            "{}/v1/rooms/{}/events?token={key}",
            app.address,
            uuid::Uuid::now_v7()
        ))
        .header("x-hark-user", &acme.owner.user_id)
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 401);
}

#[tokio::test]
async fn a_system_message_has_no_sender_and_follows_the_rules_of_every_send() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let key = app.api_key(&owner).await;
    app.send(&bob.token, &room_id, "before").await;
    let path = format!("/v1/backend/rooms/{room_id}/messages");
    let sent = app
        .with_key(
            reqwest::Method::POST,
            &path,
            &key,
            Some(json!({"body": "Your order has shipped"})),
        )
        .await
        .expect(201);
    assert!(sent["sender"].is_null());
    assert_eq!(sent["kind"], "system");
    let history = app
        .get(&format!("/v1/rooms/{room_id}/messages"), &bob.token)
        .await
        .expect(200);
    let seqs: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert_eq!(
        seqs[1],
        seqs[0] + 1,
        "the system message takes the next seq"
    );
    assert!(history["items"][1]["sender"].is_null());

    let before = app.snapshot().await;
    app.with_key(
        reqwest::Method::POST,
        &path,
        &key,
        Some(json!({"body": "  "})),
    )
    .await
    .expect_error(422, "empty_body");
    let too_long = "x".repeat(20_000);
    app.with_key(
        reqwest::Method::POST,
        &path,
        &key,
        Some(json!({"body": too_long})),
    )
    .await
    .expect_error(422, "body_too_long");
    let unknown = format!("/v1/backend/rooms/{}/messages", uuid::Uuid::now_v7());
    app.with_key(
        reqwest::Method::POST,
        &unknown,
        &key,
        Some(json!({"body": "lost"})),
    )
    .await
    .expect_error(404, "room_not_found");
    app.post(
        &path,
        Some(&owner.token),
        json!({"body": "a user's token is not a key"}),
    )
    .await
    .expect(401);
    app.post(
        &format!("/v1/rooms/{room_id}/archive"),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect(200);
    let archived = app.snapshot().await;
    app.with_key(
        reqwest::Method::POST,
        &path,
        &key,
        Some(json!({"body": "late"})),
    )
    .await
    .expect_error(409, "room_archived");
    assert_eq!(
        app.snapshot().await,
        archived,
        "a refused send writes nothing"
    );
    assert_ne!(before, archived);
}

#[tokio::test]
async fn a_room_created_with_members_has_each_join_in_its_log() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let room = app
        .post(
            "/v1/rooms",
            Some(&tenant.owner.token),
            json!({"name": "launch", "member_ids": [bob.user_id, carol.user_id, bob.user_id,
                tenant.owner.user_id]}),
        )
        .await
        .expect(201);
    assert_eq!(room["member_count"], 3);
    let room_id = id_of(&room);
    let log = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &bob.token)
        .await
        .expect(200);
    let joined: Vec<_> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "member.joined")
        .map(|event| {
            event["data"]["user"]["username"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(joined.len(), 3);
    assert_eq!(joined[0], "owner");

    let before = app.snapshot().await;
    app.post(
        "/v1/rooms",
        Some(&tenant.owner.token),
        json!({"name": "ghosts", "member_ids": [bob.user_id, uuid::Uuid::now_v7()]}),
    )
    .await
    .expect_error(404, "user_not_found");
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused creation writes nothing"
    );
}

#[tokio::test]
async fn every_room_of_the_tenant_is_listed_with_filters_and_a_cursor() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let carol = app.register("acme", "carol").await;
    app.create_room(&carol.token, "Carol's corner", "private")
        .await;
    app.post(
        "/v1/rooms/direct",
        Some(&bob.token),
        json!({"user_id": carol.user_id}),
    )
    .await
    .expect(200);
    let globex = app.create_tenant("globex").await;
    app.create_room(&globex.owner.token, "globex room", "public")
        .await;
    let key = app.api_key(&owner).await;

    let all = app
        .with_key(reqwest::Method::GET, "/v1/backend/rooms", &key, None)
        .await
        .expect(200);
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "{all}");
    let direct = app
        .with_key(
            reqwest::Method::GET,
            "/v1/backend/rooms?kind=direct",
            &key,
            None,
        )
        .await
        .expect(200);
    assert_eq!(direct["items"].as_array().unwrap().len(), 1);
    let bobs = app
        .with_key(
            reqwest::Method::GET,
            &format!("/v1/backend/rooms?member_id={}", bob.user_id),
            &key,
            None,
        )
        .await
        .expect(200);
    assert_eq!(bobs["items"].as_array().unwrap().len(), 2);
    let named = app
        .get("/v1/backend/rooms?q=CORNER", &owner.token)
        .await
        .expect(200);
    assert_eq!(named["items"][0]["name"], "Carol's corner");

    let first = app
        .with_key(
            reqwest::Method::GET,
            "/v1/backend/rooms?limit=2",
            &key,
            None,
        )
        .await
        .expect(200);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .with_key(
            reqwest::Method::GET,
            &format!("/v1/backend/rooms?limit=2&cursor={cursor}"),
            &key,
            None,
        )
        .await
        .expect(200);
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    assert_eq!(first["items"][0]["id"], room_id.as_str());

    app.get("/v1/backend/rooms", &bob.token)
        .await
        .expect_error(403, "forbidden");
    app.get("/v1/backend/rooms?limit=500", &owner.token)
        .await
        .expect_error(422, "invalid_limit");
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in_or_be_acted_for_until_reactivated() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let bob = app.register("acme", "bob").await;
    let key = app.api_key(&tenant.owner).await;
    let deactivate = format!("/v1/users/{}/deactivate", bob.user_id);

    app.post(&deactivate, Some(&bob.token), json!({}))
        .await
        .expect_error(403, "forbidden");
    app.post(
        &format!("/v1/users/{}/deactivate", tenant.owner.user_id),
        Some(&admin.token),
        json!({}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        &format!("/v1/users/{}/deactivate", admin.user_id),
        Some(&admin.token),
        json!({}),
    )
    .await
    .expect_error(409, "cannot_deactivate_self");

    let user = app
        .with_key(reqwest::Method::POST, &deactivate, &key, None)
        .await
        .expect(200);
    assert!(user["deactivated_at"].is_string());
    app.get("/v1/users/me", &bob.token)
        .await
        .expect_error(401, "token_revoked");
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": crate::helpers::PASSWORD}),
    )
    .await
    .expect_error(403, "user_deactivated");
    app.with_key(
        reqwest::Method::POST,
        &format!("/v1/backend/users/{}/sessions", bob.user_id),
        &key,
        None,
    )
    .await
    .expect_error(403, "user_deactivated");
    app.acting(
        reqwest::Method::GET,
        "/v1/users/me",
        &key,
        &bob.user_id,
        None,
    )
    .await
    .expect_error(403, "user_deactivated");
    let listed = app
        .get(&format!("/v1/users/{}", bob.user_id), &admin.token)
        .await
        .expect(200);
    assert!(listed["deactivated_at"].is_string(), "still listed, marked");

    // A deactivated admin's keys stop working with them.
    let admins_key = app.api_key(&admin).await;
    app.with_key(reqwest::Method::GET, "/v1/backend/rooms", &admins_key, None)
        .await
        .expect(200);
    app.post(
        &format!("/v1/users/{}/deactivate", admin.user_id),
        Some(&tenant.owner.token),
        json!({}),
    )
    .await
    .expect(200);
    app.with_key(reqwest::Method::GET, "/v1/backend/rooms", &admins_key, None)
        .await
        .expect_error(401, "invalid_api_key");

    let user = app
        .post(
            &format!("/v1/users/{}/reactivate", bob.user_id),
            Some(&tenant.owner.token),
            json!({}),
        )
        .await
        .expect(200);
    assert!(user["deactivated_at"].is_null());
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": crate::helpers::PASSWORD}),
    )
    .await
    .expect(200);
}
