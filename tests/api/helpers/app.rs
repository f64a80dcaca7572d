//! The application under test: spawned in-process on port 0 with the test settings,
//! and called over real HTTP.

use hark::{
    config::Config,
    startup::{AppState, serve},
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_postgres::NoTls;

use super::{database::fresh_database, settings::test_config};

/// A running server and a client for it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The URL of this test's own database (as the admin role).
    pub database_url: String,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// The running instance's state, for looking inside (batch counts); `None` for an
    /// instance running as its own process.
    pub state: Option<AppState>,
}

/// An HTTP answer: status, headers and JSON body (null when empty).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON.
    pub body: Value,
}

impl Answer {
    /// Asserts the status and answers the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        self.body
    }

    /// Asserts an error answer with its status and code, and the error body's shape.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        assert_eq!(self.body["code"], code, "unexpected error: {}", self.body);
        assert!(
            self.body["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty())
        );
        let request_id = self
            .headers
            .get("x-request-id")
            .expect("a request id header");
        assert_eq!(self.body["request_id"], request_id.to_str().expect("ASCII"));
        self.body
    }
}

/// Spawns the application on its own fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the application with a changed configuration.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    spawn_on(fresh_database().await, change).await
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request.send().await.expect("the request is answered")).await
    }

    /// Turns a response into an [`Answer`].
    pub async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), None).await
    }

    /// POST JSON with an optional token.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// PATCH JSON with a token.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(Method::DELETE, path, Some(token), None).await
    }
}

impl TestApp {
    /// Opens a room's Server-Sent Events stream (`query` is `""` or `"?since=…"`).
    pub async fn open_events(&self, token: &str, room_id: &str, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/rooms/{room_id}/events{query}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .expect("the stream is answered")
    }

    /// Counts rows of a table across all tenants, as the admin role (bypassing RLS).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let (client, connection) = tokio_postgres::connect(&self.database_url, NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .query_one(&format!("select count(*) from hark.{table}"), &[])
            .await
            .expect("count")
            .get(0)
    }
}

impl TestApp {
    /// Starts a second instance on this instance's database.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(|_| {}).await
    }

    /// Starts a second instance on this instance's database with a changed configuration.
    pub async fn spawn_peer_with(&self, change: impl FnOnce(&mut Config)) -> TestApp {
        spawn_on(self.database_url.clone(), change).await
    }
}

/// Starts an instance on an existing database.
pub async fn spawn_on(database_url: String, change: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&database_url);
    if crate::pgbouncer::requested() {
        crate::pgbouncer::behind_pgbouncer(&database_url).await(&mut config);
    }
    change(&mut config);
    let state = AppState::start(config)
        .await
        .expect("the application starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let address = format!("http://{}", listener.local_addr().expect("local address"));
    tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    TestApp {
        address,
        database_url,
        client: reqwest::Client::new(),
        state: Some(state),
    }
}
