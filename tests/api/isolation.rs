//! Tenants never see each other: every id of another tenant behaves exactly like an
//! id that does not exist.

use serde_json::json;

use crate::helpers::{TEST_JWT_SECRET, TestApp, claims_of, forge_token, spawn_app};

#[tokio::test]
async fn every_route_given_another_tenants_ids_answers_as_if_they_did_not_exist() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let alice = app.register("acme", "alice-only").await;
    let acme_key = app
        .post(
            "/v1/api-keys",
            Some(&acme.owner.token),
            json!({"name": "k"}),
        )
        .await
        .expect(201);
    let acme_key_id = acme_key["api_key"]["id"].as_str().unwrap();
    let globex_key = app
        .post(
            "/v1/api-keys",
            Some(&globex.owner.token),
            json!({"name": "k"}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let intruder = &globex.owner.token;
    let foreign_user = format!("/v1/users/{}", alice.user_id);
    app.get(&foreign_user, intruder)
        .await
        .expect_error(404, "user_not_found");
    app.get("/v1/users/by-username/alice-only", intruder)
        .await
        .expect_error(404, "user_not_found");
    app.patch(&foreign_user, intruder, json!({"display_name": "pwned"}))
        .await
        .expect_error(404, "user_not_found");
    app.patch(&foreign_user, intruder, json!({"role": "admin"}))
        .await
        .expect_error(404, "user_not_found");
    app.delete(&foreign_user, intruder)
        .await
        .expect_error(404, "user_not_found");
    app.delete(&format!("/v1/api-keys/{acme_key_id}"), intruder)
        .await
        .expect_error(404, "api_key_not_found");
    let response = app
        .client
        .post(format!(
            "{}/v1/backend/users/{}/sessions",
            app.address, alice.user_id
        ))
        .header("x-api-key", &globex_key)
        .send()
        .await
        .unwrap();
    TestApp::answer(response)
        .await
        .expect_error(404, "user_not_found");

    // Listings show only the caller's tenant.
    let users = app.get("/v1/users", intruder).await.expect(200);
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
    let keys = app.get("/v1/api-keys", intruder).await.expect(200);
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/tenant", intruder).await.expect(200)["slug"],
        "globex"
    );

    // Nothing of acme changed.
    let alice_now = app.get("/v1/users/me", &alice.token).await.expect(200);
    assert_eq!(alice_now["role"], "member");
    assert!(alice_now["display_name"].is_null());
    let acme_keys = app.get("/v1/api-keys", &acme.owner.token).await.expect(200);
    assert!(acme_keys["items"][0]["revoked_at"].is_null());
}

#[tokio::test]
async fn credentials_rewritten_to_name_another_tenant_are_refused() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let globex = app.create_tenant("globex").await;
    let acme_plain = acme.owner.tenant_id.replace('-', "");
    let globex_plain = globex.owner.tenant_id.replace('-', "");

    // A refresh token of acme with globex's id in it.
    let moved_refresh = acme.owner.refresh_token.replace(&acme_plain, &globex_plain);
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": moved_refresh}),
    )
    .await
    .expect_error(401, "invalid_refresh_token");

    // An API key of acme with globex's id in it.
    let key = app
        .post(
            "/v1/api-keys",
            Some(&acme.owner.token),
            json!({"name": "k"}),
        )
        .await
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .replace(&acme_plain, &globex_plain);
    let response = app
        .client
        .post(format!("{}/v1/backend/users", app.address))
        .header("x-api-key", key)
        .json(&json!({"username": "mole"}))
        .send()
        .await
        .unwrap();
    TestApp::answer(response)
        .await
        .expect_error(401, "invalid_api_key");

    // A validly signed token naming acme's user in globex.
    let mut claims = claims_of(&acme.owner.token);
    claims["tid"] = json!(globex.owner.tenant_id);
    app.get("/v1/users/me", &forge_token(TEST_JWT_SECRET, &claims))
        .await
        .expect_error(401, "token_revoked");
    assert_eq!(app.count_rows("users").await, 2);
}
