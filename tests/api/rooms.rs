//! Rooms: creation, direct rooms, listing, settings, archive, delete, invite codes,
//! joining and leaving.

use serde_json::json;

use crate::helpers::{id_of, spawn_app};

#[tokio::test]
async fn a_created_room_has_its_creator_as_owner_and_a_joined_event() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let room = app
        .create_room(&tenant.owner.token, "general", "public")
        .await;
    assert_eq!(room["kind"], "group");
    assert_eq!(room["name"], "general");
    assert_eq!(room["visibility"], "public");
    assert_eq!(room["my_role"], "owner");
    assert_eq!(room["member_count"], 1);
    assert_eq!(room["last_seq"], 1);
    let code = room["invite_code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    assert!(
        code.chars()
            .all(|c| "23456789ABCDEFGHJKLMNPQRSTUVWXYZ".contains(c)),
        "{code}"
    );
    let events = app
        .get(
            &format!("/v1/rooms/{}/event-log", id_of(&room)),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    assert_eq!(events["items"][0]["type"], "member.joined");
    assert_eq!(events["items"][0]["data"]["user"]["username"], "owner");
    // Private by default.
    let private = app
        .post(
            "/v1/rooms",
            Some(&tenant.owner.token),
            json!({"name": "secret"}),
        )
        .await
        .expect(201);
    assert_eq!(private["visibility"], "private");
}

#[tokio::test]
async fn invalid_room_fields_answer_422_and_create_nothing() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let before = app.snapshot().await;
    for (body, code, field) in [
        (json!({"name": ""}), "invalid_name", "name"),
        (json!({"name": "   "}), "invalid_name", "name"),
        (json!({"name": "n".repeat(101)}), "invalid_name", "name"),
        (
            json!({"name": "ok", "topic": "t".repeat(1001)}),
            "invalid_topic",
            "topic",
        ),
    ] {
        let error = app
            .post("/v1/rooms", Some(&tenant.owner.token), body)
            .await
            .expect_error(422, code);
        assert_eq!(error["field"], field);
    }
    app.post(
        "/v1/rooms",
        Some(&tenant.owner.token),
        json!({"name": "ok", "visibility": "hidden"}),
    )
    .await
    .expect_error(422, "invalid_visibility");
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn the_direct_room_of_two_users_is_the_same_from_both_sides() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let from_bob = app
        .post(
            "/v1/rooms/direct",
            Some(&bob.token),
            json!({"user_id": carol.user_id}),
        )
        .await
        .expect(200);
    let from_carol = app
        .post(
            "/v1/rooms/direct",
            Some(&carol.token),
            json!({"user_id": bob.user_id}),
        )
        .await
        .expect(200);
    assert_eq!(from_bob["id"], from_carol["id"]);
    assert_eq!(from_bob["kind"], "direct");
    assert_eq!(from_bob["member_count"], 2);
    assert_eq!(from_bob["direct_user"]["username"], "carol");
    assert_eq!(from_carol["direct_user"]["username"], "bob");
    app.post(
        "/v1/rooms/direct",
        Some(&bob.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect_error(422, "invalid_user");
    app.post(
        "/v1/rooms/direct",
        Some(&bob.token),
        json!({"user_id": uuid::Uuid::now_v7()}),
    )
    .await
    .expect_error(404, "user_not_found");
    // A direct room has no settings and no other members.
    let room_id = id_of(&from_bob);
    app.patch(
        &format!("/v1/rooms/{room_id}"),
        &bob.token,
        json!({"name": "x"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.post(
        &format!("/v1/rooms/{room_id}/leave"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect_error(409, "direct_room");
}

#[tokio::test]
async fn concurrent_direct_room_creation_from_both_users_yields_one_room() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    for round in 0..5 {
        let bob = app.register("acme", &format!("bob{round}")).await;
        let carol = app.register("acme", &format!("carol{round}")).await;
        let mut calls = Vec::new();
        for (token, other) in [(&bob.token, &carol.user_id), (&carol.token, &bob.user_id)]
            .into_iter()
            .cycle()
            .take(6)
        {
            calls.push(app.post("/v1/rooms/direct", Some(token), json!({"user_id": other})));
        }
        let answers = futures_util::future::join_all(calls).await;
        let ids: std::collections::HashSet<String> = answers
            .into_iter()
            .map(|answer| id_of(&answer.expect(200)))
            .collect();
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
    }
    let direct_rooms = app.count_rows("rooms").await;
    assert_eq!(direct_rooms, 5);
}

#[tokio::test]
async fn my_rooms_are_listed_newest_activity_first_with_unread_counts_and_last_message() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let first = app
        .create_room(&tenant.owner.token, "first", "public")
        .await;
    let second = app
        .create_room(&tenant.owner.token, "second", "public")
        .await;
    app.create_room(&bob.token, "bobs", "private").await;
    for room in [&first, &second] {
        app.add_member(&tenant.owner.token, &id_of(room), &bob.user_id)
            .await;
    }
    app.send(&tenant.owner.token, &id_of(&first), "hello first")
        .await;
    app.send(&tenant.owner.token, &id_of(&first), "again first")
        .await;

    let page = app.get("/v1/rooms", &bob.token).await.expect(200);
    let items = page["items"].as_array().unwrap();
    let names: Vec<&str> = items
        .iter()
        .map(|room| room["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second", "bobs"]);
    assert_eq!(items[0]["unread_count"], 2);
    assert_eq!(items[0]["last_message"]["body"], "again first");
    assert_eq!(items[0]["last_message"]["sender"]["username"], "owner");
    assert_eq!(items[1]["unread_count"], 0);
    assert!(items[1]["last_message"].is_null());

    let first_page = app.get("/v1/rooms?limit=2", &bob.token).await.expect(200);
    assert_eq!(first_page["items"].as_array().unwrap().len(), 2);
    let cursor = first_page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/v1/rooms?limit=2&cursor={}", urlencode(cursor)),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(rest["items"][0]["name"], "bobs");
    assert!(rest["next_cursor"].is_null());
    app.get("/v1/rooms?cursor=nonsense", &bob.token)
        .await
        .expect_error(422, "invalid_cursor");
    app.get("/v1/rooms?limit=0", &bob.token)
        .await
        .expect_error(422, "invalid_limit");
}

fn urlencode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn room_admins_update_a_room_and_members_may_not() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room = app
        .create_room(&tenant.owner.token, "general", "private")
        .await;
    let room_id = id_of(&room);
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    let path = format!("/v1/rooms/{room_id}");
    app.patch(&path, &bob.token, json!({"name": "mine"}))
        .await
        .expect_error(403, "forbidden");
    let updated = app
        .patch(
            &path,
            &tenant.owner.token,
            json!({"name": "lobby", "topic": "hi", "visibility": "public"}),
        )
        .await
        .expect(200);
    assert_eq!(updated["name"], "lobby");
    assert_eq!(updated["visibility"], "public");
    let cleared = app
        .patch(&path, &tenant.owner.token, json!({"topic": null}))
        .await
        .expect(200);
    assert!(cleared["topic"].is_null());
    assert_eq!(cleared["name"], "lobby");
    let before = app.snapshot().await;
    app.patch(&path, &tenant.owner.token, json!({"name": ""}))
        .await
        .expect_error(422, "invalid_name");
    app.patch(
        &path,
        &tenant.owner.token,
        json!({"topic": "t".repeat(1001)}),
    )
    .await
    .expect_error(422, "invalid_topic");
    assert_eq!(app.snapshot().await, before);
    let events = app
        .get(&format!("{path}/event-log?after=2"), &bob.token)
        .await
        .expect(200);
    let event = &events["items"][0];
    assert_eq!(event["type"], "room.updated");
    assert_eq!(event["data"]["name"], "lobby");
    assert_eq!(
        event["data"]["changed"],
        json!(["name", "topic", "visibility"])
    );
}

#[tokio::test]
async fn an_archived_room_refuses_sends_but_keeps_its_history_readable() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "general", "public")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    let message = app.send(&bob.token, &room_id, "before the archive").await;
    app.post(
        &format!("/v1/rooms/{room_id}/archive"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect_error(403, "forbidden");
    let archived = app
        .post(
            &format!("/v1/rooms/{room_id}/archive"),
            Some(&tenant.owner.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(archived["archived"], true);
    let before = app.snapshot().await;
    app.post(
        &format!("/v1/rooms/{room_id}/messages"),
        Some(&bob.token),
        json!({"body": "too late"}),
    )
    .await
    .expect_error(409, "room_archived");
    app.patch(
        &format!("/v1/rooms/{room_id}/messages/{}", id_of(&message)),
        &bob.token,
        json!({"body": "edited"}),
    )
    .await
    .expect_error(409, "room_archived");
    app.post(
        &format!("/v1/rooms/{room_id}/messages/{}/reactions", id_of(&message)),
        Some(&bob.token),
        json!({"emoji": "👍"}),
    )
    .await
    .expect_error(409, "room_archived");
    let carol = app.register("acme", "carol").await;
    app.post(
        &format!("/v1/rooms/{room_id}/join"),
        Some(&carol.token),
        json!({}),
    )
    .await
    .expect_error(409, "room_archived");
    assert_eq!(app.snapshot().await, before);
    let history = app
        .get(&format!("/v1/rooms/{room_id}/messages"), &bob.token)
        .await
        .expect(200);
    assert_eq!(history["items"][0]["body"], "before the archive");
    let events = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &bob.token)
        .await
        .expect(200);
    assert_eq!(
        events["items"].as_array().unwrap().last().unwrap()["type"],
        "room.archived"
    );
}

#[tokio::test]
async fn only_a_room_owner_deletes_a_room() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "general", "public")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    app.send(&bob.token, &room_id, "hi").await;
    app.delete(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect_error(403, "forbidden");
    app.delete(&format!("/v1/rooms/{room_id}"), &tenant.owner.token)
        .await
        .expect(204);
    app.get(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect_error(404, "room_not_found");
    // Its history goes in the background.
    for _ in 0..100 {
        if app.snapshot().await.iter().all(|&rows| rows == 0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let left = app.snapshot().await;
    assert!(left.iter().all(|&rows| rows == 0), "rows left: {left:?}");
}

#[tokio::test]
async fn invite_codes_let_users_join_and_rotation_retires_the_old_code() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let room = app
        .create_room(&tenant.owner.token, "secret", "private")
        .await;
    let room_id = id_of(&room);
    let code = room["invite_code"].as_str().unwrap().to_owned();
    // Non-members of a private room do not learn its code, and cannot join by id.
    app.get(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect_error(403, "not_a_member");
    app.post(
        &format!("/v1/rooms/{room_id}/join"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect_error(403, "not_a_member");
    let joined = app
        .post(
            "/v1/rooms/join",
            Some(&bob.token),
            json!({"code": code.to_lowercase()}),
        )
        .await
        .expect(200);
    assert_eq!(joined["my_role"], "member");
    // Joining twice changes nothing.
    let events_before = app.count_rows("room_events").await;
    app.post("/v1/rooms/join", Some(&bob.token), json!({"code": code}))
        .await
        .expect(200);
    assert_eq!(app.count_rows("room_events").await, events_before);

    app.post(
        &format!("/v1/rooms/{room_id}/invite-code"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect_error(403, "forbidden");
    let rotated = app
        .post(
            &format!("/v1/rooms/{room_id}/invite-code"),
            Some(&tenant.owner.token),
            json!({}),
        )
        .await
        .expect(200);
    let new_code = rotated["invite_code"].as_str().unwrap();
    assert_ne!(new_code, code);
    app.post("/v1/rooms/join", Some(&carol.token), json!({"code": code}))
        .await
        .expect_error(404, "invite_not_found");
    app.post(
        "/v1/rooms/join",
        Some(&carol.token),
        json!({"code": new_code}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn public_rooms_are_joined_by_id() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "public")
            .await,
    );
    let seen = app
        .get(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect(200);
    assert!(seen["my_role"].is_null());
    assert!(
        seen["invite_code"].is_null(),
        "non-members do not see the invite code"
    );
    let joined = app
        .post(
            &format!("/v1/rooms/{room_id}/join"),
            Some(&bob.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(joined["my_role"], "member");
    assert_eq!(joined["member_count"], 2);
}

#[tokio::test]
async fn the_last_owner_cannot_leave_but_members_can() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "public")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    app.post(
        &format!("/v1/rooms/{room_id}/leave"),
        Some(&tenant.owner.token),
        json!({}),
    )
    .await
    .expect_error(409, "last_owner");
    app.post(
        &format!("/v1/rooms/{room_id}/leave"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect(204);
    app.get(&format!("/v1/rooms/{room_id}/messages"), &bob.token)
        .await
        .expect_error(403, "not_a_member");
    let events = app
        .get(
            &format!("/v1/rooms/{room_id}/event-log"),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    let left = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(left["type"], "member.left");
    assert_eq!(left["data"]["user"]["username"], "bob");
    // After handing over, the former owner may leave.
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    app.patch(
        &format!("/v1/rooms/{room_id}/members/{}", bob.user_id),
        &tenant.owner.token,
        json!({"role": "owner"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/rooms/{room_id}/leave"),
        Some(&tenant.owner.token),
        json!({}),
    )
    .await
    .expect(204);
}

#[tokio::test]
async fn my_rooms_are_filtered_by_kind_visibility_metadata_and_unread_and_sorted_by_name() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner;
    let bob = app.register("acme", "bob").await;
    let mut ids = std::collections::HashMap::new();
    for (name, visibility, metadata) in [
        ("beta", "public", json!({"team": "sales"})),
        ("alpha", "private", json!({"team": "support"})),
        ("Gamma", "private", json!({"team": "sales", "tier": 2})),
    ] {
        let id = id_of(&app.create_room(&owner.token, name, visibility).await);
        app.patch(
            &format!("/v1/rooms/{id}"),
            &owner.token,
            json!({ "metadata": metadata }),
        )
        .await
        .expect(200);
        app.add_member(&owner.token, &id, &bob.user_id).await;
        ids.insert(name, id);
    }
    app.post(
        "/v1/rooms/direct",
        Some(&bob.token),
        json!({"user_id": owner.user_id}),
    )
    .await
    .expect(200);
    app.send(&owner.token, &ids["alpha"], "unread for bob")
        .await;
    app.post(
        &format!("/v1/rooms/{}/archive", ids["beta"]),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect(200);

    let names = |page: serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|room| room["name"].as_str().unwrap_or("(direct)").to_owned())
            .collect()
    };
    assert_eq!(
        names(
            app.get(&format!("/v1/rooms?{}", "sort=name"), &bob.token)
                .await
                .expect(200)
        ),
        ["(direct)", "alpha", "beta", "Gamma"]
    );
    assert_eq!(
        names(
            app.get(&format!("/v1/rooms?{}", "kind=direct"), &bob.token)
                .await
                .expect(200)
        ),
        ["(direct)"]
    );
    assert_eq!(
        names(
            app.get(&format!("/v1/rooms?{}", "visibility=public"), &bob.token)
                .await
                .expect(200)
        ),
        ["beta"]
    );
    assert_eq!(
        names(
            app.get(&format!("/v1/rooms?{}", "archived=true"), &bob.token)
                .await
                .expect(200)
        ),
        ["beta"]
    );
    assert_eq!(
        names(
            app.get(&format!("/v1/rooms?{}", "has_unread=true"), &bob.token)
                .await
                .expect(200)
        ),
        ["alpha"]
    );
    assert_eq!(
        names(
            app.get(
                &format!(
                    "/v1/rooms?{}",
                    "metadata_key=team&metadata_value=sales&sort=name"
                ),
                &bob.token
            )
            .await
            .expect(200)
        ),
        ["beta", "Gamma"]
    );
    // Pages by name follow their cursor.
    let first = app
        .get(&format!("/v1/rooms?{}", "sort=name&limit=2"), &bob.token)
        .await
        .expect(200);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(
        names(
            app.get(
                &format!("/v1/rooms?sort=name&limit=2&cursor={cursor}"),
                &bob.token
            )
            .await
            .expect(200)
        ),
        ["beta", "Gamma"]
    );
    app.get(&format!("/v1/rooms?{}", "metadata_key=team"), &bob.token)
        .await
        .expect_error(422, "invalid_metadata_filter");
    app.get(
        &format!("/v1/rooms?{}", "sort=name&cursor=nonsense"),
        &bob.token,
    )
    .await
    .expect_error(422, "invalid_cursor");
    // The room's data and settings are answered with it.
    let gamma = app
        .get(&format!("/v1/rooms/{}", ids["Gamma"]), &bob.token)
        .await
        .expect(200);
    assert_eq!(gamma["metadata"], json!({"team": "sales", "tier": 2}));
    assert_eq!(gamma["members_can_pin"], false);
}

#[tokio::test]
async fn bad_room_metadata_and_settings_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "general", "private")
            .await,
    );
    let before = app.snapshot().await;
    let path = format!("/v1/rooms/{room_id}");
    for (patch, code) in [
        (
            json!({"metadata": {"blob": "x".repeat(9000)}}),
            "invalid_metadata",
        ),
        (json!({"metadata": ["not", "an", "object"]}), "invalid_type"),
        (json!({"members_can_pin": "yes"}), "invalid_type"),
        (json!({"members_can_mention_room": 1}), "invalid_type"),
    ] {
        app.patch(&path, &tenant.owner.token, patch)
            .await
            .expect_error(422, code);
    }
    assert_eq!(app.snapshot().await, before);
}

#[tokio::test]
async fn users_find_public_rooms_to_join_by_name_but_not_those_they_are_banned_from() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner;
    let bob = app.register("acme", "bob").await;
    let mut ids = Vec::new();
    for (name, visibility) in [
        ("Rust help", "public"),
        ("rust internals", "public"),
        ("secret rust", "private"),
        ("Cooking", "public"),
        ("banned rust", "public"),
    ] {
        ids.push(id_of(
            &app.create_room(&owner.token, name, visibility).await,
        ));
    }
    app.post(
        &format!("/v1/rooms/{}/bans", ids[4]),
        Some(&owner.token),
        json!({"user_id": bob.user_id}),
    )
    .await
    .expect(200);
    let other = app.create_tenant("globex").await;
    app.create_room(&other.owner.token, "rust elsewhere", "public")
        .await;

    let found = app
        .get("/v1/rooms/public?q=RUST", &bob.token)
        .await
        .expect(200);
    let names: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Rust help", "rust internals"]);
    assert!(found["items"][0]["my_role"].is_null());
    // Paged by creation.
    let first = app
        .get("/v1/rooms/public?limit=1", &bob.token)
        .await
        .expect(200);
    let cursor = first["next_cursor"].as_str().unwrap();
    let next = app
        .get(
            &format!("/v1/rooms/public?limit=1&cursor={cursor}"),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(next["items"][0]["name"], "rust internals");
}
