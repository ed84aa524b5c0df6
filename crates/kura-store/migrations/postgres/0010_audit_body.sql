-- SQLite only (the trail stored as canonical bodies with derived columns,
-- see the SQLite migration). PostgreSQL keeps plain columns, which
-- `kura audit verify` checks one by one.
SELECT 1;
