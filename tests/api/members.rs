//! Room members: listing, adding, removing, roles and the access check.

use serde_json::json;

use crate::helpers::{id_of, spawn_app};

#[tokio::test]
async fn a_member_cannot_remove_others_and_an_admin_can() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let adele = app.register("acme", "adele").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    for user in [&adele, &bob, &carol] {
        app.add_member(&tenant.owner.token, &room_id, &user.user_id)
            .await;
    }
    app.patch(
        &format!("/v1/rooms/{room_id}/members/{}", adele.user_id),
        &tenant.owner.token,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    let before = app.snapshot().await;
    app.delete(
        &format!("/v1/rooms/{room_id}/members/{}", carol.user_id),
        &bob.token,
    )
    .await
    .expect_error(403, "forbidden");
    assert_eq!(app.snapshot().await, before);
    app.delete(
        &format!("/v1/rooms/{room_id}/members/{}", carol.user_id),
        &adele.token,
    )
    .await
    .expect(204);
    app.get(&format!("/v1/rooms/{room_id}/messages"), &carol.token)
        .await
        .expect_error(403, "not_a_member");
    // Admins do not remove owners or other admins.
    app.delete(
        &format!("/v1/rooms/{room_id}/members/{}", tenant.owner.user_id),
        &adele.token,
    )
    .await
    .expect_error(403, "forbidden");
    // Anyone removes themselves.
    app.delete(
        &format!("/v1/rooms/{room_id}/members/{}", bob.user_id),
        &bob.token,
    )
    .await
    .expect(204);
    app.delete(
        &format!("/v1/rooms/{room_id}/members/{}", bob.user_id),
        &adele.token,
    )
    .await
    .expect_error(404, "member_not_found");
    let events = app
        .get(
            &format!("/v1/rooms/{room_id}/event-log"),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    let removed = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["type"] == "member.left")
        .unwrap()
        .clone();
    assert_eq!(removed["data"]["user"]["username"], "carol");
    assert_eq!(removed["data"]["removed_by"], adele.user_id.as_str());
}

#[tokio::test]
async fn members_add_nobody_and_admins_add_tenant_users_once() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    app.post(
        &format!("/v1/rooms/{room_id}/members"),
        Some(&bob.token),
        json!({"user_id": carol.user_id}),
    )
    .await
    .expect_error(403, "forbidden");
    let member = app
        .post(
            &format!("/v1/rooms/{room_id}/members"),
            Some(&tenant.owner.token),
            json!({"user_id": carol.user_id}),
        )
        .await
        .expect(200);
    assert_eq!(member["role"], "member");
    assert_eq!(member["user"]["username"], "carol");
    let events = app.count_rows("room_events").await;
    app.post(
        &format!("/v1/rooms/{room_id}/members"),
        Some(&tenant.owner.token),
        json!({"user_id": carol.user_id}),
    )
    .await
    .expect(200);
    assert_eq!(
        app.count_rows("room_events").await,
        events,
        "adding twice changes nothing"
    );
    app.post(
        &format!("/v1/rooms/{room_id}/members"),
        Some(&tenant.owner.token),
        json!({"user_id": uuid::Uuid::now_v7()}),
    )
    .await
    .expect_error(404, "user_not_found");
}

#[tokio::test]
async fn the_member_list_pages_with_roles_and_join_times() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    for index in 0..4 {
        let user = app.register("acme", &format!("user{index}")).await;
        app.add_member(&tenant.owner.token, &room_id, &user.user_id)
            .await;
    }
    let first = app
        .get(
            &format!("/v1/rooms/{room_id}/members?limit=3"),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["role"], "owner");
    assert!(items[0]["joined_at"].is_string());
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/v1/rooms/{room_id}/members?limit=3&cursor={cursor}"),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
    app.get(
        &format!("/v1/rooms/{room_id}/members?limit=500"),
        &tenant.owner.token,
    )
    .await
    .expect_error(422, "invalid_limit");
    let outsider = app.register("acme", "outsider").await;
    app.get(&format!("/v1/rooms/{room_id}/members"), &outsider.token)
        .await
        .expect_error(403, "not_a_member");
}

#[tokio::test]
async fn owners_change_roles_and_nobody_removes_the_last_owner() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    let owner_path = format!("/v1/rooms/{room_id}/members/{}", tenant.owner.user_id);
    let bob_path = format!("/v1/rooms/{room_id}/members/{}", bob.user_id);
    let before = app.snapshot().await;
    app.patch(&owner_path, &tenant.owner.token, json!({"role": "member"}))
        .await
        .expect_error(409, "last_owner");
    app.patch(&bob_path, &bob.token, json!({"role": "owner"}))
        .await
        .expect_error(403, "forbidden");
    app.patch(&bob_path, &tenant.owner.token, json!({"role": "king"}))
        .await
        .expect_error(422, "invalid_role");
    assert_eq!(app.snapshot().await, before);
    let admin = app
        .patch(&bob_path, &tenant.owner.token, json!({"role": "admin"}))
        .await
        .expect(200);
    assert_eq!(admin["role"], "admin");
    // Admins do not change roles.
    app.patch(&owner_path, &bob.token, json!({"role": "member"}))
        .await
        .expect_error(403, "forbidden");
    let events = app
        .get(&format!("/v1/rooms/{room_id}/event-log"), &bob.token)
        .await
        .expect(200);
    let changed = events["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(changed["type"], "member.role_changed");
    assert_eq!(changed["data"]["role"], "admin");
    assert_eq!(changed["data"]["previous_role"], "member");
}

#[tokio::test]
async fn the_access_check_says_who_may_read_a_room() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    let yes = app
        .get(
            &format!("/v1/rooms/{room_id}/access/{}", bob.user_id),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(yes["can_read"], true);
    assert_eq!(yes["can_send"], true);
    assert_eq!(yes["role"], "member");
    let no = app
        .get(
            &format!("/v1/rooms/{room_id}/access/{}", carol.user_id),
            &bob.token,
        )
        .await
        .expect(200);
    assert_eq!(no["can_read"], false);
    // Outsiders may not probe a room, tenant admins may.
    app.get(
        &format!("/v1/rooms/{room_id}/access/{}", bob.user_id),
        &carol.token,
    )
    .await
    .expect_error(403, "not_a_member");
    let admin_view = app
        .get(
            &format!("/v1/rooms/{room_id}/access/{}", carol.user_id),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    assert_eq!(admin_view["can_read"], false);
    app.get(
        &format!("/v1/rooms/{room_id}/access/{}", uuid::Uuid::now_v7()),
        &bob.token,
    )
    .await
    .expect_error(404, "user_not_found");
}
