-- Webhooks: a tenant's endpoints, and the outbox of their deliveries, written in the
-- same transaction as the event each one carries (hark_api.webhook_enqueue), so that
-- nothing accepted can be lost between the log and the endpoint. This file is an
-- immutable migration.

create table hark.webhooks (
    tenant_id uuid not null references hark.tenants (id),
    id uuid not null,
    url text not null,
    description text not null default '',
    -- The event types sent to the endpoint; '*' stands for every type.
    event_types text[] not null,
    -- The signing secret, whsec_<base64>. It is kept in the clear because every
    -- delivery is signed with it (HMAC), like every provider of Standard Webhooks.
    secret text not null,
    -- The secret before the last rotation, which still signs until previous_secret_until.
    previous_secret text,
    previous_secret_until timestamptz,
    enabled boolean not null default true,
    -- Why a disabled endpoint is disabled: by a person, by a 410 answer, or after
    -- failing for too long.
    disabled_reason text,
    -- Since when every attempt has failed; cleared by a success.
    failing_since timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id),
    constraint webhooks_url_length check (char_length(url) between 1 and 2048),
    constraint webhooks_description_length check (char_length(description) <= 500),
    constraint webhooks_event_types_count check (cardinality(event_types) between 1 and 50),
    constraint webhooks_disabled_reason_valid check (
        disabled_reason is null or disabled_reason in ('manual', 'gone', 'failing'))
);

create index webhooks_enabled_idx on hark.webhooks (tenant_id) where enabled;

create table hark.webhook_deliveries (
    tenant_id uuid not null,
    -- Insertion order: deliveries of one endpoint and order key go out in id order.
    id bigint generated always as identity,
    webhook_id uuid not null,
    -- The webhook-id header: the same for every attempt and replay of this delivery,
    -- so that a receiver recognises a repeat. Random, so that it tells nothing about
    -- other tenants' volume.
    message_id text not null,
    -- Deliveries with the same key go out in order: the room of a room event, the
    -- tenant otherwise.
    order_key uuid not null,
    event_type text not null,
    -- The body, as sent: {type, timestamp, data}.
    payload jsonb not null,
    created_at timestamptz not null default now(),
    state text not null default 'pending',
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- While set and in the future, one instance is attempting this delivery.
    lease_until timestamptz,
    last_attempt_at timestamptz,
    last_status integer,
    last_error text,
    response_snippet text,
    latency_ms integer,
    delivered_at timestamptz,
    -- Also an endpoint's deliveries, newest first, and the replay of a period.
    primary key (tenant_id, webhook_id, id),
    foreign key (tenant_id, webhook_id) references hark.webhooks (tenant_id, id) on delete cascade,
    constraint webhook_deliveries_state_valid check (state in ('pending', 'delivered', 'failed')),
    constraint webhook_deliveries_snippet_length check (octet_length(response_snippet) <= 1024),
    constraint webhook_deliveries_error_length check (octet_length(last_error) <= 1024)
);

-- The queue: one chain per endpoint and order key, whose head is its first entry.
-- The write path maintains this and the primary key only.
create index webhook_deliveries_pending_idx
    on hark.webhook_deliveries (webhook_id, order_key, id) where state = 'pending';
-- The sweep of finished deliveries past their keeping time.
create index webhook_deliveries_finished_idx
    on hark.webhook_deliveries (created_at) where state <> 'pending';

-- The delivery workers see every tenant's endpoints and deliveries (the
-- transaction-local setting hark.delivering, set by the worker functions alone), as
-- the purge sees deleted rooms.
do $$
declare
    table_name text;
begin
    foreach table_name in array array['webhooks', 'webhook_deliveries'] loop
        execute format('alter table hark.%I enable row level security', table_name);
        execute format('alter table hark.%I force row level security', table_name);
        execute format(
            'create policy tenant_isolation on hark.%I '
            'using (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid '
            '       or current_setting(''hark.delivering'', true) = ''on'') '
            'with check (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid '
            '       or current_setting(''hark.delivering'', true) = ''on'')',
            table_name);
        execute format('grant select, insert, update, delete on hark.%I to hark_app', table_name);
    end loop;
end
$$;
