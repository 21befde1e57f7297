-- Maintenance and inspection records (issue 19): the maintenance company records each
-- visit (TSG T5002: every 15 days, a checklist per lift type), the inspection body or
-- market supervision each periodic inspection (TSG T7001). Due dates follow from the
-- records; the registry's dates are only the starting point. Both tables are append-only
-- (a correction is a new record). The registry gains the lift's 96333 emergency code
-- (应急救援识别码) and its registration certificate (使用登记证) number.
ALTER TABLE devices ADD COLUMN emergency_code text CHECK (emergency_code ~ '^[0-9]{5,8}$');
ALTER TABLE devices ADD COLUMN registration_no text
    CHECK (registration_no ~ '^[0-9A-Za-z\u4e00-\u9fff()（）-]{4,40}$');
CREATE UNIQUE INDEX devices_emergency_code ON devices (emergency_code)
    WHERE emergency_code IS NOT NULL;

CREATE TABLE maintenance_records (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id        integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    estate_code      text NOT NULL,
    device_code      text NOT NULL,
    maintenance_code text NOT NULL REFERENCES organisations (code),
    kind             text NOT NULL DEFAULT 'half_monthly'
                     CHECK (kind IN ('half_monthly', 'quarterly', 'half_yearly', 'yearly')),
    technician       text NOT NULL CHECK (technician <> ''),
    technician_cert  text,               -- 特种设备作业人员证
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz NOT NULL CHECK (ended_at > started_at),
    checklist        text NOT NULL,      -- the checklist's id (oversight/checklists.yaml)
    items            jsonb NOT NULL,     -- item code -> ok | adjusted | fault
    findings         text NOT NULL DEFAULT '',
    recorded_by      text NOT NULL,
    recorded_at      timestamptz NOT NULL
);
CREATE INDEX ON maintenance_records (device_id, ended_at DESC);

CREATE TABLE inspection_records (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    estate_code  text NOT NULL,
    device_code  text NOT NULL,
    inspected_on date NOT NULL,
    result       text NOT NULL CHECK (result IN ('pass', 'pass_after_rectification', 'fail')),
    next_due     date NOT NULL CHECK (next_due > inspected_on),
    report_no    text NOT NULL CHECK (report_no <> ''),
    certificate_no text,   -- the inspection mark (安全检验合格标志) issued on a pass
    CHECK (result = 'fail' OR certificate_no IS NOT NULL),
    inspector    text NOT NULL CHECK (inspector <> ''),  -- the inspection body
    note         text NOT NULL DEFAULT '',
    recorded_by  text NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX ON inspection_records (device_id, inspected_on DESC);

CREATE FUNCTION records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- a device removed from the registry takes its records along (the cascade runs as a
    -- trigger, one level down); nothing else changes or removes one
    IF TG_OP = 'DELETE' AND pg_trigger_depth() > 1 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: record a correction as a new record', TG_TABLE_NAME;
END $$;
CREATE TRIGGER maintenance_records_append_only BEFORE UPDATE OR DELETE ON maintenance_records
    FOR EACH ROW EXECUTE FUNCTION records_append_only();
CREATE TRIGGER inspection_records_append_only BEFORE UPDATE OR DELETE ON inspection_records
    FOR EACH ROW EXECUTE FUNCTION records_append_only();

-- What is due per device: the newest record, else the registry's date as the start.
-- Dates are local (Asia/Shanghai): a visit ending at 01:00 local counts for that day.
CREATE VIEW device_due AS
SELECT d.id AS device_id,
       greatest(d.last_maintenance,
                (SELECT (max(r.ended_at) AT TIME ZONE 'Asia/Shanghai')::date
                   FROM maintenance_records r WHERE r.device_id = d.id)) AS last_maintenance,
       coalesce((SELECT i.next_due FROM inspection_records i WHERE i.device_id = d.id
                  ORDER BY i.inspected_on DESC, i.id DESC LIMIT 1), d.inspection_due)
           AS inspection_due
  FROM devices d;
