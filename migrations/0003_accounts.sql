-- Accounts: every new user signs up with an email and a password and has a role; logins open
-- sessions whose refresh tokens rotate. A user's row lives in the shard its email hashes to
-- (wire::accounts::email_shard), so that one primary decides whether an email is taken; a
-- session lives in the shard of the region where its user logged in (its id says which).

-- Users from before accounts keep their rows: no email or password (they cannot log in), the
-- user role.
ALTER TABLE users
    ADD COLUMN email         TEXT,
    ADD COLUMN password_hash TEXT,
    ADD COLUMN role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    -- Stored as compared: trimmed, lowercased, plain ASCII (the node normalises it).
    ADD CONSTRAINT users_email_normal CHECK (
        email = lower(btrim(email)) AND octet_length(email) BETWEEN 3 AND 254
    ),
    -- An argon2id PHC string, and only with an email.
    ADD CONSTRAINT users_password_argon2id CHECK (password_hash LIKE '$argon2id$%'),
    ADD CONSTRAINT users_credentials_together CHECK ((email IS NULL) = (password_hash IS NULL));

-- One account per email; NULLs (users from before accounts) do not collide.
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE sessions (
    id            BIGINT PRIMARY KEY CHECK (id > 0),
    -- The user's row is in the shard of their email, perhaps another region: no foreign key.
    user_id       BIGINT NOT NULL CHECK (user_id > 0),
    -- SHA-256 of the current refresh token's secret; the secret itself is never stored.
    refresh_hash  BYTEA NOT NULL CHECK (octet_length(refresh_hash) = 32),
    -- The secret it replaced: presenting that one again means the token was copied, and the
    -- whole session is revoked.
    previous_hash BYTEA CHECK (octet_length(previous_hash) = 32),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    rotated_at    TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ,
    CHECK (expires_at > created_at)
);

CREATE INDEX sessions_user ON sessions (user_id);
