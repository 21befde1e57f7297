-- API keys for machines (and, until issue 8's logins, for people trying the API).
--
-- A key is shown once, as se_<id>_<secret>; only SHA-256 of the secret is kept (the secret
-- is 256 random bits, so a slow password hash would add nothing). The role and the
-- organisation or area decide what the key sees; scopes are applied in the queries.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN (
                     'admin', 'operator', 'manager', 'maintenance', 'fire_inspector',
                     'market_inspector', 'housing_authority', 'street_office', 'owner')),
    org_code     text REFERENCES organisations (code),
    area_code    text REFERENCES areas (code),
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
