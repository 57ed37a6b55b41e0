-- The booking core. Every shard (home region) has this same schema and holds only its own rows.
-- Correctness lives here as much as in the code: one holder column per ticket, a CHECK that ties
-- status to its columns, and a trigger that refuses the transitions that would sell a seat twice.

CREATE TABLE users (
    id          BIGINT PRIMARY KEY CHECK (id > 0),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    home_region TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id            BIGINT PRIMARY KEY CHECK (id > 0),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description   TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    venue         TEXT NOT NULL CHECK (length(venue) BETWEEN 1 AND 200),
    starts_at     TIMESTAMPTZ NOT NULL,
    home_region   TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'on_sale'
                  CHECK (status IN ('draft', 'on_sale', 'closed', 'cancelled')),
    hold_seconds  INTEGER NOT NULL DEFAULT 600 CHECK (hold_seconds BETWEEN 1 AND 3600),
    max_per_order INTEGER NOT NULL DEFAULT 10 CHECK (max_per_order BETWEEN 1 AND 100),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX events_starts_at ON events (starts_at, id);

CREATE TABLE tiers (
    event_id     BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 50),
    price_cents  BIGINT NOT NULL CHECK (price_cents >= 0),
    -- Tickets ever created for the tier: lets availability and the audit compare without
    -- counting every row.
    ticket_count BIGINT NOT NULL DEFAULT 0 CHECK (ticket_count >= 0),
    PRIMARY KEY (event_id, name)
);

CREATE TABLE bookings (
    id              BIGINT PRIMARY KEY CHECK (id > 0),
    event_id        BIGINT NOT NULL REFERENCES events (id),
    -- Users live in the shard of the region they signed up in, so no foreign key here.
    user_id         BIGINT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('held', 'confirmed', 'released', 'expired', 'payment_failed')),
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    -- [{"tier": "VIP", "quantity": 2, "unitPriceCents": 10000}, ...] as ordered.
    lines           JSONB NOT NULL,
    -- The tickets handed to this booking at reserve time; the audit checks they still point back.
    ticket_ids      BIGINT[] NOT NULL CHECK (cardinality(ticket_ids) = quantity),
    total_cents     BIGINT NOT NULL CHECK (total_cents >= 0),
    expires_at      TIMESTAMPTZ NOT NULL,
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    confirmed_at    TIMESTAMPTZ,
    CHECK ((status = 'confirmed') = (confirmed_at IS NOT NULL)),
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX bookings_by_user ON bookings (user_id, id DESC);
CREATE INDEX bookings_held_by_expiry ON bookings (expires_at) WHERE status = 'held';

CREATE TABLE tickets (
    id              BIGINT PRIMARY KEY CHECK (id > 0),
    event_id        BIGINT NOT NULL,
    tier            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'held', 'sold')),
    -- The one holder of this ticket. Deferred so that a reserve can claim its tickets first and
    -- insert the booking (with their ids) second, inside one transaction.
    booking_id      BIGINT REFERENCES bookings (id) DEFERRABLE INITIALLY DEFERRED,
    user_id         BIGINT,
    hold_expires_at TIMESTAMPTZ,
    sold_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (event_id, tier) REFERENCES tiers (event_id, name),
    CHECK (
        (status = 'available' AND booking_id IS NULL AND user_id IS NULL
            AND hold_expires_at IS NULL AND sold_at IS NULL)
        OR (status = 'held' AND booking_id IS NOT NULL AND user_id IS NOT NULL
            AND hold_expires_at IS NOT NULL AND sold_at IS NULL)
        OR (status = 'sold' AND booking_id IS NOT NULL AND user_id IS NOT NULL
            AND sold_at IS NOT NULL)
    )
);

-- Only claimable tickets: the claim's scan never walks past tickets already taken, so the last
-- ticket of an event costs what the first did.
CREATE INDEX tickets_claimable ON tickets (event_id, tier, id) WHERE status = 'available';
-- Live and lapsed holds by expiry: lapsed holds are claimable at once, before the sweeper runs.
CREATE INDEX tickets_held_by_expiry ON tickets (event_id, tier, hold_expires_at) WHERE status = 'held';
CREATE INDEX tickets_by_booking ON tickets (booking_id) WHERE booking_id IS NOT NULL;

-- Transitions that would hand one seat to two buyers are refused by the database itself:
-- a sold ticket is final, a live hold cannot be taken over by another booking, and only a
-- booking's own unexpired hold can become a sale.
CREATE FUNCTION tickets_guard_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'sold' THEN
        RAISE EXCEPTION 'ticket % is already sold', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'held' AND NEW.booking_id IS NOT NULL
       AND NEW.booking_id IS DISTINCT FROM OLD.booking_id
       AND OLD.hold_expires_at > now() THEN
        RAISE EXCEPTION 'ticket % is held by another booking', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status = 'sold' AND (OLD.status <> 'held'
                                OR NEW.booking_id IS DISTINCT FROM OLD.booking_id
                                OR OLD.hold_expires_at <= now()) THEN
        RAISE EXCEPTION 'ticket % is not held by this booking', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

-- The common claim (available -> held) skips the trigger entirely.
CREATE TRIGGER tickets_guard_transition
    BEFORE UPDATE ON tickets
    FOR EACH ROW
    WHEN (OLD.status <> 'available' OR NEW.status = 'sold')
    EXECUTE FUNCTION tickets_guard_transition();

-- Idempotency-Key records, scoped to the user: a repeat returns the first response; a repeat while
-- the first is running is refused until `locked_until` (a crashed request frees its key then).
CREATE TABLE idempotency_keys (
    user_id         BIGINT NOT NULL,
    key             TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    operation       TEXT NOT NULL,
    fingerprint     BIGINT NOT NULL,
    response_status SMALLINT,
    response_body   JSONB,
    locked_until    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key),
    CHECK ((response_status IS NULL) = (response_body IS NULL))
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- Two nodes must never mint IDs with the same (region, machine): each node leases its machine
-- number in its region's primary and renews it while it runs.
CREATE TABLE machine_leases (
    region     TEXT NOT NULL,
    machine    SMALLINT NOT NULL CHECK (machine BETWEEN 0 AND 31),
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (region, machine)
);
