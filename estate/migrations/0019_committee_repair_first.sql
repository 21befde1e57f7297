-- The owners' committee (业委会) as a party of the fund's process, and repair first, report
-- after (先修后报) for the emergency list (issue 18).
--
-- A committee member's login or key is bound to the estate whose committee it is (the
-- estate must have one on record, ``estates.owners_committee``); it applies for the fund
-- (approves a case for the owners), organises the owners' votes and accepts the repair.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN (
    'admin', 'operator', 'manager', 'maintenance', 'fire_inspector', 'market_inspector',
    'housing_authority', 'street_office', 'owner', 'owners_committee'));
ALTER TABLE api_keys ADD COLUMN estate_code text REFERENCES estates (code);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_estate_is_a_committees
    CHECK ((estate_code IS NOT NULL) = (role = 'owners_committee'));

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN (
    'admin', 'operator', 'manager', 'maintenance', 'fire_inspector', 'market_inspector',
    'housing_authority', 'street_office', 'owner', 'owners_committee'));
ALTER TABLE users ADD COLUMN estate_code text REFERENCES estates (code);
ALTER TABLE users ADD CONSTRAINT users_estate_is_a_committees
    CHECK ((estate_code IS NOT NULL) = (role = 'owners_committee'));

-- 先修后报: the repair starts on the property firm's declaration; the application (the
-- estimate with its evidence) is due by ``apply_by``; a repair reported done before the
-- approval is kept in ``repaired_at`` and the case moves on once it is approved.
ALTER TABLE fund_cases ADD COLUMN repair_first boolean NOT NULL DEFAULT false;
ALTER TABLE fund_cases ADD COLUMN apply_by timestamptz;
ALTER TABLE fund_cases ADD COLUMN applied_at timestamptz;
ALTER TABLE fund_cases ADD COLUMN repaired_at timestamptz;
ALTER TABLE fund_cases ADD CONSTRAINT fund_cases_repair_first_has_a_deadline
    CHECK (NOT repair_first OR apply_by IS NOT NULL);
CREATE INDEX fund_cases_applications_due ON fund_cases (apply_by)
    WHERE repair_first AND applied_at IS NULL;
