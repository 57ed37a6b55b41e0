-- Availability per tier in O(tiers): the count of available tickets of each tier, kept by the
-- writes themselves. A statement that changes tickets (creation, claim, release, sale, expiry)
-- adjusts the counts once per tier it touched, in its own transaction, through the statement
-- triggers below; so a group-commit batch of hundreds of holds makes one update per tier, and no
-- code path can forget to. Reads add the holds that have lapsed but not yet been swept (found
-- through tickets_held_by_expiry, which the sweeper keeps short), since a lapsed hold is
-- available the moment it lapses.
--
-- Each tier's count is striped over 16 rows, and a writer adjusts the stripe of its own backend:
-- the two batch workers of a hot event and the releases beside them do not queue on one row's
-- lock until commit. A stripe may go negative; the sum over stripes is the count.

CREATE TABLE tier_stock (
    event_id  BIGINT NOT NULL,
    tier      TEXT NOT NULL,
    stripe    SMALLINT NOT NULL CHECK (stripe BETWEEN 0 AND 15),
    available BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, tier, stripe),
    FOREIGN KEY (event_id, tier) REFERENCES tiers (event_id, name) ON DELETE CASCADE
);

-- Every tier gets its stripes when it is made.
CREATE FUNCTION tiers_add_stock() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tier_stock (event_id, tier, stripe)
    SELECT NEW.event_id, NEW.name, s FROM generate_series(0, 15) AS s;
    RETURN NULL;
END
$$;

CREATE TRIGGER tiers_add_stock
    AFTER INSERT ON tiers
    FOR EACH ROW
    EXECUTE FUNCTION tiers_add_stock();

-- Adds `delta` (tier -> change in available tickets) to this backend's stripe of each tier. The
-- rows are locked in one order, so two writers touching several tiers cannot deadlock.
CREATE FUNCTION tier_stock_apply(changes jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    mine smallint := pg_backend_pid() % 16;
BEGIN
    PERFORM 1 FROM tier_stock s
        JOIN jsonb_to_recordset(changes) AS c(event_id bigint, tier text, delta bigint)
          ON s.event_id = c.event_id AND s.tier = c.tier
        WHERE s.stripe = mine
        ORDER BY s.event_id, s.tier
        FOR UPDATE OF s;
    UPDATE tier_stock s SET available = s.available + c.delta
    FROM jsonb_to_recordset(changes) AS c(event_id bigint, tier text, delta bigint)
    WHERE s.event_id = c.event_id AND s.tier = c.tier AND s.stripe = mine;
END
$$;

-- One function per statement kind: a transition table exists only for the events that have it.
CREATE FUNCTION tickets_count_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changes jsonb;
BEGIN
    SELECT jsonb_agg(c) INTO changes FROM (
        SELECT event_id, tier, count(*) AS delta FROM inserted
        WHERE status = 'available' GROUP BY event_id, tier) c;
    IF changes IS NOT NULL THEN
        PERFORM tier_stock_apply(changes);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION tickets_count_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changes jsonb;
BEGIN
    SELECT jsonb_agg(c) INTO changes FROM (
        SELECT event_id, tier, sum(delta) AS delta FROM (
            SELECT event_id, tier, 1 AS delta FROM after_rows WHERE status = 'available'
            UNION ALL
            SELECT event_id, tier, -1 FROM before_rows WHERE status = 'available') d
        GROUP BY event_id, tier
        HAVING sum(delta) <> 0) c;
    IF changes IS NOT NULL THEN
        PERFORM tier_stock_apply(changes);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION tickets_count_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changes jsonb;
BEGIN
    SELECT jsonb_agg(c) INTO changes FROM (
        SELECT event_id, tier, -count(*) AS delta FROM deleted
        WHERE status = 'available' GROUP BY event_id, tier) c;
    IF changes IS NOT NULL THEN
        PERFORM tier_stock_apply(changes);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_count_inserted
    AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT
    EXECUTE FUNCTION tickets_count_inserted();

CREATE TRIGGER tickets_count_updated
    AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION tickets_count_updated();

CREATE TRIGGER tickets_count_deleted
    AFTER DELETE ON tickets
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT
    EXECUTE FUNCTION tickets_count_deleted();

-- Tiers made before this migration: their stripes, with today's count in stripe 0.
INSERT INTO tier_stock (event_id, tier, stripe, available)
SELECT tr.event_id, tr.name, s,
       CASE WHEN s = 0 THEN (SELECT count(*) FROM tickets t
                             WHERE t.event_id = tr.event_id AND t.tier = tr.name
                               AND t.status = 'available')
            ELSE 0 END
FROM tiers tr CROSS JOIN generate_series(0, 15) AS s;
