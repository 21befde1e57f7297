-- The registry: who is responsible for what, where. Codes are the public identifiers used
-- in MQTT topics and the YAML registry; integer ids are internal (compact keys for the
-- hypertables).
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Administrative areas: city > district/county > street (街道). Regulators and street
-- offices have jurisdiction over an area and everything below it.
CREATE TABLE areas (
    code        text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    name        text NOT NULL,
    level       text NOT NULL CHECK (level IN ('city', 'district', 'street')),
    parent_code text REFERENCES areas (code)
);

CREATE TABLE org_roles (
    code    text PRIMARY KEY,
    name_zh text NOT NULL,
    name_en text NOT NULL
);
INSERT INTO org_roles (code, name_zh, name_en) VALUES
    ('property_firm',        '物业服务企业',   'property management firm'),
    ('elevator_maintenance', '电梯维保单位',   'elevator maintenance company'),
    ('fire_maintenance',     '消防维保单位',   'fire-system maintenance company'),
    ('fire_brigade',         '消防救援机构',   'fire and rescue authority'),
    ('market_supervision',   '市场监督管理局', 'market supervision (special equipment)'),
    ('street_office',        '街道办事处',     'street office'),
    ('housing_authority',    '住房和城乡建设局', 'housing and urban-rural development authority');

CREATE TABLE organisations (
    code      text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    name      text NOT NULL,
    area_code text REFERENCES areas (code),  -- jurisdiction or seat
    phone     text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organisation_roles (
    org_code text NOT NULL REFERENCES organisations (code) ON DELETE CASCADE,
    role     text NOT NULL REFERENCES org_roles (code),
    PRIMARY KEY (org_code, role)
);

CREATE TABLE estates (
    code               text PRIMARY KEY CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    name               text NOT NULL,
    area_code          text NOT NULL REFERENCES areas (code),
    address            text,
    property_firm_code text REFERENCES organisations (code),
    owners_committee   boolean NOT NULL DEFAULT false,  -- 业委会/物管会 formed
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON estates (area_code);
CREATE INDEX ON estates (property_firm_code);

CREATE TABLE buildings (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code     text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    code            text NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    name            text NOT NULL,
    floors          smallint NOT NULL CHECK (floors > 0),
    basement_floors smallint NOT NULL DEFAULT 0 CHECK (basement_floors >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (estate_code, code)
);

-- Owners' units (专有部分): the floor area apportions emergency repairs from the fund.
CREATE TABLE units (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    building_id integer NOT NULL REFERENCES buildings (id) ON DELETE CASCADE,
    code        text NOT NULL,
    floor       smallint NOT NULL,
    area_m2     numeric(10, 2) NOT NULL CHECK (area_m2 > 0),
    UNIQUE (building_id, code)
);

CREATE TABLE device_kinds (
    kind     text PRIMARY KEY,
    subtypes text[] NOT NULL
);
INSERT INTO device_kinds (kind, subtypes) VALUES
    ('elevator', ARRAY['passenger', 'freight', 'escalator']),
    ('fire',     ARRAY['fire_panel', 'smoke_detector', 'manual_call_point', 'hydrant_pressure',
                       'sprinkler_pressure', 'water_tank', 'fire_pump', 'fire_door', 'electrical']),
    ('drainage', ARRAY['sump_pit', 'manhole', 'immersion', 'backflow_valve']);

CREATE TABLE devices (
    id                integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    estate_code       text NOT NULL REFERENCES estates (code) ON DELETE CASCADE,
    code              text NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{1,64}$'),
    kind              text NOT NULL REFERENCES device_kinds (kind),
    subtype           text NOT NULL,
    building_id       integer REFERENCES buildings (id) ON DELETE SET NULL,
    location          text,
    floor             smallint,
    maintenance_code  text REFERENCES organisations (code),  -- 维保单位
    install_date      date,
    last_maintenance  date,
    inspection_due    date,  -- next periodic inspection (TSG T7001 for elevators)
    params            jsonb NOT NULL DEFAULT '{}',  -- per-device settings, e.g. floor count
    active            boolean NOT NULL DEFAULT true,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (estate_code, code)
);
CREATE INDEX ON devices (building_id);
CREATE INDEX ON devices (maintenance_code);

-- The subtype must belong to the kind; a trigger because CHECK cannot read another table.
CREATE FUNCTION devices_check_subtype() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM device_kinds k
                   WHERE k.kind = NEW.kind AND NEW.subtype = ANY (k.subtypes)) THEN
        RAISE EXCEPTION 'device %/%: subtype % is not a subtype of kind %',
            NEW.estate_code, NEW.code, NEW.subtype, NEW.kind
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER devices_subtype BEFORE INSERT OR UPDATE OF kind, subtype ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_check_subtype();
