//! The search scenario: a tenant with 1,000,000 messages in 1,000 rooms (written
//! straight into the local database, since sending them would take longer than the
//! measurement), and a caller who is a member of 100 of them. It prints the latency of
//! `GET /v1/search/messages` through the API, one search at a time, for a common word
//! (in about one message in ten), a rare one (a few dozen messages in all), a prefix,
//! two words and a word in a script written without spaces; and the size of the
//! search indexes per message.

use std::time::Instant;

use anyhow::Context as _;
use tokio_postgres::NoTls;

use crate::bench::{
    BenchArgs, Shape,
    fixtures::{checked, loaded, prepare},
    load::percentile,
    local::Local,
};

/// Rooms of the tenant.
const ROOMS: usize = 1_000;
/// Messages per room.
const MESSAGES_PER_ROOM: i64 = 1_000;
/// Searches per query.
const SEARCHES: usize = 200;

/// Words chat messages are made of; the first are the most frequent (a word's rank
/// is drawn log-uniformly, so frequency falls off about as in natural text).
const VOCABULARY: &str = "the to and a of you it is that in i for on this we be with have are not can \
    just do will so what at your but all was if get like about know out up one there they \
    time good think see when how now yes no ok thanks today tomorrow please need work team \
    call release deploy review check fix bug build test update new ticket customer design \
    plan week morning lunch coffee later sure great idea question answer problem issue done \
    ready start finish send file doc link page report data number price order account user \
    login server database cache queue event stream socket client api version branch merge \
    commit push pull request change feature roadmap sprint demo launch budget invoice \
    contract partner market sales support help thing place world night weekend holiday";

/// Runs the scenario on the local instances' database.
pub async fn run(local: &Local, args: &BenchArgs) -> anyhow::Result<()> {
    let targets = local.urls();
    let started = Instant::now();
    // Ten senders over 1,000 rooms: each is a member of every tenth room, 100 rooms.
    let shape = Shape {
        rooms: ROOMS,
        subscribers: 1,
        senders: 10,
        rate: None,
    };
    let fixture = prepare(&targets, args.operator_key.as_deref(), shape, true).await?;
    let searcher = fixture.senders.first().context("a searcher")?;
    let room_ids: Vec<uuid::Uuid> = fixture
        .rooms
        .iter()
        .map(|room| room.id.parse())
        .collect::<Result<_, _>>()?;
    println!(
        "fixture: {ROOMS} rooms, searcher in {} of them ({:.0} s)",
        searcher.rooms.len(),
        started.elapsed().as_secs_f64()
    );

    let (client, connection) = tokio_postgres::connect(&local.database_url, NoTls).await?;
    tokio::spawn(connection);
    let loading = Instant::now();
    // Every message of a room in one statement: seq 1..1000, bodies of eight words,
    // "meeting" in about one message in ten, "quokka" in one message in 20,000, a
    // Vietnamese and a Chinese sentence now and then.
    for chunk in room_ids.chunks(50) {
        client
            .execute(
                "insert into hark.messages (tenant_id, id, room_id, seq, sender_id, kind, body, created_at)
                 select r.tenant_id, hark_api.new_id(), r.id, s.seq, r.created_by, 'text',
                        array_to_string(array(
                            select ($3::text[])[floor(power(cardinality($3::text[]), random()))::int]
                            from generate_series(1, 8) w where w > s.seq * 0), ' ')
                        || case when random() < 0.1 then ' meeting' else '' end
                        || case when random() < 0.00005 then ' quokka' else '' end
                        || case when random() < 0.01 then ' hẹn gặp lại ngày mai' else '' end
                        || case when random() < 0.01 then ' 我们明天在北京见面' else '' end,
                        now() - (($2::bigint - s.seq) * interval '1 minute')
                 from hark.rooms r, generate_series(1, $2::bigint) as s(seq)
                 where r.id = any($1)",
                &[
                    &chunk,
                    &MESSAGES_PER_ROOM,
                    &VOCABULARY.split_whitespace().collect::<Vec<_>>(),
                ],
            )
            .await
            .context("loading messages")?;
    }
    loaded(&client, &room_ids, MESSAGES_PER_ROOM).await?;
    let row = client
        .query_one(
            "select count(*), pg_relation_size('hark.message_search_words_idx'),
                    pg_relation_size('hark.message_search_folded_idx'),
                    pg_table_size('hark.message_search')
             from hark.messages",
            &[],
        )
        .await?;
    let (count, words, trigrams, table): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let per_message = |bytes: i64| bytes as f64 / count.max(1) as f64;
    println!(
        "loaded {count} messages in {:.0} s; per message: word index {:.0} B, trigram index {:.0} B, search table {:.0} B",
        loading.elapsed().as_secs_f64(),
        per_message(words),
        per_message(trigrams),
        per_message(table)
    );

    let api = &fixture.api;
    for (label, query) in [
        ("common word", "meeting"),
        ("rare word", "quokka"),
        ("prefix", "meet"),
        ("two words", "release review"),
        ("Vietnamese, no diacritics", "hen gap"),
        ("Chinese", "北京"),
    ] {
        let mut micros = Vec::with_capacity(SEARCHES);
        let mut hits = 0;
        for _ in 0..SEARCHES {
            let sent = Instant::now();
            let page = checked(
                api.client
                    .get(format!("{}/v1/search/messages", api.base))
                    .query(&[("q", query)])
                    .bearer_auth(&searcher.token)
                    .send()
                    .await?,
                "searching",
            )
            .await?;
            micros.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
            hits = page["items"].as_array().map_or(0, Vec::len);
        }
        micros.sort_unstable();
        println!(
            "{label:>26} {query:<16} p50 {:>7.1} ms  p99 {:>7.1} ms  ({hits} hits on the first page)",
            percentile(&micros, 0.50),
            percentile(&micros, 0.99)
        );
    }
    Ok(())
}
