-- Safe defaults. This file is an immutable migration.
--
-- New tenants start with self-registration closed: their owner opens it (or the
-- creator asks for it at creation). Tenants that exist keep what they have.
alter table hark.tenants alter column registration_open set default false;

-- A profile picture is a URL a browser follows: http or https only, and bounded by
-- bytes (not characters), so that a user's profile always fits in the notifications
-- that carry it. NOT VALID: rows written before keep their value (presence leaves an
-- oversized profile out of its signals), every new write is checked.
alter table hark.users drop constraint users_avatar_url_length;
alter table hark.users add constraint users_avatar_url_valid
    check (avatar_url is null or (octet_length(avatar_url) <= 2048 and avatar_url ~* '^https?://[^\s]+$'))
    not valid;
