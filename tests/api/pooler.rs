//! Behind a transaction-mode pooler: PgBouncer with fewer server connections than the
//! instance's pool, so that consecutive statements of one pooled connection land on
//! different server connections. Any session state (a named prepared statement, a
//! session-level setting) would fail or leak there.

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, PASSWORD, TestApp, fresh_database, id_of, spawn_on};
use crate::pgbouncer::{SERVER_CONNECTIONS, behind_pgbouncer};
use crate::ws::WsClient;

/// Counts the requests made and the ones not answered as expected.
#[derive(Default)]
struct Tally {
    requests: AtomicUsize,
    failures: AtomicUsize,
}

impl Tally {
    /// Records one answer; answers its body. A failure is printed, not panicked on,
    /// so that the test reports every failure of the run.
    fn check(&self, what: &str, answer: Answer, status: u16) -> Value {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if answer.status.as_u16() != status {
            self.failures.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "{what}: expected {status}, got {}: {}",
                answer.status, answer.body
            );
        }
        answer.body
    }
}

/// One client's walk through every REST route and WebSocket op that reads or writes,
/// in a tenant of its own.
async fn every_route(app: &TestApp, round: usize, tally: &Tally) {
    let slug = format!("pool-{round}");
    let owner_body = tally.check(
        "createTenant",
        app.post(
            "/v1/tenants",
            None,
            json!({"slug": slug, "name": "Pooled", "owner": {"username": "owner", "password": PASSWORD}}),
        )
        .await,
        201,
    );
    let owner = owner_body["session"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tally.check(
        "updateTenant",
        app.patch("/v1/tenant", &owner, json!({"registration_open": true}))
            .await,
        200,
    );
    let registered = tally.check(
        "register",
        app.post(
            "/v1/auth/register",
            None,
            json!({"tenant": slug, "username": "bob", "password": PASSWORD}),
        )
        .await,
        201,
    );
    let bob = registered["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bob_id = registered["user"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let login = tally.check(
        "login",
        app.post(
            "/v1/auth/login",
            None,
            json!({"tenant": slug, "login": "bob", "password": PASSWORD}),
        )
        .await,
        200,
    );
    let refreshed = tally.check(
        "refresh",
        app.post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": login["refresh_token"]}),
        )
        .await,
        200,
    );
    let spare = refreshed["access_token"].as_str().unwrap_or_default();
    tally.check(
        "logout",
        app.request(Method::POST, "/v1/auth/logout", Some(spare), None)
            .await,
        204,
    );

    let room = tally.check(
        "createRoom",
        app.post(
            "/v1/rooms",
            Some(&owner),
            json!({"name": "lobby", "visibility": "private"}),
        )
        .await,
        201,
    );
    let room_id = id_of(&room);
    let rooms = format!("/v1/rooms/{room_id}");
    tally.check("getTenant", app.get("/v1/tenant", &owner).await, 200);
    tally.check(
        "updateRoom",
        app.patch(&rooms, &owner, json!({"topic": "pooled"})).await,
        200,
    );
    let code = tally.check(
        "rotateInviteCode",
        app.post(&format!("{rooms}/invite-code"), Some(&owner), json!({}))
            .await,
        200,
    );
    tally.check(
        "joinRoomByCode",
        app.post(
            "/v1/rooms/join",
            Some(&bob),
            json!({"code": code["invite_code"]}),
        )
        .await,
        200,
    );
    let message = tally.check(
        "sendMessage",
        app.post(
            &format!("{rooms}/messages"),
            Some(&bob),
            json!({"body": "hi", "client_id": "once"}),
        )
        .await,
        201,
    );
    let message_path = format!("{rooms}/messages/{}", id_of(&message));
    for (what, path) in [
        ("getRoom", rooms.clone()),
        ("listRooms", "/v1/rooms".to_owned()),
        ("listMembers", format!("{rooms}/members")),
        ("listMessages", format!("{rooms}/messages?limit=5")),
        ("listRoomEvents", format!("{rooms}/event-log")),
        ("listOnlineMembers", format!("{rooms}/presence")),
        ("checkRoomAccess", format!("{rooms}/access/{bob_id}")),
        ("getMessage", message_path.clone()),
        ("getUnreadCounts", "/v1/users/me/unread".to_owned()),
        ("getMe", "/v1/users/me".to_owned()),
        ("listUsers", "/v1/users".to_owned()),
        ("getUser", format!("/v1/users/{bob_id}")),
        ("getUserByUsername", "/v1/users/by-username/bob".to_owned()),
        ("listApiKeys", "/v1/api-keys".to_owned()),
    ] {
        tally.check(what, app.get(&path, &owner).await, 200);
    }
    tally.check(
        "editMessage",
        app.patch(&message_path, &bob, json!({"body": "hello"}))
            .await,
        200,
    );
    tally.check(
        "listMessageVersions",
        app.get(&format!("{message_path}/versions"), &bob).await,
        200,
    );
    tally.check(
        "addReaction",
        app.post(
            &format!("{message_path}/reactions"),
            Some(&owner),
            json!({"emoji": "🎉"}),
        )
        .await,
        200,
    );
    tally.check(
        "removeReaction",
        app.delete(&format!("{message_path}/reactions/🎉"), &owner)
            .await,
        200,
    );
    tally.check(
        "markRead",
        app.post(
            &format!("{rooms}/read"),
            Some(&owner),
            json!({"seq": message["seq"]}),
        )
        .await,
        200,
    );
    tally.check(
        "setMemberRole",
        app.patch(
            &format!("{rooms}/members/{bob_id}"),
            &owner,
            json!({"role": "admin"}),
        )
        .await,
        200,
    );
    tally.check(
        "updateUser",
        app.patch(
            &format!("/v1/users/{bob_id}"),
            &bob,
            json!({"display_name": "Bob"}),
        )
        .await,
        200,
    );

    // WebSocket: a subscriber and concurrent sends from several sockets, which the
    // writer combines into batches.
    let mut subscriber = WsClient::connect(app, &owner).await;
    let seq = subscriber.subscribe(&room_id, None).await;
    let mut senders = Vec::new();
    for socket in 0..3 {
        let mut client = WsClient::connect(app, &bob).await;
        for index in 0..5 {
            client
                .send(json!({"op": "send", "ref": format!("s{index}"), "room_id": room_id, "body": format!("ws {socket}.{index}")}))
                .await;
        }
        senders.push(client);
    }
    for client in &mut senders {
        for index in 0..5 {
            let answer = client.answer(&format!("s{index}")).await;
            tally.requests.fetch_add(1, Ordering::Relaxed);
            if answer["op"] != "ack" {
                tally.failures.fetch_add(1, Ordering::Relaxed);
                eprintln!("WebSocket send: {answer}");
            }
        }
    }
    let events = subscriber.events_until(&room_id, seq + 15).await;
    assert_eq!(events.len(), 15, "the subscriber sees every WebSocket send");

    tally.check(
        "getOrCreateDirectRoom",
        app.post(
            "/v1/rooms/direct",
            Some(&bob),
            json!({"user_id": owner_body["session"]["user"]["id"]}),
        )
        .await,
        200,
    );
    let key = tally.check(
        "createApiKey",
        app.post("/v1/api-keys", Some(&owner), json!({"name": "backend"}))
            .await,
        201,
    );
    let secret = key["key"].as_str().unwrap_or_default();
    let with_key = |path: &str, body: Value| {
        app.client
            .post(format!("{}{path}", app.address))
            .header("x-api-key", secret)
            .json(&body)
            .send()
    };
    let carol = tally.check(
        "backendCreateUser",
        TestApp::answer(
            with_key("/v1/backend/users", json!({"username": "carol"}))
                .await
                .expect("answered"),
        )
        .await,
        201,
    );
    tally.check(
        "backendCreateSession",
        TestApp::answer(
            with_key(
                &format!("/v1/backend/users/{}/sessions", id_of(&carol)),
                json!({}),
            )
            .await
            .expect("answered"),
        )
        .await,
        201,
    );
    tally.check(
        "revokeApiKey",
        app.delete(&format!("/v1/api-keys/{}", id_of(&key["api_key"])), &owner)
            .await,
        204,
    );
    tally.check("deleteMessage", app.delete(&message_path, &bob).await, 204);
    tally.check(
        "removeMember",
        app.delete(&format!("{rooms}/members/{bob_id}"), &owner)
            .await,
        204,
    );
    tally.check(
        "archiveRoom",
        app.post(&format!("{rooms}/archive"), Some(&owner), json!({}))
            .await,
        200,
    );
    tally.check("deleteRoom", app.delete(&rooms, &owner).await, 204);
    tally.check(
        "deleteUser",
        app.delete(&format!("/v1/users/{bob_id}"), &bob).await,
        204,
    );
    tally.check("deleteTenant", app.delete("/v1/tenant", &owner).await, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_through_a_transaction_mode_pooler_with_fewer_server_connections_than_the_pool()
 {
    let database_url = fresh_database().await;
    let pooled = behind_pgbouncer(&database_url).await;
    let app = spawn_on(database_url, |config| {
        pooled(config);
        config.db_pool_size = 2 * SERVER_CONNECTIONS;
    })
    .await;
    let tally = Tally::default();
    let clients: Vec<_> = (0..12)
        .map(|round| every_route(&app, round, &tally))
        .collect();
    futures_util::future::join_all(clients).await;
    let requests = tally.requests.load(Ordering::Relaxed);
    let failures = tally.failures.load(Ordering::Relaxed);
    let batches = app
        .state
        .as_ref()
        .map(|state| state.writer.stats.batches.load(Ordering::Relaxed))
        .unwrap_or_default();
    eprintln!(
        "through PgBouncer ({SERVER_CONNECTIONS} server connections, pool of {}): {requests} requests and WebSocket sends, {failures} failed, {batches} write batches",
        2 * SERVER_CONNECTIONS
    );
    assert_eq!(failures, 0, "every request succeeds through the pooler");
    assert!(batches > 0, "concurrent sends went through batches");
}
