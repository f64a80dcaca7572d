-- Each user's own event feed: what happens to them across rooms (added to a room, a
-- new direct room, removed, a room deleted or archived, a room with new messages,
-- their own read markers), with a gapless per-user seq, so that a connection hears
-- about its user without subscribing to every room and resumes like a room's
-- subscriber. And when each user was last connected. This file is an immutable
-- migration.

-- When the user last connected or went, on any instance (hark_api.connections_sync);
-- whether they are connected now is presence's, not a table's.
alter table hark.users add column last_seen_at timestamptz;

-- Whether messages of others wait after the member's read marker: set when such a
-- message arrives (which is when the member's feed hears feed.unread), cleared when
-- the member reads them all. It makes that transition one index scan of the room's
-- members per write, instead of a look at the messages after each member's marker.
alter table hark.room_members add column has_unread boolean not null default false;
-- The members a new message may flag: a busy room's writes find none here at once.
create index room_members_caught_up_idx on hark.room_members (tenant_id, room_id) where not has_unread;
update hark.room_members m set has_unread = true
where exists (select from hark.messages msg
              where msg.room_id = m.room_id and msg.seq > m.last_read_seq
                and msg.deleted_at is null and msg.sender_id is distinct from m.user_id);

-- The newest seq of each user's feed; a user without a row has seq 0.
create table hark.user_feeds (
    tenant_id uuid not null,
    user_id uuid not null,
    last_seq bigint not null,
    primary key (tenant_id, user_id),
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade
);

create table hark.user_events (
    tenant_id uuid not null,
    user_id uuid not null,
    seq bigint not null,
    type text not null,
    actor_id uuid,
    data jsonb not null default '{}',
    created_at timestamptz not null default now(),
    primary key (tenant_id, user_id, seq),
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    constraint user_events_seq_positive check (seq > 0),
    constraint user_events_type_valid check (type in (
        'feed.room_added', 'feed.room_removed', 'feed.room_archived', 'feed.unread', 'feed.read'))
);
create index user_events_created_idx on hark.user_events (created_at);

do $$
declare
    table_name text;
begin
    foreach table_name in array array['user_feeds', 'user_events'] loop
        execute format('alter table hark.%I enable row level security', table_name);
        execute format('alter table hark.%I force row level security', table_name);
        execute format(
            'create policy tenant_isolation on hark.%I '
            'using (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid) '
            'with check (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid)',
            table_name);
        execute format('grant select, insert, update, delete on hark.%I to hark_app', table_name);
    end loop;
end
$$;

-- Who is connected, as each instance last recorded it (hark_api.connections_sync):
-- one row per user and instance with a subscription there, valid until seen_until.
-- Webhooks of messages for members who are not connected (notification.message)
-- read it in the sending transaction; presence itself stays in memory. No foreign
-- key: these rows are the instances' view, replaced at every sync.
create table hark.user_connections (
    tenant_id uuid not null,
    user_id uuid not null,
    instance_id uuid not null,
    seen_until timestamptz not null,
    primary key (tenant_id, user_id, instance_id)
);
create index user_connections_instance_idx on hark.user_connections (instance_id);

alter table hark.user_connections enable row level security;
alter table hark.user_connections force row level security;
-- An instance syncs its rows across tenants (the transaction-local setting
-- hark.connections, set by hark_api.connections_sync alone).
create policy tenant_isolation on hark.user_connections
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
           or current_setting('hark.connections', true) = 'on')
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
                or current_setting('hark.connections', true) = 'on');
grant select, insert, update, delete on hark.user_connections to hark_app;
