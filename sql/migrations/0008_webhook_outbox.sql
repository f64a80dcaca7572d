-- A narrower outbox for webhooks. The write path records one small row per write of
-- a tenant with endpoints: for room events, the room and the stretch of its log that
-- was written (the log holds the events); for other events, their payloads. The
-- delivery workers fan these rows out into per-endpoint deliveries
-- (hark_api.webhook_fanout), so that a write costs the same whatever the number of
-- endpoints, and copies no payload. This file is an immutable migration.

create table hark.webhook_outbox (
    tenant_id uuid not null,
    id bigint generated always as identity,
    -- The chain the events keep their order in: the room, or the tenant.
    order_key uuid not null,
    -- Room events: the room and the seqs written.
    room_id uuid,
    first_seq bigint,
    last_seq bigint,
    -- Other events: [{type, timestamp, data}], in order.
    events jsonb,
    -- For endpoints that want notification.message: the members to name per message
    -- seq ({"<seq>": [user ids]}), as they were when it was sent.
    notifications jsonb,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    constraint webhook_outbox_one_source check (
        (room_id is not null and first_seq is not null and last_seq is not null) <> (events is not null))
);
-- The fan-out takes the oldest rows first, across tenants.
create index webhook_outbox_order_idx on hark.webhook_outbox (id);

alter table hark.webhook_outbox enable row level security;
alter table hark.webhook_outbox force row level security;
-- The delivery workers fan out every tenant's rows (hark.delivering), and the purge
-- leaves a deleted room's log alone while rows of it wait (hark.purging).
create policy tenant_isolation on hark.webhook_outbox
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
           or current_setting('hark.delivering', true) = 'on'
           or current_setting('hark.purging', true) = 'on')
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
                or current_setting('hark.delivering', true) = 'on');
grant select, insert, update, delete on hark.webhook_outbox to hark_app;
