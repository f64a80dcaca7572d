-- Quotas per tenant. This file is an immutable migration.

-- The operator's quotas for one tenant, by name (users, rooms, members_per_room,
-- webhook_endpoints), each a number; a name absent takes the configured default.
alter table hark.tenants
    add column quotas jsonb not null default '{}'::jsonb,
    add constraint tenants_quotas_object check (jsonb_typeof(quotas) = 'object');

-- The configured defaults (HARK_QUOTA_*), one row, written by each instance as it
-- starts (hark_api.quota_defaults_set): instances should be configured alike. It holds
-- no tenant's data: its policy lets every context read and write it, stated like every
-- other table's rather than left without one.
create table hark.quota_defaults (
    singleton boolean primary key default true check (singleton),
    quotas jsonb not null
);
alter table hark.quota_defaults enable row level security;
alter table hark.quota_defaults force row level security;
create policy service_wide on hark.quota_defaults using (true) with check (true);
grant select, insert, update on hark.quota_defaults to hark_app;
