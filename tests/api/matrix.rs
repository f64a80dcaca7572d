//! The authorization matrix: every operation of the OpenAPI document and every
//! WebSocket op, called by every kind of caller (the tenant's and the room's owner, an
//! admin of both, a member of the room, a member of the tenant outside the room,
//! nobody, and a moderator of the tenant outside the room) and by another tenant's
//! owner with this tenant's ids, each against a fresh
//! tenant. Each answer is classified (A: passed authorization, with 2xx or a rule's
//! 409/422; U: 401; F: 403; N: 404) and compared with the table below. An operation or
//! op missing from the table fails the test, so a new route cannot go unchecked.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::{Session, TestApp, id_of, spawn_app};
use crate::ws::WsClient;

/// Callers, in the order of the expectation strings.
const CALLERS: [&str; 7] = [
    "owner",
    "admin",
    "member",
    "outsider",
    "nobody",
    "foreign",
    "moderator",
];

/// What each caller gets, per operation: one letter per caller of `CALLERS`.
/// Tenant-level operations treat the room caller roles as tenant roles (the owner
/// owns the tenant, the admin is a tenant admin, the others are plain members).
/// Paths name this tenant's room, message and member; operations without ids act on
/// the caller's own tenant, so `foreign` passes them (on its own tenant). A member of
/// the tenant outside the private room gets 403 `not_a_member`; another tenant's
/// caller gets 404, as for an id that does not exist.
const REST: &[(&str, &str)] = &[
    ("healthz", "AAAAAAA"),
    ("readyz", "AAAAAAA"),
    ("metrics", "AAAAAAA"),
    ("createTenant", "AAAAAAA"),
    ("getTenant", "AAAAUAA"),
    ("getTenantUsage", "AAFFUAF"),
    ("eraseUser", "AAAFUNF"),
    ("exportUser", "AAAFUNF"),
    ("getUserExport", "AAAFUNF"),
    ("updateTenant", "AAFFUAF"),
    ("deleteTenant", "AFFFUAF"),
    ("register", "AAAAAAA"),
    ("login", "AAAAAAA"),
    ("refresh", "AAAAAAA"),
    ("logout", "AAAAUAA"),
    ("getMe", "AAAAUAA"),
    ("listUsers", "AAAAUAA"),
    ("getUser", "AAAAUNA"),
    ("getUserByUsername", "AAAAUNA"),
    ("updateUser", "AAAFUNF"),
    ("deleteUser", "AAAFUNF"),
    ("deactivateUser", "AAFFUNF"),
    ("reactivateUser", "AAFFUNF"),
    ("createApiKey", "AAFFUAF"),
    ("listApiKeys", "AAFFUAF"),
    ("revokeApiKey", "AAFFUNF"),
    ("createWebhook", "AAFFUAF"),
    ("listWebhooks", "AAFFUAF"),
    ("getWebhook", "AAFFUNF"),
    ("updateWebhook", "AAFFUNF"),
    ("deleteWebhook", "AAFFUNF"),
    ("rotateWebhookSecret", "AAFFUNF"),
    ("listWebhookDeliveries", "AAFFUNF"),
    ("replayWebhook", "AAFFUNF"),
    ("testWebhook", "AAFFUNF"),
    ("backendCreateUser", "UUUUUUU"),
    ("backendCreateSession", "UUUUUUU"),
    ("backendRevokeSessions", "UUUUUUU"),
    ("backendSendSystemMessage", "UUUUUUU"),
    ("backendListRooms", "AAFFUAF"),
    ("listRooms", "AAAAUAA"),
    ("createRoom", "AAAAUAA"),
    ("getOrCreateDirectRoom", "AAAAUNA"),
    ("joinRoomByCode", "AAAAUNA"),
    ("getRoom", "AAAFUNF"),
    ("updateRoom", "AAFFUNF"),
    ("deleteRoom", "AFFFUNF"),
    ("archiveRoom", "AAFFUNF"),
    ("rotateInviteCode", "AAFFUNF"),
    ("joinRoom", "AAAFUNF"),
    ("leaveRoom", "AAAFUNF"),
    ("listMembers", "AAAFUNF"),
    ("addMember", "AAFFUNF"),
    ("removeMember", "AAAFUNF"),
    ("setMemberRole", "AFFFUNF"),
    ("checkRoomAccess", "AAAFUNF"),
    ("listMessages", "AAAFUNF"),
    ("sendMessage", "AAAFUNF"),
    ("getMessage", "AAAFUNF"),
    ("editMessage", "FFAFUNF"),
    ("deleteMessage", "AAAFUNA"),
    ("listMessageVersions", "AAAFUNF"),
    ("addReaction", "AAAFUNF"),
    ("removeReaction", "AAAFUNF"),
    ("markRead", "AAAFUNF"),
    ("getUnreadCounts", "AAAAUAA"),
    ("listRoomEvents", "AAAFUNF"),
    ("streamRoomEvents", "AAAFUNF"),
    ("streamMyEvents", "AAAAUAA"),
    ("listMyEvents", "AAAAUAA"),
    ("listOnlineMembers", "AAAFUNF"),
    ("connectWebSocket", "AAAAAAA"),
    ("blockUser", "AAAAUNA"),
    ("listBlocks", "AAAAUAA"),
    ("unblockUser", "AAAAUNA"),
    ("createReport", "AAAFUNF"),
    ("listReports", "AAFFUAA"),
    ("resolveReport", "AAFFUNA"),
    ("muteMember", "AAFFUNA"),
    ("listMutes", "AAFFUNA"),
    ("unmuteMember", "AAFFUNA"),
    ("banFromRoom", "AAFFUNA"),
    ("listRoomBans", "AAFFUNA"),
    ("unbanFromRoom", "AAFFUNA"),
    ("banUser", "AAFFUNA"),
    ("unbanUser", "AAFFUNA"),
    ("listWordFilters", "AAFFUAA"),
    ("createWordFilter", "AAFFUAF"),
    ("deleteWordFilter", "AAFFUNF"),
    ("listAuditLog", "AAFFUAF"),
    ("listReplies", "AAAFUNF"),
    ("listThreads", "AAAFUNF"),
    ("markThreadRead", "AAAFUNF"),
    ("listMentions", "AAAAUAA"),
    ("pinMessage", "AAFFUNF"),
    ("unpinMessage", "AAFFUNF"),
    ("listPins", "AAAFUNF"),
    ("searchMessages", "AAAAUAA"),
    ("listPublicRooms", "AAAAUAA"),
    // The operator key, never a bearer token, opens the operator's operations.
    ("operatorListTenants", "UUUUUUU"),
    ("operatorGetTenant", "UUUUUUU"),
    ("operatorUpdateTenant", "UUUUUUU"),
    ("operatorDeleteTenant", "UUUUUUU"),
    ("operatorGetTenantUsage", "UUUUUUU"),
    ("operatorGetStorage", "UUUUUUU"),
    ("operatorSuspendTenant", "UUUUUUU"),
    ("operatorResumeTenant", "UUUUUUU"),
];

/// The same for the WebSocket ops. `nobody` sends the op without authenticating and
/// is closed with 4001 (U), except `auth`, which authenticates it; the `auth` frame
/// carries the member's token, which any other user's connection refuses (403
/// `other_user`: a connection stays with its user).
const WEBSOCKET: &[(&str, &str)] = &[
    ("auth", "FFAFAFF"),
    ("subscribe", "AAAFUNF"),
    ("unsubscribe", "AAAAUAA"),
    ("send", "AAAFUNF"),
    ("edit", "FFAFUNF"),
    ("delete", "AAAFUNA"),
    ("react", "AAAFUNF"),
    ("read", "AAAFUNF"),
    ("typing", "AAAFUNF"),
    ("ping", "AAAAUAA"),
];

/// One tenant with every kind of caller, a private room, a message, an API key and a
/// webhook endpoint.
struct Fixture {
    slug: String,
    owner: Session,
    admin: Session,
    member: Session,
    outsider: Session,
    moderator: Session,
    room_id: String,
    invite_code: String,
    message_id: String,
    key_id: String,
    webhook_id: String,
    report_id: String,
    filter_id: String,
}

async fn fixture(app: &TestApp, slug: &str) -> Fixture {
    let owner = app.create_tenant(slug).await.owner;
    let admin = app.register(slug, "admin").await;
    let member = app.register(slug, "member").await;
    let outsider = app.register(slug, "outsider").await;
    let moderator = app.register(slug, "moderator").await;
    for (user, role) in [(&admin, "admin"), (&moderator, "moderator")] {
        app.patch(
            &format!("/v1/users/{}", user.user_id),
            &owner.token,
            json!({"role": role}),
        )
        .await
        .expect(200);
    }
    let room = app.create_room(&owner.token, "matrix", "private").await;
    let room_id = id_of(&room);
    for user in [&admin, &member] {
        app.add_member(&owner.token, &room_id, &user.user_id).await;
    }
    app.patch(
        &format!("/v1/rooms/{room_id}/members/{}", admin.user_id),
        &owner.token,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    let message = app.send(&member.token, &room_id, "hello").await;
    let message_id = id_of(&message);
    app.post(
        &format!("/v1/rooms/{room_id}/messages/{message_id}/reactions"),
        Some(&member.token),
        json!({"emoji": "👍"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("/v1/users/{}/export", member.user_id),
        Some(&member.token),
        json!({}),
    )
    .await
    .expect(202);
    let key = app
        .post(
            "/v1/api-keys",
            Some(&owner.token),
            json!({"name": "matrix"}),
        )
        .await
        .expect(201);
    let webhook = app
        .post(
            "/v1/webhooks",
            Some(&owner.token),
            json!({"url": "https://hooks.example.com/matrix", "event_types": ["webhook.test"]}),
        )
        .await
        .expect(201);
    let report = app
        .post(
            "/v1/reports",
            Some(&outsider.token),
            json!({"user_id": member.user_id, "reason": "harassment"}),
        )
        .await
        .expect(201);
    let filter = app
        .post(
            "/v1/moderation/filters",
            Some(&owner.token),
            json!({"term": "casino*", "action": "flag"}),
        )
        .await
        .expect(201);
    Fixture {
        slug: slug.to_owned(),
        report_id: id_of(&report),
        filter_id: id_of(&filter),
        webhook_id: id_of(&webhook["webhook"]),
        invite_code: room["invite_code"].as_str().unwrap().to_owned(),
        key_id: key["api_key"]["id"].as_str().unwrap().to_owned(),
        owner,
        admin,
        member,
        outsider,
        moderator,
        room_id,
        message_id,
    }
}

impl Fixture {
    fn caller(&self, name: &str) -> Option<&Session> {
        match name {
            "owner" => Some(&self.owner),
            "admin" => Some(&self.admin),
            "member" => Some(&self.member),
            "outsider" => Some(&self.outsider),
            "moderator" => Some(&self.moderator),
            _ => None,
        }
    }

    /// The operation's path with this tenant's ids; user ids name the member.
    fn path(&self, template: &str) -> String {
        template
            .replace("{room_id}", &self.room_id)
            .replace("{message_id}", &self.message_id)
            .replace("{user_id}", &self.member.user_id)
            .replace("{key_id}", &self.key_id)
            .replace("{webhook_id}", &self.webhook_id)
            .replace("{report_id}", &self.report_id)
            .replace("{filter_id}", &self.filter_id)
            .replace("{emoji}", "%F0%9F%91%8D")
            .replace("{username}", "member")
            .replace("{tenant_id}", &self.owner.tenant_id)
    }

    /// A body that the rules would accept from an allowed caller.
    fn body(&self, operation_id: &str, example: Option<&Value>) -> Value {
        let unique = uuid::Uuid::now_v7().simple().to_string();
        match operation_id {
            "createTenant" => json!({"slug": format!("t{}", &unique[..12]), "name": "T",
                "owner": {"username": "o", "password": crate::helpers::PASSWORD}}),
            "register" => json!({"tenant": self.slug, "username": format!("u{}", &unique[..12]),
                "password": crate::helpers::PASSWORD}),
            "login" => {
                json!({"tenant": self.slug, "login": "member", "password": crate::helpers::PASSWORD})
            }
            "refresh" => json!({"refresh_token": self.member.refresh_token}),
            "updateUser" => json!({"display_name": "Renamed"}),
            "getOrCreateDirectRoom" => json!({"user_id": self.outsider.user_id}),
            "joinRoomByCode" => json!({"code": self.invite_code}),
            "addMember" => json!({"user_id": self.outsider.user_id}),
            "setMemberRole" => json!({"role": "admin"}),
            "updateRoom" => json!({"name": "renamed"}),
            "sendMessage" | "editMessage" => json!({"body": "matrix"}),
            "addReaction" => json!({"emoji": "🎉"}),
            "markRead" | "markThreadRead" => json!({"seq": 1}),
            "blockUser" => json!({"user_id": self.outsider.user_id}),
            "createReport" => json!({"room_id": self.room_id, "message_id": self.message_id,
                "reason": "spam"}),
            "resolveReport" => json!({"action": "dismiss"}),
            "muteMember" | "banFromRoom" => json!({"user_id": self.member.user_id}),
            _ => example.cloned().unwrap_or_else(|| json!({})),
        }
    }

    /// A WebSocket frame of `op` about this tenant's room and message.
    fn frame(&self, op: &str) -> Value {
        let (room, message) = (&self.room_id, &self.message_id);
        match op {
            "auth" => json!({"op": op, "ref": "matrix", "token": self.member.token}),
            "ping" => json!({"op": op, "ref": "matrix"}),
            "send" => json!({"op": op, "ref": "matrix", "room_id": room, "body": "matrix"}),
            "edit" => json!({"op": op, "ref": "matrix", "room_id": room, "message_id": message,
                "body": "matrix"}),
            "delete" => json!({"op": op, "ref": "matrix", "room_id": room, "message_id": message}),
            "react" => json!({"op": op, "ref": "matrix", "room_id": room, "message_id": message,
                "emoji": "🎉"}),
            "read" => json!({"op": op, "ref": "matrix", "room_id": room, "seq": 1}),
            _ => json!({"op": op, "ref": "matrix", "room_id": room}),
        }
    }
}

fn classify(status: u16) -> char {
    match status {
        // A malformed request says nothing about authorization: the test's requests
        // must be well-formed, and this letter is in no expectation.
        400 => 'B',
        401 => 'U',
        403 => 'F',
        404 => 'N',
        500..=599 => panic!("a server error is never an answer: {status}"),
        _ => 'A',
    }
}

fn classify_frame(frame: &Value) -> char {
    match (frame["op"].as_str(), frame["code"].as_str()) {
        (Some("ack" | "pong"), _) => 'A',
        (Some("error"), Some("invalid_frame")) => 'B',
        (Some("error"), Some(code)) if code.ends_with("_not_found") => 'N',
        // The codes the REST API answers with 403.
        (Some("error"), Some("forbidden" | "not_a_member" | "not_the_author" | "other_user")) => {
            'F'
        }
        (Some("error"), Some(code)) if code.starts_with("invalid_token") => 'U',
        (Some("error"), _) => 'A',
        _ => panic!("unexpected answer {frame}"),
    }
}

/// For the `foreign` caller, the owner of another tenant, with a session of its own
/// (a `logout` case ends it).
async fn foreign_owner(app: &TestApp, caller: &str, number: usize) -> Option<Session> {
    if caller != "foreign" {
        return None;
    }
    Some(app.create_tenant(&format!("foreign-{number}")).await.owner)
}

/// One REST case: a fresh tenant, the operation called by `caller`; answers the
/// letter and what was seen.
async fn rest_case(
    app: &TestApp,
    template: &str,
    method: &str,
    operation: &Value,
    caller: &str,
    number: usize,
    example: Option<&Value>,
) -> (char, String) {
    let operation_id = operation["operationId"].as_str().unwrap();
    let fixture = fixture(app, &format!("matrix-{number}")).await;
    let foreign = foreign_owner(app, caller, number).await;
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    // The one required query parameter of the API.
    let query = if operation_id == "searchMessages" {
        "?q=hello"
    } else {
        ""
    };
    let url = format!("{}{}{query}", app.address, fixture.path(template));
    let mut request = app.client.request(method, &url);
    if operation.get("requestBody").is_some() {
        request = request.json(&fixture.body(operation_id, example));
    }
    let token = match &foreign {
        Some(foreign) => Some(&foreign.token),
        None => fixture.caller(caller).map(|session| &session.token),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match operation_id {
        "streamRoomEvents" | "streamMyEvents" => {
            // The stream's status is known as soon as its headers arrive.
            let status = request.send().await.unwrap().status().as_u16();
            (classify(status), status.to_string())
        }
        "connectWebSocket" => {
            let status = request
                .header("connection", "Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let letter = if status == 101 { 'A' } else { classify(status) };
            (letter, status.to_string())
        }
        _ => {
            let answer = TestApp::answer(request.send().await.unwrap()).await;
            let seen = format!("{} {}", answer.status.as_u16(), answer.body["code"]);
            (classify(answer.status.as_u16()), seen)
        }
    }
}

/// One WebSocket case: a fresh tenant, the op sent by `caller`.
async fn websocket_case(app: &TestApp, op: &str, caller: &str, number: usize) -> (char, String) {
    let fixture = fixture(app, &format!("matrix-{number}")).await;
    let foreign = foreign_owner(app, caller, number).await;
    let token = match &foreign {
        Some(foreign) => Some(foreign.token.as_str()),
        None => fixture.caller(caller).map(|session| session.token.as_str()),
    };
    let mut client = match token {
        Some(token) => WsClient::connect(app, token).await,
        None => WsClient::connect_path(app, "/v1/ws").await,
    };
    if op == "unsubscribe" && matches!(caller, "owner" | "admin" | "member") {
        client.subscribe(&fixture.room_id, None).await;
    }
    client.send(fixture.frame(op)).await;
    if token.is_none() && op != "auth" {
        assert_eq!(client.ending().await, crate::ws::Ending::Closed(4001));
        ('U', "close 4001".to_owned())
    } else {
        let answer = client.answer("matrix").await;
        (
            classify_frame(&answer),
            format!("{} {}", answer["op"], answer["code"]),
        )
    }
}

#[tokio::test]
async fn every_operation_and_websocket_op_answers_every_kind_of_caller_as_the_table_says() {
    let app = spawn_app().await;
    let spec = hark::api::document::value();
    let expected: BTreeMap<&str, &str> = REST.iter().copied().collect();
    let mut actual = BTreeMap::new();
    let mut cases = 0;
    let mut counter = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let operation_id = operation["operationId"].as_str().unwrap().to_owned();
            let api_key_only = operation["security"][0]["apiKeyAuth"].is_array();
            let example = operation["requestBody"]["content"]
                .as_object()
                .and_then(|content| content.values().next())
                .and_then(|media| media["schema"]["$ref"].as_str())
                .and_then(|reference| reference.rsplit('/').next())
                .map(|name| &spec["components"]["schemas"][name]["example"]);
            let base = counter;
            counter += CALLERS.len();
            let answers = futures_util::future::join_all(CALLERS.iter().enumerate().map(
                |(index, caller)| {
                    rest_case(
                        &app,
                        template,
                        method,
                        operation,
                        caller,
                        base + index,
                        example,
                    )
                },
            ))
            .await;
            let row: String = answers.iter().map(|(letter, _)| *letter).collect();
            let seen: Vec<String> = answers.into_iter().map(|(_, seen)| seen).collect();
            cases += CALLERS.len();
            if api_key_only {
                // The tenant's backend, with its key, passes.
                let fixture = fixture(&app, &format!("matrix-{counter}-key")).await;
                let key = app
                    .post(
                        "/v1/api-keys",
                        Some(&fixture.owner.token),
                        json!({"name": "b"}),
                    )
                    .await
                    .expect(201)["key"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let answer = TestApp::answer(
                    app.client
                        .request(method, format!("{}{}", app.address, fixture.path(template)))
                        .header("x-api-key", key)
                        .json(&fixture.body(&operation_id, example))
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(
                    classify(answer.status.as_u16()),
                    'A',
                    "{operation_id} with the tenant's API key: {}",
                    answer.body
                );
                cases += 1;
            }
            actual.insert(operation_id, (row, seen));
        }
    }

    let ops: BTreeMap<&str, &str> = WEBSOCKET.iter().copied().collect();
    let mut actual_ops = BTreeMap::new();
    for op in hark::realtime::protocol::CLIENT_OPS {
        let base = counter;
        counter += CALLERS.len();
        let answers = futures_util::future::join_all(
            CALLERS
                .iter()
                .enumerate()
                .map(|(index, caller)| websocket_case(&app, op, caller, base + index)),
        )
        .await;
        let row: String = answers.iter().map(|(letter, _)| *letter).collect();
        let seen: Vec<String> = answers.into_iter().map(|(_, seen)| seen).collect();
        cases += CALLERS.len();
        actual_ops.insert(op.to_string(), (row, seen));
    }

    let mut mismatches = Vec::new();
    for (operation, (row, seen)) in &actual {
        if expected.get(operation.as_str()) != Some(&row.as_str()) {
            mismatches.push(format!(
                "(\"{operation}\", \"{row}\"), expected {:?}; answers {seen:?}",
                expected.get(operation.as_str())
            ));
        }
    }
    for operation in expected.keys() {
        if !actual.contains_key(*operation) {
            mismatches.push(format!(
                "{operation} is in the table but not in the document"
            ));
        }
    }
    for (op, (row, seen)) in &actual_ops {
        if ops.get(op.as_str()) != Some(&row.as_str()) {
            mismatches.push(format!(
                "ws (\"{op}\", \"{row}\"), expected {:?}; answers {seen:?}",
                ops.get(op.as_str())
            ));
        }
    }
    println!(
        "authorization matrix: {} operations and {} WebSocket ops, {cases} cases",
        actual.len(),
        actual_ops.len()
    );
    assert!(
        mismatches.is_empty(),
        "differences from the table:\n{}",
        mismatches.join("\n")
    );
}
