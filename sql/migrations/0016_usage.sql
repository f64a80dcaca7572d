-- Usage figures per tenant, rolled up in the background. This file is an immutable
-- migration.

-- Per tenant and UTC day: messages written (counted from the messages' time-ordered
-- ids, up to counted_to) and the most users connected at once (sampled).
create table hark.tenant_usage_daily (
    tenant_id uuid not null,
    day date not null,
    messages bigint not null default 0,
    peak_connected_users integer not null default 0,
    counted_to uuid not null default '00000000-0000-0000-0000-000000000000',
    primary key (tenant_id, day)
);

-- Per tenant and UTC day: the users who sent a message or were connected, for daily
-- and monthly active users.
create table hark.tenant_active_users (
    tenant_id uuid not null,
    day date not null,
    user_id uuid not null,
    primary key (tenant_id, day, user_id)
);

-- A tenant's rows, and every tenant's for the operator's context (hark.operator), which
-- lists tenants with their figures.
do $$
declare
    table_name text;
begin
    foreach table_name in array array['tenant_usage_daily', 'tenant_active_users'] loop
        execute format('alter table hark.%I enable row level security', table_name);
        execute format('alter table hark.%I force row level security', table_name);
        execute format(
            'create policy tenant_isolation on hark.%I '
            'using (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid '
            '       or current_setting(''hark.operator'', true) = ''on'') '
            'with check (tenant_id = nullif(current_setting(''hark.tenant_id'', true), '''')::uuid)',
            table_name);
        execute format('grant select, insert, update, delete on hark.%I to hark_app', table_name);
    end loop;
end
$$;
