-- pg_dump: the extension's tables hold user data, so their rows are dumped
-- (a restore recreates the tables with CREATE EXTENSION, then loads the rows
-- with every trigger standing aside: see _restoring()). The pricing tables
-- are dumped whole: a dumped row replaces the installed row it collides
-- with (_keep_installed_rows_restorable). maintenance_lock holds only
-- install-time rows and is not dumped. One call per statement: each call
-- updates the pg_extension row.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'usage_analytics'::regnamespace AND c.relkind IN ('r', 'S')
                AND c.relname <> 'maintenance_lock'
                AND EXISTS (SELECT 1 FROM pg_depend d
                             WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') LOOP
        PERFORM pg_catalog.pg_extension_config_dump(t, '');
    END LOOP;
END;
$$;
