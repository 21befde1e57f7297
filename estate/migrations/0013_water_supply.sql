-- Secondary water supply (二次供水, issue 19): a fourth device kind. Its pumps and tanks
-- reuse running/fault/pressure_mpa/level_m; overflow and water quality are new columns
-- of the wide table and of both rollups (ingest/rollup.py derives its columns from the
-- same list).
INSERT INTO device_kinds (kind, subtypes) VALUES
    ('water_supply', ARRAY['booster_pump', 'tank', 'water_quality']);

ALTER TABLE telemetry ADD COLUMN overflow boolean;
ALTER TABLE telemetry ADD COLUMN chlorine_mg_l double precision;
ALTER TABLE telemetry ADD COLUMN turbidity_ntu double precision;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['telemetry_1m', 'telemetry_1h'] LOOP
        EXECUTE format('ALTER TABLE %I'
            ' ADD COLUMN overflow_true integer, ADD COLUMN overflow_n integer,'
            ' ADD COLUMN chlorine_mg_l_min double precision,'
            ' ADD COLUMN chlorine_mg_l_max double precision,'
            ' ADD COLUMN chlorine_mg_l_sum double precision, ADD COLUMN chlorine_mg_l_n integer,'
            ' ADD COLUMN turbidity_ntu_min double precision,'
            ' ADD COLUMN turbidity_ntu_max double precision,'
            ' ADD COLUMN turbidity_ntu_sum double precision, ADD COLUMN turbidity_ntu_n integer',
            t);
    END LOOP;
END $$;
