-- Takes a join number for a shopper: the only Redis work of joining the queue.
--
-- Invariant: every number is taken once (one INCR), so no two tickets share a place, and
-- numbers grow in arrival order, which is the order of the line after the start. Numbers taken
-- before the start belong to the pre-queue (`open.lua` fixes how many); their places are drawn.
-- Nothing is stored per shopper: the number goes back to the shopper inside a signed ticket
-- (`admit.lua` presumes a number present until its holder's first poll is due, which marks it).
-- While the stock figures are being restored (the deal's hash has no `epoch`) no number is
-- taken.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  shopper id
-- ARGV[2]  the shopper's limit: a shopper who already holds or owns it has nothing to queue for
-- Returns {state, number, units the shopper holds or owns, epoch}: state is 'placed',
-- 'over_limit' or 'unavailable'.
local p, shopper, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local found = redis.call('HMGET', p .. 'deal', 'u:' .. shopper, 'epoch')
local owned, epoch = tonumber(found[1] or '0'), found[2]
if not epoch then
  return {'unavailable', 0, 0, 0}
end
if owned >= limit then
  return {'over_limit', 0, owned, tonumber(epoch)}
end
return {'placed', redis.call('INCR', p .. 'seq'), owned, tonumber(epoch)}
