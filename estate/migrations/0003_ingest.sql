-- Ingest: dead letters and the current state of every device.

-- Every message ingest could not store, with its raw bytes, so nothing is lost: a person
-- can read the reason, fix the registry or the device, and replay it.
CREATE TABLE dead_letters (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at   timestamptz NOT NULL,
    topic         text NOT NULL,
    payload       bytea NOT NULL,
    reason        text NOT NULL,  -- ingest.contract.Reason
    detail        text NOT NULL,
    estate_code   text,           -- as far as the topic could be read
    device_code   text,
    replayed_at   timestamptz,    -- set when a replay stored it
    replay_detail text            -- the last replay's verdict
);
CREATE INDEX ON dead_letters (received_at DESC);
CREATE INDEX ON dead_letters (reason, received_at DESC) WHERE replayed_at IS NULL;

-- Kept current by ingest on every batch, so the console never scans the hypertables.
CREATE TABLE device_state (
    device_id     integer PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_seen     timestamptz NOT NULL,  -- when ingest last received anything from it
    last_ts       timestamptz,           -- the newest device timestamp seen
    last_seq      bigint,
    online        boolean NOT NULL DEFAULT true,
    offline_cause text,                  -- 'status' (Last Will or status false) or 'silence'
    status_at     timestamptz,           -- when online last changed
    latest        jsonb NOT NULL DEFAULT '{}'  -- metric -> newest value
);
CREATE INDEX ON device_state (last_seen);
