-- A per-user ticket cap per event, across all that user's orders. Held (live) and sold tickets
-- count; released, expired (lapsed), failed and cancelled bookings do not. NULL means the home
-- node's configured default (`booking.default_max_tickets_per_user`).
ALTER TABLE events ADD COLUMN max_tickets_per_user INTEGER
    CHECK (max_tickets_per_user BETWEEN 1 AND 1000000);

-- A user's bookings of an event that may count against the cap: the reserve's count walks only
-- these (lapsed holds stay here until the sweeper ends them; the count filters them by time).
CREATE INDEX bookings_holding ON bookings (event_id, user_id)
    WHERE status IN ('held', 'confirmed');

-- The tickets each of `holders` holds or bought of `event`, counted after locking every
-- (holder, event) pair for the rest of the transaction. A reserve calls it before its claim, so
-- two reserves of one user and event (in two batches, or a batch and a lone retry) run their
-- count-then-hold one after the other, and neither can pass the cap on a count the other is
-- about to change. The locks are taken in key order, so two batches never wait on each other
-- in a circle; a hash collision between two pairs only makes them wait on each other.
--
-- VOLATILE (the default) matters: the count is a statement of its own inside the function, so
-- it reads with a snapshot taken after the locks were granted and sees what the previous holder
-- of a lock committed. Counting in the locking statement itself would not.
--
-- `take_locks` is false only for the race tests' negative control (a test-only cargo feature),
-- which must see the cap broken without the locks.
CREATE FUNCTION lock_and_count_holdings(event bigint, holders bigint[], take_locks boolean)
RETURNS TABLE (user_id bigint, tickets bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF take_locks THEN
        PERFORM pg_advisory_xact_lock(k.key)
        FROM (SELECT DISTINCT hashint8extended(u.holder, event) AS key
              FROM unnest(holders) AS u(holder) ORDER BY 1) AS k;
    END IF;
    RETURN QUERY
        SELECT u.holder, coalesce(sum(b.quantity), 0)::bigint
        FROM unnest(holders) AS u(holder)
        LEFT JOIN bookings b
               ON b.event_id = event AND b.user_id = u.holder
              AND b.status IN ('held', 'confirmed')
              AND (b.status = 'confirmed' OR b.expires_at > now())
        GROUP BY u.holder;
END
$$;
