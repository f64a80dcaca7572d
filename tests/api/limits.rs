//! Limits: sends per user across REST and WebSocket, streams per user, and failed
//! logins per account and per address. Each test configures small limits of its own.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{PASSWORD, TestApp, room_with_bob, spawn_app_with};
use crate::ws::{Ending, WsClient};

fn header<'a>(answer: &'a crate::helpers::Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("the answer has a {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn sends_over_the_limit_get_429_over_rest_and_errors_then_close_4008_over_websocket() {
    let app = spawn_app_with(|config| {
        config.send_burst = 5;
        config.send_rate_per_second = 0.01;
    })
    .await;
    let (_owner, bob, room_id) = room_with_bob(&app).await;
    let path = format!("/v1/rooms/{room_id}/messages");

    for expected_remaining in (0..5).rev() {
        let sent = app
            .post(&path, Some(&bob.token), json!({"body": "within the limit"}))
            .await;
        assert_eq!(sent.status, 201);
        assert_eq!(header(&sent, "x-ratelimit-limit"), "5");
        assert_eq!(
            header(&sent, "x-ratelimit-remaining"),
            expected_remaining.to_string()
        );
    }
    let before = app.snapshot().await;
    let refused = app
        .post(&path, Some(&bob.token), json!({"body": "one too many"}))
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.body["code"], "rate_limited");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!(retry_after >= 1, "Retry-After is {retry_after}");
    assert_eq!(app.snapshot().await, before, "a refused send wrote nothing");

    // The same user over a WebSocket draws from the same allowance: error frames,
    // then the connection is closed with 4008.
    let mut client = WsClient::connect(&app, &bob.token).await;
    for attempt in 1..=5 {
        client
            .send(json!({"op": "send", "ref": format!("s{attempt}"), "room_id": room_id, "body": "still too many"}))
            .await;
        let answer = client.answer(&format!("s{attempt}")).await;
        assert_eq!(answer["op"], "error");
        assert_eq!(answer["code"], "rate_limited");
    }
    assert_eq!(client.ending().await, Ending::Closed(4008));
    assert_eq!(
        app.snapshot().await,
        before,
        "refused WebSocket sends wrote nothing"
    );

    // Another user of the room is not limited by bob's sends.
    let owner_send = app
        .post(&path, Some(&_owner.token), json!({"body": "owner speaks"}))
        .await;
    assert_eq!(owner_send.status, 201);
}

async fn upgrade_status(app: &TestApp, token: &str) -> Result<(), u16> {
    let url = app.address.replace("http://", "ws://") + "/v1/ws";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => {
            drop(socket);
            Ok(())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("unexpected upgrade failure: {error}"),
    }
}

#[tokio::test]
async fn a_user_holds_at_most_the_configured_number_of_websockets_and_event_streams() {
    let app = spawn_app_with(|config| config.max_streams_per_user = 2).await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let first = WsClient::connect(&app, &bob.token).await;
    let stream = app
        .client
        .get(format!("{}/v1/rooms/{room_id}/events", app.address))
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200, "the event stream is the second one");
    assert_eq!(upgrade_status(&app, &bob.token).await, Err(429));
    let refused_stream = app
        .get(&format!("/v1/rooms/{room_id}/events"), &bob.token)
        .await;
    refused_stream.expect_error(429, "too_many_connections");
    // Other users have their own count.
    assert_eq!(upgrade_status(&app, &owner.token).await, Ok(()));

    // Closing one makes room for another.
    drop(stream);
    first.close().await;
    let mut reopened = Err(0);
    for _ in 0..50 {
        reopened = upgrade_status(&app, &bob.token).await;
        if reopened.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reopened, Ok(()));
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_per_account_whether_it_exists_or_not() {
    let app = spawn_app_with(|config| {
        config.login_failures_per_account = 3;
        config.login_lockout_seconds = 600;
    })
    .await;
    let (_owner, _bob, _room) = room_with_bob(&app).await;
    let login = |login: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/v1/auth/login",
                None,
                json!({"tenant": "acme", "login": login, "password": password}),
            )
            .await
        }
    };
    let mut seen = Vec::new();
    for account in ["bob", "nobody-by-this-name"] {
        for _ in 0..3 {
            login(account, "wrong password")
                .await
                .expect_error(401, "invalid_credentials");
        }
        let throttled = login(account, "wrong password").await;
        assert_eq!(throttled.status, 429);
        assert_eq!(throttled.body["code"], "login_throttled");
        let retry_after: u64 = header(&throttled, "retry-after").parse().unwrap();
        assert!(
            (150..=600).contains(&retry_after),
            "Retry-After is {retry_after}"
        );
        seen.push((
            throttled.body["code"].clone(),
            throttled.body["message"].clone(),
        ));
    }
    assert_eq!(
        seen[0], seen[1],
        "an existing and a missing account are refused alike"
    );
    // Even the right password waits now; other accounts are not affected.
    login("bob", PASSWORD)
        .await
        .expect_error(429, "login_throttled");
    login("owner", PASSWORD).await.expect(200);
}

#[tokio::test]
async fn repeated_failed_logins_from_one_address_are_throttled_across_accounts() {
    let app = spawn_app_with(|config| {
        config.login_failures_per_address = 4;
        config.login_lockout_seconds = 600;
    })
    .await;
    let (_owner, _bob, _room) = room_with_bob(&app).await;
    for index in 0..4 {
        app.post(
            "/v1/auth/login",
            None,
            json!({"tenant": "acme", "login": format!("guess-{index}"), "password": "wrong"}),
        )
        .await
        .expect_error(401, "invalid_credentials");
    }
    let throttled = app
        .post(
            "/v1/auth/login",
            None,
            json!({"tenant": "acme", "login": "owner", "password": PASSWORD}),
        )
        .await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.body["code"], "login_throttled");
    assert!(throttled.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_failed_logins_count_by_the_forwarded_address() {
    let app = spawn_app_with(|config| {
        config.login_failures_per_address = 2;
        config.login_lockout_seconds = 600;
        config.trust_forwarded_for = true;
    })
    .await;
    let (_owner, _bob, _room) = room_with_bob(&app).await;
    let attempt = |forwarded: &'static str, login: &'static str| {
        let app = &app;
        async move {
            TestApp::answer(
                app.client
                    .post(format!("{}/v1/auth/login", app.address))
                    .header("x-forwarded-for", forwarded)
                    .json(&json!({"tenant": "acme", "login": login, "password": "wrong"}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // The client's own entries before the proxy's are ignored.
    attempt("9.9.9.9, 203.0.113.7", "a")
        .await
        .expect_error(401, "invalid_credentials");
    attempt("8.8.8.8, 203.0.113.7", "b")
        .await
        .expect_error(401, "invalid_credentials");
    attempt("7.7.7.7, 203.0.113.7", "c")
        .await
        .expect_error(429, "login_throttled");
    // Another client behind the same proxy is not affected, and a header that names
    // no address counts for the connection's own address instead.
    attempt("203.0.113.8", "d")
        .await
        .expect_error(401, "invalid_credentials");
    attempt("not an address", "e")
        .await
        .expect_error(401, "invalid_credentials");
    attempt("203.0.113.8", "f")
        .await
        .expect_error(401, "invalid_credentials");
}
