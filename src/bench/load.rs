//! A load run: subscribers on every instance, senders at a rate or as fast as they
//! can, and the tally of what arrived, when, and in which order.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::{
    connect_async_with_config,
    tungstenite::{Message, client::IntoClientRequest},
};

use crate::bench::{BenchArgs, Shape, baseline::Baseline, fixtures::Fixture};

/// Shared counters of a run.
#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    /// Send-to-ack times of WebSocket sends: the ack leaves once the write committed,
    /// so the rest of send-to-delivery is the notification's way to the subscriber.
    acks_us: std::sync::Mutex<Vec<u32>>,
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
}

/// The figures of a run.
pub struct Report {
    seconds: f64,
    accepted: u64,
    refused: u64,
    delivered: u64,
    expected: u64,
    duplicated: u64,
    reordered: u64,
    latencies_us: Vec<u32>,
    acks_us: Vec<u32>,
    transport: &'static str,
    /// PostgreSQL's CPU time during the load, when the database runs on this machine.
    pub postgres_cpu: Option<Duration>,
}

/// The value at `fraction` of sorted microseconds, in milliseconds.
pub fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

impl Report {
    /// Messages accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Messages accepted per second.
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.seconds
    }

    /// Prints the figures, with ratios to the baseline of the same run.
    pub fn print(&self, baseline: Option<&Baseline>) {
        let accepted_rate = self.accepted as f64 / self.seconds;
        let delivered_rate = self.delivered as f64 / self.seconds;
        let lost = self.expected.saturating_sub(self.delivered);
        println!();
        println!("| figure | value |");
        println!("| --- | --- |");
        println!("| senders' transport | {} |", self.transport);
        println!(
            "| messages accepted | {} in {:.1} s = {:.0} /s |",
            self.accepted, self.seconds, accepted_rate
        );
        println!("| sends refused | {} |", self.refused);
        println!(
            "| events delivered | {} = {:.0} /s |",
            self.delivered, delivered_rate
        );
        println!(
            "| latency send→delivery | p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms |",
            percentile(&self.latencies_us, 0.50),
            percentile(&self.latencies_us, 0.90),
            percentile(&self.latencies_us, 0.99),
            percentile(&self.latencies_us, 1.0)
        );
        if !self.acks_us.is_empty() {
            println!(
                "| latency send→ack (committed) | p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms |",
                percentile(&self.acks_us, 0.50),
                percentile(&self.acks_us, 0.90),
                percentile(&self.acks_us, 0.99)
            );
        }
        println!(
            "| lost / duplicated / out of order | {lost} / {} / {} |",
            self.duplicated, self.reordered
        );
        if let Some(cpu) = self.postgres_cpu {
            let per_message = cpu.div_f64(self.accepted.max(1) as f64);
            let versus = baseline
                .and_then(|baseline| baseline.insert_cpu_per_row)
                .map(|per_row| {
                    format!(
                        " (pgbench plain INSERT: {:.0} µs per row; Hark = {:.2}×)",
                        per_row.as_secs_f64() * 1e6,
                        per_message.as_secs_f64() / per_row.as_secs_f64().max(1e-9)
                    )
                })
                .unwrap_or_default();
            println!(
                "| PostgreSQL CPU per accepted message | {:.0} µs{versus} |",
                per_message.as_secs_f64() * 1e6
            );
        }
        if let Some(baseline) = baseline {
            println!(
                "| pgbench plain INSERT, 16 clients | {:.0} /s (Hark accepted = {:.2}×) |",
                baseline.insert_tps,
                accepted_rate / baseline.insert_tps
            );
            println!(
                "| pgbench INSERT + NOTIFY, 16 clients | {:.0} /s (Hark accepted = {:.2}×) |",
                baseline.notify_tps,
                accepted_rate / baseline.notify_tps
            );
        }
    }
}

/// Nanoseconds since the run's start, written into each message body.
fn stamp(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs the load against the prepared fixture.
pub async fn run(
    targets: &[String],
    fixture: &Fixture,
    shape: Shape,
    args: &BenchArgs,
) -> anyhow::Result<Report> {
    let start = Instant::now();
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let accepted_per_room: Arc<Vec<AtomicU64>> = Arc::new(
        (0..fixture.rooms.len())
            .map(|_| AtomicU64::new(0))
            .collect(),
    );

    // Subscribers, alternating between instances.
    let mut subscriptions = Vec::new();
    let mut slot = 0usize;
    for room in &fixture.rooms {
        for token in &room.subscriber_tokens {
            subscriptions.push((
                targets[slot % targets.len()].clone(),
                token.clone(),
                room.id.clone(),
            ));
            slot += 1;
        }
    }
    let total_subscribers = subscriptions.len();
    let opened: Vec<anyhow::Result<Subscription>> = stream::iter(
        subscriptions
            .into_iter()
            .map(|(target, token, room_id)| async move {
                Subscription::open(&target, &token, &room_id).await
            }),
    )
    .buffer_unordered(64)
    .collect()
    .await;
    let mut readers = Vec::new();
    for subscription in opened {
        let subscription = subscription?;
        readers.push(tokio::spawn(subscription.read(
            start,
            counters.clone(),
            stop.clone(),
        )));
    }
    println!(
        "{total_subscribers} subscribers ready; {} senders start for {} s",
        fixture.senders.len(),
        args.duration
    );

    // Senders.
    let per_sender_rate = shape
        .rate
        .map(|rate| rate / fixture.senders.len().max(1) as f64);
    let load_start = Instant::now();
    let deadline = load_start + Duration::from_secs(args.duration);
    let mut senders = Vec::new();
    for (index, sender) in fixture.senders.iter().enumerate() {
        let target = targets[index % targets.len()].clone();
        let rooms: Vec<(usize, String)> = sender
            .rooms
            .iter()
            .map(|room| (*room, fixture.rooms[*room].id.clone()))
            .collect();
        let sending = Sending {
            target,
            token: sender.token.clone(),
            rooms,
            rate: per_sender_rate,
            inflight: args.inflight.max(1),
            deadline,
            start,
            counters: counters.clone(),
            accepted_per_room: accepted_per_room.clone(),
            sender: index,
            phase: index as f64 / fixture.senders.len().max(1) as f64,
        };
        senders.push(if args.rest {
            tokio::spawn(sending.over_rest())
        } else {
            tokio::spawn(sending.over_websocket())
        });
    }

    // Progress, once a second.
    let progress_counters = counters.clone();
    let progress = tokio::spawn(async move {
        let mut previous = (0, 0);
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.tick().await;
        for second in 1.. {
            ticks.tick().await;
            let now = (
                progress_counters.accepted.load(Ordering::Relaxed),
                progress_counters.delivered.load(Ordering::Relaxed),
            );
            eprintln!(
                "[{second:>3} s] accepted {:>7} /s   delivered {:>8} /s",
                now.0 - previous.0,
                now.1 - previous.1
            );
            previous = now;
        }
    });

    for sender in senders {
        sender.await.context("a sender failed")??;
    }
    let seconds = load_start.elapsed().as_secs_f64();
    let expected: u64 = accepted_per_room
        .iter()
        .zip(&fixture.rooms)
        .map(|(accepted, room)| {
            accepted.load(Ordering::Relaxed) * room.subscriber_tokens.len() as u64
        })
        .sum();
    // Let the last events arrive.
    let drain_until = Instant::now() + Duration::from_secs(10);
    while counters.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let mut latencies_us = Vec::new();
    for reader in readers {
        if let Ok(seen) = reader.await {
            latencies_us.extend(seen.latencies_us);
        }
    }
    latencies_us.sort_unstable();
    let mut acks_us = std::mem::take(
        &mut *counters
            .acks_us
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    acks_us.sort_unstable();
    Ok(Report {
        seconds,
        accepted: counters.accepted.load(Ordering::Relaxed),
        refused: counters.refused.load(Ordering::Relaxed),
        delivered: counters.delivered.load(Ordering::Relaxed),
        expected,
        duplicated: counters.duplicated.load(Ordering::Relaxed),
        reordered: counters.reordered.load(Ordering::Relaxed),
        latencies_us,
        acks_us,
        transport: if args.rest { "REST" } else { "WebSocket" },
        postgres_cpu: None,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens an authenticated WebSocket to an instance.
pub async fn open_socket(target: &str, token: &str) -> anyhow::Result<Socket> {
    let url = format!("{}/v1/ws", target.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (socket, _) = connect_async_with_config(request, None, true)
        .await
        .context("could not open a WebSocket")?;
    Ok(socket)
}

/// The fields of a server frame that the tally reads.
#[derive(serde::Deserialize)]
struct EventFields<'a> {
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    seq: Option<i64>,
    #[serde(borrow)]
    data: Option<EventData<'a>>,
}

#[derive(serde::Deserialize)]
struct EventData<'a> {
    #[serde(borrow)]
    body: Option<std::borrow::Cow<'a, str>>,
}

/// One subscriber's socket, subscribed to one room.
struct Subscription {
    socket: Socket,
    last_seq: i64,
}

impl Subscription {
    async fn open(target: &str, token: &str, room_id: &str) -> anyhow::Result<Self> {
        let mut socket = open_socket(target, token).await?;
        socket
            .send(Message::Text(
                json!({"op": "subscribe", "ref": "s", "room_id": room_id})
                    .to_string()
                    .into(),
            ))
            .await?;
        while let Some(message) = socket.next().await {
            if let Message::Text(text) = message? {
                let frame: Value = serde_json::from_str(text.as_str())?;
                if frame["ref"] == "s" {
                    anyhow::ensure!(frame["op"] == "ack", "subscribe refused: {frame}");
                    let last_seq = frame["result"]["seq"].as_i64().context("a seq")?;
                    return Ok(Self { socket, last_seq });
                }
            }
        }
        anyhow::bail!("the socket closed while subscribing")
    }

    async fn read(
        mut self,
        start: Instant,
        counters: Arc<Counters>,
        stop: Arc<AtomicBool>,
    ) -> Seen {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let Ok(next) =
                tokio::time::timeout(Duration::from_millis(200), self.socket.next()).await
            else {
                continue;
            };
            // Pings (the server's, on a socket idle while the others subscribe) are
            // answered by the library; only a close or an error ends the subscriber.
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
                )) => {
                    continue;
                }
                _ => break,
            };
            // Only the fields the tally needs are read, so that the bench spends its
            // share of the machine on sockets rather than on JSON.
            let Ok(frame) = serde_json::from_str::<EventFields<'_>>(text.as_str()) else {
                continue;
            };
            if frame.op != "event" || frame.kind.as_deref() != Some("message.created") {
                continue;
            }
            let seq = frame.seq.unwrap_or_default();
            if seq <= self.last_seq {
                counters.duplicated.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if seq > self.last_seq + 1 {
                counters.reordered.fetch_add(1, Ordering::Relaxed);
            }
            self.last_seq = seq;
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            let sent_at = frame.data.and_then(|data| data.body).and_then(|body| {
                body.rsplit(':')
                    .next()
                    .and_then(|nanos| nanos.parse::<u64>().ok())
            });
            if let Some(sent_at) = sent_at {
                let micros = stamp(start).saturating_sub(sent_at) / 1000;
                seen.latencies_us
                    .push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
        }
        let _ = self.socket.close(None).await;
        seen
    }
}

/// One sender's work.
struct Sending {
    target: String,
    token: String,
    rooms: Vec<(usize, String)>,
    rate: Option<f64>,
    inflight: usize,
    deadline: Instant,
    start: Instant,
    counters: Arc<Counters>,
    accepted_per_room: Arc<Vec<AtomicU64>>,
    sender: usize,
    /// Where in each period this sender's sends fall, from 0 to 1.
    phase: f64,
}

impl Sending {
    /// Waits for the next send's turn: at the rate, or at once.
    async fn pace(&self, ticker: &mut Option<tokio::time::Interval>) {
        if let Some(ticker) = ticker {
            ticker.tick().await;
        }
    }

    /// A ticker at the sender's rate, its phase offset by the sender's place among all
    /// senders, so that their sends arrive spread out as real clients' do, not in
    /// bursts of one per sender.
    fn ticker(&self) -> Option<tokio::time::Interval> {
        self.rate.map(|rate| {
            let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
            let phase = period.mul_f64(self.phase);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            ticker
        })
    }

    async fn over_websocket(self) -> anyhow::Result<()> {
        let socket = open_socket(&self.target, &self.token).await?;
        let (mut sink, mut frames) = socket.split();
        let permits = Arc::new(Semaphore::new(self.inflight));
        let pending: Arc<std::sync::Mutex<HashMap<u64, usize>>> = Arc::default();
        let counters = self.counters.clone();
        let accepted_per_room = self.accepted_per_room.clone();
        let acks_pending = pending.clone();
        let ack_permits = permits.clone();
        let start = self.start;
        let acks = tokio::spawn(async move {
            while let Some(Ok(message)) = frames.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                let Some(reference) = frame["ref"]
                    .as_str()
                    .and_then(|reference| reference.parse::<u64>().ok())
                else {
                    continue;
                };
                let room = acks_pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&reference);
                if frame["op"] == "ack" {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    let sent_at = frame["result"]["body"].as_str().and_then(|body| {
                        body.rsplit(':')
                            .next()
                            .and_then(|nanos| nanos.parse::<u64>().ok())
                    });
                    if let Some(sent_at) = sent_at {
                        let micros = stamp(start).saturating_sub(sent_at) / 1000;
                        counters
                            .acks_us
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    if let Some(room) = room {
                        accepted_per_room[room].fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                }
                ack_permits.add_permits(1);
            }
        });
        let mut ticker = self.ticker();
        let mut count: u64 = 0;
        while Instant::now() < self.deadline {
            self.pace(&mut ticker).await;
            let permit = permits.clone().acquire_owned().await?;
            permit.forget();
            let (room_index, room_id) = &self.rooms[(count as usize) % self.rooms.len()];
            pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(count, *room_index);
            let body = format!("{}:{}:{}", self.sender, count, stamp(self.start));
            let frame =
                json!({"op": "send", "ref": count.to_string(), "room_id": room_id, "body": body});
            sink.send(Message::Text(frame.to_string().into())).await?;
            count += 1;
        }
        // Wait for the answers still out.
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            permits.acquire_many(self.inflight as u32),
        )
        .await;
        acks.abort();
        let _ = sink.close().await;
        Ok(())
    }

    async fn over_rest(self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let permits = Arc::new(Semaphore::new(self.inflight));
        let mut ticker = self.ticker();
        let mut count: usize = 0;
        let mut tasks = Vec::new();
        while Instant::now() < self.deadline {
            self.pace(&mut ticker).await;
            let permit = permits.clone().acquire_owned().await?;
            let (room_index, room_id) = self.rooms[count % self.rooms.len()].clone();
            let request = client
                .post(format!("{}/v1/rooms/{room_id}/messages", self.target))
                .bearer_auth(&self.token)
                .json(&json!({"body": format!("{}:{}:{}", self.sender, count, stamp(self.start))}));
            let counters = self.counters.clone();
            let accepted_per_room = self.accepted_per_room.clone();
            tasks.push(tokio::spawn(async move {
                let accepted = request
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if accepted {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    accepted_per_room[room_index].fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            }));
            count += 1;
            if tasks.len() > 1024 {
                tasks.retain(|task| !task.is_finished());
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }
}
