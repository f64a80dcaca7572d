//! Tenant API keys, and the backend operations they authorise.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

async fn backend_post(
    app: &TestApp,
    path: &str,
    key: &str,
    body: serde_json::Value,
) -> crate::helpers::Answer {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    TestApp::answer(response).await
}

#[tokio::test]
async fn admins_create_list_and_revoke_keys_and_the_secret_is_shown_once() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&admin.token),
            json!({"name": "backend"}),
        )
        .await
        .expect(201);
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("hark_sk_"));
    assert_eq!(created["api_key"]["name"], "backend");
    assert_eq!(created["api_key"]["created_by"], admin.user_id.as_str());

    let listed = app
        .get("/v1/api-keys", &tenant.owner.token)
        .await
        .expect(200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(
        !listed.to_string().contains(&key[41..]),
        "the listing never shows the secret"
    );

    let key_id = created["api_key"]["id"].as_str().unwrap();
    app.delete(&format!("/v1/api-keys/{key_id}"), &admin.token)
        .await
        .expect(204);
    let listed = app.get("/v1/api-keys", &admin.token).await.expect(200);
    assert!(listed["items"][0]["revoked_at"].is_string());
    backend_post(&app, "/v1/backend/users", key, json!({"username": "carol"}))
        .await
        .expect_error(401, "invalid_api_key");
    app.delete(
        &format!("/v1/api-keys/{}", uuid::Uuid::now_v7()),
        &admin.token,
    )
    .await
    .expect_error(404, "api_key_not_found");
}

#[tokio::test]
async fn members_may_not_manage_keys() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let created = app
        .post(
            "/v1/api-keys",
            Some(&tenant.owner.token),
            json!({"name": "backend"}),
        )
        .await
        .expect(201);
    app.post("/v1/api-keys", Some(&bob.token), json!({"name": "mine"}))
        .await
        .expect_error(403, "forbidden");
    app.get("/v1/api-keys", &bob.token)
        .await
        .expect_error(403, "forbidden");
    app.delete(
        &format!(
            "/v1/api-keys/{}",
            created["api_key"]["id"].as_str().unwrap()
        ),
        &bob.token,
    )
    .await
    .expect_error(403, "forbidden");
    assert_eq!(app.count_rows("api_keys").await, 1);
}

#[tokio::test]
async fn key_names_are_bounded() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    for name in [String::new(), "n".repeat(101)] {
        let error = app
            .post(
                "/v1/api-keys",
                Some(&tenant.owner.token),
                json!({"name": name}),
            )
            .await
            .expect_error(422, "invalid_name");
        assert_eq!(error["field"], "name");
    }
    assert_eq!(app.count_rows("api_keys").await, 0);
}

#[tokio::test]
async fn a_backend_creates_users_and_mints_their_tokens_with_a_key() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let key = app
        .post(
            "/v1/api-keys",
            Some(&tenant.owner.token),
            json!({"name": "backend"}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = backend_post(
        &app,
        "/v1/backend/users",
        &key,
        json!({"username": "carol", "display_name": "Carol", "external_id": "cust-1"}),
    )
    .await
    .expect(201);
    assert_eq!(user["role"], "member");
    assert_eq!(user["external_id"], "cust-1");
    let user_id = user["id"].as_str().unwrap();
    let session = backend_post(
        &app,
        &format!("/v1/backend/users/{user_id}/sessions"),
        &key,
        json!({}),
    )
    .await
    .expect(201);
    let me = app
        .get("/v1/users/me", session["access_token"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(me["username"], "carol");
    assert_eq!(me["external_id"], "cust-1");
    // Other members do not see the backend's id of a user; admins do.
    let bob = app.register("acme", "bob").await;
    let path = format!("/v1/users/{user_id}");
    assert!(app.get(&path, &bob.token).await.expect(200)["external_id"].is_null());
    assert_eq!(
        app.get(&path, &tenant.owner.token).await.expect(200)["external_id"],
        "cust-1"
    );
    // The minted session refreshes like any other.
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": session["refresh_token"]}),
    )
    .await
    .expect(200);

    backend_post(
        &app,
        "/v1/backend/users",
        &key,
        json!({"username": "dave", "external_id": "cust-1"}),
    )
    .await
    .expect_error(409, "external_id_taken");
    backend_post(
        &app,
        "/v1/backend/users",
        &key,
        json!({"username": "boss", "role": "owner"}),
    )
    .await
    .expect_error(422, "invalid_role");
    backend_post(&app, "/v1/backend/users", &key, json!({"username": "x y"}))
        .await
        .expect_error(422, "invalid_username");
    backend_post(
        &app,
        &format!("/v1/backend/users/{}/sessions", uuid::Uuid::now_v7()),
        &key,
        json!({}),
    )
    .await
    .expect_error(404, "user_not_found");
    assert_eq!(app.count_rows("users").await, 3, "owner, carol and bob");
}

#[tokio::test]
async fn backend_operations_refuse_missing_and_malformed_keys() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/v1/backend/users", app.address))
        .json(&json!({"username": "carol"}))
        .send()
        .await
        .unwrap();
    TestApp::answer(response)
        .await
        .expect_error(401, "missing_token");
    let tenant = app.create_tenant("acme").await;
    let valid_shape = format!(
        "hark_sk_{}_{}",
        tenant.owner.tenant_id.replace('-', ""),
        "0".repeat(64)
    );
    for key in ["nonsense", "hark_sk_zz_00", valid_shape.as_str()] {
        backend_post(&app, "/v1/backend/users", key, json!({"username": "carol"}))
            .await
            .expect_error(401, "invalid_api_key");
    }
    // An access token is not an API key.
    backend_post(
        &app,
        "/v1/backend/users",
        &tenant.owner.token,
        json!({"username": "carol"}),
    )
    .await
    .expect_error(401, "invalid_api_key");
}

#[tokio::test]
async fn a_key_never_acts_above_the_role_of_whoever_created_it() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let bob = app.register("acme", "bob").await;
    let key_of = |token: String| {
        let app = &app;
        async move {
            app.post("/v1/api-keys", Some(&token), json!({"name": "backend"}))
                .await
                .expect(201)["key"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let admins_key = key_of(admin.token.clone()).await;
    let owners_key = key_of(tenant.owner.token.clone()).await;
    let mint = |key: String, user_id: String| {
        let app = &app;
        async move {
            backend_post(
                app,
                &format!("/v1/backend/users/{user_id}/sessions"),
                &key,
                json!({}),
            )
            .await
        }
    };
    let sessions_before = app.count_rows("sessions").await;
    mint(admins_key.clone(), tenant.owner.user_id.clone())
        .await
        .expect_error(403, "role_above_key");
    assert_eq!(app.count_rows("sessions").await, sessions_before);
    let minted = mint(admins_key.clone(), bob.user_id.clone())
        .await
        .expect(201);
    assert_eq!(minted["user"]["role"], "member");
    mint(admins_key.clone(), admin.user_id.clone())
        .await
        .expect(201);
    mint(owners_key.clone(), tenant.owner.user_id.clone())
        .await
        .expect(201);

    // Demoted, the admin's key stops working altogether.
    app.patch(
        &format!("/v1/users/{}", admin.user_id),
        &tenant.owner.token,
        json!({"role": "member"}),
    )
    .await
    .expect(200);
    mint(admins_key, bob.user_id.clone())
        .await
        .expect_error(401, "invalid_api_key");
    mint(owners_key, bob.user_id).await.expect(201);
}
