-- Conversations: threads, mentions, pins, message search, and rooms with their own
-- data. This file is an immutable migration.

-- pg_trgm ships with PostgreSQL and is a trusted extension (managed services allow
-- it); it indexes the trigrams of folded bodies for substring search. Its operator
-- class is found on the migration's search path, where the extension was put.
create extension if not exists pg_trgm;

-- Text as searched and filtered: lower-cased by ICU, decomposed (NFKD), with
-- combining marks and the stroke letters NFKD keeps folded, so that "Thế giới",
-- "the gioi" and "THE GIOI" compare equal. It lives here, with the tables, because
-- indexes are built on it; the word filters fold by the same function. PL/pgSQL, not
-- SQL, because every message written calls it (its index and word index): a SQL
-- function that is not inlined is planned anew on each call (the word index's text
-- took 60 µs per insert as SQL, 7 µs as PL/pgSQL, on the 2-core machine here).
create function hark.fold_text(p_text text)
returns text
language plpgsql
immutable
parallel safe
as $$
begin
    return translate(
        regexp_replace(normalize(lower(p_text collate "und-x-icu"), NFKD),
                       '[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]', '', 'g'),
        'đħıłøŧ', 'dhilot');
end
$$;

-- What the word index holds of a text: its folded form and, for each run of a
-- script written without spaces (Han, kana, Hangul), the run's overlapping pairs of
-- characters, so that a word inside such a run is found like a word between spaces.
-- Texts without such a script (most) take the short way.
create function hark.search_text(p_text text)
returns text
language plpgsql
immutable
parallel safe
as $$
begin
    if p_text !~ '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]' then
        return hark.fold_text(p_text);
    end if;
    return hark.fold_text(p_text) || coalesce(' ' || (
        select string_agg(substr(run.parts[1], i, 2), ' ')
        from regexp_matches(p_text, '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{2,}', 'g')
                 as run(parts),
             generate_series(1, char_length(run.parts[1]) - 1) as i), '');
end
$$;

-- Threads (one level): a reply names its parent; the parent keeps the thread's
-- summary, written in the reply's transaction. show_in_room: the reply is also in the
-- room's main timeline. Mentions: the user ids a message names and whether it names
-- the whole room (hark.mentions holds who was mentioned, for counts and lists). Pins:
-- when and by whom a message was pinned. search: the word index of the body, which
-- follows every edit and deletion (a tombstone's body is empty).
alter table hark.messages
    add column parent_id uuid,
    add column show_in_room boolean not null default true,
    add column reply_count integer not null default 0,
    add column last_reply_at timestamptz,
    add column thread_participants uuid[] not null default '{}',
    add column mentions uuid[] not null default '{}',
    add column mention_room boolean not null default false,
    add column pinned_at timestamptz,
    add column pinned_by uuid,
    add column search tsvector generated always as (to_tsvector('simple'::regconfig, hark.search_text(body))) stored,
    add constraint messages_parent_fkey foreign key (tenant_id, parent_id) references hark.messages (tenant_id, id),
    add constraint messages_mentions_count check (cardinality(mentions) <= 50),
    add constraint messages_reply_count_nonnegative check (reply_count >= 0);
create index messages_parent_idx on hark.messages (tenant_id, parent_id, seq) where parent_id is not null;
create index messages_threads_idx on hark.messages (tenant_id, room_id, last_reply_at desc, id desc) where reply_count > 0;
create index messages_pinned_idx on hark.messages (tenant_id, room_id, pinned_at desc) where pinned_at is not null;
create index messages_search_idx on hark.messages using gin (search) where deleted_at is null;
create index messages_body_trgm_idx on hark.messages using gin (hark.fold_text(body) gin_trgm_ops) where deleted_at is null;

-- Who was mentioned where: a row per mentioned user (everyone in the room, for a
-- mention of the room) and message, so that mention counts after a read marker and the
-- list of a user's mentions are index ranges.
create table hark.mentions (
    tenant_id uuid not null,
    user_id uuid not null,
    message_id uuid not null,
    room_id uuid not null,
    seq bigint not null,
    primary key (tenant_id, user_id, message_id),
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    foreign key (tenant_id, message_id) references hark.messages (tenant_id, id) on delete cascade
);
create index mentions_room_idx on hark.mentions (tenant_id, user_id, room_id, seq);
create index mentions_message_idx on hark.mentions (tenant_id, message_id);

-- A user's read position in a thread they took part in (started it, replied, or read
-- it): replies after last_read_seq by others are their unread count.
create table hark.thread_reads (
    tenant_id uuid not null,
    parent_id uuid not null,
    user_id uuid not null,
    room_id uuid not null,
    last_read_seq bigint not null default 0,
    primary key (tenant_id, parent_id, user_id),
    foreign key (tenant_id, parent_id) references hark.messages (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade
);
create index thread_reads_user_idx on hark.thread_reads (tenant_id, user_id, room_id);

-- Rooms with their own data, and who may pin and mention the whole room besides the
-- room's owners and admins.
alter table hark.rooms
    add column metadata jsonb not null default '{}',
    add column members_can_pin boolean not null default false,
    add column members_can_mention_room boolean not null default false,
    add constraint rooms_metadata_object check (jsonb_typeof(metadata) = 'object'),
    add constraint rooms_metadata_size check (pg_column_size(metadata) <= 8192);
create index rooms_metadata_idx on hark.rooms using gin (metadata jsonb_path_ops);
create index rooms_activity_idx on hark.rooms (tenant_id, last_event_at desc, id) where deleted_at is null;
-- A product's own roles and groups live in users' metadata: filtering by a key and
-- value is an index lookup.
create index users_metadata_idx on hark.users using gin (metadata jsonb_path_ops);

alter table hark.room_events drop constraint room_events_type_valid;
alter table hark.room_events add constraint room_events_type_valid check (type in (
    'message.created', 'message.edited', 'message.deleted',
    'message.pinned', 'message.unpinned',
    'reaction.added', 'reaction.removed',
    'member.joined', 'member.left', 'member.role_changed',
    'member.muted', 'member.unmuted', 'member.banned', 'member.unbanned',
    'room.created', 'room.updated', 'room.archived')) not valid;
alter table hark.room_events validate constraint room_events_type_valid;

alter table hark.user_events drop constraint user_events_type_valid;
alter table hark.user_events add constraint user_events_type_valid check (type in (
    'feed.room_added', 'feed.room_removed', 'feed.room_archived', 'feed.unread', 'feed.read',
    'feed.blocks_changed', 'feed.mention')) not valid;
alter table hark.user_events validate constraint user_events_type_valid;

do $$
declare
    table_name text;
begin
    foreach table_name in array array['mentions', 'thread_reads'] loop
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
grant select, insert, update, delete on hark.mentions, hark.thread_reads to hark_app;
grant execute on function hark.fold_text(text), hark.search_text(text) to hark_app;
