//! Fixtures made through the public API (tenants, users, rooms, messages), and forged
//! tokens.

use serde_json::{Value, json};

use super::{
    app::{Answer, TestApp},
    settings::PASSWORD,
};

/// A user with a session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The tenant.
    pub tenant_id: String,
    /// The user.
    pub user_id: String,
    /// The access token.
    pub token: String,
    /// The refresh token.
    pub refresh_token: String,
}

impl Session {
    fn from_auth(body: &Value) -> Self {
        Self {
            tenant_id: body["tenant_id"].as_str().expect("tenant_id").to_owned(),
            user_id: body["user"]["id"].as_str().expect("user id").to_owned(),
            token: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh_token: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }
}

/// A tenant with its owner.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    /// The slug.
    pub slug: String,
    /// The owner's session.
    pub owner: Session,
}

impl TestApp {
    /// Creates a tenant with an owner called `owner`.
    pub async fn create_tenant(&self, slug: &str) -> TenantFixture {
        let body = self
            .post(
                "/v1/tenants",
                None,
                json!({"slug": slug, "name": format!("Tenant {slug}"), "registration_open": true, "owner": {"username": "owner", "password": PASSWORD, "email": format!("owner@{slug}.example")}}),
            )
            .await
            .expect(201);
        TenantFixture {
            slug: slug.to_owned(),
            owner: Session::from_auth(&body["session"]),
        }
    }

    /// Registers a member of a tenant.
    pub async fn register(&self, slug: &str, username: &str) -> Session {
        let body = self
            .post(
                "/v1/auth/register",
                None,
                json!({"tenant": slug, "username": username, "password": PASSWORD, "email": format!("{username}@{slug}.example")}),
            )
            .await
            .expect(201);
        Session::from_auth(&body)
    }

    /// Registers a user and makes them an admin (by the tenant's owner).
    pub async fn admin(&self, tenant: &TenantFixture, username: &str) -> Session {
        let session = self.register(&tenant.slug, username).await;
        self.patch(
            &format!("/v1/users/{}", session.user_id),
            &tenant.owner.token,
            json!({"role": "admin"}),
        )
        .await
        .expect(200);
        session
    }
}

/// A JWT signed with `secret`, with the given header algorithm and claims.
pub fn forge_token(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// The claims of a token (unverified), to forge variations of it.
pub fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Seconds since 1970.
pub fn unix_now() -> i64 {
    i64::try_from(super::database::now_seconds()).expect("in range")
}

impl TestApp {
    /// Creates a group room and answers it.
    pub async fn create_room(&self, token: &str, name: &str, visibility: &str) -> Value {
        self.post(
            "/v1/rooms",
            Some(token),
            json!({"name": name, "visibility": visibility}),
        )
        .await
        .expect(201)
    }

    /// Adds a user to a room (as a room admin).
    pub async fn add_member(&self, admin_token: &str, room_id: &str, user_id: &str) {
        self.post(
            &format!("/v1/rooms/{room_id}/members"),
            Some(admin_token),
            json!({"user_id": user_id}),
        )
        .await
        .expect(200);
    }

    /// Sends a text message and answers it.
    pub async fn send(&self, token: &str, room_id: &str, body: &str) -> Value {
        self.post(
            &format!("/v1/rooms/{room_id}/messages"),
            Some(token),
            json!({"body": body}),
        )
        .await
        .expect(201)
    }

    /// Counts the rows of several tables, to show that a refused request changed nothing.
    pub async fn snapshot(&self) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in [
            "rooms",
            "room_members",
            "room_events",
            "messages",
            "message_edits",
            "reactions",
            "webhooks",
            "webhook_deliveries",
            "blocks",
            "room_restrictions",
            "reports",
            "word_filters",
            "audit_log",
            "mentions",
            "thread_reads",
        ] {
            counts.push(self.count_rows(table).await);
        }
        counts
    }
}

impl TestApp {
    /// A new API key of the tenant, created by `creator`.
    pub async fn api_key(&self, creator: &Session) -> String {
        self.post(
            "/v1/api-keys",
            Some(&creator.token),
            json!({"name": "backend"}),
        )
        .await
        .expect(201)["key"]
            .as_str()
            .expect("a key")
            .to_owned()
    }

    /// A request made by `key` acting as `user_id` (`X-Hark-User`).
    pub async fn acting(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        user_id: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(key)
            .header("x-hark-user", user_id);
        if let Some(body) = body {
            request = request.json(&body);
        }
        TestApp::answer(request.send().await.expect("a response")).await
    }

    /// A call of the operator API with `key` in `X-Operator-Key`.
    pub async fn operator(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Answer {
        self.with_header(method, path, ("x-operator-key", key), body)
            .await
    }

    /// A request made with `key` in `X-Api-Key`.
    pub async fn with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> Answer {
        self.with_header(method, path, ("x-api-key", key), body)
            .await
    }

    /// A request with one header and, when given, a JSON body.
    async fn with_header(
        &self,
        method: reqwest::Method,
        path: &str,
        (name, value): (&str, &str),
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .header(name, value);
        if let Some(body) = body {
            request = request.json(&body);
        }
        TestApp::answer(request.send().await.expect("a response")).await
    }
}

/// A room's id as a string.
pub fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

/// A tenant `acme` with its owner and a member `bob` in one private room; answers
/// (owner, bob, room id).
pub async fn room_with_bob(app: &TestApp) -> (Session, Session, String) {
    let tenant = app.create_tenant("acme").await;
    let bob = app.register("acme", "bob").await;
    let room_id = id_of(
        &app.create_room(&tenant.owner.token, "lobby", "private")
            .await,
    );
    app.add_member(&tenant.owner.token, &room_id, &bob.user_id)
        .await;
    (tenant.owner, bob, room_id)
}
