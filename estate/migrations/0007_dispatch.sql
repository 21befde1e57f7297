-- Dispatch and supervision (派单、监督): the responsibility list's versions, work orders with
-- every transition, deadline breaches, dispatch gaps, overdue-maintenance items, and the
-- notification outbox (the delivery log).

-- The responsibility list as edited through the API or the command line. The newest
-- version is in force; with no row the shipped file is. Versions are never changed.
CREATE TABLE responsibility_versions (
    version    integer PRIMARY KEY CHECK (version > 0),
    document   jsonb NOT NULL,
    author     text NOT NULL,
    comment    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL
);

CREATE TABLE work_orders (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id      bigint NOT NULL UNIQUE REFERENCES incidents (id),  -- the one that opened it
    estate_code      text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    building_code    text,
    category         text NOT NULL,
    device_code      text NOT NULL,   -- the lead alert's device
    alert_type       text NOT NULL,   -- the lead alert's type
    severity         text NOT NULL CHECK (severity IN ('info', 'warning', 'major', 'critical')),
    state            text NOT NULL CHECK (state IN ('created', 'dispatched', 'acknowledged',
                         'on_site', 'resolved', 'verifying', 'closed', 'reopened', 'cancelled')),
    assignee         text REFERENCES organisations (code),  -- NULL only with a gap recorded
    -- the escalation chain resolved at dispatch: [{"party": role or code, "org": code|null}]
    chain            jsonb NOT NULL,
    escalation_level integer NOT NULL DEFAULT 0,
    notified_roles   text[] NOT NULL DEFAULT '{}',  -- party roles told so far (scopes views)
    list_version     integer NOT NULL,  -- 0: the shipped file
    list_row         jsonb NOT NULL,    -- the row that decided, as it was
    cycle            integer NOT NULL DEFAULT 0,  -- +1 on each reopening
    reopen_count     integer NOT NULL DEFAULT 0,
    ack_due          timestamptz NOT NULL,
    arrive_due       timestamptz,
    resolve_due      timestamptz NOT NULL,
    verify_s         double precision NOT NULL,
    created_at       timestamptz NOT NULL,
    dispatched_at    timestamptz,
    acknowledged_at  timestamptz,
    arrived_at       timestamptz,
    resolved_at      timestamptz,
    verify_until     timestamptz,
    closed_at        timestamptz,
    cancelled_at     timestamptz,
    cancel_reason    text,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX ON work_orders (estate_code, created_at DESC);
CREATE INDEX ON work_orders (assignee, created_at DESC);
CREATE INDEX work_orders_live ON work_orders (state) WHERE state NOT IN ('closed', 'cancelled');
-- a recurrence looks for the live order of the same place
CREATE INDEX work_orders_place ON work_orders (estate_code, building_code, category)
    WHERE state NOT IN ('closed', 'cancelled');

-- Which order an incident belongs to: its own, or (a recurrence) the earlier order it
-- reopened; when dispatch last looked at an incident it did not dispatch.
ALTER TABLE incidents ADD COLUMN work_order_id bigint REFERENCES work_orders (id);
ALTER TABLE incidents ADD COLUMN dispatch_checked_at timestamptz;
CREATE INDEX incidents_undispatched ON incidents (id)
    WHERE state = 'open' AND work_order_id IS NULL;

-- Every transition, breach, escalation, recurrence and note: who, when, what.
CREATE TABLE work_order_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   bigint NOT NULL REFERENCES work_orders (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    change     text NOT NULL,  -- a state, or breach | escalate | recurrence
    from_state text,
    to_state   text,
    actor      text NOT NULL,
    detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON work_order_events (order_id, at);

CREATE TABLE work_order_breaches (
    order_id    bigint NOT NULL REFERENCES work_orders (id) ON DELETE CASCADE,
    cycle       integer NOT NULL,
    deadline    text NOT NULL CHECK (deadline IN ('acknowledge', 'arrive', 'resolve')),
    due_at      timestamptz NOT NULL,
    breached_at timestamptz NOT NULL,
    escalated_to text,  -- organisation code told, NULL when the chain had nobody left
    PRIMARY KEY (order_id, cycle, deadline)
);

-- Alerts no row of the responsibility list covers: reported, never dropped.
CREATE TABLE dispatch_gaps (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id   bigint NOT NULL REFERENCES incidents (id),
    estate_code   text NOT NULL,
    building_code text,
    kind          text NOT NULL,
    alert_type    text NOT NULL,
    severity      text NOT NULL,
    reason        text NOT NULL,
    at            timestamptz NOT NULL,
    UNIQUE (incident_id, alert_type, reason)
);

-- Elevator maintenance or periodic inspection overdue (TSG T5002 / T7001): items market
-- supervision sees, open until the registry's dates are brought up to date.
CREATE TABLE supervision_items (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    estate_code text NOT NULL,
    device_code text NOT NULL,
    item        text NOT NULL CHECK (item IN ('maintenance_overdue', 'inspection_overdue')),
    due         date NOT NULL,      -- when it fell due
    maintenance_code text,
    opened_at   timestamptz NOT NULL,
    closed_at   timestamptz
);
CREATE UNIQUE INDEX supervision_items_one_open ON supervision_items (device_id, item)
    WHERE closed_at IS NULL;

-- Where an organisation wants its notifications POSTed; the secret signs each body.
CREATE TABLE webhooks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_code   text NOT NULL REFERENCES organisations (code) ON DELETE CASCADE,
    url        text NOT NULL CHECK (url ~ '^https?://'),
    secret     text NOT NULL,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_code, url)
);

-- The outbox: written in the same transaction as the change it reports, delivered (and
-- retried) by the notifier; every attempt's outcome stays here.
CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        bigint REFERENCES work_orders (id) ON DELETE CASCADE,
    org_code        text,   -- the party told; NULL for the live stream
    channel         text NOT NULL,
    target          text NOT NULL,  -- topic or URL
    event           text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX ON notifications (order_id);
