-- Rectification notices (整改通知书) issued by fire or market-supervision inspectors to an
-- estate or a unit, with a deadline; tracked to closure and looked at again (回头看).
CREATE TABLE notices (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number             text NOT NULL UNIQUE,       -- e.g. 消-SFX-2026-0001
    authority          text NOT NULL CHECK (authority IN ('fire', 'market')),
    issued_by          text NOT NULL,              -- the inspector (audit actor)
    area_code          text NOT NULL REFERENCES areas (code),  -- the issuer's jurisdiction
    estate_code        text NOT NULL REFERENCES estates (code),
    recipient_org      text REFERENCES organisations (code),  -- NULL: the estate itself
    device_code        text,
    problem            text NOT NULL CHECK (problem <> ''),
    basis              text NOT NULL DEFAULT '',   -- the rule broken, e.g. GB 25201 §5.3
    deadline           date NOT NULL,
    state              text NOT NULL DEFAULT 'issued'
                       CHECK (state IN ('issued', 'rectified', 'closed', 'reopened')),
    issued_at          timestamptz NOT NULL,
    rectified_at       timestamptz,
    closed_at          timestamptz,
    look_back_on       date,                       -- set on closing
    looked_back_at     timestamptz,
    look_back_result   text CHECK (look_back_result IN ('holds', 'relapsed')),
    reopen_count       integer NOT NULL DEFAULT 0
);
CREATE INDEX ON notices (estate_code, issued_at DESC);
CREATE INDEX ON notices (recipient_org);

CREATE TABLE notice_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id bigint NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    change    text NOT NULL,  -- issued rectified rejected closed holds relapsed
    actor     text NOT NULL,
    note      text NOT NULL DEFAULT ''
);
CREATE INDEX ON notice_events (notice_id, at);
