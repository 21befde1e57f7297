-- Alerts (预警) and their judgment (研判): one open alert per (device, rule), grouped into
-- incidents per building and category, with every change kept.

-- Related open alerts of one building (or an estate's shared equipment) and category
-- (the device kind) are one incident: what a control room handles and dispatch routes.
CREATE TABLE incidents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code   text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    building_code text,                  -- NULL: estate-level equipment (pumps, pits)
    category      text NOT NULL,         -- elevator | fire | drainage
    severity      text NOT NULL,
    state         text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    opened_at     timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX incidents_one_open
    ON incidents (estate_code, coalesce(building_code, ''), category) WHERE state = 'open';

CREATE TABLE alerts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id         integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    rule_id           text NOT NULL,
    alert_type        text NOT NULL,
    severity          text NOT NULL CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    state             text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'cleared')),
    -- fire alarms: to be confirmed → confirmed, or false alarm with its cause (GB 25201)
    confirmation      text CHECK (confirmation IN ('to_be_confirmed', 'confirmed', 'false_alarm')),
    false_alarm_cause text,
    -- muted: 'inhibit:<name>' or 'silence:<id>'; stored and shown, but not notified
    muted_by          text,
    flapping          boolean NOT NULL DEFAULT false,
    incident_id       bigint REFERENCES incidents (id),
    estate_code       text NOT NULL,     -- copied from the registry: scoping without joins
    building_code     text,
    device_code       text NOT NULL,
    kind              text NOT NULL,
    first_seen        timestamptz NOT NULL,
    last_seen         timestamptz NOT NULL,
    cleared_at        timestamptz,
    occurrences       integer NOT NULL DEFAULT 1,
    evidence          jsonb NOT NULL     -- the readings or events that raised it
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, rule_id) WHERE state = 'open';
CREATE INDEX ON alerts (estate_code, state, first_seen DESC);
CREATE INDEX ON alerts (incident_id);

CREATE TABLE alert_changes (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL,
    change   text NOT NULL,   -- raise repeat severity clear mute unmute confirm false_alarm flapping
    severity text NOT NULL,
    actor    text NOT NULL DEFAULT 'engine',
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON alert_changes (alert_id, at);

-- Silences for maintenance work: alerts matching every given matcher within the window are
-- muted (still stored). NULL matchers match anything.
CREATE TABLE silences (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code   text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    building_code text,
    device_code   text,
    alert_type    text,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL CHECK (ends_at > starts_at),
    author        text NOT NULL,
    reason        text NOT NULL CHECK (reason <> ''),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON silences (ends_at);

-- The warning engine's per-device memory (running `for` durations, rate windows), saved
-- every few seconds and on stop, so a restarted worker resumes where it was.
CREATE TABLE alert_engine_state (
    device_id integer PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    state     jsonb NOT NULL,
    saved_at  timestamptz NOT NULL
);
