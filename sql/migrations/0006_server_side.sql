-- The server-side API: a tenant's backend acting as one of its users, and users that
-- are deactivated rather than deleted. This file is an immutable migration.

-- A deactivated user keeps their rows and history but cannot log in, be minted a
-- session or be acted for; their sessions are revoked when they are deactivated.
alter table hark.users add column deactivated_at timestamptz;

-- An API key acting as a user (X-Api-Key with X-Hark-User) does so through a session
-- of kind 'acting' that names the key, so that every function that enters a user's
-- session (the batched send path included) checks the key as well: a revoked key, or
-- one whose creator lost the role, stops acting at once.
alter table hark.sessions add column api_key_id uuid;
alter table hark.sessions drop constraint sessions_kind_valid;
alter table hark.sessions add constraint sessions_kind_valid check (kind in ('password', 'api_key', 'acting'));
alter table hark.sessions add constraint sessions_acting_names_key check ((kind = 'acting') = (api_key_id is not null));
alter table hark.sessions add constraint sessions_api_key_fkey
    foreign key (tenant_id, api_key_id) references hark.api_keys (tenant_id, id) on delete cascade;
-- One live acting session per key and user: instances racing to open it meet here.
create unique index sessions_acting_key on hark.sessions (tenant_id, api_key_id, user_id)
    where kind = 'acting' and revoked_at is null;
