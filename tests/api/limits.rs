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
    let stream = app.open_events(&bob.token, &room_id, "").await;
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

#[tokio::test]
async fn concurrent_wrong_passwords_for_one_account_get_no_more_tries_than_the_limit() {
    let app = spawn_app_with(|config| {
        config.login_failures_per_account = 5;
        config.login_lockout_seconds = 600;
    })
    .await;
    let (_owner, _bob, _room) = room_with_bob(&app).await;
    let attempts = (0..25).map(|_| {
        app.post(
            "/v1/auth/login",
            None,
            json!({"tenant": "acme", "login": "bob", "password": "wrong password"}),
        )
    });
    let answers = futures_util::future::join_all(attempts).await;
    let refused = answers
        .iter()
        .filter(|answer| answer.status == 429 && answer.body["code"] == "login_throttled")
        .count();
    let wrong = answers
        .iter()
        .filter(|answer| answer.status == 401 && answer.body["code"] == "invalid_credentials")
        .count();
    println!("25 concurrent wrong passwords: {wrong} answered 401, {refused} answered 429");
    assert_eq!((wrong, refused), (5, 20));
}

#[tokio::test]
async fn guessing_invite_codes_is_throttled_per_user_and_per_address() {
    let app = spawn_app_with(|config| {
        config.join_code_failures_per_user = 3;
        config.join_code_failures_per_address = 5;
    })
    .await;
    let tenant = app.create_tenant("acme").await;
    let room = app
        .create_room(&tenant.owner.token, "secret", "private")
        .await;
    let code = room["invite_code"].as_str().unwrap().to_owned();
    let bob = app.register("acme", "bob").await;
    let carol = app.register("acme", "carol").await;
    let join = |token: String, code: String| {
        let app = &app;
        async move {
            app.post("/v1/rooms/join", Some(&token), json!({"code": code}))
                .await
        }
    };
    // Concurrent guesses are counted before any is looked up.
    let guesses = (0..6).map(|index| join(bob.token.clone(), format!("ZZZZZ{index}")));
    let answers = futures_util::future::join_all(guesses).await;
    let not_found = answers.iter().filter(|answer| answer.status == 404).count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == 429)
        .collect();
    assert_eq!((not_found, throttled.len()), (3, 3));
    assert_eq!(throttled[0].body["code"], "too_many_attempts");
    assert!(throttled[0].headers.contains_key("retry-after"));
    // The right code waits too; the address has two failures left, for carol.
    join(bob.token.clone(), code.clone())
        .await
        .expect_error(429, "too_many_attempts");
    join(carol.token.clone(), "YYYYYY".to_owned())
        .await
        .expect_error(404, "invite_not_found");
    join(carol.token.clone(), code.clone()).await.expect(200);
    join(carol.token.clone(), "YYYYYY".to_owned())
        .await
        .expect_error(404, "invite_not_found");
    join(carol.token.clone(), "XXXXXX".to_owned())
        .await
        .expect_error(429, "too_many_attempts");
    assert_eq!(app.count_rows("room_members").await, 2);
}

#[tokio::test]
async fn a_user_creates_at_most_the_configured_number_of_rooms_an_hour() {
    let app = spawn_app_with(|config| config.rooms_per_user_per_hour = 3).await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner.token;
    // A refused creation does not count.
    app.post("/v1/rooms", Some(owner), json!({"name": ""}))
        .await
        .expect_error(422, "invalid_name");
    for index in 0..3 {
        app.create_room(owner, &format!("room {index}"), "private")
            .await;
    }
    let refused = app
        .post("/v1/rooms", Some(owner), json!({"name": "one too many"}))
        .await
        .expect_error(429, "too_many_rooms");
    assert!(refused.is_object());
    let bob = app.register("acme", "bob").await;
    app.create_room(&bob.token, "bob's", "private").await;
    assert_eq!(app.count_rows("rooms").await, 4);
}

#[tokio::test]
async fn a_connection_subscribes_to_at_most_the_configured_number_of_rooms() {
    let app = spawn_app_with(|config| config.max_subscriptions_per_connection = 2).await;
    let tenant = app.create_tenant("acme").await;
    let owner = &tenant.owner.token;
    let mut rooms = Vec::new();
    for index in 0..3 {
        rooms.push(crate::helpers::id_of(
            &app.create_room(owner, &format!("room {index}"), "private")
                .await,
        ));
    }
    let mut client = WsClient::connect(&app, owner).await;
    client.subscribe(&rooms[0], None).await;
    client.subscribe(&rooms[1], None).await;
    client
        .send(json!({"op": "subscribe", "ref": "third", "room_id": rooms[2]}))
        .await;
    let refused = client.answer("third").await;
    assert_eq!(refused["code"], "too_many_subscriptions", "{refused}");
    client
        .send(json!({"op": "unsubscribe", "ref": "u", "room_id": rooms[0]}))
        .await;
    assert_eq!(client.answer("u").await["op"], "ack");
    client.subscribe(&rooms[2], None).await;
}

#[tokio::test]
async fn sockets_that_have_not_authenticated_are_bounded_per_address() {
    let app = spawn_app_with(|config| config.max_unauthenticated_sockets_per_address = 2).await;
    let tenant = app.create_tenant("acme").await;
    let url = app.address.replace("http://", "ws://") + "/v1/ws";
    let mut first = WsClient::connect_path(&app, "/v1/ws").await;
    let _second = WsClient::connect_path(&app, "/v1/ws").await;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        other => panic!("a third anonymous socket is refused, got {other:?}"),
    }
    // A token in the upgrade does not count against the address.
    assert_eq!(upgrade_status(&app, &tenant.owner.token).await, Ok(()));
    // One that authenticates by its first frame frees its place.
    first
        .send(json!({"op": "auth", "ref": "a", "token": tenant.owner.token}))
        .await;
    assert_eq!(first.answer("a").await["op"], "ack");
    let mut accepted = false;
    for _ in 0..50 {
        if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted, "an authenticated socket no longer counts");
}

#[tokio::test]
async fn a_user_puts_at_most_the_configured_number_of_different_reactions_on_a_message() {
    let app = spawn_app_with(|config| config.max_reactions_per_user_per_message = 3).await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let message = app.send(&owner.token, &room_id, "react to me").await;
    let path = format!(
        "/v1/rooms/{room_id}/messages/{}/reactions",
        message["id"].as_str().unwrap()
    );
    for emoji in ["👍", "🎉", "❤️"] {
        app.post(&path, Some(&bob.token), json!({"emoji": emoji}))
            .await
            .expect(200);
    }
    let events_before = app.count_rows("room_events").await;
    let error = app
        .post(&path, Some(&bob.token), json!({"emoji": "🚀"}))
        .await
        .expect_error(422, "too_many_reactions");
    assert_eq!(error["field"], "emoji");
    assert_eq!(app.count_rows("room_events").await, events_before);
    // Repeating one already there, or another user's, is fine; removing makes room.
    app.post(&path, Some(&bob.token), json!({"emoji": "👍"}))
        .await
        .expect(200);
    app.post(&path, Some(&owner.token), json!({"emoji": "🚀"}))
        .await
        .expect(200);
    app.delete(&format!("{path}/🎉"), &bob.token)
        .await
        .expect(200);
    app.post(&path, Some(&bob.token), json!({"emoji": "🚀"}))
        .await
        .expect(200);
}

#[tokio::test]
async fn every_websocket_op_counts_against_its_users_allowance_refusals_included() {
    let app = spawn_app_with(|config| {
        config.ws_ops_burst = 5;
        config.ws_ops_per_second = 0.001;
    })
    .await;
    let (_owner, bob, _room_id) = room_with_bob(&app).await;
    let mut first = WsClient::connect(&app, &bob.token).await;
    let mut second = WsClient::connect(&app, &bob.token).await;
    // Typing into rooms that do not exist: each one a database call before, and
    // refused ones were never counted.
    for index in 0..3 {
        first
            .send(json!({"op": "typing", "ref": format!("a{index}"), "room_id": uuid::Uuid::now_v7()}))
            .await;
        assert_eq!(
            first.answer(&format!("a{index}")).await["code"],
            "room_not_found"
        );
    }
    // The allowance is the user's, not the socket's.
    for index in 0..2 {
        second
            .send(json!({"op": "typing", "ref": format!("b{index}"), "room_id": uuid::Uuid::now_v7()}))
            .await;
        assert_eq!(
            second.answer(&format!("b{index}")).await["code"],
            "room_not_found"
        );
    }
    for index in 0..4 {
        second
            .send(json!({"op": "read", "ref": format!("c{index}"), "room_id": uuid::Uuid::now_v7(), "seq": 1}))
            .await;
        assert_eq!(
            second.answer(&format!("c{index}")).await["code"],
            "rate_limited"
        );
    }
    second
        .send(json!({"op": "typing", "ref": "last", "room_id": uuid::Uuid::now_v7()}))
        .await;
    assert_eq!(second.answer("last").await["code"], "rate_limited");
    assert_eq!(
        second.ending().await,
        Ending::Closed(4008),
        "the fifth refusal in a row closes"
    );
    // Pings are never counted.
    first.send(json!({"op": "ping", "ref": "p"})).await;
    assert_eq!(first.answer("p").await["op"], "pong");
}

/// Small send limits for the fleet tests: 6 at once, hardly any refill.
fn six_sends(config: &mut hark::config::Config) {
    config.send_burst = 6;
    config.send_rate_per_second = 0.01;
}

#[tokio::test]
async fn a_send_limit_holds_for_the_fleet_when_a_user_sends_through_two_instances_at_once() {
    let app = spawn_app_with(six_sends).await;
    let peer = app.spawn_peer_with(six_sends).await;
    let (_owner, bob, room_id) = room_with_bob(&app).await;
    let path = format!("/v1/rooms/{room_id}/messages");
    let before = app.count_rows("messages").await;

    // Ten sends through each instance, all at once.
    let sends = (0..20).map(|n| {
        let instance = if n % 2 == 0 { &app } else { &peer };
        let (path, token) = (&path, &bob.token);
        async move {
            instance
                .post(path, Some(token), json!({"body": format!("send {n}")}))
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(sends).await;
    let accepted = statuses.iter().filter(|status| **status == 201).count();
    let refused = statuses.iter().filter(|status| **status == 429).count();
    println!(
        "two instances, a burst of 6 for the fleet: {accepted} of 20 concurrent sends accepted, {refused} refused"
    );
    assert_eq!((accepted, refused), (6, 14), "statuses: {statuses:?}");
    assert_eq!(app.count_rows("messages").await - before, 6);

    // Either instance now refuses the user, and says for how long.
    for instance in [&app, &peer] {
        let refused = instance
            .post(&path, Some(&bob.token), json!({"body": "one more"}))
            .await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.body["code"], "rate_limited");
        assert!(header(&refused, "retry-after").parse::<u64>().unwrap() >= 1);
    }
}

#[tokio::test]
async fn failed_logins_spread_over_two_instances_are_throttled_as_on_one() {
    let throttle = |config: &mut hark::config::Config| {
        config.login_failures_per_account = 4;
        config.login_lockout_seconds = 600;
    };
    let app = spawn_app_with(throttle).await;
    let peer = app.spawn_peer_with(throttle).await;
    let (_owner, _bob, _room) = room_with_bob(&app).await;
    let wrong = json!({"tenant": "acme", "login": "bob", "password": "wrong password"});
    for attempt in 0..4 {
        let instance = if attempt % 2 == 0 { &app } else { &peer };
        instance
            .post("/v1/auth/login", None, wrong.clone())
            .await
            .expect_error(401, "invalid_credentials");
    }
    for instance in [&app, &peer] {
        instance
            .post("/v1/auth/login", None, wrong.clone())
            .await
            .expect_error(429, "login_throttled");
    }
}

#[tokio::test]
async fn successful_logins_through_two_instances_never_use_up_the_failures_allowed() {
    let throttle = |config: &mut hark::config::Config| {
        config.login_failures_per_account = 2;
        config.login_lockout_seconds = 600;
    };
    let app = spawn_app_with(throttle).await;
    let peer = app.spawn_peer_with(throttle).await;
    let (_owner, _bob, _room) = room_with_bob(&app).await;
    let right = json!({"tenant": "acme", "login": "bob", "password": PASSWORD});
    for attempt in 0..6 {
        let instance = if attempt % 2 == 0 { &app } else { &peer };
        instance
            .post("/v1/auth/login", None, right.clone())
            .await
            .expect(200);
    }
    // Every token was given back, so the account's bucket is full again, and a full
    // bucket is forgotten (a missing one is full).
    let (client, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let login_buckets =
        "select count(*) from hark.rate_buckets where limit_name = 'login_accounts'";
    let count = |row: tokio_postgres::Row| row.get::<_, i64>(0);
    assert_eq!(
        count(client.query_one(login_buckets, &[]).await.unwrap()),
        1
    );
    client
        .execute("select hark_api.rate_forget(1000)", &[])
        .await
        .unwrap();
    assert_eq!(
        count(client.query_one(login_buckets, &[]).await.unwrap()),
        0
    );
}
