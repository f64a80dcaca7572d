//! Message search: over the rooms the caller may read and nothing else, in English,
//! Vietnamese (with and without diacritics), Cyrillic, Chinese and with emoji; edits
//! and deletions reach the index in their own transaction; filters, ranking, snippets
//! and paging; bad queries answered with stable codes.

use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, id_of, room_with_bob, spawn_app};

/// The search answer for `query` (already URL-encoded parameters after `q`).
async fn search(app: &TestApp, session: &Session, query: &str) -> Value {
    app.get(
        &format!("/v1/search/messages?q={}", urlencoding(query)),
        &session.token,
    )
    .await
    .expect(200)
}

/// The bodies found for `query`.
async fn found(app: &TestApp, session: &Session, query: &str) -> Vec<String> {
    search(app, session, query).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["message"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Percent-encodes a query parameter (everything but unreserved characters; `&` and
/// `=` inside the parameters given stay as they are).
fn urlencoding(text: &str) -> String {
    text.split('&')
        .map(|part| {
            part.bytes()
                .map(|byte| match byte {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'=' => {
                        (byte as char).to_string()
                    }
                    _ => format!("%{byte:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn words_are_found_in_every_script_whatever_their_case_and_diacritics() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    for body in [
        "Deploying the new release tonight 🚀",
        "Xin chào thế giới, hẹn gặp lại",
        "Привет, мир! Как дела?",
        "我们明天在北京见面",
        "unrelated chatter",
    ] {
        app.send(&owner.token, &room_id, body).await;
    }
    assert_eq!(
        found(&app, &bob, "deploy").await,
        ["Deploying the new release tonight 🚀"]
    );
    assert_eq!(
        found(&app, &bob, "RELEASE 🚀").await,
        ["Deploying the new release tonight 🚀"]
    );
    assert_eq!(
        found(&app, &bob, "thế giới").await,
        ["Xin chào thế giới, hẹn gặp lại"]
    );
    assert_eq!(
        found(&app, &bob, "the gioi").await,
        ["Xin chào thế giới, hẹn gặp lại"]
    );
    assert_eq!(
        found(&app, &bob, "HEN GAP").await,
        ["Xin chào thế giới, hẹn gặp lại"]
    );
    assert_eq!(found(&app, &bob, "мир").await, ["Привет, мир! Как дела?"]);
    assert_eq!(found(&app, &bob, "ПРИВ").await, ["Привет, мир! Как дела?"]);
    assert_eq!(found(&app, &bob, "北京").await, ["我们明天在北京见面"]);
    assert_eq!(found(&app, &bob, "明天在").await, ["我们明天在北京见面"]);
    // Inside a word, by the whole query as a substring.
    assert_eq!(
        found(&app, &bob, "ploying").await,
        ["Deploying the new release tonight 🚀"]
    );
    assert!(found(&app, &bob, "absent").await.is_empty());

    // The snippet marks what matched, as written.
    let hit = &search(&app, &bob, "the gioi").await["items"][0];
    let marked: Vec<&str> = hit["snippet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| run["highlight"] == true)
        .map(|run| run["text"].as_str().unwrap())
        .collect();
    assert_eq!(marked, ["thế", "giới"]);
    assert_eq!(hit["room"]["id"], room_id.as_str());
    assert!(hit["message"]["seq"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn search_never_finds_what_the_caller_may_not_read() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    app.send(&owner.token, &room_id, "secret plans in the shared room")
        .await;
    let private = id_of(
        &app.create_room(&owner.token, "owners only", "private")
            .await,
    );
    app.send(&owner.token, &private, "secret plans bob cannot see")
        .await;
    let foreign = app.create_tenant("other").await;
    let foreign_room = id_of(
        &app.create_room(&foreign.owner.token, "theirs", "private")
            .await,
    );
    app.send(
        &foreign.owner.token,
        &foreign_room,
        "secret plans of another tenant",
    )
    .await;

    assert_eq!(
        found(&app, &bob, "secret plans").await,
        ["secret plans in the shared room"]
    );
    assert_eq!(found(&app, &owner, "secret plans").await.len(), 2);
    assert_eq!(
        found(&app, &foreign.owner, "secret plans").await,
        ["secret plans of another tenant"]
    );
    // A room the caller is not in, or of another tenant, is refused when named.
    app.get(
        &format!("/v1/search/messages?q=secret&room_id={private}"),
        &bob.token,
    )
    .await
    .expect_error(403, "not_a_member");
    app.get(
        &format!("/v1/search/messages?q=secret&room_id={foreign_room}"),
        &bob.token,
    )
    .await
    .expect_error(404, "room_not_found");
    // Leaving a room leaves its messages out.
    app.post(
        &format!("/v1/rooms/{room_id}/leave"),
        Some(&bob.token),
        json!({}),
    )
    .await
    .expect(204);
    assert!(found(&app, &bob, "secret plans").await.is_empty());
}

#[tokio::test]
async fn edits_and_deletions_reach_the_index_at_once() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let message = app
        .send(&owner.token, &room_id, "meet at the lighthouse")
        .await;
    let path = format!("/v1/rooms/{room_id}/messages/{}", id_of(&message));
    app.patch(&path, &owner.token, json!({"body": "meet at the harbour"}))
        .await
        .expect(200);
    assert!(found(&app, &bob, "lighthouse").await.is_empty());
    assert_eq!(found(&app, &bob, "harbour").await, ["meet at the harbour"]);
    app.delete(&path, &owner.token).await.expect(204);
    assert!(found(&app, &bob, "harbour").await.is_empty());
    assert!(found(&app, &bob, "meet").await.is_empty());
}

#[tokio::test]
async fn filters_ranking_and_pages_narrow_and_order_the_hits() {
    let app = spawn_app().await;
    let (owner, bob, room_id) = room_with_bob(&app).await;
    let other = id_of(&app.create_room(&owner.token, "other", "private").await);
    app.add_member(&owner.token, &other, &bob.user_id).await;
    app.send(&owner.token, &room_id, "budget").await;
    app.send(&bob.token, &room_id, "the budget budget budget review")
        .await;
    app.send(&owner.token, &other, "budget in the other room")
        .await;
    app.post(
        &format!("/v1/rooms/{room_id}/messages"),
        Some(&owner.token),
        json!({"kind": "file", "body": "budget sheet",
               "attachment": {"url": "https://files.example/budget.xlsx"}}),
    )
    .await
    .expect(201);

    assert_eq!(found(&app, &bob, "budget").await.len(), 4);
    assert_eq!(
        found(&app, &bob, &format!("budget&room_id={other}")).await,
        ["budget in the other room"]
    );
    assert_eq!(
        found(&app, &bob, &format!("budget&sender_id={}", bob.user_id)).await,
        ["the budget budget budget review"]
    );
    assert_eq!(
        found(&app, &bob, "budget&has_attachment=true").await,
        ["budget sheet"]
    );
    assert_eq!(
        found(&app, &bob, "budget&kind=file").await,
        ["budget sheet"]
    );
    assert!(
        found(&app, &bob, "budget&before=2000-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    // The message that says it most ranks first.
    assert_eq!(
        found(&app, &bob, "budget").await[0],
        "the budget budget budget review"
    );

    // Pages of two follow the cursor and together hold every hit once.
    let first = search(&app, &bob, "budget&limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = search(&app, &bob, &format!("budget&limit=2&cursor={cursor}")).await;
    let mut ids: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|hit| id_of(&hit["message"]))
        .collect();
    assert_eq!(second["next_cursor"], Value::Null);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn empty_long_and_malformed_queries_are_refused_with_stable_codes() {
    let app = spawn_app().await;
    let (_owner, bob, _room_id) = room_with_bob(&app).await;
    for (query, status, code) in [
        ("", 422, "empty_query"),
        ("%20%20", 422, "empty_query"),
        (&"a".repeat(201), 422, "query_too_long"),
        ("x&cursor=nonsense", 422, "invalid_cursor"),
        ("x&limit=51", 422, "invalid_limit"),
        // Parameters that do not parse are refused as every operation refuses them.
        ("x&kind=sticker", 400, "invalid_parameter"),
        ("x&after=yesterday", 400, "invalid_parameter"),
    ] {
        let answer = app
            .get(&format!("/v1/search/messages?q={query}"), &bob.token)
            .await;
        assert_eq!(answer.status.as_u16(), status, "{query}: {}", answer.body);
        assert_eq!(answer.body["code"], code, "{query}: {}", answer.body);
    }
}
