//! The bench's tenant, users, rooms and memberships, made through the public API
//! (users with an API key, so that no password has to be hashed).

use anyhow::Context as _;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::bench::Shape;

/// Requests in flight while preparing.
const PARALLEL: usize = 32;

/// A room of the bench and who listens to it.
pub struct RoomFixture {
    /// The room's id.
    pub id: String,
    /// One access token per subscriber.
    pub subscriber_tokens: Vec<String>,
}

/// A sender and the rooms it sends to.
pub struct SenderFixture {
    /// Its access token.
    pub token: String,
    /// Indexes into `Fixture::rooms`.
    pub rooms: Vec<usize>,
}

/// Everything a load run needs.
pub struct Fixture {
    /// The rooms.
    pub rooms: Vec<RoomFixture>,
    /// The senders.
    pub senders: Vec<SenderFixture>,
    /// The tenant's API, as its owner calls it.
    pub api: Api,
}

/// A tenant's API as its owner and its API key call it.
pub struct Api {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// The instance called.
    pub base: String,
    /// The owner's access token.
    pub owner_token: String,
    /// The tenant's API key.
    pub api_key: String,
}

/// The JSON body of a successful answer, or an error naming what failed.
pub async fn checked(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!("{what} failed with {status}: {body}");
    }
    Ok(body)
}

impl Api {
    /// Creates a user without a password and mints its token: (id, token).
    pub async fn user(&self, name: String) -> anyhow::Result<(String, String)> {
        let user = checked(
            self.client
                .post(format!("{}/v1/backend/users", self.base))
                .header("x-api-key", &self.api_key)
                .json(&json!({"username": name}))
                .send()
                .await?,
            "creating a user",
        )
        .await?;
        let id = user["id"].as_str().context("a user id")?.to_owned();
        let session = checked(
            self.client
                .post(format!("{}/v1/backend/users/{id}/sessions", self.base))
                .header("x-api-key", &self.api_key)
                .send()
                .await?,
            "minting a token",
        )
        .await?;
        let token = session["access_token"]
            .as_str()
            .context("a token")?
            .to_owned();
        Ok((id, token))
    }

    async fn users(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<(String, String)>> {
        stream::iter((0..count).map(|index| self.user(format!("{prefix}{index}"))))
            .buffered(PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }

    /// Adds a user to a room.
    pub async fn add_member(&self, room: &str, user: &str) -> anyhow::Result<()> {
        checked(
            self.client
                .post(format!("{}/v1/rooms/{room}/members", self.base))
                .bearer_auth(&self.owner_token)
                .json(&json!({"user_id": user}))
                .send()
                .await?,
            "adding a member",
        )
        .await
        .map(drop)
    }
}

/// Finishes a load of `per_room` messages into each of `room_ids` written straight
/// into the database: the rooms' last seq follows, and the planner's statistics are
/// refreshed so that the measurement runs on the plans a loaded database gets.
pub async fn loaded(
    client: &tokio_postgres::Client,
    room_ids: &[uuid::Uuid],
    per_room: i64,
) -> anyhow::Result<()> {
    client
        .execute(
            "update hark.rooms set last_seq = $2 where id = any($1)",
            &[&room_ids, &per_room],
        )
        .await?;
    client
        .batch_execute("vacuum analyze hark.messages, hark.message_search")
        .await?;
    Ok(())
}

/// Creates the bench's tenant and, with `with_rooms`, its rooms and members.
pub async fn prepare(
    targets: &[String],
    operator_key: Option<&str>,
    shape: Shape,
    with_rooms: bool,
) -> anyhow::Result<Fixture> {
    let client = reqwest::Client::new();
    let base = targets.first().context("no target")?.clone();
    let slug = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let mut request = client.post(format!("{base}/v1/tenants")).json(&json!({
        "slug": &slug[..30],
        "name": "Hark bench",
        "owner": {"username": "bench-owner", "password": uuid::Uuid::new_v4().to_string()},
    }));
    if let Some(key) = operator_key {
        request = request.header("x-operator-key", key);
    }
    let tenant = checked(request.send().await?, "creating the bench tenant").await?;
    let owner_token = tenant["session"]["access_token"]
        .as_str()
        .context("an owner token")?
        .to_owned();
    let key = checked(
        client
            .post(format!("{base}/v1/api-keys"))
            .bearer_auth(&owner_token)
            .json(&json!({"name": "bench"}))
            .send()
            .await?,
        "creating an API key",
    )
    .await?;
    let api = Api {
        client,
        base,
        owner_token,
        api_key: key["key"].as_str().context("an API key")?.to_owned(),
    };
    if !with_rooms {
        let users = api.users("idle", shape.subscribers.max(1)).await?;
        return Ok(Fixture {
            rooms: vec![RoomFixture {
                id: String::new(),
                subscriber_tokens: users.into_iter().map(|(_, token)| token).collect(),
            }],
            senders: Vec::new(),
            api,
        });
    }

    let room_ids: Vec<String> = stream::iter((0..shape.rooms).map(|index| {
        let api = &api;
        async move {
            let room = checked(
                api.client
                    .post(format!("{}/v1/rooms", api.base))
                    .bearer_auth(&api.owner_token)
                    .json(&json!({"name": format!("bench {index}")}))
                    .send()
                    .await?,
                "creating a room",
            )
            .await?;
            anyhow::Ok(room["id"].as_str().context("a room id")?.to_owned())
        }
    }))
    .buffered(PARALLEL)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;

    // Subscribers: distinct users, up to 20 per room; more subscribers share them.
    let per_room_users = shape.subscribers.clamp(1, 20);
    let subscriber_users = api.users("sub", shape.rooms * per_room_users).await?;
    let sender_users = api.users("send", shape.senders).await?;
    let mut memberships = Vec::new();
    let mut rooms = Vec::new();
    for (index, room_id) in room_ids.iter().enumerate() {
        let users = &subscriber_users[index * per_room_users..(index + 1) * per_room_users];
        for (user_id, _) in users {
            memberships.push((room_id.clone(), user_id.clone()));
        }
        rooms.push(RoomFixture {
            id: room_id.clone(),
            subscriber_tokens: (0..shape.subscribers)
                .map(|slot| users[slot % users.len()].1.clone())
                .collect(),
        });
    }
    let mut senders = Vec::new();
    for (index, (user_id, token)) in sender_users.into_iter().enumerate() {
        // Senders spread over the rooms: with more rooms than senders each sends to
        // every room whose index is its own modulo the sender count.
        let own: Vec<usize> = if shape.rooms >= shape.senders {
            (0..shape.rooms)
                .filter(|room| room % shape.senders == index)
                .collect()
        } else {
            vec![index % shape.rooms]
        };
        for room in &own {
            memberships.push((room_ids[*room].clone(), user_id.clone()));
        }
        senders.push(SenderFixture { token, rooms: own });
    }
    stream::iter(
        memberships
            .iter()
            .map(|(room, user)| api.add_member(room, user)),
    )
    .buffer_unordered(PARALLEL)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<()>>>()?;
    Ok(Fixture {
        rooms,
        senders,
        api,
    })
}
