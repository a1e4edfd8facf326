-- Least privilege on PostgreSQL: two roles, run once by an administrator, connected to the
-- service's database:
--   psql -v migrator_password="$(openssl rand -hex 24)" -v app_password="$(openssl rand -hex 24)" \
--        -d cds -f deploy/postgres/roles.sql
-- cds_migrator owns the schema "cds" and everything in it: the migrate Job connects as it
-- (migration-database-url). cds_app is what the pods connect as (database-url): it reads and writes
-- rows of the tables the migrations made, and cannot create, alter, drop or truncate a table, nor
-- create anything else in the database.
\set ON_ERROR_STOP on
CREATE ROLE cds_migrator LOGIN PASSWORD :'migrator_password';
CREATE ROLE cds_app LOGIN PASSWORD :'app_password' CONNECTION LIMIT 100;
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO cds_migrator, cds_app', current_database()) \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA cds AUTHORIZATION cds_migrator;
GRANT USAGE ON SCHEMA cds TO cds_app;
ALTER ROLE cds_migrator SET search_path = cds;
ALTER ROLE cds_app SET search_path = cds;
-- Whatever a migration creates from now on: rows only.
ALTER DEFAULT PRIVILEGES FOR ROLE cds_migrator IN SCHEMA cds
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO cds_app;
ALTER DEFAULT PRIVILEGES FOR ROLE cds_migrator IN SCHEMA cds
  GRANT USAGE, SELECT ON SEQUENCES TO cds_app;
