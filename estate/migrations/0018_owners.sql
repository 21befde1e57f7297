-- Owners in the fund's process (issue 18): an owner's login names their home; settled
-- repairs are disclosed for a period (公示期) in which owners of the homes that paid may
-- object; the housing authority answers each objection before the case is closed.
ALTER TABLE users ADD COLUMN home_unit_id integer REFERENCES units (id) ON DELETE SET NULL;
ALTER TABLE users ADD CONSTRAINT users_home_is_an_owners
    CHECK (home_unit_id IS NULL OR role = 'owner');

ALTER TABLE fund_cases DROP CONSTRAINT fund_cases_state_check;
ALTER TABLE fund_cases ADD CONSTRAINT fund_cases_state_check CHECK (state IN ('opened',
    'estimated', 'approved', 'repaired', 'accepted', 'settled', 'closed', 'refused'));
ALTER TABLE fund_cases ADD COLUMN contractor text;          -- who did the work (disclosed)
ALTER TABLE fund_cases ADD COLUMN work text;                -- what was done (disclosed)
ALTER TABLE fund_cases ADD COLUMN disclosed_until timestamptz;  -- the end of the 公示期
ALTER TABLE fund_cases ADD COLUMN closed_at timestamptz;

CREATE TABLE fund_objections (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id     bigint NOT NULL REFERENCES fund_cases (id),
    unit_id     integer NOT NULL REFERENCES units (id),
    text        text NOT NULL CHECK (text <> ''),
    filed_by    text NOT NULL,
    filed_at    timestamptz NOT NULL,
    answer      text,
    answered_by text,
    answered_at timestamptz,
    CHECK ((answer IS NULL) = (answered_at IS NULL))
);
CREATE INDEX ON fund_objections (case_id);
