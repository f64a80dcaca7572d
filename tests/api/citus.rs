//! Hark on a Citus cluster of the test's own (a coordinator and two workers): a
//! tenant's sends run on its worker, and, under faults a cluster has and a single
//! server has not, the worker holding a tenant restarted while its messages flow, and
//! the tenant's shards moved to the other worker while they flow. Every acknowledged message is stored once with its own seq,
//! and subscribers on two instances get exactly those, in order, once repeats are
//! dropped. These need the citus extension installed (`.ci/run` builds it), so they
//! run apart: `cargo test --test api citus:: -- --ignored`.

use std::time::Duration;

use crate::helpers::{OwnCitus, room_with_bob, spawn_on};
use crate::realtime::Flow;

#[tokio::test]
#[ignore = "needs the citus extension: cargo test --test api citus:: -- --ignored"]
async fn a_worker_restarted_while_messages_flow_loses_nothing() {
    let cluster = OwnCitus::start(25_450).await;
    let a = spawn_on(cluster.coordinator_url(), |_| {}).await;
    let b = spawn_on(cluster.coordinator_url(), |_| {}).await;
    let (owner, bob, room_id) = room_with_bob(&a).await;
    let (_, worker) = cluster.placement_of(&owner.tenant_id).await;
    let flow = Flow::start(
        &[&a, &b],
        &owner,
        &bob,
        &room_id,
        100,
        Duration::from_millis(20),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.nodes[worker].restart();
    println!("the tenant's worker restarted while messages flowed");
    flow.check_stored(&a, &bob, &room_id).await;
}

#[tokio::test]
#[ignore = "needs the citus extension: cargo test --test api citus:: -- --ignored"]
async fn a_tenants_shard_moved_while_messages_flow_loses_nothing() {
    let cluster = OwnCitus::start(25_455).await;
    let a = spawn_on(cluster.coordinator_url(), |_| {}).await;
    let b = spawn_on(cluster.coordinator_url(), |_| {}).await;
    let (owner, bob, room_id) = room_with_bob(&a).await;
    let (shard, from) = cluster.placement_of(&owner.tenant_id).await;
    let to = if from == 1 { 2 } else { 1 };
    let flow = Flow::start(
        &[&a, &b],
        &owner,
        &bob,
        &room_id,
        150,
        Duration::from_millis(20),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Every table's shard of the tenant moves with it (one colocation group). Writes
    // to it wait while it is copied (block_writes): logical replication, which would
    // let them go on, cannot write into tables under row-level security on
    // PostgreSQL 15.
    cluster
        .coordinator()
        .await
        .execute(
            "select citus_move_shard_placement($1, '127.0.0.1', $2, '127.0.0.1', $3,
                                               shard_transfer_mode => 'block_writes')",
            &[
                &shard,
                &i32::from(cluster.nodes[from].port),
                &i32::from(cluster.nodes[to].port),
            ],
        )
        .await
        .expect("the shard moves");
    let (_, now_on) = cluster.placement_of(&owner.tenant_id).await;
    assert_eq!(now_on, to, "the tenant's rows are on the other worker");
    println!("the tenant's shards moved to the other worker while messages flowed");
    flow.check_stored(&a, &bob, &room_id).await;
}

#[tokio::test]
#[ignore = "needs the citus extension: cargo test --test api citus:: -- --ignored"]
async fn a_tenants_sends_run_on_its_worker_and_notify_from_there() {
    let cluster = OwnCitus::start(25_460).await;
    let app = spawn_on(cluster.coordinator_url(), |_| {}).await;
    let (owner, _bob, room_id) = room_with_bob(&app).await;
    let (_, worker) = cluster.placement_of(&owner.tenant_id).await;
    let other = if worker == 1 { 2 } else { 1 };
    let channel = format!("hark_room_{}", room_id.replace('-', ""));
    let (_on_worker, mut from_worker) = cluster.listen(worker, &channel).await;
    let (_on_coordinator, mut from_coordinator) = cluster.listen(0, &channel).await;
    let (_on_other, mut from_other) = cluster.listen(other, &channel).await;

    // Alone (hark_api.message_send), then several at once (a batch of the tenant).
    app.send(&owner.token, &room_id, "alone").await;
    let bodies: Vec<String> = (0..5).map(|index| format!("together {index}")).collect();
    let sends = bodies
        .iter()
        .map(|body| app.send(&owner.token, &room_id, body));
    futures_util::future::join_all(sends).await;

    let mut seqs = Vec::new();
    while seqs.len() < 6 {
        let payload = tokio::time::timeout(Duration::from_secs(10), from_worker.recv())
            .await
            .expect("the tenant's worker notifies")
            .expect("a notification");
        let notice: serde_json::Value = serde_json::from_str(&payload).expect("JSON");
        for event in notice["events"].as_array().into_iter().flatten() {
            seqs.push(event["seq"].as_i64().expect("a seq"));
        }
    }
    println!("the tenant's worker sent the room's notifications, seqs {seqs:?}");
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "in order: {seqs:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        from_coordinator.try_recv().is_err(),
        "the coordinator ran none of the sends"
    );
    assert!(from_other.try_recv().is_err(), "nor did the other worker");
}
