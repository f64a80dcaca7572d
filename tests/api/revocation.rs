//! Revocation reaches every stream: logging out, deleting or deactivating a user,
//! deleting a tenant, and an API key ending a user's sessions close that session's (or user's, or tenant's)
//! WebSockets and event streams on every instance within a second, and the user
//! leaves presence at once; an expired token ends an event stream too.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::helpers::{Session, TestApp, room_with_bob, spawn_app};
use crate::ws::{Ending, WsClient};

/// How soon a revocation must reach a stream on another instance.
const WITHIN: Duration = Duration::from_secs(1);

/// Bob's WebSocket and event stream on instance B, and the owner watching the room's
/// presence from instance A.
struct Watched {
    a: TestApp,
    b: TestApp,
    owner: Session,
    bob: Session,
    room_id: String,
    socket: WsClient,
    events: reqwest::Response,
    watcher: WsClient,
}

async fn watched() -> Watched {
    let a = spawn_app().await;
    // The periodic recheck is far away: only the revocation itself can end streams
    // within the second. Leaves otherwise wait a minute: a revoked session's leave
    // must not.
    let b = a
        .spawn_peer_with(|config| {
            config.token_recheck_seconds = 3600;
            config.presence_debounce_ms = 60_000;
        })
        .await;
    let (owner, bob, room_id) = room_with_bob(&a).await;
    let mut watcher = WsClient::connect(&a, &owner.token).await;
    watcher.subscribe(&room_id, None).await;
    let mut socket = WsClient::connect(&b, &bob.token).await;
    socket.subscribe(&room_id, None).await;
    let events = b.open_events(&bob.token, &room_id, "").await;
    assert_eq!(events.status(), 200);
    wait_for_presence(&mut watcher, "online").await;
    Watched {
        a,
        b,
        owner,
        bob,
        room_id,
        socket,
        events,
        watcher,
    }
}

async fn wait_for_presence(watcher: &mut WsClient, status: &str) {
    loop {
        let frame = watcher.next(crate::ws::WAIT).await.unwrap();
        if frame["op"] == "presence"
            && frame["user"]["username"] == "bob"
            && frame["status"] == status
        {
            return;
        }
    }
}

/// Reads an event stream until it ends; answers whether it did within `limit`.
async fn ends_within(events: reqwest::Response, limit: Duration) -> bool {
    let mut body = events.bytes_stream();
    tokio::time::timeout(limit, async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await
    .is_ok()
}

impl Watched {
    /// Asserts that bob's streams on B end within the second of `revoked` and that
    /// A sees bob leave the room's presence.
    async fn assert_streams_end(mut self, revoked: Instant) {
        let ending = tokio::time::timeout(WITHIN, self.socket.ending())
            .await
            .expect("the WebSocket ends within a second");
        assert_eq!(ending, Ending::Closed(4001));
        let left = WITHIN.saturating_sub(revoked.elapsed());
        assert!(
            ends_within(self.events, left + Duration::from_millis(200)).await,
            "the event stream ends within a second"
        );
        println!(
            "streams on the other instance ended {} ms after the revocation",
            revoked.elapsed().as_millis()
        );
        wait_for_presence(&mut self.watcher, "offline").await;
        let online = self
            .a
            .get(
                &format!("/v1/rooms/{}/presence", self.room_id),
                &self.owner.token,
            )
            .await
            .expect(200);
        let names: Vec<_> = online["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["username"].clone())
            .collect();
        assert_eq!(names, [json!("owner")], "bob left presence");
        drop(self.b);
    }
}

#[tokio::test]
async fn logging_out_ends_the_sessions_streams_on_every_instance() {
    let watched = watched().await;
    let revoked = Instant::now();
    watched
        .a
        .post("/v1/auth/logout", Some(&watched.bob.token), json!({}))
        .await
        .expect(204);
    watched.assert_streams_end(revoked).await;
}

#[tokio::test]
async fn deleting_a_user_ends_their_streams_on_every_instance() {
    let watched = watched().await;
    let revoked = Instant::now();
    watched
        .a
        .delete(
            &format!("/v1/users/{}", watched.bob.user_id),
            &watched.owner.token,
        )
        .await
        .expect(204);
    watched.assert_streams_end(revoked).await;
}

#[tokio::test]
async fn deactivating_a_user_ends_their_streams_on_every_instance() {
    let watched = watched().await;
    let revoked = Instant::now();
    let user = watched
        .a
        .post(
            &format!("/v1/users/{}/deactivate", watched.bob.user_id),
            Some(&watched.owner.token),
            json!({}),
        )
        .await
        .expect(200);
    assert!(user["deactivated_at"].is_string());
    watched.assert_streams_end(revoked).await;
}

#[tokio::test]
async fn an_api_key_ending_a_users_sessions_ends_their_streams_on_every_instance() {
    let watched = watched().await;
    let key = watched
        .a
        .post(
            "/v1/api-keys",
            Some(&watched.owner.token),
            json!({"name": "backend"}),
        )
        .await
        .expect(201);
    let revoked = Instant::now();
    let answer = watched
        .a
        .client
        .delete(format!(
            "{}/v1/backend/users/{}/sessions",
            watched.a.address, watched.bob.user_id
        ))
        .header("x-api-key", key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    watched
        .a
        .get("/v1/users/me", &watched.bob.token)
        .await
        .expect_error(401, "token_revoked");
    watched.assert_streams_end(revoked).await;
}

#[tokio::test]
async fn deleting_the_tenant_ends_every_stream_of_it_on_every_instance() {
    let mut watched = watched().await;
    let other = watched.a.create_tenant("other").await;
    let mut bystander = WsClient::connect(&watched.b, &other.owner.token).await;
    let revoked = Instant::now();
    watched
        .a
        .delete("/v1/tenant", &watched.owner.token)
        .await
        .expect(204);
    let owner_ending = tokio::time::timeout(WITHIN, watched.watcher.ending())
        .await
        .expect("the owner's own WebSocket ends within a second");
    assert_eq!(owner_ending, Ending::Closed(4001));
    let ending = tokio::time::timeout(WITHIN, watched.socket.ending())
        .await
        .expect("bob's WebSocket ends within a second");
    assert_eq!(ending, Ending::Closed(4001));
    assert!(ends_within(watched.events, WITHIN).await);
    println!(
        "the tenant's streams ended {} ms after its deletion",
        revoked.elapsed().as_millis()
    );
    // Another tenant's connection on the same instance stays open.
    bystander.send(json!({"op": "ping", "ref": "p"})).await;
    assert_eq!(bystander.answer("p").await["op"], "pong");
}

#[tokio::test]
async fn an_event_stream_ends_when_its_token_expires() {
    let app = crate::helpers::spawn_app_with(|config| config.access_token_ttl_seconds = 2).await;
    let (_owner, bob, room_id) = room_with_bob(&app).await;
    let events = app.open_events(&bob.token, &room_id, "").await;
    assert_eq!(events.status(), 200);
    assert!(
        ends_within(events, Duration::from_secs(5)).await,
        "the stream ends once its token has expired"
    );
}
