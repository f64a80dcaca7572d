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
-- when and by whom a message was pinned.
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
    add constraint messages_parent_fkey foreign key (tenant_id, parent_id) references hark.messages (tenant_id, id),
    add constraint messages_mentions_count check (cardinality(mentions) <= 50),
    add constraint messages_reply_count_nonnegative check (reply_count >= 0);
create index messages_parent_idx on hark.messages (tenant_id, parent_id, seq) where parent_id is not null;
create index messages_threads_idx on hark.messages (tenant_id, room_id, last_reply_at desc, id desc) where reply_count > 0;
create index messages_pinned_idx on hark.messages (tenant_id, room_id, pinned_at desc) where pinned_at is not null;

-- The search index of messages, kept apart from hark.messages because row-level
-- security and indexes of words do not mix: under a policy, PostgreSQL evaluates a
-- query's own conditions only after the policy's, unless their operators are
-- leakproof, and neither a text search match nor LIKE is; so on hark.messages a search
-- read every message of the caller's rooms (420 ms for 100 rooms of 1,000 messages,
-- `hark bench search`). This table has no policy and hark_app has no privilege on it:
-- it is written by the triggers below, in the transaction of each insert, edit,
-- deletion or purge of messages (a trigger rather than a foreign key, whose check
-- would lock each new message's row), and read only through hark.search_candidates, which
-- takes the tenant from the same setting as the policies and the rooms from its
-- caller. It holds the message's words (hark.search_text), its folded text (for
-- substrings, by trigram) and what searches filter by; only messages that are not
-- deleted.
create table hark.message_search (
    tenant_id uuid not null,
    message_id uuid not null,
    room_id uuid not null,
    sender_id uuid,
    kind text not null,
    has_attachment boolean not null,
    created_at timestamptz not null,
    words tsvector not null,
    folded text not null,
    primary key (tenant_id, message_id)
);
create index message_search_words_idx on hark.message_search using gin (words);
create index message_search_folded_idx on hark.message_search using gin (folded gin_trgm_ops);
revoke all on hark.message_search from hark_app;

-- The index rows of messages written, in one statement per statement that wrote them.
create function hark.message_search_added()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, hark
as $$
begin
    insert into hark.message_search
        (tenant_id, message_id, room_id, sender_id, kind, has_attachment, created_at, words, folded)
    select a.tenant_id, a.id, a.room_id, a.sender_id, a.kind, a.attachment is not null, a.created_at,
           to_tsvector('simple'::regconfig, hark.search_text(a.body)), hark.fold_text(a.body)
    from added a
    where a.deleted_at is null;
    return null;
end
$$;
create trigger messages_search_added after insert on hark.messages
    referencing new table as added for each statement execute function hark.message_search_added();

-- Edits and deletions: a changed body is indexed anew, a deleted message leaves the
-- index. Other updates of messages (thread summaries, pins, mentions) change nothing.
create function hark.message_search_changed()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, hark
as $$
begin
    delete from hark.message_search s
    using new_rows c
    where s.tenant_id = c.tenant_id and s.message_id = c.id and c.deleted_at is not null;
    update hark.message_search s
    set words = to_tsvector('simple'::regconfig, hark.search_text(c.body)), folded = hark.fold_text(c.body),
        has_attachment = c.attachment is not null
    from new_rows c
    join old_rows b on b.tenant_id = c.tenant_id and b.id = c.id
    where s.tenant_id = c.tenant_id and s.message_id = c.id and c.deleted_at is null
      and (c.body is distinct from b.body or (c.attachment is null) <> (b.attachment is null));
    return null;
end
$$;
create trigger messages_search_changed after update on hark.messages
    referencing old table as old_rows new table as new_rows
    for each statement execute function hark.message_search_changed();

-- Messages purged (with their room, or by the purger) leave the index.
create function hark.message_search_removed()
returns trigger
language plpgsql
security definer
set search_path = pg_catalog, hark
as $$
begin
    delete from hark.message_search s
    using old_rows o
    where s.tenant_id = o.tenant_id and s.message_id = o.id;
    return null;
end
$$;
create trigger messages_search_removed after delete on hark.messages
    referencing old table as old_rows for each statement execute function hark.message_search_removed();

-- The messages of the current tenant (the setting the policies read) in the given
-- rooms that match: every word as a prefix (p_words), or the folded query as a
-- substring (p_like, null to skip); the newest p_limit, each with its rank. The caller
-- gives the rooms it may read, under its own row-level security. Planned for each
-- call's own query (force_custom_plan): how common its words are decides between
-- reading the newest messages until enough match (common words) and reading the
-- matches from the indexes (rare ones); a plan made for any query chose the first for
-- every query, and a rare word then read the whole tenant (256 ms).
create function hark.search_candidates(
    p_rooms uuid[], p_words tsquery, p_like text, p_sender_id uuid, p_after timestamptz,
    p_before timestamptz, p_has_attachment boolean, p_kind text, p_limit integer)
returns table (message_id uuid, rank real)
language plpgsql
stable
security definer
set search_path = pg_catalog, hark
set plan_cache_mode = force_custom_plan
as $$
begin
    return query
    select s.message_id, ts_rank_cd(s.words, coalesce(p_words, ''::tsquery))
    from hark.message_search s
    where s.tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
      and s.room_id = any (p_rooms)
      and (s.words @@ p_words or s.folded like p_like)
      and (p_sender_id is null or s.sender_id = p_sender_id)
      and (p_after is null or s.created_at > p_after)
      and (p_before is null or s.created_at < p_before)
      and (p_has_attachment is null or s.has_attachment = p_has_attachment)
      and (p_kind is null or s.kind = p_kind)
    order by s.message_id desc
    limit p_limit;
end
$$;
revoke all on function hark.search_candidates(uuid[], tsquery, text, uuid, timestamptz, timestamptz, boolean, text, integer)
    from public;
grant execute on function hark.search_candidates(uuid[], tsquery, text, uuid, timestamptz, timestamptz, boolean, text, integer)
    to hark_app;

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
