-- pgbench: the claim statement taking 32 tickets at once (what one batch statement does).
UPDATE tickets SET status = 'held', booking_id = :booking, user_id = :holder,
                   hold_expires_at = now() + interval '10 minutes', updated_at = now()
WHERE id IN (SELECT id FROM tickets
             WHERE event_id = :event AND tier = 'GA' AND status = 'available'
             ORDER BY id LIMIT 32
             FOR UPDATE SKIP LOCKED);
