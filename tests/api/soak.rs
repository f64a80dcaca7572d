//! The fault soak: two `hark` processes on a PostgreSQL cluster of the test's own,
//! WebSocket clients spread over rooms, steady REST traffic, and faults on a schedule:
//! one instance killed (SIGKILL) and restarted every `SOAK_KILL_EVERY` seconds, the
//! LISTEN connections terminated once, PostgreSQL restarted once. At the end every
//! client holds every event of its room exactly once and in order, and the database
//! holds every message whose send was acknowledged.
//!
//! Ignored by the plain test run; CI runs the short default, and a long run is
//! `SOAK_SECONDS=600 SOAK_CLIENTS=2000 SOAK_ROOMS=200 cargo test --release --test api
//! soak -- --ignored --nocapture`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::helpers::{OwnCluster, spawn_process_on};

/// Port of the soak's own cluster, below the ephemeral range.
const SOAK_CLUSTER_PORT: u16 = 25_470;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// What one client holds: the seqs of its room's events, repeats dropped.
#[derive(Default)]
struct Held {
    /// The seq the first subscription was acknowledged at.
    subscribed_at: Option<i64>,
    /// Events after it, in the order received (repeats recognised by seq and dropped).
    seqs: Vec<i64>,
    /// Repeats dropped (after resumes).
    repeats: u64,
    /// Connections opened.
    connections: u64,
}

/// A client that stays subscribed to one room across instance kills and database
/// restarts: it reconnects to the other instance and resumes with `since`.
async fn client(
    urls: Arc<Vec<String>>,
    token: String,
    room_id: String,
    offset: usize,
    held: Arc<Mutex<Held>>,
    stop: Arc<AtomicBool>,
) {
    let mut attempt = offset;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        let url = urls[attempt % urls.len()].replace("http://", "ws://") + "/v1/ws";
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await;
        let Ok(Ok((mut socket, _))) = connected else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let since = {
            let mut held = held.lock().await;
            held.connections += 1;
            held.seqs.last().copied().or(held.subscribed_at)
        };
        let mut subscribe = json!({"op": "subscribe", "ref": "s", "room_id": room_id});
        if let Some(since) = since {
            subscribe["since"] = json!(since);
        }
        if socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        while !stop.load(Ordering::Relaxed) {
            let next = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
            let frame = match next {
                Err(_) => continue,
                Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(&text).unwrap(),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => break,
            };
            let mut held = held.lock().await;
            match frame["op"].as_str() {
                Some("ack") if frame["ref"] == "s" && held.subscribed_at.is_none() => {
                    held.subscribed_at = frame["result"]["seq"].as_i64();
                }
                Some("event") => {
                    let seq = frame["seq"].as_i64().unwrap();
                    let newest = held
                        .seqs
                        .last()
                        .copied()
                        .or(held.subscribed_at)
                        .unwrap_or(0);
                    if seq > newest {
                        held.seqs.push(seq);
                    } else {
                        held.repeats += 1;
                    }
                }
                // The instance could not subscribe (the database is restarting).
                Some("error") => break,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends messages to one room at a steady pace through alternating instances,
/// retrying each until acknowledged (with its client id, so a retry is not a copy).
async fn sender(
    urls: Arc<Vec<String>>,
    token: String,
    room_id: String,
    interval: Duration,
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut number = 0u64;
    let mut ticker = tokio::time::interval(interval);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        number += 1;
        let client_id = format!("{room_id}-{number}");
        for attempt in 0..50usize {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            attempts.fetch_add(1, Ordering::Relaxed);
            let url = &urls[(number as usize + attempt) % urls.len()];
            let sent = client
                .post(format!("{url}/v1/rooms/{room_id}/messages"))
                .bearer_auth(&token)
                .json(&json!({"body": format!("soak {number}"), "client_id": client_id}))
                .send()
                .await;
            if let Ok(response) = sent {
                if response.status().is_success() {
                    let message: Value = response.json().await.unwrap();
                    acked
                        .lock()
                        .await
                        .push(message["id"].as_str().unwrap().to_owned());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute or more; CI runs it with --ignored"]
async fn soak_with_instance_kills_listener_terminations_and_a_postgres_restart_loses_nothing() {
    let seconds = setting("SOAK_SECONDS", 60);
    let clients = setting("SOAK_CLIENTS", 200) as usize;
    let rooms = setting("SOAK_ROOMS", 20) as usize;
    let kill_every = setting("SOAK_KILL_EVERY", 20);
    let messages_per_second = setting("SOAK_MESSAGES_PER_SECOND", 40);

    let cluster = OwnCluster::start(SOAK_CLUSTER_PORT);
    let database_url = cluster.url("hark_soak");
    let env = vec![
        ("RUST_LOG", "off".to_owned()),
        ("HARK_MAX_STREAMS_PER_USER", "100000".to_owned()),
        ("HARK_SEND_BURST", "1000000".to_owned()),
        ("HARK_SEND_RATE_PER_SECOND", "1000000".to_owned()),
        ("HARK_ACCESS_TOKEN_TTL_SECONDS", "86400".to_owned()),
        ("HARK_DB_POOL_SIZE", "8".to_owned()),
        ("HARK_SHUTDOWN_GRACE_SECONDS", "1".to_owned()),
    ];
    let ports = [free_port(), free_port()];
    let mut processes = Vec::new();
    let mut apps = Vec::new();
    for port in ports {
        let (process, app) = spawn_process_on(port, &database_url, &env).await;
        processes.push(process);
        apps.push(app);
    }
    let urls = Arc::new(
        apps.iter()
            .map(|app| app.address.clone())
            .collect::<Vec<_>>(),
    );

    // One owner per room, who sends to it; every client of a room uses its token.
    apps[0].create_tenant("soak").await;
    let mut owners = Vec::new();
    for index in 0..rooms {
        let user = apps[index % 2]
            .register("soak", &format!("owner-{index}"))
            .await;
        let room = apps[0]
            .create_room(&user.token, &format!("room {index}"), "private")
            .await;
        owners.push((user.token, crate::helpers::id_of(&room)));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let mut held = Vec::new();
    let mut tasks = Vec::new();
    for index in 0..clients {
        let (token, room_id) = owners[index % rooms].clone();
        let state = Arc::new(Mutex::new(Held::default()));
        held.push((room_id.clone(), state.clone()));
        tasks.push(tokio::spawn(client(
            urls.clone(),
            token,
            room_id,
            index,
            state,
            stop.clone(),
        )));
    }
    // Every client subscribed before the traffic starts.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (_, state) in &held {
        while state.lock().await.subscribed_at.is_none() {
            assert!(Instant::now() < deadline, "every client subscribed in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("soak: {clients} clients subscribed to {rooms} rooms on two instances");

    let acked = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(AtomicU64::new(0));
    let traffic_stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(rooms as f64 / messages_per_second.max(1) as f64);
    let senders: Vec<_> = owners
        .iter()
        .map(|(token, room_id)| {
            tokio::spawn(sender(
                urls.clone(),
                token.clone(),
                room_id.clone(),
                interval,
                acked.clone(),
                traffic_stop.clone(),
                attempts.clone(),
            ))
        })
        .collect();

    // Faults on a schedule.
    let started = Instant::now();
    let admin_url = cluster.url("postgres");
    let (mut kills, mut terminated, mut restarted) = (0, 0, false);
    let mut next_kill = kill_every;
    let listener_at = seconds / 4;
    let restart_at = seconds / 2;
    let mut listener_done = false;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let elapsed = started.elapsed().as_secs();
        if elapsed >= next_kill {
            next_kill += kill_every;
            let victim = kills % 2;
            let pid = processes[victim].id().unwrap().to_string();
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap();
            drop(processes[victim].wait().await);
            let (process, _) = spawn_process_on(ports[victim], &database_url, &env).await;
            processes[victim] = process;
            kills += 1;
            println!("soak: t={elapsed}s killed and restarted instance {victim}");
        }
        if !listener_done && elapsed >= listener_at {
            listener_done = true;
            let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            terminated = admin
                .query(
                    "select pg_terminate_backend(pid) from pg_stat_activity \
                     where datname = 'hark_soak' and query ilike 'listen%'",
                    &[],
                )
                .await
                .unwrap()
                .len();
            println!("soak: t={elapsed}s terminated {terminated} LISTEN connections");
        }
        if !restarted && elapsed >= restart_at {
            restarted = true;
            // pg_ctl waits for the server: this worker thread blocks meanwhile.
            tokio::task::block_in_place(|| cluster.restart());
            println!("soak: t={elapsed}s restarted PostgreSQL");
        }
    }
    traffic_stop.store(true, Ordering::Relaxed);
    for sender in senders {
        drop(sender.await);
    }

    // The database's view: every room's events, and every message.
    let (db, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let last_seqs: BTreeMap<String, i64> = db
        .query("select id::text, last_seq from hark.rooms", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let stored: HashSet<String> = db
        .query("select id::text from hark.messages", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();

    // Let every client catch up, then check what each holds.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (room_id, state) in &held {
        let newest = last_seqs[room_id];
        loop {
            let caught_up = state.lock().await.seqs.last().copied() >= Some(newest);
            if caught_up || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "soak: clients caught up {:.1} s after the traffic stopped",
        60.0 - deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        drop(task.await);
    }
    let (mut events, mut repeats, mut connections, mut incomplete) = (0, 0, 0, Vec::new());
    for (room_id, state) in &held {
        let state = state.lock().await;
        let start = state.subscribed_at.unwrap();
        let expected: Vec<i64> = (start + 1..=last_seqs[room_id]).collect();
        if state.seqs != expected {
            let missing: Vec<i64> = expected
                .iter()
                .filter(|seq| state.seqs.binary_search(seq).is_err())
                .copied()
                .collect();
            incomplete.push(format!(
                "room {room_id}: held {} events from {start}, expected {} (up to {}); \
                 missing {missing:?}, last held {:?}, {} connections",
                state.seqs.len(),
                expected.len(),
                last_seqs[room_id],
                state.seqs.last(),
                state.connections
            ));
        }
        events += state.seqs.len();
        repeats += state.repeats;
        connections += state.connections;
    }
    let acked = acked.lock().await;
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    println!(
        "soak: {seconds} s, {clients} clients, {rooms} rooms; {} messages acknowledged \
         ({} send attempts), {} stored; {kills} instance kills, {terminated} LISTEN \
         connections terminated, PostgreSQL restarted: {restarted}; {events} events \
         held by clients ({repeats} repeats dropped, {connections} connections); \
         lost acknowledged: {}, clients with gaps: {}",
        acked.len(),
        attempts.load(Ordering::Relaxed),
        stored.len(),
        lost.len(),
        incomplete.len()
    );
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(incomplete.is_empty(), "{}", incomplete.join("\n"));
    assert!(!acked.is_empty() && kills > 0 && restarted);
    for mut process in processes {
        drop(process.kill().await);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
