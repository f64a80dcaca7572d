//! No noisy neighbours: what anyone on the internet can make the server do is bounded,
//! so that it cannot degrade the service for the other tenants.

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

fn hashes(app: &TestApp) -> u64 {
    app.state.as_ref().unwrap().passwords.computed()
}

#[tokio::test]
async fn registrations_and_tenant_creations_that_cannot_succeed_hash_no_password() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("acme").await;
    app.register("acme", "bob").await;
    app.patch(
        "/v1/tenant",
        &tenant.owner.token,
        json!({"registration_open": false}),
    )
    .await
    .expect(200);
    app.create_tenant("open").await;
    let before = hashes(&app);
    let register = |tenant: &'static str, username: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/v1/auth/register",
                None,
                json!({"tenant": tenant, "username": username, "password": PASSWORD}),
            )
            .await
        }
    };
    let missing =
        futures_util::future::join_all((0..40).map(|_| register("nowhere", "mallory"))).await;
    for answer in missing {
        answer.expect_error(404, "tenant_not_found");
    }
    register("acme", "mallory")
        .await
        .expect_error(403, "registration_closed");
    register("open", "owner")
        .await
        .expect_error(409, "username_taken");
    app.post(
        "/v1/tenants",
        None,
        json!({"slug": "acme", "name": "Again", "owner": {"username": "eve", "password": PASSWORD}}),
    )
    .await
    .expect_error(409, "slug_taken");
    assert_eq!(hashes(&app), before, "no password was hashed for them");
}

#[tokio::test]
async fn password_hashes_beyond_the_concurrency_bound_answer_503_busy() {
    let app = spawn_app_with(|config| {
        config.password_hash_concurrency = 1;
        config.password_hash_queue_ms = 0;
        // Slow enough that concurrent logins overlap.
        config.password_hash_memory_kib = 32 * 1024;
        config.password_hash_iterations = 3;
    })
    .await;
    // The hasher makes its dummy hash at start: wait for that turn to pass.
    let mut created = false;
    for _ in 0..100 {
        let answer = app
            .post(
                "/v1/tenants",
                None,
                json!({"slug": "acme", "name": "Acme", "owner": {"username": "owner", "password": PASSWORD}}),
            )
            .await;
        if answer.status == 201 {
            created = true;
            break;
        }
        answer.expect_error(503, "busy");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(created);
    let logins = (0..8).map(|_| {
        app.post(
            "/v1/auth/login",
            None,
            json!({"tenant": "acme", "login": "owner", "password": PASSWORD}),
        )
    });
    let answers = futures_util::future::join_all(logins).await;
    let busy: Vec<_> = answers
        .iter()
        .filter(|answer| answer.status == 503)
        .collect();
    let served = answers.iter().filter(|answer| answer.status == 200).count();
    println!(
        "8 concurrent logins, one hash at a time: {served} served, {} busy",
        busy.len()
    );
    assert!(!busy.is_empty() && served >= 1);
    assert_eq!(busy.len() + served, 8, "only 200 or 503");
    assert_eq!(busy[0].body["code"], "busy");
    assert_eq!(busy[0].headers.get("retry-after").unwrap(), "1");
}

#[tokio::test]
async fn registrations_and_tenant_creations_from_one_address_are_throttled() {
    let app = spawn_app_with(|config| config.signups_per_address_per_hour = 3).await;
    app.create_tenant("acme").await;
    app.register("acme", "bob").await;
    app.register("acme", "carol").await;
    let asked = std::time::Instant::now();
    let refused = app
        .post(
            "/v1/auth/register",
            None,
            json!({"tenant": "acme", "username": "dave", "password": PASSWORD}),
        )
        .await;
    // A refusal waits a second before it is answered, so that a flood of them from
    // one client goes at one a second per connection.
    assert!(asked.elapsed() >= std::time::Duration::from_secs(1));
    assert!(refused.headers.contains_key("retry-after"));
    refused.expect_error(429, "too_many_signups");
    app.post(
        "/v1/tenants",
        None,
        json!({"slug": "other", "name": "Other", "owner": {"username": "eve", "password": PASSWORD}}),
    )
    .await
    .expect_error(429, "too_many_signups");
    assert_eq!(app.count_rows("users").await, 3);
}

#[tokio::test]
async fn pages_of_history_and_of_the_event_log_are_bounded_by_bytes_and_page_on() {
    let app = spawn_app_with(|config| {
        config.max_page_bytes = 300_000;
        config.max_body_bytes = 1024 * 1024;
    })
    .await;
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    // 16 KiB of U+0001 is 16 KiB of UTF-8 but about 98 KB of escaped JSON.
    let heavy = "\u{1}".repeat(16 * 1024);
    for _ in 0..8 {
        app.send(&bob.token, &room_id, &heavy).await;
    }
    let get = |path: String| {
        let app = &app;
        let token = bob.token.clone();
        async move {
            let response = app
                .client
                .get(format!("{}{path}", app.address))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let bytes = response.bytes().await.unwrap();
            (
                bytes.len(),
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    let (size, latest) = get(format!("/v1/rooms/{room_id}/messages?limit=200")).await;
    let items = latest["items"].as_array().unwrap();
    println!("history page: {} messages in {size} bytes", items.len());
    assert!(size <= 300_000 + 1024, "{size} bytes");
    assert!(!items.is_empty() && items.len() < 8);
    assert_eq!(latest["has_more_before"], true);
    // Paging back from the oldest message of the page reaches every message.
    let mut seen = items.len();
    let mut before = items[0]["seq"].as_i64().unwrap();
    while seen < 8 {
        let (size, page) = get(format!(
            "/v1/rooms/{room_id}/messages?before={before}&limit=200"
        ))
        .await;
        assert!(size <= 300_000 + 1024, "{size} bytes");
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty());
        seen += items.len();
        before = items[0]["seq"].as_i64().unwrap();
    }
    assert_eq!(seen, 8);

    let mut after = 0;
    let mut events = 0;
    loop {
        let (size, page) = get(format!(
            "/v1/rooms/{room_id}/event-log?after={after}&limit=1000"
        ))
        .await;
        assert!(size <= 300_000 + 1024, "{size} bytes");
        let items = page["items"].as_array().unwrap();
        events += items.len();
        after = items.last().unwrap()["seq"].as_i64().unwrap();
        if after == page["last_seq"].as_i64().unwrap() {
            break;
        }
    }
    assert_eq!(
        events as i64, after,
        "every event, in pages under the bound"
    );
}

#[tokio::test]
async fn a_statement_that_waits_too_long_is_cancelled_and_the_instance_keeps_serving() {
    let app = spawn_app_with(|config| config.statement_timeout_ms = 500).await;
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let other = app.create_tenant("other").await;
    // A long transaction holds the room's row lock.
    let holder = crate::helpers::RowLock::hold(&app.database_url, "rooms", &room_id).await;

    let started = std::time::Instant::now();
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(&bob.token),
            json!({"body": "waits for the lock"}),
        ),
    )
    .await
    .expect("the send is answered although the lock is still held");
    println!(
        "a send stuck behind a held room lock answered {} after {} ms",
        refused.status,
        started.elapsed().as_millis()
    );
    assert!(refused.headers.contains_key("retry-after"));
    refused.expect_error(503, "statement_timeout");
    app.get("/v1/users/me", &other.owner.token)
        .await
        .expect(200);

    holder.release().await;
    app.send(&bob.token, &room_id, "after the lock").await;
    assert_eq!(
        app.count_rows("messages").await,
        1,
        "the cancelled send wrote nothing"
    );
}

#[tokio::test]
async fn unread_counts_stop_at_a_hundred_so_that_a_backlog_costs_a_bounded_range() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let bodies: Vec<String> = (0..150).map(|index| format!("m{index}")).collect();
    let sends = bodies
        .iter()
        .map(|body| app.send(&owner.token, &room_id, body));
    futures_util::future::join_all(sends).await;
    let unread = app.get("/v1/users/me/unread", &bob.token).await.expect(200);
    assert_eq!(unread["rooms"][0]["unread_count"], 100);
    assert_eq!(unread["total"], 100);
    let rooms = app.get("/v1/rooms", &bob.token).await.expect(200);
    assert_eq!(rooms["items"][0]["unread_count"], 100);
    // Read up to all but the last 30: the exact count below the cap comes back.
    let last_seq = rooms["items"][0]["last_seq"].as_i64().unwrap();
    let marker = app
        .post(
            &format!("/v1/rooms/{room_id}/read"),
            Some(&bob.token),
            json!({"seq": last_seq - 30}),
        )
        .await
        .expect(200);
    assert_eq!(marker["unread_count"], 30);
}

/// A raw TCP connection to the app, for requests no HTTP client would send.
async fn raw_connection(app: &TestApp) -> tokio::net::TcpStream {
    let address = app.address.trim_start_matches("http://");
    tokio::net::TcpStream::connect(address).await.unwrap()
}

/// Reads what the server sends until it closes the connection (or 10 s pass).
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut received),
    )
    .await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503_and_closed_until_one_ends() {
    let app = spawn_app_with(|config| config.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(raw_connection(&app).await);
    }
    let mut over = raw_connection(&app).await;
    let answer = read_until_closed(&mut over)
        .await
        .expect("the connection over the cap is closed");
    println!(
        "over the cap: {}",
        answer.lines().next().unwrap_or_default()
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    // One ends: a new connection is served again.
    drop(held.pop());
    let mut served = None;
    for _ in 0..50 {
        let client = reqwest::Client::new();
        if let Ok(response) = client.get(format!("{}/healthz", app.address)).send().await {
            served = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(served, Some(200));
}

#[tokio::test]
async fn a_connection_that_does_not_finish_its_request_head_is_closed() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.header_timeout_ms = 300).await;
    let mut slow = raw_connection(&app).await;
    slow.write_all(b"GET /healthz HTT").await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.is_some(),
        "the half-sent request's connection is still open after 10 s"
    );
    // A request sent whole on a new connection is served as usual.
    let mut whole = raw_connection(&app).await;
    whole
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: hark\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut whole).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_request_head_larger_than_the_limit_closes_the_connection() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.max_header_bytes = 8 * 1024).await;
    let mut large = raw_connection(&app).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: hark\r\nx-padding: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    // The server may close before it has read everything: a failed write is the
    // refusal too.
    let _ = large.write_all(head.as_bytes()).await;
    let answer = read_until_closed(&mut large).await.unwrap_or_default();
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "a 20 KiB head was served: {answer}"
    );
    // Within the limit, the same request is served.
    let mut small = raw_connection(&app).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: hark\r\nx-padding: {}\r\nconnection: close\r\n\r\n",
        "a".repeat(4 * 1024)
    );
    small.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut small).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_member_churning_subscriptions_costs_the_rooms_subscribers_one_presence_change() {
    let app = spawn_app_with(|config| config.presence_debounce_ms = 1_500).await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let mut watcher = crate::ws::WsClient::connect(&app, &owner.token).await;
    watcher.subscribe(&room_id, None).await;
    let mut churner = crate::ws::WsClient::connect(&app, &bob.token).await;
    for round in 0..20 {
        churner
            .send(json!({"op": "subscribe", "ref": format!("s{round}"), "room_id": room_id}))
            .await;
        assert_eq!(churner.answer(&format!("s{round}")).await["op"], "ack");
        churner
            .send(json!({"op": "unsubscribe", "ref": format!("u{round}"), "room_id": room_id}))
            .await;
        assert_eq!(churner.answer(&format!("u{round}")).await["op"], "ack");
    }
    // Once the debounce has passed (with room to spare), a message marks the end:
    // every presence change of the churn reached the watcher before it.
    tokio::time::sleep(std::time::Duration::from_millis(1_500 + 2_000)).await;
    let marker = app.send(&owner.token, &room_id, "after the churn").await;
    let mut changes = Vec::new();
    loop {
        let frame = watcher.next(crate::ws::WAIT).await.unwrap();
        if frame["op"] == "presence" && frame["user"]["username"] == "bob" {
            changes.push(frame["status"].as_str().unwrap().to_owned());
        }
        if frame["op"] == "event" && frame["seq"] == marker["seq"] {
            break;
        }
    }
    println!("20 subscribe and unsubscribe rounds: presence changes seen {changes:?}");
    assert_eq!(changes, ["online", "offline"]);
}

/// A memory figure of a process from `/proc/<pid>/status`, in KiB (Linux): `VmRSS`
/// its resident memory now, `VmHWM` the most it has had.
fn memory_kib(pid: u32, figure: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(figure)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn replays_asked_for_by_sockets_that_do_not_read_hold_a_page_of_the_log_not_the_backlog() {
    let database_url = crate::helpers::fresh_database().await;
    let (server, app) = crate::helpers::spawn_process(
        &database_url,
        &[("HARK_MAX_BODY_BYTES", "1048576".to_owned())],
    )
    .await;
    let pid = server.id().unwrap();
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    // 300 messages of 16 KiB of U+0001: about 29 MB of escaped JSON in the room's log.
    let heavy = "\u{1}".repeat(16 * 1024);
    for _ in 0..30 {
        let sends = (0..10).map(|_| app.send(&bob.token, &room_id, &heavy));
        futures_util::future::join_all(sends).await;
    }
    let last = app.send(&bob.token, &room_id, "the last one").await["seq"]
        .as_i64()
        .unwrap();
    let quiet = memory_kib(pid, "VmHWM");

    // Replays of the whole log asked for on four sockets of the user that never read.
    let mut hogs = Vec::new();
    for _ in 0..4 {
        let mut hog = crate::ws::WsClient::connect(&app, &bob.token).await;
        for round in 0..10 {
            hog.send(json!({"op": "subscribe", "ref": format!("s{round}"), "room_id": room_id, "since": 0}))
                .await;
            hog.send(json!({"op": "unsubscribe", "ref": format!("u{round}"), "room_id": room_id}))
                .await;
        }
        hogs.push(hog);
    }
    // And eight event streams that replay it and are not read.
    let mut streams = Vec::new();
    for _ in 0..8 {
        streams.push(app.open_events(&bob.token, &room_id, "?since=0").await);
    }
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let peak = memory_kib(pid, "VmHWM");
    println!(
        "replays of a {last}-event log to 4 sockets (40) and 8 event streams that do not read: peak memory {} MiB, {} MiB before",
        peak / 1024,
        quiet / 1024
    );
    assert!(
        peak - quiet < 300 * 1024,
        "peak memory grew by {} MiB",
        (peak - quiet) / 1024
    );
    drop(hogs);
    drop(streams);

    // A reader that reads gets the whole log, a page at a time, in order.
    let mut reader = crate::ws::WsClient::connect(&app, &bob.token).await;
    reader.subscribe(&room_id, Some(0)).await;
    let seqs: Vec<i64> = reader
        .events_until(&room_id, last)
        .await
        .iter()
        .map(|event| event["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_messages_edits_are_bounded_and_its_versions_are_read_in_pages_bounded_by_bytes() {
    let app = spawn_app_with(|config| {
        config.max_edits_per_message = 5;
        config.max_page_bytes = 300_000;
        config.max_body_bytes = 1024 * 1024;
    })
    .await;
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    // Versions of 16,383 bytes of U+0001: about 98 KB of escaped JSON each.
    let heavy = "\u{1}".repeat(16 * 1024 - 1);
    let message = app.send(&bob.token, &room_id, &heavy).await;
    let path = format!(
        "/v1/rooms/{room_id}/messages/{}",
        crate::helpers::id_of(&message)
    );
    for round in 0..5 {
        app.patch(
            &path,
            &bob.token,
            json!({"body": format!("{heavy}{round}")}),
        )
        .await
        .expect(200);
    }
    let refused = app
        .patch(&path, &bob.token, json!({"body": "one edit too many"}))
        .await
        .expect_error(422, "too_many_edits");
    println!("the sixth edit: {refused}");
    let current = app.get(&path, &bob.token).await.expect(200);
    assert_eq!(
        current["body"],
        format!("{heavy}4"),
        "the refused edit changed nothing"
    );

    let mut versions = Vec::new();
    let mut after = 0;
    loop {
        let response = app
            .client
            .get(format!(
                "{}{path}/versions?after={after}&limit=100",
                app.address
            ))
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap();
        let bytes = response.bytes().await.unwrap();
        assert!(bytes.len() <= 300_000 + 1024, "{} bytes", bytes.len());
        let page: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(!items.is_empty());
        versions.extend(items.iter().map(|item| item["version"].as_i64().unwrap()));
        after = items.last().unwrap()["version"].as_i64().unwrap();
        if page["has_more"] == false {
            break;
        }
    }
    println!("versions read in pages under 300,000 bytes: {versions:?}");
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    app.get(&format!("{path}/versions?limit=101"), &bob.token)
        .await
        .expect_error(422, "invalid_limit");
}

#[tokio::test]
async fn a_user_with_as_many_requests_in_flight_as_allowed_is_refused_more_and_others_are_served() {
    let app = spawn_app_with(|config| config.max_requests_in_flight_per_user = 2).await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let other = app.create_tenant("other").await;
    // A long transaction holds the room's row lock, so the owner's updates of the room
    // wait for it.
    let holder = crate::helpers::RowLock::hold(&app.database_url, "rooms", &room_id).await;
    let path = format!("/v1/rooms/{room_id}");
    let waiting = futures_util::future::join_all((0..2).map(|round| {
        app.patch(
            &path,
            &owner.token,
            json!({"topic": format!("topic {round}")}),
        )
    }));
    let meanwhile = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let refused = app.get("/v1/users/me", &owner.token).await;
        assert!(refused.headers.contains_key("retry-after"));
        let refusal = refused.expect_error(429, "too_many_requests");
        println!("a third request with two in flight: {refusal}");
        app.get("/v1/users/me", &bob.token).await.expect(200);
        app.get("/v1/users/me", &other.owner.token)
            .await
            .expect(200);
        holder.release().await;
    };
    let (answers, ()) = tokio::join!(waiting, meanwhile);
    for answer in answers {
        answer.expect(200);
    }
    app.get("/v1/users/me", &owner.token).await.expect(200);
}

#[tokio::test]
async fn a_room_held_by_a_long_transaction_holds_up_no_other_rooms_sends_and_its_own_keep_their_order()
 {
    // One writer, and statements allowed to wait a minute: before, the held room's
    // sends kept the writer waiting for its lock, and every other room's with it.
    let app = spawn_app_with(|config| {
        config.write_workers = 1;
        config.statement_timeout_ms = 60_000;
    })
    .await;
    let (_owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let other = app.create_tenant("other").await;
    let elsewhere = crate::helpers::id_of(
        &app.create_room(&other.owner.token, "elsewhere", "public")
            .await,
    );
    let holder = crate::helpers::RowLock::hold(&app.database_url, "rooms", &room_id).await;

    // Three sends to the held room, one after the other on one socket.
    let mut socket = crate::ws::WsClient::connect(&app, &bob.token).await;
    for index in 0..3 {
        socket
            .send(json!({"op": "send", "ref": format!("s{index}"), "room_id": room_id, "body": format!("held {index}")}))
            .await;
    }
    // Another tenant's sends meanwhile, alone and batched.
    let stats = app.state.as_ref().unwrap().writer.stats.clone();
    let path = format!("/v1/rooms/{elsewhere}/messages");
    let sends = (0..5).map(|index| {
        app.post(
            &path,
            Some(&other.owner.token),
            json!({"body": format!("elsewhere {index}")}),
        )
    });
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures_util::future::join_all(sends),
    )
    .await
    .expect("another room's sends were held up by the held room");
    for answer in answers {
        answer.expect(201);
    }
    println!(
        "while the room was held: 5 sends elsewhere written, {} sends gone aside",
        stats.sent_aside.load(std::sync::atomic::Ordering::Relaxed)
    );

    holder.release().await;
    let mut seqs = Vec::new();
    for index in 0..3 {
        let ack = socket.answer(&format!("s{index}")).await;
        assert_eq!(ack["op"], "ack", "{ack}");
        seqs.push(ack["result"]["seq"].as_i64().unwrap());
    }
    println!("the held room's sends, once it was free: seqs {seqs:?}");
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    // And the room's sends are batched again.
    app.send(&bob.token, &room_id, "after").await;
}

#[tokio::test]
async fn deleting_a_room_answers_at_once_and_its_history_goes_in_bounded_batches() {
    let app = spawn_app_with(|config| {
        config.purge_batch = 50;
        config.purge_pause_ms = 200;
    })
    .await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let other = app.create_tenant("other").await;
    let elsewhere = crate::helpers::id_of(
        &app.create_room(&other.owner.token, "elsewhere", "public")
            .await,
    );
    for _ in 0..30 {
        let sends = (0..10).map(|_| app.send(&bob.token, &room_id, "history"));
        futures_util::future::join_all(sends).await;
    }
    let history = app.count_rows("messages").await;

    app.delete(&format!("/v1/rooms/{room_id}"), &owner.token)
        .await
        .expect(204);
    let left = app.count_rows("messages").await;
    println!("right after the delete: {left} of the room's {history} messages left to purge");
    assert!(left > 0, "the history was deleted inside the request");
    app.get(&format!("/v1/rooms/{room_id}"), &bob.token)
        .await
        .expect_error(404, "room_not_found");
    app.get(&format!("/v1/rooms/{room_id}/messages"), &bob.token)
        .await
        .expect_error(404, "room_not_found");
    // Another tenant writes on while the purge runs.
    app.send(&other.owner.token, &elsewhere, "meanwhile").await;

    // Until the purge is done, the room's rows as the database's admin sees them.
    let (admin, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let room: uuid::Uuid = room_id.parse().unwrap();
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = Vec::new();
        for table in [
            "rooms where id",
            "messages where room_id",
            "room_events where room_id",
        ] {
            let count: i64 = admin
                .query_one(&format!("select count(*) from hark.{table} = $1"), &[&room])
                .await
                .unwrap()
                .get(0);
            rows.push(count);
        }
        if rows == [0, 0, 0] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        rows,
        [0, 0, 0],
        "the room, its messages and its events are purged"
    );
    assert_eq!(
        app.count_rows("messages").await,
        1,
        "the other room's message stays"
    );
}

#[tokio::test]
async fn a_burst_of_registrations_leaves_no_more_memory_behind_than_the_hashes_it_allows_at_once() {
    let database_url = crate::helpers::fresh_database().await;
    // The default cost: 19 MiB a hash, four at once.
    let (server, app) = crate::helpers::spawn_process(
        &database_url,
        &[
            ("HARK_PASSWORD_HASH_MEMORY_KIB", "19456".to_owned()),
            ("HARK_PASSWORD_HASH_ITERATIONS", "2".to_owned()),
            ("HARK_PASSWORD_HASH_CONCURRENCY", "4".to_owned()),
            ("HARK_PASSWORD_HASH_QUEUE_MS", "60000".to_owned()),
        ],
    )
    .await;
    let pid = server.id().unwrap();
    let tenant = app.create_tenant("open").await;
    app.patch(
        "/v1/tenant",
        &tenant.owner.token,
        json!({"registration_open": true}),
    )
    .await
    .expect(200);
    let before = memory_kib(pid, "VmRSS");
    for round in 0..3 {
        let registrations = (0..40).map(|index| {
            app.post(
                "/v1/auth/register",
                None,
                json!({"tenant": "open", "username": format!("user{round}x{index}"),
                    "password": PASSWORD}),
            )
        });
        for answer in futures_util::future::join_all(registrations).await {
            answer.expect(201);
        }
    }
    let after = memory_kib(pid, "VmRSS");
    println!(
        "120 registrations, 40 at a time: resident memory {} MiB before, {} MiB after",
        before / 1024,
        after / 1024
    );
    assert!(
        after.saturating_sub(before) < 4 * 19 * 1024 + 30 * 1024,
        "{} MiB more",
        after.saturating_sub(before) / 1024
    );
}

#[tokio::test]
async fn a_user_making_requests_faster_than_allowed_is_refused_and_others_are_served() {
    let app = spawn_app_with(|config| {
        config.requests_burst = 5;
        config.requests_per_second = 0.01;
    })
    .await;
    let (owner, bob, _room_id) = crate::helpers::room_with_bob(&app).await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(app.get("/v1/users/me", &bob.token).await.status);
    }
    println!("six requests with a burst of five: {answers:?}");
    let refused = app.get("/v1/users/me", &bob.token).await;
    assert!(refused.headers.contains_key("retry-after"));
    refused.expect_error(429, "rate_limited");
    app.get("/v1/users/me", &owner.token).await.expect(200);
}

#[tokio::test]
async fn a_tenant_using_its_whole_share_of_an_instance_waits_and_other_tenants_do_not() {
    let app = spawn_app_with(|config| {
        config.max_requests_in_flight_per_tenant = 1;
        config.db_pool_timeout_ms = 500;
    })
    .await;
    let (owner, bob, room_id) = crate::helpers::room_with_bob(&app).await;
    let other = app.create_tenant("other").await;
    // The owner's update of the room waits for a lock held here, with the tenant's
    // only turn.
    let holder = crate::helpers::RowLock::hold(&app.database_url, "rooms", &room_id).await;
    let path = format!("/v1/rooms/{room_id}");
    let waiting = app.patch(&path, &owner.token, json!({"topic": "waits"}));
    let meanwhile = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let refused = app.get("/v1/users/me", &bob.token).await;
        assert!(refused.headers.contains_key("retry-after"));
        let refusal = refused.expect_error(503, "busy");
        println!("bob, while his tenant's one turn is taken: {refusal}");
        app.get("/v1/users/me", &other.owner.token)
            .await
            .expect(200);
        holder.release().await;
    };
    let (answer, ()) = tokio::join!(waiting, meanwhile);
    answer.expect(200);
    app.get("/v1/users/me", &bob.token).await.expect(200);
}
