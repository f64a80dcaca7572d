-- Exports of a user's data. This file is an immutable migration.

-- The latest export of each user's data: asked for by the user, an administrator or
-- an API key, built in the background by any instance (hark_api.export_build), and
-- fetched with the user's id. Its document goes with the user's erasure and with the
-- tenant's purge.
create table hark.user_exports (
    tenant_id uuid not null,
    user_id uuid not null,
    requested_by uuid,
    state text not null default 'pending',
    document jsonb,
    requested_at timestamptz not null default now(),
    ready_at timestamptz,
    primary key (tenant_id, user_id),
    foreign key (tenant_id, user_id) references hark.users (tenant_id, id) on delete cascade,
    constraint user_exports_state check (state in ('pending', 'ready'))
);
create index user_exports_pending_idx on hark.user_exports (requested_at) where state = 'pending';

-- A tenant's rows, and the pending exports of every tenant for the builder alone (the
-- transaction-local setting hark.exporting, set by hark_api.export_build).
alter table hark.user_exports enable row level security;
alter table hark.user_exports force row level security;
create policy tenant_isolation on hark.user_exports
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid
           or (state = 'pending' and current_setting('hark.exporting', true) = 'on'))
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid);
grant select, insert, update, delete on hark.user_exports to hark_app;
