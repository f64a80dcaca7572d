//! WebSocket fuzzing: thousands of random and malformed frames from a seeded
//! generator. The server answers each connection with well-formed frames only, closes
//! a connection only with 4400 (too many bad frames), stays healthy, and serves a
//! normal client afterwards.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::helpers::{TestApp, room_with_bob, spawn_app};
use crate::ws::WsClient;

/// Frames sent in all.
const FRAMES: usize = 4_000;

/// Op names besides the client ops: empty, in the wrong case, the server's own.
const NOT_OPS: &[&str] = &["", "SEND", "event", "ack"];

const FIELDS: &[&str] = &[
    "ref",
    "room_id",
    "since",
    "body",
    "kind",
    "message_id",
    "emoji",
    "remove",
    "seq",
    "token",
    "attachment",
    "reply_to_id",
    "client_id",
    "op",
];

fn random_string(rng: &mut StdRng, max: usize) -> String {
    let length = rng.random_range(0..=max);
    (0..length)
        .map(|_| match rng.random_range(0..10) {
            0 => char::from_u32(rng.random_range(0x80..0x2_FFFF)).unwrap_or('\u{FFFD}'),
            1 => ['"', '\\', '{', '}', '[', ']', '\0', '\n'][rng.random_range(0..8)],
            _ => char::from(rng.random_range(b' '..=b'~')),
        })
        .collect()
}

fn random_value(rng: &mut StdRng, depth: u32, room_id: &str) -> Value {
    match rng.random_range(0..if depth > 3 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(random_string(rng, 40)),
        5 => json!(room_id),
        6 => json!(uuid::Uuid::new_v4()),
        7 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1, room_id))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|_| {
                    let key = FIELDS[rng.random_range(0..FIELDS.len())].to_owned();
                    (key, random_value(rng, depth + 1, room_id))
                })
                .collect(),
        ),
    }
}

/// One random frame: mostly op-shaped JSON with random fields, some random JSON,
/// some text that is not JSON, some binary, some deeply nested.
fn random_frame(rng: &mut StdRng, room_id: &str) -> Message {
    match rng.random_range(0..20) {
        0..=11 => {
            let mut frame = serde_json::Map::new();
            let ops = hark::realtime::protocol::CLIENT_OPS;
            let pick = rng.random_range(0..ops.len() + NOT_OPS.len());
            let op = ops.get(pick).unwrap_or_else(|| &NOT_OPS[pick - ops.len()]);
            frame.insert("op".to_owned(), json!(op));
            for _ in 0..rng.random_range(0..5) {
                let key = FIELDS[rng.random_range(0..FIELDS.len())].to_owned();
                frame.insert(key, random_value(rng, 1, room_id));
            }
            Message::Text(Value::Object(frame).to_string().into())
        }
        12..=14 => Message::Text(random_value(rng, 0, room_id).to_string().into()),
        15..=16 => Message::Text(random_string(rng, 200).into()),
        17 => Message::Binary(
            (0..rng.random_range(0..64))
                .map(|_| rng.random::<u8>())
                .collect::<Vec<u8>>()
                .into(),
        ),
        18 => {
            let depth = rng.random_range(100..2_000);
            Message::Text(format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into())
        }
        _ => {
            // Valid JSON with a field of the wrong type for a real op.
            let op = ["subscribe", "send", "read", "react", "edit"][rng.random_range(0..5)];
            Message::Text(
                json!({"op": op, "ref": "typed", "room_id": room_id, "since": "yesterday",
                       "seq": -1, "body": {"nested": true}, "message_id": 42, "emoji": []})
                .to_string()
                .into(),
            )
        }
    }
}

async fn connect(
    app: &TestApp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = app.address.replace("http://", "ws://") + "/v1/ws";
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

#[tokio::test]
async fn thousands_of_random_and_malformed_frames_leave_the_server_healthy() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let mut rng = StdRng::seed_from_u64(0x4841_524b);
    let (mut sent, mut connections, mut closed_4400, mut answers) = (0, 0, 0, 0);
    let mut acked_sends: i64 = 0;
    while sent < FRAMES {
        let mut socket = connect(&app, &bob.token).await;
        connections += 1;
        let batch = rng.random_range(1..40).min(FRAMES - sent);
        for _ in 0..batch {
            let frame = random_frame(&mut rng, &room_id);
            if socket.send(frame).await.is_err() {
                break;
            }
            sent += 1;
        }
        drop(
            socket
                .send(Message::Text(
                    json!({"op": "ping", "ref": "end"}).to_string().into(),
                ))
                .await,
        );
        // Read until the final pong or the close.
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("the server answers or closes within 10 s");
            match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|_| panic!("the server sent JSON, not {text}"));
                    let op = frame["op"].as_str().expect("every server frame has an op");
                    assert!(
                        [
                            "ack", "error", "pong", "event", "typing", "read", "presence", "reset"
                        ]
                        .contains(&op),
                        "unexpected server frame {frame}"
                    );
                    answers += 1;
                    if op == "ack"
                        && frame["result"]["seq"].is_i64()
                        && frame["result"]["body"].is_string()
                    {
                        acked_sends += 1;
                    }
                    if op == "pong" && frame["ref"] == "end" {
                        break;
                    }
                }
                Some(Ok(Message::Close(close))) => {
                    let code = close.map(|close| u16::from(close.code));
                    assert_eq!(code, Some(4400), "the only close is for malformed frames");
                    closed_4400 += 1;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => panic!("the connection broke without a close frame"),
            }
        }
    }
    println!(
        "fuzz: {sent} frames over {connections} connections; {answers} answers, \
         {closed_4400} closed with 4400, {acked_sends} random sends acknowledged"
    );
    assert!(
        closed_4400 > 0,
        "some connections hit the malformed-frame limit"
    );

    let ready = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // A normal client works as before, and every acknowledged send is in history.
    let mut client = WsClient::connect(&app, &owner.token).await;
    let seq = client.subscribe(&room_id, None).await;
    let sent = app.send(&bob.token, &room_id, "after the storm").await;
    let events = client
        .events_until(&room_id, sent["seq"].as_i64().unwrap())
        .await;
    assert_eq!(events.last().unwrap()["data"]["body"], "after the storm");
    assert!(sent["seq"].as_i64().unwrap() > seq);
    let messages = app.count_rows("messages").await;
    assert_eq!(
        messages,
        acked_sends + 1,
        "every acknowledged send is stored, and nothing else"
    );
}
