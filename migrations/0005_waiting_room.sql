-- The waiting room of a queued on-sale (DESIGN section 10), on the event's home shard, so that
-- it replicates to every region: a user's place and the serving counter can be read anywhere.

-- One row per queued event: its settings and its counters. An event without a row here is not
-- queued and books as before.
CREATE TABLE event_queues (
    event_id             BIGINT PRIMARY KEY REFERENCES events (id),
    -- Joins before this wait in the lobby; at it, the lobby is drawn into random positions.
    opens_at             TIMESTAMPTZ NOT NULL,
    -- Joins after this are refused (NULL: open for as long as the event is).
    closes_at            TIMESTAMPTZ CHECK (closes_at IS NULL OR closes_at > opens_at),
    -- The closed loop's set point: admitted users whose pass is neither used nor lapsed, plus
    -- live holds made with a pass, are kept near this.
    target_active        INTEGER NOT NULL CHECK (target_active BETWEEN 1 AND 1000000),
    -- The loop never admits faster than this.
    max_admit_per_second DOUBLE PRECISION NOT NULL
                         CHECK (max_admit_per_second > 0 AND max_admit_per_second <= 100000),
    -- An admitted user's window to use the pass, from the moment of admission.
    pass_seconds         INTEGER NOT NULL CHECK (pass_seconds BETWEEN 10 AND 86400),
    -- When the lobby was drawn (NULL: not yet). Positions exist only after the draw.
    drawn_at             TIMESTAMPTZ,
    -- Lobby members drawn, i.e. positions 1..lobby_size went to the lobby.
    lobby_size           BIGINT NOT NULL DEFAULT 0 CHECK (lobby_size >= 0),
    -- Positions handed out so far: 1..last_position.
    last_position        BIGINT NOT NULL DEFAULT 0 CHECK (last_position >= lobby_size),
    -- The serving counter: positions up to it are admitted.
    serving              BIGINT NOT NULL DEFAULT 0 CHECK (serving BETWEEN 0 AND last_position),
    -- The loop's fractional admission credit carried between ticks (rate maths).
    admit_credit         DOUBLE PRECISION NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (drawn_at IS NOT NULL OR last_position = 0)
);

-- A user's place: one per (event, user), whatever device or region they join from.
CREATE TABLE queue_members (
    event_id  BIGINT NOT NULL REFERENCES event_queues (event_id),
    -- Users live in their own region's shard, so no foreign key (as for bookings).
    user_id   BIGINT NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- NULL while in the lobby (before the draw); then fixed for good.
    position  BIGINT CHECK (position >= 1),
    PRIMARY KEY (event_id, user_id),
    UNIQUE (event_id, position),
    -- What a booking's pass names: this user's place (see bookings.queue_position).
    UNIQUE (event_id, user_id, position)
);
-- The lobby, for the draw.
CREATE INDEX queue_members_lobby ON queue_members (event_id) WHERE position IS NULL;

-- Each advance of the serving counter: positions first..last were admitted at admitted_at.
-- Pass windows (admitted_at + pass_seconds) and the measured admission rate come from here.
CREATE TABLE queue_admissions (
    event_id       BIGINT NOT NULL REFERENCES event_queues (event_id),
    first_position BIGINT NOT NULL CHECK (first_position >= 1),
    last_position  BIGINT NOT NULL,
    admitted_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, first_position),
    CHECK (last_position >= first_position)
);
CREATE INDEX queue_admissions_by_time ON queue_admissions (event_id, admitted_at);

-- A booking made with a pass carries the pass's position. One order per pass, by the database:
-- a second booking with the same place is a unique violation. The place must be the booking
-- user's own (foreign key to the member row).
ALTER TABLE bookings ADD COLUMN queue_position BIGINT;
CREATE UNIQUE INDEX bookings_one_per_pass ON bookings (event_id, queue_position)
    WHERE queue_position IS NOT NULL;
ALTER TABLE bookings ADD CONSTRAINT bookings_pass_is_the_users_place
    FOREIGN KEY (event_id, user_id, queue_position)
    REFERENCES queue_members (event_id, user_id, position);
-- Live holds made with a pass: the closed loop counts them as not yet done.
CREATE INDEX bookings_queued_held ON bookings (event_id)
    WHERE queue_position IS NOT NULL AND status = 'held';

-- A booking of a queued event must come through the queue, and only once its place was
-- admitted: the node checks the signed pass, and the database refuses anything else too.
CREATE FUNCTION bookings_need_an_admitted_place() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    counter BIGINT;
BEGIN
    SELECT q.serving INTO counter FROM event_queues q WHERE q.event_id = NEW.event_id;
    IF FOUND AND (NEW.queue_position IS NULL OR NEW.queue_position > counter) THEN
        RAISE EXCEPTION 'booking % of queued event % has no admitted place', NEW.id, NEW.event_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_need_an_admitted_place';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER bookings_need_an_admitted_place BEFORE INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_need_an_admitted_place();
