-- Hark's core model. This file is an immutable migration: once released it never
-- changes; later changes to tables come as new numbered files. Functions, procedures
-- and triggers live in sql/functions/ and are re-applied whenever their text changes.
--
-- Every tenant-owned table carries tenant_id, references its parents through
-- composite (tenant_id, id) keys so that no row can point into another tenant, and
-- has row-level security enabled and forced. The policies read the tenant from the
-- transaction-local setting hark.tenant_id, which the API functions set from the
-- verified token.

-- The application role: it owns nothing, cannot log in by itself and cannot bypass
-- row-level security. Connections switch to it at the start of every transaction.
-- Roles are cluster-wide, so several databases on one cluster share it.
do $$
begin
    create role hark_app nologin nosuperuser nocreatedb nocreaterole noinherit nobypassrls;
exception when duplicate_object then
    null;
end
$$;

-- The connecting role must be able to switch to hark_app. A superuser can do so
-- anyway; on managed Postgres the owner role is granted membership here.
do $$
begin
    execute format('grant hark_app to %I', current_user);
exception when others then
    raise notice 'could not grant hark_app to %: %', current_user, sqlerrm;
end
$$;

grant usage on schema hark to hark_app;

create table hark.tenants (
    id uuid primary key,
    slug text not null,
    name text not null,
    registration_open boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    constraint tenants_slug_format check (slug ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
    constraint tenants_name_length check (char_length(name) between 1 and 100)
);
create unique index tenants_slug_key on hark.tenants (slug);

create table hark.users (
    tenant_id uuid not null references hark.tenants (id) on delete cascade,
    id uuid not null,
    username text not null,
    email text,
    display_name text,
    avatar_url text,
    bio text,
    external_id text,
    metadata jsonb not null default '{}',
    role text not null default 'member',
    password_hash text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    deleted_at timestamptz,
    primary key (tenant_id, id),
    constraint users_role_valid check (role in ('owner', 'admin', 'member')),
    constraint users_username_format check (username ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$'),
    constraint users_email_format check (email is null or (char_length(email) <= 254 and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$')),
    constraint users_display_name_length check (display_name is null or char_length(display_name) between 1 and 100),
    constraint users_avatar_url_length check (avatar_url is null or char_length(avatar_url) <= 2048),
    constraint users_bio_length check (bio is null or char_length(bio) <= 1000),
    constraint users_external_id_length check (external_id is null or char_length(external_id) between 1 and 200),
    constraint users_metadata_size check (pg_column_size(metadata) <= 8192)
);
-- Usernames and emails are unique per tenant among users that are not deleted, so a
-- deleted user's name can be taken again.
create unique index users_username_key on hark.users (tenant_id, lower(username)) where deleted_at is null;
create unique index users_email_key on hark.users (tenant_id, lower(email)) where deleted_at is null and email is not null;
create unique index users_external_id_key on hark.users (tenant_id, external_id) where external_id is not null;
create index users_role_idx on hark.users (tenant_id, role, id) where deleted_at is null;

create table hark.api_keys (
    tenant_id uuid not null references hark.tenants (id) on delete cascade,
    id uuid not null,
    name text not null,
    -- The first characters of the secret, shown in listings so that people can tell
    -- keys apart; the secret itself is stored only as a SHA-256 digest.
    prefix text not null,
    secret_hash bytea not null,
    created_by uuid not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, created_by) references hark.users (tenant_id, id),
    constraint api_keys_name_length check (char_length(name) between 1 and 100)
);
create unique index api_keys_secret_hash_key on hark.api_keys (secret_hash);

-- A session is one login (or one token minted through an API key). Access tokens
-- carry the session id; logging out revokes the session, which refuses every access
-- token of it and its refresh token from then on.
create table hark.sessions (
    tenant_id uuid not null references hark.tenants (id) on delete cascade,
    id uuid not null,
    user_id uuid not null,
    kind text not null,
    refresh_hash bytea not null,
    created_at timestamptz not null default now(),
    refreshed_at timestamptz,
    expires_at timestamptz not null,
    revoked_at timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    constraint sessions_kind_valid check (kind in ('password', 'api_key'))
);
create index sessions_user_idx on hark.sessions (tenant_id, user_id) where revoked_at is null;

create table hark.rooms (
    tenant_id uuid not null references hark.tenants (id) on delete cascade,
    id uuid not null,
    kind text not null,
    name text,
    topic text,
    visibility text not null default 'private',
    invite_code text,
    -- For direct rooms: the two member ids in sorted order, joined by a colon, so that
    -- a unique index makes get-or-create race-free.
    direct_key text,
    created_by uuid,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    archived_at timestamptz,
    -- The seq of the room's newest event; the next event takes last_seq + 1 under the
    -- room's row lock.
    last_seq bigint not null default 0,
    last_event_at timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, created_by) references hark.users (tenant_id, id),
    constraint rooms_kind_valid check (kind in ('group', 'direct')),
    constraint rooms_visibility_valid check (visibility in ('public', 'private')),
    constraint rooms_name_length check (name is null or char_length(name) between 1 and 100),
    constraint rooms_topic_length check (topic is null or char_length(topic) <= 1000),
    constraint rooms_invite_code_format check (invite_code is null or invite_code ~ '^[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{6}$'),
    constraint rooms_direct_key_present check ((kind = 'direct') = (direct_key is not null)),
    constraint rooms_last_seq_nonnegative check (last_seq >= 0)
);
create unique index rooms_invite_code_key on hark.rooms (tenant_id, invite_code) where invite_code is not null;
create unique index rooms_direct_key on hark.rooms (tenant_id, direct_key) where direct_key is not null;

create table hark.room_members (
    tenant_id uuid not null,
    room_id uuid not null,
    user_id uuid not null,
    role text not null default 'member',
    joined_at timestamptz not null default now(),
    last_read_seq bigint not null default 0,
    primary key (tenant_id, room_id, user_id),
    foreign key (tenant_id, room_id) references hark.rooms (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    constraint room_members_role_valid check (role in ('owner', 'admin', 'member')),
    constraint room_members_last_read_seq_nonnegative check (last_read_seq >= 0)
);
create index room_members_user_idx on hark.room_members (tenant_id, user_id);

-- The room event log: the one source for history, resume and fan-out.
create table hark.room_events (
    tenant_id uuid not null,
    room_id uuid not null,
    seq bigint not null,
    type text not null,
    actor_id uuid,
    data jsonb not null default '{}',
    created_at timestamptz not null default now(),
    primary key (room_id, seq),
    foreign key (tenant_id, room_id) references hark.rooms (tenant_id, id) on delete cascade,
    constraint room_events_seq_positive check (seq > 0),
    constraint room_events_type_valid check (type in (
        'message.created', 'message.edited', 'message.deleted',
        'reaction.added', 'reaction.removed',
        'member.joined', 'member.left', 'member.role_changed',
        'room.created', 'room.updated', 'room.archived'))
);

create table hark.messages (
    tenant_id uuid not null,
    id uuid not null,
    room_id uuid not null,
    -- The seq of the message.created event: the message's place in the room.
    seq bigint not null,
    sender_id uuid,
    kind text not null default 'text',
    body text not null default '',
    attachment jsonb,
    reply_to_id uuid,
    client_id text,
    created_at timestamptz not null default now(),
    edited_at timestamptz,
    deleted_at timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, room_id) references hark.rooms (tenant_id, id) on delete cascade,
    foreign key (tenant_id, sender_id) references hark.users (tenant_id, id),
    foreign key (tenant_id, reply_to_id) references hark.messages (tenant_id, id),
    constraint messages_kind_valid check (kind in ('text', 'image', 'file', 'system')),
    constraint messages_client_id_length check (client_id is null or char_length(client_id) between 1 and 100)
);
create unique index messages_room_seq_key on hark.messages (room_id, seq);
create unique index messages_client_id_key on hark.messages (room_id, sender_id, client_id) where client_id is not null;

-- Every earlier version of an edited message, oldest first.
create table hark.message_edits (
    tenant_id uuid not null,
    message_id uuid not null,
    version integer not null,
    body text not null,
    attachment jsonb,
    created_at timestamptz not null,
    replaced_at timestamptz not null default now(),
    primary key (tenant_id, message_id, version),
    foreign key (tenant_id, message_id) references hark.messages (tenant_id, id) on delete cascade
);

create table hark.reactions (
    tenant_id uuid not null,
    message_id uuid not null,
    user_id uuid not null,
    emoji text not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, message_id, user_id, emoji),
    foreign key (tenant_id, message_id) references hark.messages (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    constraint reactions_emoji_length check (char_length(emoji) between 1 and 32)
);

-- Row-level security on every tenant-owned table. The tenants table also lets a
-- login find its tenant by slug (hark.tenant_slug), and nothing else.
alter table hark.tenants enable row level security;
alter table hark.tenants force row level security;
create policy tenant_isolation on hark.tenants
    using (id = nullif(current_setting('hark.tenant_id', true), '')::uuid
           or slug = nullif(current_setting('hark.tenant_slug', true), ''))
    with check (id = nullif(current_setting('hark.tenant_id', true), '')::uuid);

do $$
declare
    table_name text;
begin
    foreach table_name in array array[
        'users', 'api_keys', 'sessions', 'rooms', 'room_members', 'room_events',
        'messages', 'message_edits', 'reactions']
    loop
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

grant select, insert, update, delete on all tables in schema hark to hark_app;
