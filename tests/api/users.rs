//! Reading, listing, updating and deleting the users of a tenant, with the role rules.

use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn users_are_read_by_id_and_by_username_case_insensitively() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "Bob").await;
    let by_id = app
        .get(&format!("/v1/users/{}", bob.user_id), &tenant.owner.token)
        .await
        .expect(200);
    assert_eq!(by_id["username"], "Bob");
    let by_name = app
        .get("/v1/users/by-username/bob", &tenant.owner.token)
        .await
        .expect(200);
    assert_eq!(by_name["id"], bob.user_id.as_str());
    app.get("/v1/users/by-username/nobody", &bob.token)
        .await
        .expect_error(404, "user_not_found");
    app.get(&format!("/v1/users/{}", uuid::Uuid::now_v7()), &bob.token)
        .await
        .expect_error(404, "user_not_found");
    app.get("/v1/users/not-a-uuid", &bob.token)
        .await
        .expect_error(400, "invalid_parameter");
}

#[tokio::test]
async fn email_external_id_and_metadata_are_shown_to_the_user_and_to_admins_only() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let path = format!("/v1/users/{}", bob.user_id);
    app.patch(&path, &bob.token, json!({"metadata": {"plan": "gold"}}))
        .await
        .expect(200);
    for token in [&bob.token, &tenant.owner.token] {
        let seen = app.get(&path, token).await.expect(200);
        assert_eq!(seen["email"], "bob@acme.example");
        assert_eq!(seen["metadata"]["plan"], "gold");
    }
    let by_carol = app.get(&path, &carol.token).await.expect(200);
    let by_username = app
        .get("/v1/users/by-username/bob", &carol.token)
        .await
        .expect(200);
    let page = app.get("/v1/users", &carol.token).await.expect(200);
    let bob_listed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["username"] == "bob")
        .unwrap()
        .clone();
    for seen in [by_carol, by_username, bob_listed] {
        assert!(seen["email"].is_null(), "{seen}");
        assert!(seen["external_id"].is_null(), "{seen}");
        assert!(seen["metadata"].is_null(), "{seen}");
    }
}

#[tokio::test]
async fn the_user_list_pages_with_a_cursor_and_filters_by_role() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    for index in 0..5 {
        app.register("acme", &format!("user{index}")).await;
    }
    let first = app
        .get("/v1/users?limit=4", &tenant.owner.token)
        .await
        .expect(200);
    let first_items = first["items"].as_array().unwrap();
    assert_eq!(first_items.len(), 4);
    assert_eq!(first_items[0]["username"], "owner");
    let cursor = first["next_cursor"].as_str().expect("a next cursor");
    let second = app
        .get(
            &format!("/v1/users?limit=4&cursor={cursor}"),
            &tenant.owner.token,
        )
        .await
        .expect(200);
    let second_items = second["items"].as_array().unwrap();
    assert_eq!(second_items.len(), 2);
    assert_eq!(second_items[1]["username"], "user4");
    assert!(second["next_cursor"].is_null());

    let owners = app
        .get("/v1/users?role=owner", &tenant.owner.token)
        .await
        .expect(200);
    assert_eq!(owners["items"].as_array().unwrap().len(), 1);
    let members = app
        .get("/v1/users?role=member", &tenant.owner.token)
        .await
        .expect(200);
    assert_eq!(members["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn page_sizes_and_filters_out_of_bounds_are_refused() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    for limit in ["0", "201", "-1"] {
        let error = app
            .get(&format!("/v1/users?limit={limit}"), &tenant.owner.token)
            .await
            .expect_error(422, "invalid_limit");
        assert_eq!(error["field"], "limit");
    }
    app.get("/v1/users?limit=abc", &tenant.owner.token)
        .await
        .expect_error(400, "invalid_parameter");
    app.get("/v1/users?role=king", &tenant.owner.token)
        .await
        .expect_error(400, "invalid_parameter");
    app.get("/v1/users?cursor=nope", &tenant.owner.token)
        .await
        .expect_error(400, "invalid_parameter");
}

#[tokio::test]
async fn a_user_updates_their_profile_and_null_clears_a_field() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let path = format!("/v1/users/{}", bob.user_id);
    let updated = app
        .patch(&path, &bob.token, json!({"display_name": "Bobby", "bio": "hi", "avatar_url": "https://x.example/b.png", "metadata": {"team": "blue"}}))
        .await
        .expect(200);
    assert_eq!(updated["display_name"], "Bobby");
    assert_eq!(updated["metadata"]["team"], "blue");
    let cleared = app
        .patch(&path, &bob.token, json!({"bio": null}))
        .await
        .expect(200);
    assert!(cleared["bio"].is_null());
    assert_eq!(
        cleared["display_name"], "Bobby",
        "absent fields stay as they are"
    );
}

#[tokio::test]
async fn invalid_profile_changes_answer_422_and_change_nothing() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let path = format!("/v1/users/{}", bob.user_id);
    app.patch(&path, &bob.token, json!({"display_name": "Bob"}))
        .await
        .expect(200);
    let cases = [
        (
            json!({"display_name": ""}),
            "invalid_display_name",
            "display_name",
        ),
        (
            json!({"display_name": "d".repeat(101)}),
            "invalid_display_name",
            "display_name",
        ),
        (json!({"bio": "b".repeat(1001)}), "invalid_bio", "bio"),
        (
            json!({"avatar_url": format!("https://x.example/{}", "a".repeat(2049))}),
            "invalid_url",
            "avatar_url",
        ),
        // 700 characters, but 2,100 bytes: URLs are bounded by bytes.
        (
            json!({"avatar_url": format!("https://x.example/{}", "€".repeat(700))}),
            "invalid_url",
            "avatar_url",
        ),
        (
            json!({"avatar_url": "javascript:alert(1)"}),
            "invalid_url",
            "avatar_url",
        ),
        (
            json!({"avatar_url": "data:image/png;base64,AAAA"}),
            "invalid_url",
            "avatar_url",
        ),
        (json!({"email": "nope"}), "invalid_email", "email"),
        (
            json!({"metadata": {"blob": "m".repeat(9000)}}),
            "invalid_metadata",
            "metadata",
        ),
    ];
    for (body, code, field) in cases {
        let error = app
            .patch(&path, &bob.token, body)
            .await
            .expect_error(422, code);
        assert_eq!(error["field"], field);
    }
    let error = app
        .patch(&path, &bob.token, json!({"metadata": [1, 2]}))
        .await
        .expect_error(422, "invalid_type");
    assert_eq!(error["field"], "metadata");
    let me = app.get("/v1/users/me", &bob.token).await.expect(200);
    assert_eq!(me["display_name"], "Bob");
    assert_eq!(me["email"], "bob@acme.example");
}

#[tokio::test]
async fn members_change_neither_others_nor_their_own_role() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    app.patch(
        &format!("/v1/users/{}", carol.user_id),
        &bob.token,
        json!({"display_name": "Hacked"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &bob.token,
        json!({"role": "admin"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.patch(
        &format!("/v1/users/{}", tenant.owner.user_id),
        &bob.token,
        json!({"role": "member"}),
    )
    .await
    .expect_error(403, "forbidden");
    assert_eq!(
        app.get("/v1/users/me", &bob.token).await.expect(200)["role"],
        "member"
    );
}

#[tokio::test]
async fn admins_change_roles_but_only_owners_make_or_unmake_owners() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let bob = app.register("acme", "bob").await;
    let bob_path = format!("/v1/users/{}", bob.user_id);
    assert_eq!(
        app.patch(&bob_path, &admin.token, json!({"role": "admin"}))
            .await
            .expect(200)["role"],
        "admin"
    );
    assert_eq!(
        app.patch(&bob_path, &admin.token, json!({"role": "member"}))
            .await
            .expect(200)["role"],
        "member"
    );
    app.patch(&bob_path, &admin.token, json!({"role": "owner"}))
        .await
        .expect_error(403, "forbidden");
    app.patch(
        &format!("/v1/users/{}", tenant.owner.user_id),
        &admin.token,
        json!({"display_name": "x"}),
    )
    .await
    .expect_error(403, "forbidden");
    app.patch(&bob_path, &admin.token, json!({"role": "emperor"}))
        .await
        .expect_error(422, "invalid_role");
    assert_eq!(
        app.patch(&bob_path, &tenant.owner.token, json!({"role": "owner"}))
            .await
            .expect(200)["role"],
        "owner"
    );
    // With two owners, one may step down.
    let owner_path = format!("/v1/users/{}", tenant.owner.user_id);
    assert_eq!(
        app.patch(&owner_path, &tenant.owner.token, json!({"role": "member"}))
            .await
            .expect(200)["role"],
        "member"
    );
}

#[tokio::test]
async fn the_last_owner_can_neither_be_demoted_nor_deleted() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let owner_path = format!("/v1/users/{}", tenant.owner.user_id);
    let error = app
        .patch(&owner_path, &tenant.owner.token, json!({"role": "admin"}))
        .await
        .expect_error(409, "last_owner");
    assert_eq!(error["field"], "role");
    app.delete(&owner_path, &tenant.owner.token)
        .await
        .expect_error(409, "last_owner");
    assert_eq!(
        app.get("/v1/users/me", &tenant.owner.token)
            .await
            .expect(200)["role"],
        "owner"
    );
}

#[tokio::test]
async fn users_delete_themselves_and_admins_delete_members() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;

    app.delete(&format!("/v1/users/{}", carol.user_id), &bob.token)
        .await
        .expect_error(403, "forbidden");
    app.delete(&format!("/v1/users/{}", tenant.owner.user_id), &admin.token)
        .await
        .expect_error(403, "forbidden");
    app.delete(&format!("/v1/users/{}", carol.user_id), &admin.token)
        .await
        .expect(204);
    app.get(&format!("/v1/users/{}", carol.user_id), &bob.token)
        .await
        .expect_error(404, "user_not_found");
    app.get("/v1/users/me", &carol.token)
        .await
        .expect_error(401, "token_revoked");

    app.delete(&format!("/v1/users/{}", bob.user_id), &bob.token)
        .await
        .expect(204);
    app.get("/v1/users/me", &bob.token)
        .await
        .expect_error(401, "token_revoked");
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": PASSWORD}),
    )
    .await
    .expect_error(401, "invalid_credentials");
    // The name is free again.
    let again = app.register("acme", "bob").await;
    assert_ne!(again.user_id, bob.user_id);
}

#[tokio::test]
async fn user_routes_need_a_token() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/users/me".to_owned()),
        (reqwest::Method::GET, "/v1/users".to_owned()),
        (reqwest::Method::GET, format!("/v1/users/{id}")),
        (reqwest::Method::GET, "/v1/users/by-username/bob".to_owned()),
        (reqwest::Method::PATCH, format!("/v1/users/{id}")),
        (reqwest::Method::DELETE, format!("/v1/users/{id}")),
    ] {
        app.request(method, &path, None, Some(json!({})))
            .await
            .expect_error(401, "missing_token");
    }
}

#[tokio::test]
async fn metadata_holding_the_largest_numbers_reads_back_as_it_was_written() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    // Postgres writes 1.7976931348623157e308 back as its 309 digits, which a fast
    // float parser rounds past the largest double.
    let metadata = json!({"max": 1.797_693_134_862_315_7e308, "min": -1.797_693_134_862_315_7e308, "tiny": 5e-324});
    app.patch(
        &format!("/v1/users/{}", bob.user_id),
        &bob.token,
        json!({"metadata": metadata}),
    )
    .await
    .expect(200);
    let me = app.get("/v1/users/me", &bob.token).await.expect(200);
    assert_eq!(me["metadata"], metadata);
    app.get("/v1/users", &bob.token).await.expect(200);
}

#[tokio::test]
async fn owners_and_admins_find_users_by_a_role_of_the_products_own() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let mut ids = Vec::new();
    for (name, role) in [
        ("bea", "buyer"),
        ("dev", "developer"),
        ("bob", "buyer"),
        ("bo", "broker"),
    ] {
        let user = app.register("acme", name).await;
        app.patch(
            &format!("/v1/users/{}", user.user_id),
            &tenant.owner.token,
            json!({"metadata": {"role": role}}),
        )
        .await
        .expect(200);
        ids.push((name, user));
    }
    let buyers = app
        .get(
            "/v1/users?metadata_key=role&metadata_value=buyer",
            &tenant.owner.token,
        )
        .await
        .expect(200);
    let mut names: Vec<&str> = buyers["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["bea", "bob"]);
    // Members do not see metadata, so they may not filter by it either.
    app.get(
        "/v1/users?metadata_key=role&metadata_value=buyer",
        &ids[0].1.token,
    )
    .await
    .expect_error(403, "forbidden");
    app.get("/v1/users?metadata_value=buyer", &tenant.owner.token)
        .await
        .expect_error(422, "invalid_metadata_filter");
}
