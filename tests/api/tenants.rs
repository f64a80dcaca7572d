//! Creating tenants with their owner, and reading, changing and deleting the caller's
//! tenant.

use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with};

fn tenant_body(slug: &str) -> serde_json::Value {
    json!({"slug": slug, "name": "Acme", "owner": {"username": "alice", "password": PASSWORD, "display_name": "Alice"}})
}

#[tokio::test]
async fn creating_a_tenant_answers_its_owner_with_working_tokens() {
    let app = spawn_app().await;
    let body = app
        .post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect(201);
    assert_eq!(body["tenant"]["slug"], "acme");
    assert_eq!(
        body["tenant"]["registration_open"], false,
        "new tenants start with registration closed"
    );
    assert_eq!(body["session"]["user"]["role"], "owner");
    assert_eq!(body["session"]["token_type"], "Bearer");
    assert_eq!(body["session"]["tenant_id"], body["tenant"]["id"]);
    let token = body["session"]["access_token"].as_str().unwrap();
    let me = app.get("/v1/users/me", token).await.expect(200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["display_name"], "Alice");
    let tenant = app.get("/v1/tenant", token).await.expect(200);
    assert_eq!(tenant["id"], body["tenant"]["id"]);
}

#[tokio::test]
async fn a_taken_slug_answers_409_and_changes_nothing() {
    let app = spawn_app().await;
    app.post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect(201);
    let error = app
        .post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect_error(409, "slug_taken");
    assert_eq!(error["field"], "slug");
    assert_eq!(app.count_rows("tenants").await, 1);
    assert_eq!(app.count_rows("users").await, 1);
}

#[tokio::test]
async fn invalid_tenant_fields_answer_422_with_the_field_and_create_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"slug": "A B", "name": "x", "owner": {"username": "alice", "password": PASSWORD}}),
            "invalid_slug",
            "slug",
        ),
        (
            json!({"slug": "-bad-", "name": "x", "owner": {"username": "alice", "password": PASSWORD}}),
            "invalid_slug",
            "slug",
        ),
        (
            json!({"slug": "good", "name": "", "owner": {"username": "alice", "password": PASSWORD}}),
            "invalid_name",
            "name",
        ),
        (
            json!({"slug": "good", "name": "n".repeat(101), "owner": {"username": "alice", "password": PASSWORD}}),
            "invalid_name",
            "name",
        ),
        (
            json!({"slug": "good", "name": "x", "owner": {"username": "a b", "password": PASSWORD}}),
            "invalid_username",
            "owner.username",
        ),
        (
            json!({"slug": "good", "name": "x", "owner": {"username": "alice", "password": "short"}}),
            "invalid_password",
            "owner.password",
        ),
        (
            json!({"slug": "good", "name": "x", "owner": {"username": "alice", "password": PASSWORD, "email": "not-an-email"}}),
            "invalid_email",
            "owner.email",
        ),
    ];
    for (body, code, field) in cases {
        let error = app
            .post("/v1/tenants", None, body)
            .await
            .expect_error(422, code);
        assert_eq!(error["field"], field);
    }
    app.post("/v1/tenants", None, json!({"slug": "good"}))
        .await
        .expect_error(400, "invalid_body");
    assert_eq!(app.count_rows("tenants").await, 0);
    assert_eq!(app.count_rows("users").await, 0);
}

#[tokio::test]
async fn tenant_creation_needs_the_operator_key_in_operator_mode() {
    let app = spawn_app_with(|config| {
        config.tenant_creation = hark::config::TenantCreation::Operator;
        config.operator_key = Some("operator-secret".to_owned());
    })
    .await;
    app.post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect_error(401, "invalid_operator_key");
    let response = app
        .client
        .post(format!("{}/v1/tenants", app.address))
        .header("x-operator-key", "wrong")
        .json(&tenant_body("acme"))
        .send()
        .await
        .unwrap();
    crate::helpers::TestApp::answer(response)
        .await
        .expect_error(401, "invalid_operator_key");
    let response = app
        .client
        .post(format!("{}/v1/tenants", app.address))
        .header("x-operator-key", "operator-secret")
        .json(&tenant_body("acme"))
        .send()
        .await
        .unwrap();
    crate::helpers::TestApp::answer(response).await.expect(201);
}

#[tokio::test]
async fn tenant_creation_over_http_is_disabled_in_operator_mode_without_a_key() {
    let app = spawn_app_with(|config| {
        config.tenant_creation = hark::config::TenantCreation::Operator;
        config.operator_key = None;
    })
    .await;
    app.post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect_error(403, "tenant_creation_disabled");
    assert_eq!(app.count_rows("tenants").await, 0);
}

#[tokio::test]
async fn owners_and_admins_update_the_tenant_and_members_may_not() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    let member = app.register("acme", "bob").await;

    let updated = app
        .patch("/v1/tenant", &admin.token, json!({"name": "Acme Inc"}))
        .await
        .expect(200);
    assert_eq!(updated["name"], "Acme Inc");
    app.patch("/v1/tenant", &member.token, json!({"name": "Mine"}))
        .await
        .expect_error(403, "forbidden");
    let error = app
        .patch("/v1/tenant", &tenant.owner.token, json!({"name": ""}))
        .await
        .expect_error(422, "invalid_name");
    assert_eq!(error["field"], "name");
    let tenant_now = app.get("/v1/tenant", &member.token).await.expect(200);
    assert_eq!(tenant_now["name"], "Acme Inc");
}

#[tokio::test]
async fn a_new_tenant_refuses_registrations_until_its_owner_opens_them() {
    let app = spawn_app().await;
    let created = app
        .post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect(201);
    let owner = created["session"]["access_token"].as_str().unwrap();
    let registration = json!({"tenant": "acme", "username": "bob", "password": PASSWORD});
    app.post("/v1/auth/register", None, registration.clone())
        .await
        .expect_error(403, "registration_closed");
    assert_eq!(app.count_rows("users").await, 1);
    app.patch("/v1/tenant", owner, json!({"registration_open": true}))
        .await
        .expect(200);
    app.post("/v1/auth/register", None, registration.clone())
        .await
        .expect(201);
    app.patch("/v1/tenant", owner, json!({"registration_open": false}))
        .await
        .expect(200);
    app.post(
        "/v1/auth/register",
        None,
        json!({"tenant": "acme", "username": "carol", "password": PASSWORD}),
    )
    .await
    .expect_error(403, "registration_closed");
    assert_eq!(app.count_rows("users").await, 2);
}

#[tokio::test]
async fn only_an_owner_deletes_the_tenant_and_then_every_token_of_it_is_refused() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let admin = app.admin(&tenant, "adele").await;
    app.delete("/v1/tenant", &admin.token)
        .await
        .expect_error(403, "forbidden");
    app.delete("/v1/tenant", &tenant.owner.token)
        .await
        .expect(204);
    app.get("/v1/users/me", &admin.token)
        .await
        .expect_error(401, "token_revoked");
    app.get("/v1/tenant", &tenant.owner.token)
        .await
        .expect_error(401, "token_revoked");
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "owner", "password": PASSWORD}),
    )
    .await
    .expect_error(401, "invalid_credentials");
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": admin.refresh_token}),
    )
    .await
    .expect_error(401, "invalid_refresh_token");
    // The slug stays taken, so that nobody can take over the tenant's name.
    app.post("/v1/tenants", None, tenant_body("acme"))
        .await
        .expect_error(409, "slug_taken");
}

#[tokio::test]
async fn tenant_routes_need_a_token() {
    let app = spawn_app().await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
    ] {
        app.request(method, "/v1/tenant", None, Some(json!({})))
            .await
            .expect_error(401, "missing_token");
    }
}
