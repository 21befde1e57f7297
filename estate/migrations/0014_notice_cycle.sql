-- Rectification notices as the authorities run them (issue 19): any authority issues
-- (fire brigade, market supervision, the housing authority, the street office), a notice
-- lists several problems, each with its responsible person (责任人), measures (整改措施)
-- and deadline, closed one by one (动态销号), escalated when overdue (挂牌督办) and looked
-- at again (回头看). The notice's own state, deadline and dates summarise its problems
-- (oversight/notices.py keeps them in step).
ALTER TABLE notices DROP CONSTRAINT notices_authority_check;
ALTER TABLE notices ADD CONSTRAINT notices_authority_check
    CHECK (authority IN ('fire', 'market', 'housing', 'street'));
ALTER TABLE notices ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE notices ADD COLUMN acknowledged_by text;

CREATE TABLE notice_problems (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id          bigint NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    seq                smallint NOT NULL CHECK (seq > 0),   -- 1, 2, … within the notice
    category           text NOT NULL,   -- elevator | fire | drainage | water_supply | general
    device_code        text,
    problem            text NOT NULL CHECK (problem <> ''),
    basis              text NOT NULL DEFAULT '',
    measures           text NOT NULL DEFAULT '',   -- 整改措施
    responsible_person text,                       -- 责任人, a named person
    deadline           date NOT NULL,
    state              text NOT NULL DEFAULT 'issued'
                       CHECK (state IN ('issued', 'rectified', 'closed', 'reopened')),
    opened_at          timestamptz NOT NULL,
    rectified_at       timestamptz,
    rectification      text,                       -- what the recipient says was done
    closed_at          timestamptz,
    look_back_on       date,
    looked_back_at     timestamptz,
    look_back_result   text CHECK (look_back_result IN ('holds', 'relapsed')),
    look_back_reminded timestamptz,
    reopen_count       integer NOT NULL DEFAULT 0,
    supervised_at      timestamptz,                -- 挂牌督办: overdue, escalated
    supervised_to      text[] NOT NULL DEFAULT '{}',  -- the authorities told
    UNIQUE (notice_id, seq)
);
CREATE INDEX ON notice_problems (state, deadline);
CREATE INDEX ON notice_problems (look_back_on) WHERE looked_back_at IS NULL;

-- each existing notice becomes its first (and only) problem
INSERT INTO notice_problems (notice_id, seq, category, device_code, problem, basis, deadline,
    state, opened_at, rectified_at, closed_at, look_back_on, looked_back_at,
    look_back_result, reopen_count)
SELECT n.id, 1,
       coalesce((SELECT d.kind FROM devices d
                  WHERE d.estate_code = n.estate_code AND d.code = n.device_code),
                CASE n.authority WHEN 'fire' THEN 'fire' ELSE 'elevator' END),
       n.device_code, n.problem, n.basis, n.deadline, n.state, n.issued_at, n.rectified_at,
       n.closed_at, n.look_back_on, n.looked_back_at, n.look_back_result, n.reopen_count
  FROM notices n;

ALTER TABLE notice_events ADD COLUMN problem_seq smallint;  -- NULL: the whole notice

-- Evidence (photos, scans) for notices and, later, other records: content-addressed by
-- SHA-256, type checked from the bytes, served only to who may see the subject.
CREATE TABLE attachments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject      text NOT NULL,      -- e.g. notice:12
    part         text NOT NULL DEFAULT '',  -- e.g. problem 2, rectify
    filename     text NOT NULL,
    content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png',
                                                       'application/pdf')),
    size         integer NOT NULL CHECK (size > 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    data         bytea NOT NULL,
    uploaded_by  text NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    UNIQUE (subject, part, sha256)
);
CREATE INDEX ON attachments (subject);
