-- Operating many tenants: suspension by the operator, and the purge of deleted
-- tenants. This file is an immutable migration.

-- A suspended tenant keeps every row; its tokens, API keys, logins and registrations
-- are refused (403 tenant_suspended) until the operator resumes it. A deleted
-- tenant's rows are purged in the background in bounded batches
-- (hark_api.purge_tenants); its row stays, with the rows purged so far and when the
-- purge finished, so that its slug stays reserved.
alter table hark.tenants
    add column purged_rows bigint not null default 0,
    add column purged_at timestamptz,
    add column suspended_at timestamptz,
    add column suspended_reason text,
    add constraint tenants_suspended_reason_length check (char_length(suspended_reason) <= 500);

-- The operator's functions see every tenant's row (the transaction-local setting
-- hark.operator, set by hark_api.enter_operator alone, which only the server's check
-- of the operator key reaches), and none of the tenants' other rows.
drop policy tenant_isolation on hark.tenants;
create policy tenant_isolation on hark.tenants
    using (id = nullif(current_setting('hark.tenant_id', true), '')::uuid
           or slug = nullif(current_setting('hark.tenant_slug', true), '')
           or current_setting('hark.operator', true) = 'on')
    with check (id = nullif(current_setting('hark.tenant_id', true), '')::uuid
                or current_setting('hark.operator', true) = 'on');
