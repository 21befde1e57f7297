-- People: password logins (argon2id hashes) that issue short-lived bearer tokens. Machines
-- keep using API keys (0005). A user has the same role and binding as a key.
CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    display_name    text NOT NULL DEFAULT '',
    role            text NOT NULL CHECK (role IN (
                        'admin', 'operator', 'manager', 'maintenance', 'fire_inspector',
                        'market_inspector', 'housing_authority', 'street_office', 'owner')),
    org_code        text REFERENCES organisations (code),
    area_code       text REFERENCES areas (code),
    password_hash   text NOT NULL,   -- argon2id, PHC string
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,     -- after too many failures in a row
    disabled_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz
);

-- Issued tokens: only SHA-256 of the random secret is kept; expired or revoked ones fail.
CREATE TABLE user_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret_hash bytea NOT NULL,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX ON user_tokens (expires_at);
