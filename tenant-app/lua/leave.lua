-- Gives up a place at the shopper's request: ends the admission, and records the leave where
-- admission reads it.
--
-- Invariants:
--   * a leave is for good: the number's bit in `left` is never cleared, so a liveness mark that
--     arrives later (another tab still polling with the ticket) cannot bring the place back, and
--     `admit.lua` passes over it;
--   * only a ticket of the current epoch leaves: after a restore the same join numbers are
--     handed out again, and an old ticket's leave must not knock out their new holders. With
--     `epoch` missing (figures being restored) nothing changes.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  the join number
-- ARGV[2]  the epoch of the ticket
-- Returns 1 when the leave was recorded, 0 when the ticket is of another epoch.
local p, number, epoch = KEYS[1], ARGV[1], ARGV[2]
if redis.call('HGET', p .. 'deal', 'epoch') ~= epoch then
  return 0
end
redis.call('SETBIT', p .. 'left', tonumber(number), 1)
redis.call('ZREM', p .. 'active', number)
return 1
