-- Telemetry and events as hypertables.
--
-- Telemetry is WIDE: one row per message, one nullable column per known metric, unknown
-- metrics kept in `extra`. Measured by bench/telemetry_layout.py against a narrow
-- (one row per value) and a JSONB layout; see the README for the figures. A new metric is
-- a new nullable column (a catalogue-only change in PostgreSQL).
--
-- (device_id, ts, seq) is unique: a message redelivered by the broker is stored once.
-- Chunks are one day: a city's day of telemetry fits comfortably in memory for the
-- rollups, and retention drops whole days.
CREATE TABLE telemetry (
    ts                  timestamptz NOT NULL,
    device_id           integer NOT NULL,
    seq                 bigint NOT NULL,
    -- elevator (GB/T 24476)
    floor               double precision,
    speed_mps           double precision,
    direction           double precision,
    door_open           boolean,
    in_door_zone        boolean,
    occupied            boolean,
    load_pct            double precision,
    mode                double precision,
    running             boolean,
    -- fire
    pressure_mpa        double precision,
    level_m             double precision,
    fault               boolean,
    open                boolean,
    residual_current_ma double precision,
    cable_temp_c        double precision,
    -- drainage
    pump_running        boolean,
    pump_fault          boolean,
    water_detected      boolean,
    closed              boolean,
    extra               jsonb,
    UNIQUE (device_id, ts, seq)
);
SELECT create_hypertable('telemetry', 'ts', chunk_time_interval => interval '1 day');

CREATE TABLE events (
    ts          timestamptz NOT NULL,
    device_id   integer NOT NULL,
    seq         bigint NOT NULL,
    code        text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    UNIQUE (device_id, ts, seq)
);
SELECT create_hypertable('events', 'ts', chunk_time_interval => interval '7 days');
CREATE INDEX ON events (code, ts DESC);
