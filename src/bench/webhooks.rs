//! The webhooks scenario: what delivering webhooks costs the write path, and how fast
//! and how soon deliveries arrive. The chat scenario runs without endpoints, then with
//! two endpoints subscribed to every message (a receiver of the bench's own, on this
//! machine) until both have every message, then without again (the endpoints
//! disabled); the two runs without are the baseline of the run with. It prints
//! deliveries per second and the time from each event to its arrival.

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
    fixtures::{Fixture, checked},
    load::{self, percentile},
};

/// What the receiver saw: how many deliveries and how long after its event each
/// arrived, and when the last one did.
#[derive(Default)]
struct Tally {
    deliveries: u64,
    lags_us: Vec<u32>,
    last: Option<Instant>,
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
        tally.last = Some(Instant::now());
        if let Some(at) = event_at {
            let lag = (arrived - at).num_microseconds().unwrap_or(0).max(0);
            tally.lags_us.push(u32::try_from(lag).unwrap_or(u32::MAX));
        }
    }
    StatusCode::NO_CONTENT
}

/// Runs the scenario on the targets (instances that allow local receivers).
pub async fn run(targets: &[String], args: &BenchArgs, shape: Shape) -> anyhow::Result<()> {
    let fixture =
        crate::bench::fixtures::prepare(targets, args.operator_key.as_deref(), shape, true).await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = Route::new()
        .at("/hook", poem::post(receive))
        .data(tally.clone());
    let server =
        tokio::spawn(Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?).run(app));

    let before = load::run(targets, &fixture, shape, args).await?;
    let webhooks = subscribe(&fixture, &url, 2).await?;
    let started = Instant::now();
    let with = load::run(targets, &fixture, shape, args).await?;
    let expected = 2 * with.accepted();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let delivered = tally.lock().map(|tally| tally.deliveries).unwrap_or(0);
        if delivered >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    disable(&fixture, &webhooks).await?;
    let after = load::run(targets, &fixture, shape, args).await?;
    server.abort();
    let mut tally = tally
        .lock()
        .map_err(|_| anyhow::anyhow!("the receiver's tally is poisoned"))?;
    tally.lags_us.sort_unstable();
    let span = tally
        .last
        .map_or(Duration::ZERO, |last| last.duration_since(started));
    let baseline = f64::midpoint(before.accepted_per_second(), after.accepted_per_second());
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| chat, messages accepted without endpoints | {:.0} /s before, {:.0} /s after |",
        before.accepted_per_second(),
        after.accepted_per_second()
    );
    println!(
        "| chat, messages accepted with two endpoints | {:.0} /s = {:.2} × the runs without |",
        with.accepted_per_second(),
        with.accepted_per_second() / baseline
    );
    println!(
        "| deliveries | {} of {} expected in {:.1} s = {:.0} /s (from the start of the run with endpoints to the last delivery) |",
        tally.deliveries,
        expected,
        span.as_secs_f64(),
        tally.deliveries as f64 / span.as_secs_f64().max(0.001)
    );
    println!(
        "| event → delivery | p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        percentile(&tally.lags_us, 0.50),
        percentile(&tally.lags_us, 0.90),
        percentile(&tally.lags_us, 0.99),
        percentile(&tally.lags_us, 1.0)
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
            "changing a webhook",
        )
        .await?;
    }
    Ok(())
}
