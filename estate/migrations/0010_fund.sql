-- The special maintenance fund (住宅专项维修资金): accounts per building (or estate), an
-- append-only, double-entry, hash-chained ledger in integer fen, and emergency repair
-- cases paid from it and disclosed to owners.

CREATE TABLE fund_accounts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code   text NOT NULL REFERENCES estates (code),
    building_code text,              -- NULL: the estate's own account
    name          text NOT NULL,
    -- kept by the ledger trigger below; the CHECK is what stops an overdraft, and the row
    -- lock the trigger takes is what serialises concurrent payments from one account
    balance_fen   bigint NOT NULL DEFAULT 0 CHECK (balance_fen >= 0),
    opened_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX fund_accounts_one ON fund_accounts (estate_code, coalesce(building_code, ''));

-- One money movement: its legs sum to zero (double entry). The hash chains every entry to
-- the one before, so a row changed behind the service's back is found by `estate fund verify`.
CREATE TABLE fund_journal (
    id              bigint PRIMARY KEY,   -- 1, 2, 3, … in chain order
    at              timestamptz NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('deposit', 'interest', 'repair', 'refund')),
    case_id         bigint,
    idempotency_key text NOT NULL UNIQUE,
    request_hash    text NOT NULL,        -- what the key was used for (a reuse must match)
    memo            text NOT NULL DEFAULT '',
    actor           text NOT NULL,
    prev_hash       text NOT NULL,
    hash            text NOT NULL
);

CREATE TABLE fund_legs (
    journal_id bigint NOT NULL REFERENCES fund_journal (id),
    account    text NOT NULL,   -- 'fund:<account id>' or 'external:<party>'
    amount_fen bigint NOT NULL CHECK (amount_fen <> 0),  -- + into the account, - out of it
    PRIMARY KEY (journal_id, account)
);

-- Append-only: no update, no delete (the chain catches what gets past this).
CREATE FUNCTION fund_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the fund ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER fund_journal_append_only BEFORE UPDATE OR DELETE ON fund_journal
    FOR EACH ROW EXECUTE FUNCTION fund_append_only();
CREATE TRIGGER fund_legs_append_only BEFORE UPDATE OR DELETE ON fund_legs
    FOR EACH ROW EXECUTE FUNCTION fund_append_only();

-- A leg into or out of a fund account moves its balance (the CHECK refuses < 0).
CREATE FUNCTION fund_leg_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.account LIKE 'fund:%' THEN
        UPDATE fund_accounts SET balance_fen = balance_fen + NEW.amount_fen
            WHERE id = substr(NEW.account, 6)::bigint;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no fund account %', NEW.account USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fund_legs_balance AFTER INSERT ON fund_legs
    FOR EACH ROW EXECUTE FUNCTION fund_leg_balance();

-- Every journal entry balances: checked at commit, when all its legs are in.
CREATE FUNCTION fund_journal_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint; n integer;
BEGIN
    SELECT coalesce(sum(amount_fen), 0), count(*) INTO total, n
        FROM fund_legs WHERE journal_id = NEW.id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'fund journal % does not balance (% legs, sum % fen)', NEW.id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fund_journal_balanced AFTER INSERT ON fund_journal
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fund_journal_balanced();

-- Emergency repair cases (紧急维修) and every decision on them.
CREATE TABLE fund_cases (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES fund_accounts (id),
    estate_code      text NOT NULL,
    building_code    text,
    item             text NOT NULL,   -- the emergency list's item id
    list_city        text NOT NULL,
    alert_id         bigint REFERENCES alerts (id),
    order_id         bigint REFERENCES work_orders (id),
    state            text NOT NULL CHECK (state IN ('opened', 'estimated', 'approved',
                         'repaired', 'settled', 'refused')),
    evidence         jsonb NOT NULL,  -- the alert, readings around it, the order's history, notices
    estimate_fen     bigint CHECK (estimate_fen > 0),
    approval         text,            -- 'street_office:<org>' | 'housing_authority:<org>' | 'standing'
    cost_fen         bigint CHECK (cost_fen > 0),
    invoice_ref      text,
    journal_id       bigint REFERENCES fund_journal (id),
    refused_reason   text,
    opened_by        text NOT NULL,
    opened_at        timestamptz NOT NULL,
    settled_at       timestamptz,
    UNIQUE (journal_id)               -- no case is paid twice
);
CREATE UNIQUE INDEX fund_cases_one_per_order ON fund_cases (order_id)
    WHERE order_id IS NOT NULL AND state <> 'refused';
CREATE UNIQUE INDEX fund_cases_one_per_alert ON fund_cases (alert_id)
    WHERE alert_id IS NOT NULL AND state <> 'refused';

CREATE TABLE fund_case_events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id bigint NOT NULL REFERENCES fund_cases (id),
    at      timestamptz NOT NULL,
    change  text NOT NULL,
    actor   text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);

-- Each owner's share of a settled repair, by floor area; shares sum exactly to the cost.
CREATE TABLE fund_shares (
    case_id   bigint NOT NULL REFERENCES fund_cases (id),
    unit_id   integer NOT NULL REFERENCES units (id),
    area_m2   numeric(10, 2) NOT NULL,
    share_fen bigint NOT NULL CHECK (share_fen >= 0),
    PRIMARY KEY (case_id, unit_id)
);
