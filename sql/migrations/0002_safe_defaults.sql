-- Safe defaults. This file is an immutable migration.
--
-- New tenants start with self-registration closed: their owner opens it (or the
-- creator asks for it at creation). Tenants that exist keep what they have.
alter table hark.tenants alter column registration_open set default false;
