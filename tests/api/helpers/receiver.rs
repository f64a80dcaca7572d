//! A webhook receiver of a test's own: a real HTTP server on port 0 that records every
//! request it gets (headers and body) and answers as the test scripts it (a status
//! per request, then a default; a pause before answering).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{
    EndpointExt, Route, Server, handler,
    http::{HeaderMap, StatusCode},
    listener::TcpAcceptor,
    web::Data,
};
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, as sent.
    pub raw: Vec<u8>,
    /// Its body, parsed.
    pub body: Value,
    /// What the receiver answered.
    pub answered: u16,
}

impl Received {
    /// The `webhook-id` header.
    pub fn id(&self) -> String {
        self.headers["webhook-id"].to_str().unwrap().to_owned()
    }

    /// Whether the signature verifies with the secret, checked by the Standard
    /// Webhooks reference library.
    pub fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.raw, &self.headers)
            .is_ok()
    }
}

#[derive(Default)]
struct Script {
    /// Statuses for the next requests, in order.
    next: VecDeque<u16>,
    /// The status once `next` is used up.
    otherwise: Option<u16>,
    /// A pause before answering.
    pause: Duration,
    /// Requests that arrived, answered or not yet.
    arrived: usize,
    /// Everything received and answered.
    received: Vec<Received>,
}

/// A receiver; the server runs until the test ends.
#[derive(Clone)]
pub struct Receiver {
    /// Its URL.
    pub url: String,
    script: Arc<Mutex<Script>>,
}

#[handler]
async fn receive(
    script: Data<&Arc<Mutex<Script>>>,
    headers: &HeaderMap,
    raw: Vec<u8>,
) -> StatusCode {
    let (status, pause) = {
        let mut script = script.lock().unwrap();
        script.arrived += 1;
        let status = script.next.pop_front().or(script.otherwise).unwrap_or(204);
        (status, script.pause)
    };
    tokio::time::sleep(pause).await;
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    script.lock().unwrap().received.push(Received {
        headers: headers.clone(),
        raw,
        body,
        answered: status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// Starts a receiver answering 204 to everything.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Route::new()
            .at("/hook", poem::post(receive))
            .data(script.clone());
        tokio::spawn(
            Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap()).run(app),
        );
        Self { url, script }
    }

    /// Answers these statuses to the next requests, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.script.lock().unwrap().next.extend(statuses);
    }

    /// Answers this status from now on (after any scripted ones).
    pub fn answer_always(&self, status: u16) {
        self.script.lock().unwrap().otherwise = Some(status);
    }

    /// Waits this long before each answer.
    pub fn pause(&self, pause: Duration) {
        self.script.lock().unwrap().pause = pause;
    }

    /// Waits until `count` requests arrived, answered or not, for at most `limit`.
    pub async fn wait_for_arrivals(&self, count: usize, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.script.lock().unwrap().arrived;
            if arrived >= count || tokio::time::Instant::now() > deadline {
                return arrived;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything received and answered so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// The requests answered with 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|received| (200..300).contains(&received.answered))
            .collect()
    }

    /// Waits until `count` requests were accepted (2xx), for at most `limit`.
    pub async fn wait_for_accepted(&self, count: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= count || tokio::time::Instant::now() > deadline {
                return accepted;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
