-- Retention: a tenant's old messages and events removed in the background. This file
-- is an immutable migration.

-- How many days a tenant keeps messages (null: for ever).
alter table hark.tenants
    add column retention_days integer,
    add constraint tenants_retention_days check (retention_days between 1 and 36500);

-- How far retention has gone in each room: messages up to messages_to_seq are
-- tombstones, events up to events_to_seq are gone. Kept apart from the room's row,
-- which every send locks, so that the background work never waits for sends nor
-- makes them wait.
create table hark.room_retention (
    tenant_id uuid not null,
    room_id uuid not null,
    messages_to_seq bigint not null default 0,
    events_to_seq bigint not null default 0,
    primary key (tenant_id, room_id),
    foreign key (tenant_id, room_id) references hark.rooms (tenant_id, id) on delete cascade
);
alter table hark.room_retention enable row level security;
alter table hark.room_retention force row level security;
create policy tenant_isolation on hark.room_retention
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid);
grant select, insert, update, delete on hark.room_retention to hark_app;
