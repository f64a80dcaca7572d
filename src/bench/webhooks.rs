//! The webhooks scenario: what webhooks cost the write path, how fast a backlog is
//! delivered, and how soon an event reaches an endpoint. Two local instances serve the
//! chat scenario and deliver nothing (`HARK_WEBHOOK_CONCURRENCY=0`); a receiver of
//! the bench's own, on this machine, takes the deliveries. In order: the chat
//! scenario without endpoints; with two endpoints subscribed to every message while
//! nobody delivers (the outbox's cost to the write path alone); the backlog's delivery
//! by a third instance; the chat scenario while that instance delivers (everything on
//! this machine's cores at once); the latency scenario's fixed rate while it
//! delivers (event-to-delivery latency); and the chat scenario without endpoints again.
//! The two runs without endpoints are the baseline of the others.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use poem::{
    EndpointExt, Route, Server, handler, http::StatusCode, listener::TcpAcceptor, web::Data,
};
use serde_json::{Value, json};

use crate::bench::{
    BenchArgs, Shape,
    fixtures::{Fixture, checked, prepare},
    load::{self, percentile},
    local::{Local, wait_ready},
};

/// The most the bench waits for deliveries to arrive.
const PATIENCE: Duration = Duration::from_secs(600);

/// What the receiver saw: how many deliveries, how long after its event each arrived.
#[derive(Default)]
struct Tally {
    deliveries: u64,
    lags_us: Vec<u32>,
}

#[handler]
fn receive(tally: Data<&Arc<Mutex<Tally>>>, body: String) -> StatusCode {
    let arrived = Utc::now();
    let event_at = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|payload| {
            payload["timestamp"]
                .as_str()
                .and_then(|at| at.parse::<DateTime<Utc>>().ok())
        });
    if let Ok(mut tally) = tally.lock() {
        tally.deliveries += 1;
        if let Some(at) = event_at {
            let lag = (arrived - at).num_microseconds().unwrap_or(0).max(0);
            tally.lags_us.push(u32::try_from(lag).unwrap_or(u32::MAX));
        }
    }
    StatusCode::NO_CONTENT
}

/// The receiver's tally, shared with its handler.
#[derive(Clone)]
struct Receiver {
    url: String,
    tally: Arc<Mutex<Tally>>,
}

impl Receiver {
    fn deliveries(&self) -> u64 {
        self.tally.lock().map(|tally| tally.deliveries).unwrap_or(0)
    }

    /// Waits until `count` deliveries arrived in all; answers how long it took.
    async fn wait_for(&self, count: u64) -> Duration {
        let started = Instant::now();
        while self.deliveries() < count && started.elapsed() < PATIENCE {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// The lags recorded since the last call, sorted, and forgets them.
    fn take_lags(&self) -> Vec<u32> {
        let mut lags = self
            .tally
            .lock()
            .map(|mut tally| std::mem::take(&mut tally.lags_us))
            .unwrap_or_default();
        lags.sort_unstable();
        lags
    }
}

/// Runs the scenario on local instances that deliver nothing themselves.
pub async fn run(local: &Local, args: &BenchArgs, shape: Shape) -> anyhow::Result<()> {
    let targets = local.urls();
    let fixture = prepare(&targets, args.operator_key.as_deref(), shape, true).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = Receiver {
        url: format!("http://{}/hook", listener.local_addr()?),
        tally: Arc::default(),
    };
    let app = Route::new()
        .at("/hook", poem::post(receive))
        .data(receiver.tally.clone());
    let server =
        tokio::spawn(Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?).run(app));

    let before = load::run(&targets, &fixture, shape, args).await?;
    let webhooks = subscribe(&fixture, &receiver.url, 2).await?;
    let queued = load::run(&targets, &fixture, shape, args).await?;

    let (mut deliverer, port) = local
        .spawn_instance_with(&[("HARK_WEBHOOK_CONCURRENCY", "32".to_owned())])
        .await?;
    wait_ready(port, Duration::from_secs(30)).await?;
    let backlog = 2 * queued.accepted();
    let drained_in = receiver.wait_for(backlog).await;
    receiver.take_lags();

    let delivering = load::run(&targets, &fixture, shape, args).await?;
    let expected = backlog + 2 * delivering.accepted();
    receiver.wait_for(expected).await;
    let all_at_once = receiver.take_lags();

    let paced_shape = Shape {
        rate: Some(args.rate.unwrap_or(500.0)),
        ..shape
    };
    let paced = load::run(&targets, &fixture, paced_shape, args).await?;
    receiver.wait_for(expected + 2 * paced.accepted()).await;
    let paced_lags = receiver.take_lags();

    disable(&fixture, &webhooks).await?;
    let after = load::run(&targets, &fixture, shape, args).await?;
    deliverer.kill().await?;
    server.abort();

    let baseline = f64::midpoint(before.accepted_per_second(), after.accepted_per_second());
    let ratio = |report: &load::Report| report.accepted_per_second() / baseline;
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| chat without endpoints | {:.0} msg/s before, {:.0} msg/s after |",
        before.accepted_per_second(),
        after.accepted_per_second()
    );
    println!(
        "| chat with two endpoints, deliveries queued (the outbox's cost to the write path) | {:.0} msg/s = {:.2} × without |",
        queued.accepted_per_second(),
        ratio(&queued)
    );
    println!(
        "| the backlog delivered by one instance | {} deliveries in {:.1} s = {:.0} /s |",
        backlog,
        drained_in.as_secs_f64(),
        backlog as f64 / drained_in.as_secs_f64().max(0.001)
    );
    println!(
        "| chat with two endpoints while a third instance delivers (one machine) | {:.0} msg/s = {:.2} × without; event → delivery p50 {:.0} ms, p99 {:.0} ms |",
        delivering.accepted_per_second(),
        ratio(&delivering),
        percentile(&all_at_once, 0.50),
        percentile(&all_at_once, 0.99)
    );
    println!(
        "| event → delivery at {:.0} msg/s | p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} deliveries) |",
        paced.accepted_per_second(),
        percentile(&paced_lags, 0.50),
        percentile(&paced_lags, 0.90),
        percentile(&paced_lags, 0.99),
        percentile(&paced_lags, 1.0),
        paced_lags.len()
    );
    Ok(())
}

/// Creates `count` endpoints for every message; answers their ids.
async fn subscribe(fixture: &Fixture, url: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let api = &fixture.api;
    let mut ids = Vec::new();
    for _ in 0..count {
        let created = checked(
            api.client
                .post(format!("{}/v1/webhooks", api.base))
                .bearer_auth(&api.owner_token)
                .json(&json!({"url": url, "event_types": ["message.created"]}))
                .send()
                .await?,
            "creating a webhook",
        )
        .await?;
        ids.push(
            created["webhook"]["id"]
                .as_str()
                .context("a webhook id")?
                .to_owned(),
        );
    }
    Ok(ids)
}

/// Disables the endpoints: the run after them has none.
async fn disable(fixture: &Fixture, ids: &[String]) -> anyhow::Result<()> {
    let api = &fixture.api;
    for id in ids {
        checked(
            api.client
                .patch(format!("{}/v1/webhooks/{id}", api.base))
                .bearer_auth(&api.owner_token)
                .json(&json!({"enabled": false}))
                .send()
                .await?,
            "disabling a webhook",
        )
        .await?;
    }
    Ok(())
}
