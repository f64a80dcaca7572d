-- The counts behind the quotas of use: daily sends and connections. This file is an
-- immutable migration.

-- Per tenant and UTC day: messages written and bytes of attachment metadata (the JSON
-- text of each attachment) written, counted in the writing transaction, under this
-- row's lock, for tenants that have a messages_per_day or attachment_bytes_per_day
-- quota only (others pay nothing). A counter made during the day starts from the
-- day's rolled-up message figure.
create table hark.tenant_send_counts (
    tenant_id uuid not null,
    day date not null,
    messages bigint not null default 0,
    attachment_bytes bigint not null default 0,
    primary key (tenant_id, day)
);

alter table hark.tenant_send_counts enable row level security;
alter table hark.tenant_send_counts force row level security;
create policy tenant_isolation on hark.tenant_send_counts
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid);
grant select, insert, update, delete on hark.tenant_send_counts to hark_app;

-- Per tenant and instance: the WebSocket and event-stream connections its users hold
-- there, as the instance last recorded them (hark_api.connections_sync), valid until
-- seen_until; an instance that stops syncing is forgotten. A connection is checked
-- against the tenant's connections quota with the other instances' rows and the
-- instance's own count (hark_api.connection_admit).
create table hark.tenant_connections (
    tenant_id uuid not null,
    instance_id uuid not null,
    connections integer not null,
    seen_until timestamptz not null,
    primary key (tenant_id, instance_id)
);
create index tenant_connections_instance_idx on hark.tenant_connections (instance_id);

alter table hark.tenant_connections enable row level security;
alter table hark.tenant_connections force row level security;
create policy tenant_isolation on hark.tenant_connections
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
           or current_setting('hark.connections', true) = 'on')
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
                or current_setting('hark.connections', true) = 'on');
grant select, insert, update, delete on hark.tenant_connections to hark_app;
