//! Registration, login, refresh, logout, and every way a token can be refused.

use serde_json::json;

use crate::helpers::{PASSWORD, TEST_JWT_SECRET, claims_of, forge_token, spawn_app, unix_now};

#[tokio::test]
async fn a_registered_user_logs_in_by_username_or_email_case_insensitively() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let me = app.get("/v1/users/me", &bob.token).await.expect(200);
    assert_eq!(me["role"], "member");
    for login in ["bob", "BOB", "bob@acme.example", "Bob@Acme.Example"] {
        let body = app
            .post(
                "/v1/auth/login",
                None,
                json!({"tenant": "ACME", "login": login, "password": PASSWORD}),
            )
            .await
            .expect(200);
        assert_eq!(body["user"]["id"], bob.user_id.as_str());
        assert_eq!(body["expires_in"], 900);
        app.get("/v1/users/me", body["access_token"].as_str().unwrap())
            .await
            .expect(200);
    }
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_unknown_tenants_all_answer_invalid_credentials() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.register("acme", "bob").await;
    for (tenant, login, password) in [
        ("acme", "bob", "wrong password"),
        ("acme", "nobody", PASSWORD),
        ("nowhere", "bob", PASSWORD),
        ("acme", "", ""),
    ] {
        app.post(
            "/v1/auth/login",
            None,
            json!({"tenant": tenant, "login": login, "password": password}),
        )
        .await
        .expect_error(401, "invalid_credentials");
    }
}

#[tokio::test]
async fn registration_refuses_taken_and_invalid_names_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    app.register("acme", "bob").await;
    let users_before = app.count_rows("users").await;
    let cases = [
        (
            json!({"tenant": "acme", "username": "BOB", "password": PASSWORD}),
            409,
            "username_taken",
            Some("username"),
        ),
        (
            json!({"tenant": "acme", "username": "robert", "password": PASSWORD, "email": "BOB@acme.example"}),
            409,
            "email_taken",
            Some("email"),
        ),
        (
            json!({"tenant": "acme", "username": "b", "password": PASSWORD}),
            422,
            "invalid_username",
            Some("username"),
        ),
        (
            json!({"tenant": "acme", "username": "has space", "password": PASSWORD}),
            422,
            "invalid_username",
            Some("username"),
        ),
        (
            json!({"tenant": "acme", "username": "u".repeat(33), "password": PASSWORD}),
            422,
            "invalid_username",
            Some("username"),
        ),
        (
            json!({"tenant": "acme", "username": "carol", "password": "1234567"}),
            422,
            "invalid_password",
            Some("password"),
        ),
        (
            json!({"tenant": "acme", "username": "carol", "password": "p".repeat(257)}),
            422,
            "invalid_password",
            Some("password"),
        ),
        (
            json!({"tenant": "acme", "username": "carol", "password": PASSWORD, "display_name": ""}),
            422,
            "invalid_display_name",
            Some("display_name"),
        ),
        (
            json!({"tenant": "nowhere", "username": "carol", "password": PASSWORD}),
            404,
            "tenant_not_found",
            Some("tenant"),
        ),
    ];
    for (body, status, code, field) in cases {
        let error = app
            .post("/v1/auth/register", None, body)
            .await
            .expect_error(status, code);
        assert_eq!(error["field"].as_str(), field);
    }
    assert_eq!(app.count_rows("users").await, users_before);
    assert_eq!(app.count_rows("sessions").await, 2);
}

#[tokio::test]
async fn a_refresh_token_gives_new_tokens_once_and_its_reuse_ends_the_session() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": bob.refresh_token}),
        )
        .await
        .expect(200);
    assert_ne!(refreshed["refresh_token"], bob.refresh_token.as_str());
    assert_ne!(refreshed["access_token"], bob.token.as_str());
    app.get("/v1/users/me", refreshed["access_token"].as_str().unwrap())
        .await
        .expect(200);
    // Its successor works, once.
    let next = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": refreshed["refresh_token"]}),
        )
        .await
        .expect(200);
    let access = next["access_token"].as_str().unwrap();
    app.get("/v1/users/me", access).await.expect(200);
    // A spent token presented again (a thief's copy, or the owner's after a theft)
    // ends the whole session: its newest tokens stop working too.
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": bob.refresh_token}),
    )
    .await
    .expect_error(401, "refresh_token_reused");
    app.get("/v1/users/me", access)
        .await
        .expect_error(401, "token_revoked");
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": next["refresh_token"]}),
    )
    .await
    .expect_error(401, "invalid_refresh_token");
    // Other sessions of the user are not affected.
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "acme", "login": "bob", "password": crate::helpers::PASSWORD}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn malformed_refresh_tokens_are_refused() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    // The last character changed, whatever it was.
    let token = &tenant.owner.refresh_token;
    let flipped = if token.ends_with('0') { '1' } else { '0' };
    let mangled = format!("{}{flipped}", &token[..token.len() - 1]);
    for token in ["", "garbage", "hark_rt_x_y_z", mangled.as_str()] {
        app.post("/v1/auth/refresh", None, json!({"refresh_token": token}))
            .await
            .expect_error(401, "invalid_refresh_token");
    }
}

#[tokio::test]
async fn a_refreshed_token_carries_the_role_the_user_has_now() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let bob = app.admin(&tenant, "bob").await;
    assert_eq!(claims_of(&bob.token)["role"], "member");
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": bob.refresh_token}),
        )
        .await
        .expect(200);
    assert_eq!(
        claims_of(refreshed["access_token"].as_str().unwrap())["role"],
        "admin"
    );
}

#[tokio::test]
async fn logout_revokes_the_access_token_and_the_refresh_token_but_not_other_sessions() {
    let app = spawn_app().await;
    app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let other = app
        .post(
            "/v1/auth/login",
            None,
            json!({"tenant": "acme", "login": "bob", "password": PASSWORD}),
        )
        .await
        .expect(200);
    app.post("/v1/auth/logout", Some(&bob.token), json!({}))
        .await
        .expect(204);
    app.get("/v1/users/me", &bob.token)
        .await
        .expect_error(401, "token_revoked");
    app.post("/v1/auth/logout", Some(&bob.token), json!({}))
        .await
        .expect_error(401, "token_revoked");
    app.post(
        "/v1/auth/refresh",
        None,
        json!({"refresh_token": bob.refresh_token}),
    )
    .await
    .expect_error(401, "invalid_refresh_token");
    app.get("/v1/users/me", other["access_token"].as_str().unwrap())
        .await
        .expect(200);
}

#[tokio::test]
async fn tokens_carry_the_documented_claims() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let claims = claims_of(&tenant.owner.token);
    assert_eq!(claims["iss"], "hark");
    assert_eq!(claims["aud"], "hark");
    assert_eq!(claims["sub"], tenant.owner.user_id.as_str());
    assert_eq!(claims["tid"], tenant.owner.tenant_id.as_str());
    assert_eq!(claims["role"], "owner");
    assert!(claims["jti"].is_string() && claims["sid"].is_string());
    let issued = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - issued, 900);
    assert!(claims["nbf"].as_i64().unwrap() <= issued);
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_codes() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    let good = claims_of(&tenant.owner.token);
    let now = unix_now();
    let with = |change: serde_json::Value| {
        let mut claims = good.clone();
        for (key, value) in change.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    let cases = [
        ("garbage".to_owned(), "invalid_token"),
        (
            forge_token("another-secret-that-is-long-enough-000", &good),
            "invalid_token",
        ),
        (
            forge_token(
                TEST_JWT_SECRET,
                &with(json!({"exp": now - 120, "iat": now - 1000, "nbf": now - 1000})),
            ),
            "token_expired",
        ),
        (
            forge_token(TEST_JWT_SECRET, &with(json!({"nbf": now + 600}))),
            "token_not_yet_valid",
        ),
        (
            forge_token(TEST_JWT_SECRET, &with(json!({"iss": "someone-else"}))),
            "invalid_token",
        ),
        (
            forge_token(TEST_JWT_SECRET, &with(json!({"aud": "someone-else"}))),
            "invalid_token",
        ),
        (unsigned_token(&good), "invalid_token"),
        (format!("{}x", tenant.owner.token), "invalid_token"),
        // Another algorithm, with the right secret.
        (
            signed_with(jsonwebtoken::Algorithm::HS512, None, &good),
            "invalid_token",
        ),
        // A key id the server does not know, with the right secret.
        (
            signed_with(jsonwebtoken::Algorithm::HS256, Some("retired"), &good),
            "invalid_token",
        ),
    ];
    for (token, code) in cases {
        app.get("/v1/users/me", &token)
            .await
            .expect_error(401, code);
    }
    app.request(reqwest::Method::GET, "/v1/users/me", None, None)
        .await
        .expect_error(401, "missing_token");
    // A validly signed token of a session that does not exist.
    let unknown_session = forge_token(TEST_JWT_SECRET, &with(json!({"sid": uuid::Uuid::now_v7()})));
    app.get("/v1/users/me", &unknown_session)
        .await
        .expect_error(401, "token_revoked");
}

/// A token signed with the test secret, by another algorithm or with a key id.
fn signed_with(
    algorithm: jsonwebtoken::Algorithm,
    key_id: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.kid = key_id.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token with `alg: none` and no signature.
fn unsigned_token(claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
        engine.encode(serde_json::to_vec(claims).unwrap())
    )
}

#[tokio::test]
async fn every_secured_operation_refuses_a_request_without_credentials() {
    let app = spawn_app().await;
    let spec: serde_json::Value = hark::api::document::value().clone();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation["security"].is_null() {
                continue;
            }
            let concrete = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') {
                        uuid::Uuid::now_v7().to_string()
                    } else {
                        segment.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            app.request(method, &concrete, None, Some(json!({})))
                .await
                .expect_error(401, "missing_token");
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} secured operations");
}

#[tokio::test]
async fn the_tenant_create_command_prints_tokens_that_the_server_accepts() {
    let app = spawn_app().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hark"))
        .args([
            "tenant",
            "create",
            "--slug",
            "cli-made",
            "--owner-username",
            "root-user",
            "--password-hash-memory-kib",
            "1024",
        ])
        .env("DATABASE_URL", &app.database_url)
        .env("HARK_JWT_SECRET", TEST_JWT_SECRET)
        .env_remove("HARK_OWNER_PASSWORD")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["tenant_slug"], "cli-made");
    let me = app
        .get("/v1/users/me", printed["access_token"].as_str().unwrap())
        .await
        .expect(200);
    assert_eq!(me["role"], "owner");
    // The generated password is printed once and works.
    let password = printed["owner_password"].as_str().unwrap();
    app.post(
        "/v1/auth/login",
        None,
        json!({"tenant": "cli-made", "login": "root-user", "password": password}),
    )
    .await
    .expect(200);
}

/// The `kid` in a token's header.
fn key_id_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn signing_keys_rotate_without_logging_anyone_out() {
    const OLD_SECRET: &str = "the-old-signing-secret-of-at-least-32-bytes";
    const NEW_SECRET: &str = "the-new-signing-secret-of-at-least-32-bytes";
    let before = crate::helpers::spawn_app_with(|config| {
        config.jwt_secret = Some(OLD_SECRET.to_owned());
        config.jwt_key_id = Some("2026-01".to_owned());
    })
    .await;
    before.create_tenant("acme").await;
    let bob = before.register("acme", "bob").await;
    assert_eq!(key_id_of(&bob.token).as_deref(), Some("2026-01"));

    // The rotation: a new key signs, the old one still verifies.
    let rotated = before
        .spawn_peer_with(|config| {
            config.jwt_secret = Some(NEW_SECRET.to_owned());
            config.jwt_key_id = Some("2026-02".to_owned());
            config.jwt_previous_keys = vec![format!("2026-01:{OLD_SECRET}")];
        })
        .await;
    rotated.get("/v1/users/me", &bob.token).await.expect(200);
    let refreshed = rotated
        .post(
            "/v1/auth/refresh",
            None,
            serde_json::json!({"refresh_token": bob.refresh_token}),
        )
        .await
        .expect(200);
    let new_token = refreshed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(key_id_of(&new_token).as_deref(), Some("2026-02"));
    rotated.get("/v1/users/me", &new_token).await.expect(200);
    // An instance that does not know the new key yet refuses what it signed.
    before
        .get("/v1/users/me", &new_token)
        .await
        .expect_error(401, "invalid_token");

    // Once the old key is removed, its tokens are refused; sessions go on through
    // their refresh tokens.
    let retired = before
        .spawn_peer_with(|config| {
            config.jwt_secret = Some(NEW_SECRET.to_owned());
            config.jwt_key_id = Some("2026-02".to_owned());
            config.jwt_previous_keys = Vec::new();
        })
        .await;
    retired
        .get("/v1/users/me", &bob.token)
        .await
        .expect_error(401, "invalid_token");
    retired.get("/v1/users/me", &new_token).await.expect(200);
    let next_refresh = refreshed["refresh_token"].as_str().unwrap();
    retired
        .post(
            "/v1/auth/refresh",
            None,
            serde_json::json!({"refresh_token": next_refresh}),
        )
        .await
        .expect(200);
}
