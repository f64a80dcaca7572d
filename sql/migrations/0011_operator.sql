-- Operating many tenants: suspension by the operator. This file is an immutable
-- migration.

-- A suspended tenant keeps every row; its tokens, API keys, logins and registrations
-- are refused (403 tenant_suspended) until the operator resumes it.
alter table hark.tenants
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
