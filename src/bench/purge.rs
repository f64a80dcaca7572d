//! The purge scenario: what purging a large deleted tenant does to the chat running
//! beside it. Two local instances serve the chat scenario's tenant; a second tenant
//! gets 500,000 messages in 200 rooms (written straight into the database, with their
//! search rows, as the search scenario does). The chat scenario runs once quietly,
//! then again right after the second tenant's owner deletes it, while the instances'
//! background purge removes its rows in `HARK_PURGE_BATCH` batches; the bench then
//! waits for the purge to finish and prints both runs and the purge's pace.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::NoTls;

use crate::bench::{
    BenchArgs, Shape,
    fixtures::{checked, loaded, prepare},
    load,
    local::Local,
};

/// Rooms of the doomed tenant.
const ROOMS: usize = 200;
/// Messages per room of the doomed tenant.
const MESSAGES_PER_ROOM: i64 = 2_500;
/// The most the bench waits for the purge to finish.
const PATIENCE: Duration = Duration::from_secs(900);

/// Runs the scenario on the local instances' database.
pub async fn run(local: &Local, args: &BenchArgs, shape: Shape) -> anyhow::Result<()> {
    let targets = local.urls();
    let chat = prepare(&targets, args.operator_key.as_deref(), shape, true).await?;
    let doomed_shape = Shape {
        rooms: ROOMS,
        subscribers: 1,
        senders: 1,
        rate: None,
    };
    let doomed = prepare(&targets, args.operator_key.as_deref(), doomed_shape, true).await?;
    let room_ids: Vec<uuid::Uuid> = doomed
        .rooms
        .iter()
        .map(|room| room.id.parse())
        .collect::<Result<_, _>>()?;

    let (client, connection) = tokio_postgres::connect(&local.database_url, NoTls).await?;
    tokio::spawn(connection);
    let loading = Instant::now();
    for chunk in room_ids.chunks(20) {
        client
            .execute(
                "insert into hark.messages (tenant_id, id, room_id, seq, sender_id, kind, body, created_at)
                 select r.tenant_id, hark_api.new_id(), r.id, s.seq, r.created_by, 'text',
                        'message ' || s.seq || ' of a tenant about to go', now()
                 from hark.rooms r, generate_series(1, $2::bigint) as s(seq)
                 where r.id = any($1)",
                &[&chunk, &MESSAGES_PER_ROOM],
            )
            .await
            .context("loading the doomed tenant's messages")?;
    }
    loaded(&client, &room_ids, MESSAGES_PER_ROOM).await?;
    let tenant_id: uuid::Uuid = client
        .query_one(
            "select tenant_id from hark.rooms where id = $1",
            &[&room_ids[0]],
        )
        .await?
        .get(0);
    let rows: i64 = client
        .query_one(
            "select (select count(*) from hark.messages where tenant_id = $1)
                    + (select count(*) from hark.message_search where tenant_id = $1)",
            &[&tenant_id],
        )
        .await?
        .get(0);
    println!(
        "doomed tenant: {rows} rows of messages and their search index in {ROOMS} rooms, loaded in {:.0} s",
        loading.elapsed().as_secs_f64()
    );

    let quiet = load::run(&targets, &chat, shape, args).await?;
    let api = &doomed.api;
    checked(
        api.client
            .delete(format!("{}/v1/tenant", api.base))
            .bearer_auth(&api.owner_token)
            .send()
            .await?,
        "deleting the doomed tenant",
    )
    .await?;
    let deleted = Instant::now();
    let purging = load::run(&targets, &chat, shape, args).await?;
    let purged_during_run: i64 = purged_rows(&client, tenant_id).await?.0;
    let finished = loop {
        let (purged, done) = purged_rows(&client, tenant_id).await?;
        if done {
            break (purged, deleted.elapsed());
        }
        anyhow::ensure!(
            deleted.elapsed() < PATIENCE,
            "the purge did not finish in {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!();
    println!("quiet:");
    quiet.print(None);
    println!();
    println!("while the tenant is purged:");
    purging.print(None);
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| chat while purging | {:.0} msg/s = {:.2} × quiet ({:.0} msg/s) |",
        purging.accepted_per_second(),
        purging.accepted_per_second() / quiet.accepted_per_second().max(1.0),
        quiet.accepted_per_second()
    );
    println!("| rows purged during the chat run | {purged_during_run} |");
    println!(
        "| the whole purge (rows it counts; the search rows go with their messages) | {} rows in {:.1} s = {:.0} rows/s |",
        finished.0,
        finished.1.as_secs_f64(),
        finished.0 as f64 / finished.1.as_secs_f64().max(0.001)
    );
    Ok(())
}

/// The rows purged of a deleted tenant so far, and whether the purge is finished.
async fn purged_rows(
    client: &tokio_postgres::Client,
    tenant_id: uuid::Uuid,
) -> anyhow::Result<(i64, bool)> {
    let row = client
        .query_one(
            "select purged_rows, purged_at is not null from hark.tenants where id = $1",
            &[&tenant_id],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}
