-- The fire control room's duty (GB 25201 §4.2: staffed 24 hours a day, at least two
-- certified people per shift) and its shift log, and what an estate's noticeboard shows
-- owners (seed 001 task 20): who maintains what, and the year's lift maintenance spending.
CREATE TABLE duty_shifts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at
                                            AND ends_at - starts_at <= interval '24 hours'),
    staff       jsonb NOT NULL CHECK (jsonb_typeof(staff) = 'array'),  -- [{name, cert_no}]
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX ON duty_shifts (estate_code, starts_at);

CREATE TABLE duty_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('handover', 'check', 'alarm', 'fault', 'note')),
    text        text NOT NULL CHECK (text <> ''),
    author      text NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX ON duty_log (estate_code, at DESC);

CREATE TABLE maintenance_spending (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    year        smallint NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    kind        text NOT NULL CHECK (kind IN ('elevator', 'fire', 'drainage', 'water_supply')),
    org_code    text NOT NULL REFERENCES organisations (code),
    amount_fen  bigint NOT NULL CHECK (amount_fen >= 0),
    note        text NOT NULL DEFAULT '',
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL,
    UNIQUE (estate_code, year, kind, org_code)
);
