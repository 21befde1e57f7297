-- The fund's process as owners, committees and the housing authority run it (issue 18):
-- manual cases for failures no sensor sees, completion acceptance (竣工验收) and cost review
-- (审价) before payment, the parties of each decision, and the owners' votes (民法典 art.
-- 278) that give a standing authorisation for emergency repairs.
ALTER TABLE fund_cases DROP CONSTRAINT fund_cases_state_check;
ALTER TABLE fund_cases ADD CONSTRAINT fund_cases_state_check CHECK (state IN ('opened',
    'estimated', 'approved', 'repaired', 'accepted', 'settled', 'refused'));
ALTER TABLE fund_cases ADD COLUMN device_code text;    -- the failed device (one case per failure)
ALTER TABLE fund_cases ADD COLUMN description text;    -- a manual case: what failed, where
ALTER TABLE fund_cases ADD COLUMN estimated_by text;   -- parties (role:organisation or area)
ALTER TABLE fund_cases ADD COLUMN approved_by text;
ALTER TABLE fund_cases ADD COLUMN accepted_by text;
ALTER TABLE fund_cases ADD COLUMN accepted_at timestamptz;
ALTER TABLE fund_cases ADD COLUMN reviewed_fen bigint CHECK (reviewed_fen > 0);  -- 审定金额
ALTER TABLE fund_cases ADD COLUMN reviewed_by text;
ALTER TABLE fund_cases ADD COLUMN review_reason text;
UPDATE fund_cases c SET device_code = a.device_code FROM alerts a WHERE a.id = c.alert_id;

-- An owners' vote (业主共同决定) on a subject, with the counts the rule is judged on:
-- participation by area and by head, consent by area and by head.
CREATE TABLE owner_votes (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code          text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    subject              text NOT NULL CHECK (subject IN ('standing_authorisation')),
    rule                 text NOT NULL CHECK (rule IN ('civil_code', 'two_thirds')),
    held_on              date NOT NULL,
    valid_until          date NOT NULL CHECK (valid_until > held_on),
    total_area_m2        numeric(14, 2) NOT NULL CHECK (total_area_m2 > 0),
    total_owners         integer NOT NULL CHECK (total_owners > 0),
    participating_area_m2 numeric(14, 2) NOT NULL,
    participating_owners integer NOT NULL,
    consenting_area_m2   numeric(14, 2) NOT NULL,
    consenting_owners    integer NOT NULL,
    passed               boolean NOT NULL,
    recorded_by          text NOT NULL,
    recorded_at          timestamptz NOT NULL,
    CHECK (0 <= consenting_area_m2 AND consenting_area_m2 <= participating_area_m2
           AND participating_area_m2 <= total_area_m2),
    CHECK (0 <= consenting_owners AND consenting_owners <= participating_owners
           AND participating_owners <= total_owners)
);
CREATE INDEX ON owner_votes (estate_code, subject, held_on DESC);
