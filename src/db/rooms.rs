//! Typed calls of the room and membership functions (`sql/functions/0004_rooms.sql`).

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, types::Example, types::MaybeUndefined};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, Principal};
use crate::db::{Database, DatabaseError, Message};

/// A user's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum RoomRole {
    /// Changes roles and deletes the room; a room always has one.
    Owner,
    /// Changes settings, adds and removes members, mutes and bans.
    Admin,
    /// Reads and writes.
    Member,
}

impl RoomRole {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

/// Whether a room is a group or the direct room of two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum RoomKind {
    /// A named room with any number of members and roles.
    Group,
    /// The one room of two users; it has no name, settings or other members.
    Direct,
}

impl RoomKind {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Direct => "direct",
        }
    }
}

/// Who may find and join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum Visibility {
    /// Any user of the tenant may see it and join it by id.
    Public,
    /// Only members see it; others join with the invite code or are added.
    Private,
}

impl Visibility {
    /// The name used in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

/// A user as shown in rooms, messages and events.
#[derive(Debug, Clone, Deserialize, Serialize, Object)]
pub struct UserRef {
    /// The user's id.
    pub id: Uuid,
    /// The username.
    pub username: String,
    /// The name shown to others.
    pub display_name: Option<String>,
    /// A picture of the user.
    pub avatar_url: Option<String>,
}

/// A room, as the caller sees it.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Room {
    /// The room's id.
    pub id: Uuid,
    /// Group or direct.
    pub kind: RoomKind,
    /// The name (group rooms).
    pub name: Option<String>,
    /// What the room is about.
    pub topic: Option<String>,
    /// Public or private.
    pub visibility: Visibility,
    /// The 6-character code with which others join (shown to members of group rooms).
    pub invite_code: Option<String>,
    /// Whether the room is archived: readable, but closed to anything new.
    pub archived: bool,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: Option<Uuid>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its settings last changed.
    pub updated_at: DateTime<Utc>,
    /// The seq of the room's newest event.
    pub last_seq: i64,
    /// When the newest event happened.
    pub last_activity_at: DateTime<Utc>,
    /// How many members it has.
    pub member_count: i64,
    /// Slow mode: members other than its owners and admins and the tenant's
    /// moderators send one message per this many seconds (0: off).
    pub slow_mode_seconds: i32,
    /// Whether members other than its owners and admins may pin messages.
    pub members_can_pin: bool,
    /// Whether members other than its owners and admins may mention everyone in it.
    pub members_can_mention_room: bool,
    /// The product's own data about the room (a JSON object of at most 8 KiB), set by
    /// its owners and admins and by API keys.
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
    /// How many days the room keeps messages when shorter than its tenant's
    /// retention (none: as the tenant does); older ones become tombstones.
    pub retention_days: Option<i32>,
    /// The caller's role, absent when the caller is not a member.
    pub my_role: Option<RoomRole>,
    /// The caller's read marker, absent when the caller is not a member.
    pub last_read_seq: Option<i64>,
    /// The other member of a direct room.
    pub direct_user: Option<UserRef>,
}

/// A room in the caller's list, with what a room list shows.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct RoomSummary {
    /// The room.
    #[serde(flatten)]
    #[oai(flatten)]
    pub room: Room,
    /// Messages of others after the caller's read marker, counted up to 100 (show
    /// "99+").
    pub unread_count: i64,
    /// The newest message that is not deleted.
    pub last_message: Option<Message>,
}

/// One page of the caller's rooms.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct RoomPage {
    /// Rooms, newest activity first.
    pub items: Vec<RoomSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One page of every room of a tenant.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct TenantRoomPage {
    /// Rooms, in order of creation.
    pub items: Vec<Room>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// How the caller's rooms are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum RoomSort {
    /// Newest activity first.
    #[default]
    Activity,
    /// By name, case-insensitively (direct rooms, which have none, first).
    Name,
}

/// Which of the caller's rooms to list, and in which order.
#[derive(Debug, Clone, Default)]
pub struct RoomFilter {
    /// Only rooms of this kind.
    pub kind: Option<RoomKind>,
    /// Only rooms of this visibility.
    pub visibility: Option<Visibility>,
    /// Only archived rooms (true) or rooms not archived (false).
    pub archived: Option<bool>,
    /// Only rooms whose metadata has this key and value.
    pub metadata: Option<MetadataFilter>,
    /// Only rooms with (true) or without (false) unread messages.
    pub has_unread: Option<bool>,
    /// The order.
    pub sort: RoomSort,
}

/// Rows whose metadata has a key with a string value: a product's own roles, groups
/// or kinds, found through the metadata's index (JSON containment).
#[derive(Debug, Clone)]
pub struct MetadataFilter {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl MetadataFilter {
    /// The JSON object the metadata must contain.
    pub fn as_json(&self) -> serde_json::Value {
        serde_json::json!({ &self.key: &self.value })
    }
}

/// Which of a tenant's rooms to list.
#[derive(Debug, Clone, Default)]
pub struct TenantRoomFilter {
    /// Only rooms of this kind.
    pub kind: Option<RoomKind>,
    /// Only archived rooms (true) or rooms not archived (false).
    pub archived: Option<bool>,
    /// Only rooms this user is a member of.
    pub member_id: Option<Uuid>,
    /// Only rooms whose name contains this text, case-insensitively.
    pub query: Option<String>,
}

/// The changes to a room; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Object)]
#[oai(example)]
pub struct RoomPatch {
    /// A new name (1 to 100 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: Option<String>,
    /// A new topic (at most 1000 characters), or null to clear it.
    #[serde(skip_serializing_if = "MaybeUndefined::is_undefined")]
    #[oai(validator(max_length = 1000))]
    pub topic: MaybeUndefined<String>,
    /// Public or private.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// Slow mode: one message per this many seconds for each member other than the
    /// room's owners and admins and the tenant's moderators (0 turns it off; at most
    /// 21600, six hours).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(minimum(value = "0"), maximum(value = "21600")))]
    pub slow_mode_seconds: Option<i32>,
    /// Let members other than the owners and admins pin messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members_can_pin: Option<bool>,
    /// Let members other than the owners and admins mention everyone in the room.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members_can_mention_room: Option<bool>,
    /// Replaces the metadata, a JSON object of at most 8 KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Days the room keeps messages (1 to 36500; 0 goes back to the tenant's
    /// retention). The shorter of the room's and the tenant's applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[oai(validator(minimum(value = "0"), maximum(value = "36500")))]
    pub retention_days: Option<i32>,
}

impl Example for RoomPatch {
    fn example() -> Self {
        Self {
            name: Some("lobby".to_owned()),
            topic: MaybeUndefined::Value("Say hello".to_owned()),
            visibility: Some(Visibility::Public),
            slow_mode_seconds: None,
            members_can_pin: None,
            members_can_mention_room: None,
            metadata: None,
            retention_days: None,
        }
    }
}

/// A member of a room.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct Member {
    /// The room.
    pub room_id: Uuid,
    /// The user.
    pub user: UserRef,
    /// Their role in the room.
    pub role: RoomRole,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// Their read marker.
    pub last_read_seq: i64,
}

/// One page of a room's members.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct MemberPage {
    /// Members in user id order.
    pub items: Vec<Member>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Whether a user may read and write a room.
#[derive(Debug, Clone, Deserialize, Object)]
pub struct RoomAccess {
    /// The room.
    pub room_id: Uuid,
    /// The user asked about.
    pub user_id: Uuid,
    /// Whether the user may read the room (is a member).
    pub can_read: bool,
    /// Whether the user may send to it now (a member, and the room is not archived).
    pub can_send: bool,
    /// The user's role in the room, if a member.
    pub role: Option<RoomRole>,
}

/// A new group room.
#[derive(Debug, Clone)]
pub struct NewRoom {
    /// Its id.
    pub room_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its topic.
    pub topic: Option<String>,
    /// Public or private.
    pub visibility: Visibility,
    /// Other users of the tenant who join it as members at once.
    pub member_ids: Vec<Uuid>,
}

impl Database {
    /// Creates a group room with the caller as owner.
    pub async fn room_create(
        &self,
        caller: &Caller,
        room: &NewRoom,
    ) -> Result<Room, DatabaseError> {
        self.call(
            "room_create",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room.room_id,
                &room.name,
                &room.topic,
                &room.visibility.as_str(),
                &room.member_ids,
            ],
        )
        .await
    }

    /// The direct room of the caller and another user, created on first use.
    pub async fn room_direct(
        &self,
        caller: &Caller,
        room_id: Uuid,
        other_user_id: Uuid,
    ) -> Result<Room, DatabaseError> {
        self.call(
            "room_direct",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &other_user_id,
            ],
        )
        .await
    }

    /// One page of the caller's rooms.
    pub async fn room_list(
        &self,
        caller: &Caller,
        filter: &RoomFilter,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<RoomPage, DatabaseError> {
        let sort = match filter.sort {
            RoomSort::Activity => "activity",
            RoomSort::Name => "name",
        };
        self.call(
            "room_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &cursor,
                &limit,
                &filter.kind.map(RoomKind::as_str),
                &filter.visibility.map(Visibility::as_str),
                &filter.archived,
                &filter.metadata.as_ref().map(MetadataFilter::as_json),
                &filter.has_unread,
                &sort,
            ],
        )
        .await
    }

    /// The tenant's public rooms the caller may join, whose name holds `query`.
    pub async fn room_public_list(
        &self,
        caller: &Caller,
        query: Option<&str>,
        after: Option<Uuid>,
        limit: i32,
    ) -> Result<TenantRoomPage, DatabaseError> {
        self.call(
            "room_public_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &query,
                &after,
                &limit,
            ],
        )
        .await
    }

    /// A room.
    pub async fn room_get(&self, caller: &Caller, room_id: Uuid) -> Result<Room, DatabaseError> {
        self.call(
            "room_get",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Changes a room's name, topic or visibility.
    pub async fn room_update(
        &self,
        caller: &Caller,
        room_id: Uuid,
        patch: &RoomPatch,
    ) -> Result<Room, DatabaseError> {
        let patch = tokio_postgres::types::Json(patch);
        self.call(
            "room_update",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &patch,
            ],
        )
        .await
    }

    /// Archives a room.
    pub async fn room_archive(
        &self,
        caller: &Caller,
        room_id: Uuid,
    ) -> Result<Room, DatabaseError> {
        self.call(
            "room_archive",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Deletes a bounded batch of a deleted room's rows; answers how many went (0 when
    /// no deleted room is left).
    pub async fn purge_rooms(&self, batch: i32) -> Result<i32, DatabaseError> {
        self.call("purge_rooms", &[&batch]).await
    }

    /// Deletes a room: gone for everyone at once, its history purged afterwards.
    pub async fn room_delete(&self, caller: &Caller, room_id: Uuid) -> Result<(), DatabaseError> {
        self.call(
            "room_delete",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Draws a new invite code.
    pub async fn room_rotate_invite(
        &self,
        caller: &Caller,
        room_id: Uuid,
    ) -> Result<Room, DatabaseError> {
        self.call(
            "room_rotate_invite",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Joins a public room.
    pub async fn room_join(&self, caller: &Caller, room_id: Uuid) -> Result<Room, DatabaseError> {
        self.call(
            "room_join",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// Joins a room by invite code.
    pub async fn room_join_by_code(
        &self,
        caller: &Caller,
        code: &str,
    ) -> Result<Room, DatabaseError> {
        self.call(
            "room_join_by_code",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &code,
            ],
        )
        .await
    }

    /// Leaves a room.
    pub async fn room_leave(&self, caller: &Caller, room_id: Uuid) -> Result<(), DatabaseError> {
        self.call(
            "room_leave",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
            ],
        )
        .await
    }

    /// One page of a room's members.
    pub async fn member_list(
        &self,
        caller: &Caller,
        room_id: Uuid,
        after: Option<Uuid>,
        limit: i32,
    ) -> Result<MemberPage, DatabaseError> {
        self.call(
            "member_list",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &after,
                &limit,
            ],
        )
        .await
    }

    /// Adds a user to a room.
    pub async fn member_add(
        &self,
        caller: &Caller,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<Member, DatabaseError> {
        self.call(
            "member_add",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &user_id,
            ],
        )
        .await
    }

    /// Removes a member from a room.
    pub async fn member_remove(
        &self,
        caller: &Caller,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), DatabaseError> {
        self.call(
            "member_remove",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &user_id,
            ],
        )
        .await
    }

    /// Changes a member's role.
    pub async fn member_set_role(
        &self,
        caller: &Caller,
        room_id: Uuid,
        user_id: Uuid,
        role: RoomRole,
    ) -> Result<Member, DatabaseError> {
        self.call(
            "member_set_role",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &user_id,
                &role.as_str(),
            ],
        )
        .await
    }

    /// Whether a user may read a room.
    pub async fn room_access(
        &self,
        caller: &Caller,
        room_id: Uuid,
        user_id: Uuid,
    ) -> Result<RoomAccess, DatabaseError> {
        self.call(
            "room_access",
            &[
                &caller.tenant_id,
                &caller.user_id,
                &caller.session_id,
                &room_id,
                &user_id,
            ],
        )
        .await
    }

    /// One page of every room of the tenant, for its owners, admins and API keys.
    pub async fn room_list_all(
        &self,
        principal: &Principal,
        filter: &TenantRoomFilter,
        after: Option<Uuid>,
        limit: i32,
    ) -> Result<TenantRoomPage, DatabaseError> {
        let kind = filter.kind.map(RoomKind::as_str);
        self.call_as(
            "room_list_all",
            principal,
            &[
                &kind,
                &filter.archived,
                &filter.member_id,
                &filter.query,
                &after,
                &limit,
            ],
        )
        .await
    }
}
