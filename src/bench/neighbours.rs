//! The noisy-neighbours scenario: a victim tenant's sends, deliveries and reads,
//! measured quiet and then while an attacker of another tenant (or nobody at all)
//! runs each abuse of issue 14 at full speed against the same instances, which run
//! with the default limits. Each phase prints the victim's latencies, its server
//! errors and the instances' resident memory next to the quiet phase's.

use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicUsize, Ordering},
};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::{
    fixtures::{Api, checked},
    load::{open_socket, percentile},
    local::Local,
    memory::resident_kib,
};

/// The abuses, each run for one phase after the quiet one.
const ABUSES: [Abuse; 8] = [
    Abuse::Signups,
    Abuse::Reads,
    Abuse::Pages,
    Abuse::Replays,
    Abuse::Presence,
    Abuse::Typing,
    Abuse::SlowConnections,
    Abuse::RoomDeletes,
];

/// What the attacker does during a phase.
#[derive(Debug, Clone, Copy)]
enum Abuse {
    /// Nothing: the victim's quiet figures.
    Quiet,
    /// 40 concurrent registrations, to a tenant that does not exist and to its own.
    Signups,
    /// 16 concurrent unread summaries and room lists, from two users.
    Reads,
    /// 16 concurrent event-log pages of 1,000 over a room of 98 KB messages.
    Pages,
    /// Four sockets pipelining replays of that room without reading.
    Replays,
    /// Ten members churning subscriptions on one room.
    Presence,
    /// Sixteen sockets sending typing to rooms that do not exist.
    Typing,
    /// 300 connections that never finish their request head, and 300 idle ones.
    SlowConnections,
    /// Creating rooms, filling them and deleting them.
    RoomDeletes,
}

/// The victim's figures of one phase, in microseconds.
#[derive(Default)]
struct Phase {
    /// REST send to its answer.
    sends: Vec<u32>,
    /// REST send to the subscriber's event on the other instance.
    deliveries: Vec<u32>,
    /// A page of history.
    reads: Vec<u32>,
    /// Answers with a 5xx status, or no answer.
    server_errors: usize,
    /// The most resident memory of the instances together, in KiB.
    peak_kib: u64,
}

/// One side of the scenario: a tenant, its owner, an API key and users.
struct Side {
    /// The tenant's slug.
    slug: String,
    /// The owner's token.
    owner: String,
    /// Users' tokens.
    users: Vec<(String, String)>,
    /// A room of the side.
    room: String,
}

/// What every task of the scenario needs.
struct Context {
    client: reqwest::Client,
    /// Instance A (the victim's REST calls) and B (the victim's subscriber).
    targets: Vec<String>,
    victim: Side,
    attacker: Side,
    /// The attacker's room of 98 KB messages.
    heavy_room: String,
    /// When the scenario started: send times are written into the bodies relative
    /// to it.
    started: Instant,
    /// The phase under way, for the subscriber's figures.
    phase: AtomicUsize,
    /// The figures, by phase.
    phases: Mutex<Vec<Phase>>,
}

impl Context {
    fn record(&self, phase: usize, update: impl FnOnce(&mut Phase)) {
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(figures) = phases.get_mut(phase) {
            update(figures);
        }
    }

    fn micros(since: Instant) -> u32 {
        u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
    }
}

/// Creates a tenant with `users` users (through an API key) and a room they all
/// belong to.
async fn side(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    users: usize,
) -> anyhow::Result<Side> {
    let slug = format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let tenant = checked(
        client
            .post(format!("{base}/v1/tenants"))
            .json(
                &json!({"slug": slug, "name": name, "registration_open": true,
                "owner": {"username": "owner", "password": uuid::Uuid::new_v4().to_string()}}),
            )
            .send()
            .await?,
        "creating a tenant",
    )
    .await?;
    let owner = tenant["session"]["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let key = checked(
        client
            .post(format!("{base}/v1/api-keys"))
            .bearer_auth(&owner)
            .json(&json!({"name": "bench"}))
            .send()
            .await?,
        "creating a key",
    )
    .await?["key"]
        .as_str()
        .context("a key")?
        .to_owned();
    let room = checked(
        client
            .post(format!("{base}/v1/rooms"))
            .bearer_auth(&owner)
            .json(&json!({"name": "main", "visibility": "public"}))
            .send()
            .await?,
        "creating a room",
    )
    .await?["id"]
        .as_str()
        .context("a room id")?
        .to_owned();
    let api = Api {
        client: client.clone(),
        base: base.to_owned(),
        owner_token: owner.clone(),
        api_key: key,
    };
    let mut tokens = Vec::new();
    for index in 0..users {
        let (id, token) = api.user(format!("user{index}")).await?;
        api.add_member(&room, &id).await?;
        tokens.push((id, token));
    }
    Ok(Side {
        slug,
        owner,
        users: tokens,
        room,
    })
}

/// Runs the scenario on local instances with the default limits.
pub async fn run(local: &Local, phase_seconds: u64) -> anyhow::Result<()> {
    let targets = local.urls();
    let client = reqwest::Client::new();
    let base = targets.first().context("no instance")?.clone();
    let victim = side(&client, &base, "victim", 2).await?;
    let attacker = side(&client, &base, "attacker", 16).await?;
    // The heavy room: 50 messages (the send burst) of 16 KiB of U+0001, each about
    // 98 KB of escaped JSON.
    let heavy_room = checked(
        client
            .post(format!("{base}/v1/rooms"))
            .bearer_auth(&attacker.owner)
            .json(&json!({"name": "heavy", "visibility": "public"}))
            .send()
            .await?,
        "creating the heavy room",
    )
    .await?["id"]
        .as_str()
        .context("a room id")?
        .to_owned();
    let heavy = "\u{1}".repeat(16 * 1024 - 1);
    for _ in 0..50 {
        client
            .post(format!("{base}/v1/rooms/{heavy_room}/messages"))
            .bearer_auth(&attacker.owner)
            .json(&json!({"body": heavy}))
            .send()
            .await?;
    }
    let phases = std::iter::once(Abuse::Quiet)
        .chain(ABUSES)
        .collect::<Vec<_>>();
    let context = Arc::new(Context {
        client,
        targets,
        victim,
        attacker,
        heavy_room,
        started: Instant::now(),
        phase: AtomicUsize::new(0),
        phases: Mutex::new(phases.iter().map(|_| Phase::default()).collect()),
    });
    let subscriber = tokio::spawn(subscribe(context.clone()));
    // The subscriber's subscription settles before the quiet phase starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "hark bench neighbours: {} s per phase, victim and attacker in different tenants on {} instances",
        phase_seconds,
        context.targets.len()
    );
    for (index, abuse) in phases.iter().enumerate() {
        context.phase.store(index, Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(phase_seconds);
        let memory = tokio::spawn(watch_memory(context.clone(), local.pids(), index, until));
        let victim = tokio::spawn(victim_load(context.clone(), index, until));
        attack(context.clone(), *abuse, until).await;
        victim.await?;
        memory.await?;
        println!("phase {index}: {abuse:?} done");
        // Whatever the abuse left behind settles before the next phase.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    subscriber.abort();
    print(&context, &phases);
    Ok(())
}

/// The victim's subscriber, on the second instance, for the whole run.
async fn subscribe(context: Arc<Context>) -> anyhow::Result<()> {
    let target = context.targets.last().context("no instance")?;
    let (_, token) = context.victim.users.first().context("no victim user")?;
    let mut socket = open_socket(target, token).await?;
    socket
        .send(Message::Text(
            json!({"op": "subscribe", "ref": "s", "room_id": context.victim.room})
                .to_string()
                .into(),
        ))
        .await?;
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let sent_at = frame["data"]["body"]
            .as_str()
            .and_then(|body| body.strip_prefix("at "))
            .and_then(|micros| micros.parse::<u64>().ok());
        if let Some(sent_at) = sent_at {
            let now = u64::try_from(context.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let latency = u32::try_from(now.saturating_sub(sent_at)).unwrap_or(u32::MAX);
            context.record(context.phase.load(Ordering::Relaxed), |phase| {
                phase.deliveries.push(latency);
            });
        }
    }
    Ok(())
}

/// The victim's sender and reader on the first instance: ten sends and ten reads a
/// second, each timed.
async fn victim_load(context: Arc<Context>, phase: usize, until: Instant) {
    let base = &context.targets[0];
    let (_, token) = &context.victim.users[1];
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < until {
        ticks.tick().await;
        let body = format!("at {}", context.started.elapsed().as_micros());
        let sending = Instant::now();
        let sent = context
            .client
            .post(format!("{base}/v1/rooms/{}/messages", context.victim.room))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .json(&json!({"body": body}))
            .send()
            .await;
        let send_micros = Context::micros(sending);
        let reading = Instant::now();
        let read = context
            .client
            .get(format!(
                "{base}/v1/rooms/{}/messages?limit=50",
                context.victim.room
            ))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let read = match read {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map(|_| status)
            }
            Err(error) => Err(error),
        };
        let read_micros = Context::micros(reading);
        let failed = |answer: &Result<reqwest::StatusCode, reqwest::Error>| {
            answer
                .as_ref()
                .map_or(true, reqwest::StatusCode::is_server_error)
        };
        let sent = sent.map(|response| response.status());
        let errors = usize::from(failed(&sent)) + usize::from(failed(&read));
        context.record(phase, |figures| {
            figures.sends.push(send_micros);
            figures.reads.push(read_micros);
            figures.server_errors += errors;
        });
    }
}

/// Samples the instances' resident memory every 100 ms.
async fn watch_memory(context: Arc<Context>, pids: Vec<u32>, phase: usize, until: Instant) {
    while Instant::now() < until + Duration::from_secs(1) {
        let total: u64 = pids.iter().filter_map(|pid| resident_kib(*pid)).sum();
        context.record(phase, |figures| {
            figures.peak_kib = figures.peak_kib.max(total);
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one abuse until the deadline, with as many tasks as it takes.
async fn attack(context: Arc<Context>, abuse: Abuse, until: Instant) {
    let tasks: Vec<tokio::task::JoinHandle<()>> = match abuse {
        Abuse::Quiet => Vec::new(),
        Abuse::Signups => (0..40)
            .map(|index| tokio::spawn(signups(context.clone(), index, until)))
            .collect(),
        Abuse::Reads => (0..16)
            .map(|index| tokio::spawn(reads(context.clone(), index % 2, until)))
            .collect(),
        Abuse::Pages => (0..16)
            .map(|index| tokio::spawn(pages(context.clone(), index, until)))
            .collect(),
        Abuse::Replays => (0..4)
            .map(|index| tokio::spawn(replays(context.clone(), index, until)))
            .collect(),
        Abuse::Presence => (0..10)
            .map(|index| tokio::spawn(churn(context.clone(), index, until)))
            .collect(),
        Abuse::Typing => (0..16)
            .map(|index| tokio::spawn(typing(context.clone(), index, until)))
            .collect(),
        Abuse::SlowConnections => vec![tokio::spawn(slow_connections(context.clone(), until))],
        Abuse::RoomDeletes => vec![tokio::spawn(room_deletes(context.clone(), until))],
    };
    for task in tasks {
        drop(task.await);
    }
}

async fn signups(context: Arc<Context>, index: usize, until: Instant) {
    let base = &context.targets[index % context.targets.len()];
    while Instant::now() < until {
        let tenant = if index % 2 == 0 {
            "no-such-tenant"
        } else {
            context.attacker.slug.as_str()
        };
        drop(
            context
                .client
                .post(format!("{base}/v1/auth/register"))
                .json(
                    &json!({"tenant": tenant, "username": uuid::Uuid::new_v4().simple().to_string(),
                    "password": "correct horse battery staple"}),
                )
                .send()
                .await,
        );
    }
}

async fn reads(context: Arc<Context>, user: usize, until: Instant) {
    let (_, token) = &context.attacker.users[user];
    let base = &context.targets[user % context.targets.len()];
    while Instant::now() < until {
        for path in ["/v1/users/me/unread", "/v1/rooms"] {
            if let Ok(response) = context
                .client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
            {
                drop(response.bytes().await);
            }
        }
    }
}

async fn pages(context: Arc<Context>, index: usize, until: Instant) {
    let (_, token) = &context.attacker.users[index];
    let base = &context.targets[index % context.targets.len()];
    while Instant::now() < until {
        if let Ok(response) = context
            .client
            .get(format!(
                "{base}/v1/rooms/{}/event-log?limit=1000",
                context.heavy_room
            ))
            .bearer_auth(token)
            .send()
            .await
        {
            drop(response.bytes().await);
        }
    }
}

async fn replays(context: Arc<Context>, index: usize, until: Instant) {
    let (_, token) = &context.attacker.users[0];
    let base = &context.targets[index % context.targets.len()];
    let mut sockets = Vec::new();
    while Instant::now() < until {
        let Ok(mut socket) = open_socket(base, token).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for round in 0..20 {
            let subscribe = json!({"op": "subscribe", "ref": format!("s{round}"),
                "room_id": context.heavy_room, "since": 0});
            let unsubscribe = json!({"op": "unsubscribe", "ref": format!("u{round}"), "room_id": context.heavy_room});
            if socket
                .send(Message::Text(subscribe.to_string().into()))
                .await
                .is_err()
                || socket
                    .send(Message::Text(unsubscribe.to_string().into()))
                    .await
                    .is_err()
            {
                break;
            }
        }
        // Never read: the socket is kept open, unread, until the phase ends.
        sockets.push(socket);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn churn(context: Arc<Context>, index: usize, until: Instant) {
    let (_, token) = &context.attacker.users[index];
    let base = &context.targets[index % context.targets.len()];
    let room = &context.attacker.room;
    while Instant::now() < until {
        let Ok(mut socket) = open_socket(base, token).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while Instant::now() < until {
            let frames = [
                json!({"op": "subscribe", "ref": "s", "room_id": room}),
                json!({"op": "unsubscribe", "ref": "u", "room_id": room}),
            ];
            let mut open = true;
            for frame in frames {
                open &= socket
                    .send(Message::Text(frame.to_string().into()))
                    .await
                    .is_ok();
            }
            // Read what came back, so that only the limits slow the churn down.
            while open {
                match tokio::time::timeout(Duration::from_millis(5), socket.next()).await {
                    Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => open = false,
                    Ok(Some(Ok(_))) => {}
                    Err(_) => break,
                }
            }
            if !open {
                break;
            }
        }
    }
}

async fn typing(context: Arc<Context>, index: usize, until: Instant) {
    let (_, token) = &context.attacker.users[2];
    let base = &context.targets[index % context.targets.len()];
    while Instant::now() < until {
        let Ok(socket) = open_socket(base, token).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (mut sink, mut stream) = socket.split();
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        while Instant::now() < until && !reader.is_finished() {
            let frame = json!({"op": "typing", "room_id": uuid::Uuid::new_v4()});
            if sink
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        reader.abort();
    }
}

async fn slow_connections(context: Arc<Context>, until: Instant) {
    let mut held = Vec::new();
    for index in 0..600 {
        let target = &context.targets[index % context.targets.len()];
        let address = target.trim_start_matches("http://");
        let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
            continue;
        };
        if index % 2 == 0 {
            drop(
                stream
                    .write_all(b"GET /v1/users/me HTTP/1.1\r\nHost: x\r\n")
                    .await,
            );
        }
        held.push(stream);
    }
    tokio::time::sleep_until(until.into()).await;
}

async fn room_deletes(context: Arc<Context>, until: Instant) {
    let base = &context.targets[0];
    let owner = &context.attacker.owner;
    while Instant::now() < until {
        let Ok(response) = context
            .client
            .post(format!("{base}/v1/rooms"))
            .bearer_auth(owner)
            .json(&json!({"name": "doomed", "visibility": "public"}))
            .send()
            .await
        else {
            continue;
        };
        let Some(room) = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|room| room["id"].as_str().map(str::to_owned))
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for _ in 0..20 {
            drop(
                context
                    .client
                    .post(format!("{base}/v1/rooms/{room}/messages"))
                    .bearer_auth(owner)
                    .json(&json!({"body": "doomed"}))
                    .send()
                    .await,
            );
        }
        drop(
            context
                .client
                .delete(format!("{base}/v1/rooms/{room}"))
                .bearer_auth(owner)
                .send()
                .await,
        );
    }
}

fn print(context: &Context, phases: &[Abuse]) {
    let figures = context
        .phases
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let sorted = |values: &[u32]| {
        let mut values = values.to_vec();
        values.sort_unstable();
        values
    };
    let Some(quiet) = figures.first() else {
        return;
    };
    let quiet_p50 = |values: &[u32]| percentile(&sorted(values), 0.5);
    let (quiet_send, quiet_delivery, quiet_read) = (
        quiet_p50(&quiet.sends),
        quiet_p50(&quiet.deliveries),
        quiet_p50(&quiet.reads),
    );
    println!();
    println!(
        "| phase | victim send p50 / p95 | delivery p50 / p95 | read p50 / p95 | 5xx | instances' memory | goals |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (abuse, phase) in phases.iter().zip(figures.iter()) {
        let (sends, deliveries, reads) = (
            sorted(&phase.sends),
            sorted(&phase.deliveries),
            sorted(&phase.reads),
        );
        let within = |values: &[u32], quiet: f64| {
            percentile(values, 0.5) <= 2.0 * quiet + 5.0 && percentile(values, 0.95) <= 500.0
        };
        let memory_growth = phase.peak_kib.saturating_sub(quiet.peak_kib) / 1024;
        let met = within(&sends, quiet_send)
            && within(&deliveries, quiet_delivery)
            && within(&reads, quiet_read)
            && phase.server_errors == 0
            && memory_growth <= 300;
        println!(
            "| {abuse:?} | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {} | {:.0} MiB (+{memory_growth}) | {} |",
            percentile(&sends, 0.5),
            percentile(&sends, 0.95),
            percentile(&deliveries, 0.5),
            percentile(&deliveries, 0.95),
            percentile(&reads, 0.5),
            percentile(&reads, 0.95),
            phase.server_errors,
            phase.peak_kib as f64 / 1024.0,
            if met { "met" } else { "not met" },
        );
    }
    println!();
    println!(
        "goals: p50 within 2x the quiet phase's + 5 ms, p95 <= 500 ms, no 5xx, memory within 300 MiB of quiet"
    );
}
