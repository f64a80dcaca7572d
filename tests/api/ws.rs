//! A WebSocket test client speaking Hark's protocol, and a subscriber that keeps
//! every room event it receives, reconnecting and resuming like a real client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, protocol::frame::coding::CloseCode},
};

use crate::helpers::TestApp;

/// How long a test waits for an expected frame.
pub const WAIT: Duration = Duration::from_secs(15);

/// An open WebSocket.
pub struct WsClient {
    /// The socket.
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames received while waiting for something else.
    pub backlog: Vec<Value>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ending {
    /// A close frame with this code.
    Closed(u16),
    /// The stream ended without a close frame.
    Dropped,
}

impl WsClient {
    /// Connects with the token in the Authorization header.
    pub async fn connect(app: &TestApp, token: &str) -> Self {
        let url = app.address.replace("http://", "ws://") + "/v1/ws";
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (socket, _) = connect_async(request).await.unwrap();
        Self {
            socket,
            backlog: Vec::new(),
        }
    }

    /// Connects to a URL path (query included) without a header.
    pub async fn connect_path(app: &TestApp, path_and_query: &str) -> Self {
        let url = app.address.replace("http://", "ws://") + path_and_query;
        let (socket, _) = connect_async(url).await.unwrap();
        Self {
            socket,
            backlog: Vec::new(),
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: String) {
        self.socket.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next JSON frame, or the ending of the connection.
    pub async fn next(&mut self, wait: Duration) -> Result<Value, Ending> {
        if !self.backlog.is_empty() {
            return Ok(self.backlog.remove(0));
        }
        self.read(wait).await
    }

    /// The next frame that is not a presence change: those come whenever the room's
    /// presence moves (the subscriber's own arrival included), in no fixed order with
    /// the frames a test waits for.
    pub async fn next_not_presence(&mut self, wait: Duration) -> Result<Value, Ending> {
        loop {
            let frame = self.next(wait).await?;
            if frame["op"] != "presence" {
                return Ok(frame);
            }
        }
    }

    /// The next JSON frame from the socket itself, past the backlog.
    async fn read(&mut self, wait: Duration) -> Result<Value, Ending> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {wait:?}"));
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(text.as_str()).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ending::Closed(
                        frame.map_or(1005, |frame| u16::from(frame.code)),
                    ));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(Ending::Dropped),
            }
        }
    }

    /// Waits for the frame that answers `reference` (ack or error), keeping others.
    pub async fn answer(&mut self, reference: &str) -> Value {
        let mut kept = std::mem::take(&mut self.backlog);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut found = None;
        if let Some(index) = kept.iter().position(|frame| frame["ref"] == reference) {
            found = Some(kept.remove(index));
        }
        while found.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = match self.next(left).await {
                Ok(frame) => frame,
                Err(ending) => panic!("connection ended waiting for {reference}: {ending:?}"),
            };
            if frame["ref"] == reference
                && (frame["op"] == "ack" || frame["op"] == "error" || frame["op"] == "pong")
            {
                found = Some(frame);
            } else {
                kept.push(frame);
            }
        }
        self.backlog = kept;
        found.unwrap()
    }

    /// Subscribes; answers the ack's seq.
    pub async fn subscribe(&mut self, room_id: &str, since: Option<i64>) -> i64 {
        let reference = format!("sub-{room_id}");
        let mut frame = json!({"op": "subscribe", "ref": reference, "room_id": room_id});
        if let Some(since) = since {
            frame["since"] = json!(since);
        }
        self.send(frame).await;
        let answer = self.answer(&reference).await;
        assert_eq!(answer["op"], "ack", "subscribe failed: {answer}");
        answer["result"]["seq"].as_i64().unwrap()
    }

    /// Collects one room's events until the one with seq `upto` arrived; answers them
    /// in order.
    pub async fn events_until(&mut self, room_id: &str, upto: i64) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Events of other rooms stay in the backlog for whoever waits for them.
            if let Some(index) = self
                .backlog
                .iter()
                .position(|frame| frame["op"] == "event" && frame["room_id"] == room_id)
            {
                let frame = self.backlog.remove(index);
                let seq = frame["seq"].as_i64().unwrap();
                events.push(frame);
                if seq >= upto {
                    return events;
                }
                continue;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Ok(frame) if frame["op"] == "event" => self.backlog.push(frame),
                Ok(_) => {}
                Err(ending) => panic!("connection ended before seq {upto}: {ending:?}"),
            }
        }
    }

    /// Reads and drops frames until the connection ends; answers how it ended.
    pub async fn ending(&mut self) -> Ending {
        loop {
            if let Err(ending) = self.next(WAIT).await {
                return ending;
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self
            .socket
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// The seqs of a list of event frames.
pub fn seqs_of(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|event| event["seq"].as_i64().unwrap())
        .collect()
}

/// A subscriber that keeps every event of one room, and on any ending reconnects and
/// resubscribes with `since` = the last seq it holds, as the protocol asks of clients.
pub async fn resilient_subscriber(
    app_address: String,
    token: String,
    room_id: String,
    upto: i64,
) -> Vec<i64> {
    let mut received: Vec<i64> = Vec::new();
    let mut reconnects = 0;
    while received.last().copied().unwrap_or(0) < upto {
        let url = app_address.replace("http://", "ws://") + "/v1/ws";
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let Ok(Ok((socket, _))) = tokio::time::timeout(WAIT, connect_async(request)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut client = WsClient {
            socket,
            backlog: Vec::new(),
        };
        let since = received.last().copied().unwrap_or(0);
        client
            .send(json!({"op": "subscribe", "ref": "s", "room_id": room_id, "since": since}))
            .await;
        loop {
            let frame = match client.next(Duration::from_secs(30)).await {
                Ok(frame) => frame,
                Err(_) => break,
            };
            if frame["op"] == "error" {
                // The server could not subscribe (the database is restarting): retry.
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
            if frame["op"] == "event" && frame["room_id"] == room_id.as_str() {
                received.push(frame["seq"].as_i64().unwrap());
                if received.last().copied() >= Some(upto) {
                    break;
                }
            }
        }
        reconnects += 1;
        assert!(reconnects < 200, "too many reconnects");
    }
    received
}
