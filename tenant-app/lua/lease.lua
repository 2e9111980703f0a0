-- Renews an admission while its shopper is there: run for each poll or live update of an
-- admitted shopper, and tells what they hold or own.
--
-- Invariants:
--   * a lease only ever grows, to `now + lease` and never past its cap (the admission time plus
--     the session TTL, in `caps`), so an admission lasts at most the session TTL however often
--     it is renewed;
--   * an admission that ended (its lease ran out, or it was ended by a leave, a filled limit or
--     a final refusal) is never brought back: only a number still in `active` with a lease ahead
--     is renewed;
--   * a renewal is written only once the lease has used a quarter of itself, so a page's live
--     updates cost one read each, and a write a few times per lease.
-- A number missing from `caps` (an admission from before leases had caps) keeps its lease.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  the admission's join number ('' when the shopper has no ticket: only the units)
-- ARGV[2]  shopper id
-- ARGV[3]  now, in milliseconds since the epoch
-- ARGV[4]  the lease, in milliseconds
-- Returns {end of the lease in ms (-1 when not admitted), its cap (-1 when unknown), units the
-- shopper holds or owns}.
local p, number, shopper = KEYS[1], ARGV[1], ARGV[2]
local now, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local owned = tonumber(redis.call('HGET', p .. 'deal', 'u:' .. shopper) or '0')
if number == '' then
  return {-1, -1, owned}
end
local score = tonumber(redis.call('ZSCORE', p .. 'active', number) or '-1')
if score <= now then
  return {-1, -1, owned}
end
local cap = tonumber(redis.call('ZSCORE', p .. 'caps', number) or tostring(score))
local renewed = math.min(now + lease, cap)
if renewed - score >= lease / 4 then
  redis.call('ZADD', p .. 'active', 'XX', 'GT', renewed, number)
  score = renewed
end
return {score, cap, owned}
