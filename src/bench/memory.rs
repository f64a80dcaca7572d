//! The memory and start-up scenarios: resident memory per idle WebSocket, and time
//! from process start to readiness.

use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt, stream};
use tokio_tungstenite::tungstenite::Message;

use crate::bench::{
    BenchArgs, Shape, fixtures,
    load::open_socket,
    local::{Local, wait_ready},
};

/// The resident memory of a process, in KiB.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Holds `--connections` idle WebSockets on the first instance and reports its
/// resident memory per connection.
pub async fn connections(
    targets: &[String],
    local: Option<&Local>,
    args: &BenchArgs,
) -> anyhow::Result<()> {
    let shape = Shape {
        rooms: 0,
        subscribers: 50,
        senders: 0,
        rate: None,
    };
    let fixture = fixtures::prepare(targets, args.operator_key.as_deref(), shape, false).await?;
    let tokens = &fixture.rooms[0].subscriber_tokens;
    let target = &targets[0];
    let pid = local.and_then(Local::first_pid);
    // A few connections first, so that one-time allocations are not counted.
    let mut warmup = Vec::new();
    for token in tokens.iter().take(10) {
        warmup.push(open_socket(target, token).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pid.and_then(resident_kib);
    let started = std::time::Instant::now();
    let sockets: Vec<_> = stream::iter(
        (0..args.connections).map(|index| open_socket(target, &tokens[index % tokens.len()])),
    )
    .buffer_unordered(128)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()
    .context("could not open every connection (raise `ulimit -n`?)")?;
    let opening = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = pid.and_then(resident_kib);
    // The connections are alive: a sample answers a ping.
    let mut sockets = sockets;
    let mut alive = 0;
    for socket in sockets.iter_mut().step_by((args.connections / 20).max(1)) {
        socket
            .send(Message::Text(r#"{"op":"ping","ref":"p"}"#.into()))
            .await?;
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
            && text.as_str().contains("pong")
        {
            alive += 1;
        }
    }
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| idle WebSockets held | {} (opened in {:.1} s) |",
        sockets.len(),
        opening.as_secs_f64()
    );
    println!("| sampled connections answering a ping | {alive} |");
    match (before, after) {
        (Some(before), Some(after)) => {
            let per_connection = (after.saturating_sub(before) as f64) / sockets.len() as f64;
            println!(
                "| instance resident memory | {:.1} MiB before, {:.1} MiB after |",
                before as f64 / 1024.0,
                after as f64 / 1024.0
            );
            println!("| resident memory per idle connection | {per_connection:.2} KiB |");
        }
        _ => println!(
            "| resident memory per idle connection | n/a (only measured for local instances) |"
        ),
    }
    drop(sockets);
    drop(warmup);
    Ok(())
}

/// Starts instances on the migrated database and times them to a ready `/readyz`.
pub async fn cold_start(local: &Local) -> anyhow::Result<()> {
    let mut times = Vec::new();
    let mut memory = Vec::new();
    for _ in 0..5 {
        let (mut child, port) = local.spawn_instance().await?;
        let ready = wait_ready(port, Duration::from_secs(30)).await?;
        times.push(ready);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(kib) = child.id().and_then(resident_kib) {
            memory.push(kib);
        }
        let _ = child.kill().await;
    }
    times.sort();
    memory.sort_unstable();
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| process start to ready /readyz | median {:.0} ms, max {:.0} ms (5 starts) |",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
    if !memory.is_empty() {
        println!(
            "| resident memory when idle | median {:.1} MiB, max {:.1} MiB |",
            memory[memory.len() / 2] as f64 / 1024.0,
            memory[memory.len() - 1] as f64 / 1024.0
        );
    }
    Ok(())
}
