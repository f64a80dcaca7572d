//! Erasure: after a user is erased, no table holds their username, email, display
//! name or (when the tenant deletes erased users' messages) the words they wrote,
//! searched for in every column of every table; rooms' histories keep their seqs;
//! other members' messages stay; in the default mode their messages stay under a
//! nameless sender.

use serde_json::{Value, json};
use tokio_postgres::NoTls;

use crate::helpers::{Session, TestApp, id_of, spawn_app};

/// The tables of the schema with rows whose text (every column, as the row reads)
/// holds one of `needles`, ignoring case, as "table: needle".
async fn rows_holding(app: &TestApp, needles: &[&str]) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(&app.database_url, NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tables = client
        .query(
            "select table_name::text from information_schema.tables
             where table_schema = 'hark' and table_type = 'BASE TABLE' order by 1",
            &[],
        )
        .await
        .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let table: String = table.get(0);
        for needle in needles {
            let count: i64 = client
                .query_one(
                    &format!("select count(*) from hark.{table} t where strpos(lower(t::text), lower($1)) > 0"),
                    &[needle],
                )
                .await
                .unwrap()
                .get(0);
            if count > 0 {
                found.push(format!("{table}: {needle} ({count} rows)"));
            }
        }
    }
    found
}

/// A member with a display name in a room with the owner, where they write, edit,
/// reply, react, read, block, report and are mentioned and muted, with a webhook
/// endpoint recording it all.
async fn active_member(
    app: &TestApp,
    username: &str,
    words: &[&str],
) -> (Session, Session, String) {
    let owner = app.create_tenant("acme").await.owner;
    app.post(
        "/v1/webhooks",
        Some(&owner.token),
        json!({"url": "https://hooks.example.com/a", "event_types": ["*"]}),
    )
    .await
    .expect(201);
    let member = app.register("acme", username).await;
    app.patch(
        &format!("/v1/users/{}", member.user_id),
        &member.token,
        json!({"display_name": "Zed Quixote", "bio": "collector of rare maps"}),
    )
    .await
    .expect(200);
    let room = id_of(&app.create_room(&owner.token, "lobby", "private").await);
    app.add_member(&owner.token, &room, &member.user_id).await;
    let hello = app.send(&owner.token, &room, "hello all").await;
    let messages = format!("/v1/rooms/{room}/messages");
    let first = app.send(&member.token, &room, words[0]).await;
    app.patch(
        &format!("{messages}/{}", id_of(&first)),
        &member.token,
        json!({"body": words[1]}),
    )
    .await
    .expect(200);
    app.post(
        &messages,
        Some(&member.token),
        json!({"body": words[2], "parent_id": hello["id"]}),
    )
    .await
    .expect(201);
    app.post(
        &format!("{messages}/{}/reactions", id_of(&hello)),
        Some(&member.token),
        json!({"emoji": "👋"}),
    )
    .await
    .expect(200);
    app.post(
        &messages,
        Some(&owner.token),
        json!({"body": "see this", "mentions": [member.user_id]}),
    )
    .await
    .expect(201);
    app.post(
        &format!("/v1/rooms/{room}/read"),
        Some(&member.token),
        json!({"seq": 4}),
    )
    .await;
    app.post(
        "/v1/reports",
        Some(&member.token),
        json!({"room_id": room, "message_id": hello["id"], "reason": "spam"}),
    )
    .await
    .expect(201);
    app.post(
        &format!("/v1/rooms/{room}/mutes"),
        Some(&owner.token),
        json!({"user_id": member.user_id, "reason": "flooding"}),
    )
    .await
    .expect(200);
    app.post(
        "/v1/users/me/blocks",
        Some(&member.token),
        json!({"user_id": owner.user_id}),
    )
    .await
    .expect(200);
    // The webhook outbox is fanned out into deliveries in the background.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    (owner, member, room)
}

fn seqs(history: &Value) -> Vec<i64> {
    let mut seqs: Vec<i64> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs
}

#[tokio::test]
async fn an_erased_user_leaves_no_name_email_or_words_in_any_table_and_history_keeps_its_seqs() {
    let app = spawn_app().await;
    let words = ["quixotic-alpha", "quixotic-beta", "quixotic-gamma"];
    let (owner, member, room) = active_member(&app, "zanzibar", &words).await;
    app.patch(
        "/v1/tenant",
        &owner.token,
        json!({"erasure_mode": "delete"}),
    )
    .await
    .expect(200);
    // An export of their data is a copy too.
    app.post(
        &format!("/v1/users/{}/export", member.user_id),
        Some(&member.token),
        json!({}),
    )
    .await
    .expect(202);
    crate::exports::ready_export(&app, &member, &member.user_id).await;
    let needles = [
        "zanzibar",
        "zanzibar@acme.example",
        "Zed Quixote",
        "rare maps",
        "quixotic",
    ];
    let before = rows_holding(&app, &needles).await;
    println!("before the erasure: {before:?}");
    assert!(before.len() >= 8, "{before:?}");
    let history = format!("/v1/rooms/{room}/messages");
    let seqs_before = seqs(&app.get(&history, &owner.token).await.expect(200));

    let erased = app
        .post(
            &format!("/v1/users/{}/erase", member.user_id),
            Some(&owner.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(erased["mode"], "delete");
    assert_eq!(erased["messages"], 2);

    let after = rows_holding(&app, &needles).await;
    assert!(after.is_empty(), "left after the erasure: {after:?}");
    let history = app.get(&history, &owner.token).await.expect(200);
    assert_eq!(seqs(&history), seqs_before, "the history keeps every seq");
    let bodies: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["deleted"] == false)
        .map(|message| message["body"].as_str().unwrap())
        .collect();
    assert!(
        bodies.contains(&"hello all") && bodies.contains(&"see this"),
        "{bodies:?}"
    );
    app.get("/v1/users/me", &member.token)
        .await
        .expect_error(401, "token_revoked");
    app.post(
        &format!("/v1/users/{}/erase", member.user_id),
        Some(&owner.token),
        json!({}),
    )
    .await
    .expect_error(404, "user_not_found");
}

#[tokio::test]
async fn by_default_an_erased_users_messages_stay_under_a_sender_with_no_name() {
    let app = spawn_app().await;
    let words = ["plain words one", "plain words two", "plain words three"];
    let (owner, member, room) = active_member(&app, "xylophonist", &words).await;
    // The user asks for it themselves.
    let erased = app
        .post(
            &format!("/v1/users/{}/erase", member.user_id),
            Some(&member.token),
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(erased["mode"], "anonymise");
    let after = rows_holding(&app, &["xylophonist", "Zed Quixote", "rare maps"]).await;
    assert!(after.is_empty(), "left after the erasure: {after:?}");
    let history = app
        .get(&format!("/v1/rooms/{room}/messages"), &owner.token)
        .await
        .expect(200);
    // The main timeline holds the edited message (the thread reply is in its thread).
    let theirs = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|message| message["body"] == "plain words two")
        .expect("the message stays");
    assert!(
        theirs["sender"]["username"]
            .as_str()
            .unwrap()
            .starts_with("erased-"),
        "{theirs}"
    );
    assert!(theirs["sender"]["display_name"].is_null());
    app.get("/v1/users/me", &member.token)
        .await
        .expect_error(401, "token_revoked");
}
