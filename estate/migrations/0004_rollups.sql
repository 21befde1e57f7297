-- Rollups and retention that work on TimescaleDB's Apache edition (continuous aggregates
-- and policies are Timescale-licensed, so the service maintains these itself:
-- ingest/rollup.py).
--
-- One row per (device, minute) and per (device, hour). For a numeric metric: min, max,
-- sum and the number of readings (mean = sum / n, and hours re-aggregate minutes exactly);
-- for a boolean metric: how many readings were true, out of n. `messages` counts every
-- telemetry message in the bucket.
CREATE TABLE telemetry_1m (
    bucket    timestamptz NOT NULL,
    device_id integer NOT NULL,
    messages  integer NOT NULL,
    floor_min double precision,
    floor_max double precision,
    floor_sum double precision,
    floor_n integer,
    speed_mps_min double precision,
    speed_mps_max double precision,
    speed_mps_sum double precision,
    speed_mps_n integer,
    direction_min double precision,
    direction_max double precision,
    direction_sum double precision,
    direction_n integer,
    door_open_true integer,
    door_open_n integer,
    in_door_zone_true integer,
    in_door_zone_n integer,
    occupied_true integer,
    occupied_n integer,
    load_pct_min double precision,
    load_pct_max double precision,
    load_pct_sum double precision,
    load_pct_n integer,
    mode_min double precision,
    mode_max double precision,
    mode_sum double precision,
    mode_n integer,
    running_true integer,
    running_n integer,
    pressure_mpa_min double precision,
    pressure_mpa_max double precision,
    pressure_mpa_sum double precision,
    pressure_mpa_n integer,
    level_m_min double precision,
    level_m_max double precision,
    level_m_sum double precision,
    level_m_n integer,
    fault_true integer,
    fault_n integer,
    open_true integer,
    open_n integer,
    residual_current_ma_min double precision,
    residual_current_ma_max double precision,
    residual_current_ma_sum double precision,
    residual_current_ma_n integer,
    cable_temp_c_min double precision,
    cable_temp_c_max double precision,
    cable_temp_c_sum double precision,
    cable_temp_c_n integer,
    pump_running_true integer,
    pump_running_n integer,
    pump_fault_true integer,
    pump_fault_n integer,
    water_detected_true integer,
    water_detected_n integer,
    closed_true integer,
    closed_n integer,
    PRIMARY KEY (device_id, bucket)
);
SELECT create_hypertable('telemetry_1m', 'bucket', chunk_time_interval => interval '7 days');

CREATE TABLE telemetry_1h (LIKE telemetry_1m INCLUDING ALL);
SELECT create_hypertable('telemetry_1h', 'bucket', chunk_time_interval => interval '90 days');

-- Buckets whose raw rows changed since they were last rolled up. Ingest marks the minutes
-- of every batch in the batch's own transaction, so a late message (a device emptying its
-- buffer after an outage) re-opens the old minute and nothing is missed; the rollup job
-- takes one bucket at a time (FOR UPDATE SKIP LOCKED), recomputes it, marks its hour.
CREATE TABLE rollup_dirty (
    level  text NOT NULL CHECK (level IN ('1m', '1h')),
    bucket timestamptz NOT NULL,
    PRIMARY KEY (level, bucket)
);
