-- pgbench: the single-ticket claim statement alone, as the issue states it. Variables: event,
-- booking (an existing booking, for the deferred foreign key), holder (its user).
UPDATE tickets SET status = 'held', booking_id = :booking, user_id = :holder,
                   hold_expires_at = now() + interval '10 minutes', updated_at = now()
WHERE id = (SELECT id FROM tickets
            WHERE event_id = :event AND tier = 'GA' AND status = 'available'
            ORDER BY id LIMIT 1
            FOR UPDATE SKIP LOCKED);
