-- Moderation and user safety: tenant moderators, blocks, reports, room mutes and bans,
-- tenant-wide bans, slow mode, word filters and the audit log. This file is an
-- immutable migration.

-- Tenant moderators rank between admins and members: they act on reports, delete
-- messages, mute and ban in every room of the tenant, and ban members tenant-wide.
alter table hark.users drop constraint users_role_valid;
alter table hark.users add constraint users_role_valid check (role in ('owner', 'admin', 'moderator', 'member'));

-- A tenant-wide ban: the user's sessions are revoked when it is set, and until it is
-- lifted or ends (ban_expires_at) the user cannot log in, be minted a session or be
-- acted for.
alter table hark.users
    add column banned_at timestamptz,
    add column ban_expires_at timestamptz,
    add column ban_reason text,
    add constraint users_ban_reason_length check (ban_reason is null or char_length(ban_reason) <= 500);

-- Slow mode: members other than the room's owners and admins and the tenant's
-- moderators send one message per slow_mode_seconds; room_members.last_sent_at,
-- written under the room's lock while slow mode is on, is what the next send is held to.
-- room_members.muted_until mirrors the member's mute of room_restrictions (which
-- outlives a membership: a muted member who leaves is muted again on return), so that
-- a send reads it with the role, in the one probe of the membership.
alter table hark.rooms
    add column slow_mode_seconds integer not null default 0,
    add constraint rooms_slow_mode_range check (slow_mode_seconds between 0 and 21600);
alter table hark.room_members
    add column last_sent_at timestamptz,
    add column muted_until timestamptz;

alter table hark.room_events drop constraint room_events_type_valid;
alter table hark.room_events add constraint room_events_type_valid check (type in (
    'message.created', 'message.edited', 'message.deleted',
    'reaction.added', 'reaction.removed',
    'member.joined', 'member.left', 'member.role_changed',
    'member.muted', 'member.unmuted', 'member.banned', 'member.unbanned',
    'room.created', 'room.updated', 'room.archived')) not valid;
alter table hark.room_events validate constraint room_events_type_valid;

-- Who blocked whom. Private to the blocker.
create table hark.blocks (
    tenant_id uuid not null,
    blocker_id uuid not null,
    blocked_id uuid not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, blocker_id, blocked_id),
    foreign key (tenant_id, blocker_id) references hark.users (tenant_id, id) on delete cascade,
    foreign key (tenant_id, blocked_id) references hark.users (tenant_id, id) on delete cascade,
    constraint blocks_not_self check (blocker_id <> blocked_id)
);
create index blocks_blocked_idx on hark.blocks (tenant_id, blocked_id);

-- Room mutes (can read, cannot send or react) and bans (removed, cannot join again),
-- each until expires_at (null: until lifted).
create table hark.room_restrictions (
    tenant_id uuid not null,
    room_id uuid not null,
    user_id uuid not null,
    kind text not null,
    reason text,
    expires_at timestamptz,
    created_by uuid,
    created_at timestamptz not null default now(),
    primary key (tenant_id, room_id, user_id, kind),
    foreign key (tenant_id, room_id) references hark.rooms (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    constraint room_restrictions_kind_valid check (kind in ('mute', 'ban')),
    constraint room_restrictions_reason_length check (reason is null or char_length(reason) <= 500)
);
create index room_restrictions_user_idx on hark.room_restrictions (tenant_id, user_id);

-- Reports of messages and users, by members (reporter_id) or by a word filter
-- (reporter_id null, reason 'filtered'). The message foreign key is checked at commit:
-- a batched send flags its message before the batch inserts it.
create table hark.reports (
    tenant_id uuid not null,
    id uuid not null,
    reporter_id uuid,
    target_user_id uuid,
    room_id uuid,
    message_id uuid,
    reason text not null,
    details text,
    -- The message as it was reported, so that an edit cannot hide what was reported.
    message_snapshot jsonb,
    state text not null default 'open',
    action text,
    resolved_by uuid,
    resolved_at timestamptz,
    resolution_note text,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, reporter_id) references hark.users (tenant_id, id) on delete cascade,
    foreign key (tenant_id, target_user_id) references hark.users (tenant_id, id) on delete cascade,
    foreign key (tenant_id, room_id) references hark.rooms (tenant_id, id) on delete cascade,
    foreign key (tenant_id, message_id) references hark.messages (tenant_id, id)
        on delete cascade deferrable initially deferred,
    constraint reports_reason_valid check (reason in ('spam', 'harassment', 'inappropriate', 'other', 'filtered')),
    constraint reports_details_length check (details is null or char_length(details) <= 1000),
    constraint reports_state_valid check (state in ('open', 'resolved')),
    constraint reports_action_valid check (action is null or action in ('dismiss', 'delete_message', 'mute', 'ban', 'ban_user')),
    constraint reports_resolution_note_length check (resolution_note is null or char_length(resolution_note) <= 500),
    constraint reports_target_present check (target_user_id is not null or message_id is not null),
    constraint reports_message_in_room check ((message_id is null) or (room_id is not null))
);
-- Once per reporter and target.
create unique index reports_message_once on hark.reports (tenant_id, reporter_id, message_id)
    where reporter_id is not null and message_id is not null;
create unique index reports_user_once on hark.reports (tenant_id, reporter_id, target_user_id)
    where reporter_id is not null and message_id is null;
create unique index reports_filtered_once on hark.reports (tenant_id, message_id)
    where reporter_id is null;
create index reports_queue_idx on hark.reports (tenant_id, state, id);
create index reports_room_idx on hark.reports (tenant_id, room_id, id);
create index reports_message_idx on hark.reports (tenant_id, message_id) where message_id is not null;
create index reports_target_idx on hark.reports (tenant_id, target_user_id, id);

-- A tenant's word filters: a term (with * for any letters) matched as whole words,
-- case- and diacritic-insensitively (folded holds the term as matched).
create table hark.word_filters (
    tenant_id uuid not null references hark.tenants (id) on delete cascade,
    id uuid not null,
    term text not null,
    folded text not null,
    action text not null,
    created_by uuid,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    constraint word_filters_term_length check (char_length(term) between 1 and 100),
    constraint word_filters_action_valid check (action in ('block', 'flag'))
);
create unique index word_filters_folded_key on hark.word_filters (tenant_id, folded);

-- Every moderation and administrative action, written in the transaction of the
-- action. The application role may add entries and read them, never change or
-- delete them.
create table hark.audit_log (
    tenant_id uuid not null references hark.tenants (id) on delete cascade,
    id bigint generated always as identity,
    actor_id uuid,
    actor_key_id uuid,
    action text not null,
    target_type text,
    target_id uuid,
    room_id uuid,
    reason text,
    data jsonb not null default '{}',
    created_at timestamptz not null default now(),
    primary key (tenant_id, id)
);
create index audit_log_action_idx on hark.audit_log (tenant_id, action, id);
create index audit_log_target_idx on hark.audit_log (tenant_id, target_id, id);
create index audit_log_actor_idx on hark.audit_log (tenant_id, actor_id, id);

do $$
declare
    table_name text;
begin
    foreach table_name in array array['blocks', 'room_restrictions', 'reports', 'word_filters', 'audit_log'] loop
        execute format('alter table hark.%I enable row level security', table_name);
        execute format('alter table hark.%I force row level security', table_name);
        execute format(
            'create policy tenant_isolation on hark.%I '
            'using (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid) '
            'with check (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid)',
            table_name);
    end loop;
end
$$;
grant select, insert, update, delete on hark.blocks, hark.room_restrictions, hark.reports, hark.word_filters to hark_app;
grant select, insert on hark.audit_log to hark_app;

-- A block or unblock reaches the blocker's other devices through their feed.
alter table hark.user_events drop constraint user_events_type_valid;
alter table hark.user_events add constraint user_events_type_valid check (type in (
    'feed.room_added', 'feed.room_removed', 'feed.room_archived', 'feed.unread', 'feed.read',
    'feed.blocks_changed')) not valid;
alter table hark.user_events validate constraint user_events_type_valid;
