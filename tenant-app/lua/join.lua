-- Takes a join number for a shopper: the only Redis work of joining the queue.
--
-- Invariants:
--   * every number is taken once (one INCR), so no two tickets share a place, and numbers grow
--     in arrival order, which is the order of the line after the start. Numbers taken before the
--     start belong to the pre-queue (`open.lua` fixes how many); their places are drawn;
--   * the number is marked live in this liveness window as it is handed out, so admission
--     (`admit.lua`) counts its holder present until the next window ends without presuming
--     anything of numbers it never saw.
-- Nothing else is stored per shopper: the number goes back to the shopper inside a signed
-- ticket. While the stock figures are being restored (the deal's hash has no `epoch`) no number
-- is taken.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  shopper id
-- ARGV[2]  the shopper's limit: a shopper who already holds or owns it has nothing to queue for
-- ARGV[3]  now, in milliseconds since the epoch
-- ARGV[4]  the liveness window, in milliseconds
-- Returns {state, number, units the shopper holds or owns, epoch}: state is 'placed',
-- 'over_limit' or 'unavailable'.
local p, shopper, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local found = redis.call('HMGET', p .. 'deal', 'u:' .. shopper, 'epoch')
local owned, epoch = tonumber(found[1] or '0'), found[2]
if not epoch then
  return {'unavailable', 0, 0, 0}
end
if owned >= limit then
  return {'over_limit', 0, owned, tonumber(epoch)}
end
local number = redis.call('INCR', p .. 'seq')
local live = p .. 'live:' .. math.floor(now / window)
redis.call('SETBIT', live, number, 1)
redis.call('PEXPIRE', live, 3 * window)
return {'placed', number, owned, tonumber(epoch)}
