-- Repeated readings stored as runs (issue 21, item 7; ingest/runs.py, docs/scale.md).
--
-- An idle lift at a landing sends the same nine values every 2 s; over half a city's
-- telemetry repeats the device's previous reading. Once a day of telemetry is older than
-- ESTATE_RUNS_AFTER_DAYS (off by default) ingest.runs rewrites it as runs: a device's
-- consecutive readings with identical values inside one half hour become one row holding
-- the first reading (every telemetry column), the last reading's time, and each repeat's
-- offset from the first in microseconds (rep_us) and in sequence number (rep_seq). Then the
-- day's raw chunk is dropped. Nothing is lost: telemetry_between(since, until) gives back
-- every reading exactly as it was stored, and is what every reader of raw telemetry uses.
--
-- Readings later than the compacted horizon (`telemetry_runs_horizon`) go to telemetry as
-- before; a late reading for a compacted day is stored here as a run of one.
CREATE TABLE telemetry_runs (LIKE telemetry);
ALTER TABLE telemetry_runs
    ADD COLUMN last_ts timestamptz NOT NULL,
    ADD COLUMN rep_us integer[],   -- NULL: a run of one reading
    ADD COLUMN rep_seq integer[],
    ADD UNIQUE (device_id, ts, seq);
SELECT create_hypertable('telemetry_runs', 'ts', chunk_time_interval => interval '1 day');

-- Readings before `through` are read and written as runs (monotonic; -infinity: none yet).
CREATE TABLE telemetry_runs_horizon (through timestamptz NOT NULL);
INSERT INTO telemetry_runs_horizon VALUES ('-infinity');

-- (Re)defines the functions that expand runs into telemetry rows, from telemetry's columns
-- as they are now. A migration that adds a telemetry column adds it to telemetry_runs too
-- and calls this again (the functions' SETOF telemetry type would not match otherwise).
CREATE FUNCTION telemetry_runs_define() RETURNS void LANGUAGE plpgsql AS $define$
DECLARE
    cols text;
BEGIN
    SELECT string_agg(CASE a.attname
                          WHEN 'ts' THEN 'r.ts + u.us * interval ''1 microsecond'''
                          WHEN 'seq' THEN 'r.seq + u.sq'
                          ELSE 'r.' || quote_ident(a.attname) END,
                      ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_attribute a
     WHERE a.attrelid = 'telemetry'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    -- every reading of the runs that start before `until` and may reach `since` (a run
    -- spans less than half an hour), cut to [since, until)
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION telemetry_run_rows(since timestamptz, until timestamptz)
        RETURNS SETOF telemetry LANGUAGE sql STABLE AS $body$
            SELECT %s
              FROM telemetry_runs r
             CROSS JOIN LATERAL (SELECT 0, 0::bigint
                                 UNION ALL SELECT * FROM unnest(r.rep_us, r.rep_seq)) u(us, sq)
             WHERE r.ts > since - interval '30 minutes' AND r.ts < until AND r.last_ts >= since
               AND r.ts + u.us * interval '1 microsecond' >= since
               AND r.ts + u.us * interval '1 microsecond' < until
        $body$ $f$, cols);
    -- the reading (device, ts, seq) if a run holds it
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION telemetry_run_row(dev integer, at timestamptz, s bigint)
        RETURNS SETOF telemetry LANGUAGE sql STABLE AS $body$
            SELECT %s
              FROM telemetry_runs r
             CROSS JOIN LATERAL (SELECT 0, 0::bigint
                                 UNION ALL SELECT * FROM unnest(r.rep_us, r.rep_seq)) u(us, sq)
             WHERE r.device_id = dev AND r.ts <= at AND r.ts > at - interval '30 minutes'
               AND r.last_ts >= at
               AND r.ts + u.us * interval '1 microsecond' = at AND r.seq + u.sq = s
        $body$ $f$, cols);
END
$define$;
SELECT telemetry_runs_define();

-- Every reading with since <= ts < until, raw or in a run. Plain SQL, so the planner
-- inlines it and a caller's `WHERE device_id = ...` reaches both tables' indexes.
CREATE FUNCTION telemetry_between(since timestamptz, until timestamptz)
RETURNS SETOF telemetry LANGUAGE sql STABLE AS $$
    SELECT * FROM telemetry WHERE ts >= since AND ts < until
    UNION ALL
    SELECT * FROM telemetry_run_rows(since, until)
$$;
