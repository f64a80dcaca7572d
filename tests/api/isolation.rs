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

/// A request body every operation accepts, so that only the ids decide the answer.
fn body_for(operation_id: &str, own_user_id: &str) -> serde_json::Value {
    match operation_id {
        "updateUser" => json!({"display_name": "pwned"}),
        "updateRoom" => json!({"name": "pwned"}),
        "addMember" => json!({"user_id": own_user_id}),
        "setMemberRole" => json!({"role": "member"}),
        "sendMessage" | "editMessage" | "backendSendSystemMessage" => json!({"body": "pwned"}),
        "addReaction" => json!({"emoji": "👍"}),
        "markRead" | "markThreadRead" => json!({"seq": 1}),
        "updateWebhook" => json!({"enabled": false}),
        "replayWebhook" => json!({"since": "2020-01-01T00:00:00Z"}),
        "muteMember" | "banFromRoom" => json!({"user_id": own_user_id}),
        "resolveReport" => json!({"action": "dismiss"}),
        _ => json!({}),
    }
}

fn assert_not_found(
    answer: &crate::helpers::Answer,
    operation_id: &str,
    method: &reqwest::Method,
    path: &str,
) {
    assert_eq!(
        answer.status, 404,
        "{operation_id} {method} {path}: {}",
        answer.body
    );
    let code = answer.body["code"].as_str().unwrap();
    assert!(code.ends_with("_not_found"), "{operation_id}: {code}");
}

#[tokio::test]
async fn every_operation_with_an_id_of_another_tenant_answers_not_found_and_changes_nothing() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let alice = app.register("acme", "alice-only").await;
    let room = app
        .create_room(&acme.owner.token, "acme-room", "public")
        .await;
    let room_id = crate::helpers::id_of(&room);
    app.add_member(&acme.owner.token, &room_id, &alice.user_id)
        .await;
    let message = app.send(&alice.token, &room_id, "acme secret").await;
    let message_id = crate::helpers::id_of(&message);
    app.post(
        &format!("/v1/rooms/{room_id}/messages/{message_id}/reactions"),
        Some(&alice.token),
        json!({"emoji": "👍"}),
    )
    .await
    .expect(200);
    let key = app
        .post(
            "/v1/api-keys",
            Some(&acme.owner.token),
            json!({"name": "k"}),
        )
        .await
        .expect(201);
    let key_id = key["api_key"]["id"].as_str().unwrap().to_owned();
    let webhook = app
        .post(
            "/v1/webhooks",
            Some(&acme.owner.token),
            json!({"url": "https://hooks.example.com/acme", "event_types": ["*"]}),
        )
        .await
        .expect(201);
    let webhook_id = crate::helpers::id_of(&webhook["webhook"]);
    let report = app
        .post(
            "/v1/reports",
            Some(&acme.owner.token),
            json!({"room_id": room_id, "message_id": message_id, "reason": "spam"}),
        )
        .await
        .expect(201);
    let report_id = crate::helpers::id_of(&report);
    let filter = app
        .post(
            "/v1/moderation/filters",
            Some(&acme.owner.token),
            json!({"term": "acme", "action": "flag"}),
        )
        .await
        .expect(201);
    let filter_id = crate::helpers::id_of(&filter);

    let globex = app.create_tenant("globex").await;
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
    let before = app.snapshot().await;

    let spec: serde_json::Value = hark::api::document::value().clone();
    let mut checked = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        // The operator's operations are no tenant's: no tenant caller gets into them
        // (the authorization matrix checks it).
        if !path.contains('{') || path.starts_with("/v1/operator/") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let operation_id = operation["operationId"].as_str().unwrap();
            let concrete = path
                .replace("{room_id}", &room_id)
                .replace("{message_id}", &message_id)
                .replace("{user_id}", &alice.user_id)
                .replace("{key_id}", &key_id)
                .replace("{webhook_id}", &webhook_id)
                .replace("{report_id}", &report_id)
                .replace("{filter_id}", &filter_id)
                .replace("{emoji}", "%F0%9F%91%8D")
                .replace("{username}", "alice-only");
            assert!(
                !concrete.contains('{'),
                "{operation_id}: add its path parameter to this test"
            );
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = app
                .client
                .request(method.clone(), format!("{}{concrete}", app.address))
                .json(&body_for(operation_id, &globex.owner.user_id));
            request = if operation["security"][0]["apiKeyAuth"].is_array() {
                request.header("x-api-key", &globex_key)
            } else {
                request.bearer_auth(&globex.owner.token)
            };
            let answer = TestApp::answer(request.send().await.unwrap()).await;
            assert_not_found(&answer, operation_id, &method, &concrete);
            checked.push(operation_id.to_owned());
            // The other tenant's backend acting as its owner gets no further.
            if operation["security"][0]["bearerAuth"].is_array() {
                let request = app
                    .client
                    .request(method.clone(), format!("{}{concrete}", app.address))
                    .json(&body_for(operation_id, &globex.owner.user_id))
                    .bearer_auth(&globex_key)
                    .header("x-hark-user", &globex.owner.user_id);
                let answer = TestApp::answer(request.send().await.unwrap()).await;
                assert_not_found(&answer, operation_id, &method, &concrete);
            }
        }
    }
    println!(
        "operations checked with another tenant's ids: {}",
        checked.len()
    );
    assert!(checked.len() >= 25, "{checked:?}");
    assert_eq!(app.snapshot().await, before, "nothing changed");
    assert_eq!(
        app.get(
            &format!("/v1/rooms/{room_id}/messages/{message_id}"),
            &alice.token
        )
        .await
        .expect(200)["body"],
        "acme secret"
    );
}

#[tokio::test]
async fn ids_of_another_tenant_in_request_bodies_are_not_found_either() {
    let app = spawn_app().await;
    let acme = app.create_tenant("acme").await;
    let alice = app.register("acme", "alice").await;
    let acme_room = crate::helpers::id_of(
        &app.create_room(&acme.owner.token, "acme-room", "public")
            .await,
    );
    let acme_message = app.send(&acme.owner.token, &acme_room, "acme").await;
    let globex = app.create_tenant("globex").await;
    let globex_room = crate::helpers::id_of(
        &app.create_room(&globex.owner.token, "globex-room", "private")
            .await,
    );
    let before = app.snapshot().await;
    app.post(
        "/v1/rooms/direct",
        Some(&globex.owner.token),
        json!({"user_id": alice.user_id}),
    )
    .await
    .expect_error(404, "user_not_found");
    app.post(
        &format!("/v1/rooms/{globex_room}/members"),
        Some(&globex.owner.token),
        json!({"user_id": alice.user_id}),
    )
    .await
    .expect_error(404, "user_not_found");
    app.post(
        &format!("/v1/rooms/{globex_room}/messages"),
        Some(&globex.owner.token),
        json!({"body": "x", "reply_to_id": acme_message["id"]}),
    )
    .await
    .expect_error(422, "invalid_reply_to");
    let code = app
        .get(&format!("/v1/rooms/{acme_room}"), &acme.owner.token)
        .await
        .expect(200)["invite_code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        "/v1/rooms/join",
        Some(&globex.owner.token),
        json!({"code": code}),
    )
    .await
    .expect_error(404, "invite_not_found");
    assert_eq!(app.snapshot().await, before);
}
