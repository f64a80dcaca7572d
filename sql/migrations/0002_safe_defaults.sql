-- Safe defaults. This file is an immutable migration.
--
-- New tenants start with self-registration closed: their owner opens it (or the
-- creator asks for it at creation). Tenants that exist keep what they have.
alter table hark.tenants alter column registration_open set default false;

-- A profile picture is a URL a browser follows: http or https only, printable ASCII
-- as URIs are (other characters percent-encoded), and bounded by bytes, so that a user's profile always fits in the notifications
-- that carry it. NOT VALID: rows written before keep their value (presence leaves an
-- oversized profile out of its signals), every new write is checked.
alter table hark.users drop constraint users_avatar_url_length;
alter table hark.users add constraint users_avatar_url_valid
    check (avatar_url is null or (octet_length(avatar_url) <= 2048 and avatar_url ~ '^https?://[!-~]+$'))
    not valid;

-- Refresh tokens rotate: each works once. The digests of spent ones are kept for the
-- session's life, so that a spent token presented again is recognised as stolen (its
-- thief or its owner is replaying it) and ends the whole session, as the OAuth 2.0
-- security best current practice says for refresh token rotation.
create table hark.spent_refresh_tokens (
    tenant_id uuid not null,
    refresh_hash bytea not null,
    session_id uuid not null,
    spent_at timestamptz not null default now(),
    primary key (tenant_id, refresh_hash),
    foreign key (tenant_id, session_id) references hark.sessions (tenant_id, id) on delete cascade
);
create index spent_refresh_tokens_session_idx on hark.spent_refresh_tokens (tenant_id, session_id);
alter table hark.spent_refresh_tokens enable row level security;
alter table hark.spent_refresh_tokens force row level security;
create policy tenant_isolation on hark.spent_refresh_tokens
    using (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('hark.tenant_id', true), '')::uuid);
grant select, insert, update, delete on hark.spent_refresh_tokens to hark_app;
