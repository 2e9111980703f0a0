-- Reserves stock for one order, in one round trip and without locks.
--
-- Invariants:
--   * never oversell: sold + reserved never exceeds total;
--   * nothing is reserved while the figures are not restored (`epoch` missing from the deal's
--     hash): the answer is 'unavailable' and nothing changes;
--   * only a shopper holding a live admission can reserve: the admission's join number is in
--     `active` with an expiry still ahead, in the epoch it was issued in, so a replayed token
--     from an admission that ended, or from before Redis lost its data, is refused;
--   * a shopper never holds or owns more than their limit;
--   * one idempotency key gives at most one reservation: a repeat returns the first order id and
--     its reservation (the key's field holds the reservation), so the attempt can be carried on;
--   * an admission counts once: the first reservation notes its join number in the deal's hash
--     (`a:<number>`, in the same HSET), so admission (`admit.lua`) counts the shopper by the
--     units reserved or bought, no longer as a claim on the units left;
--   * a final refusal ('over_limit', 'sold_out', 'insufficient') ends the admission, so the
--     place goes to the next shopper at once;
--   * every new reservation raises the deal's `keys` count (in the same HSET): a replica that
--     listed the shoppers holding idempotency keys knows its list is whole while the count
--     stands (the sold-out answer, `orders::buyers`);
--   * the order id carries the epoch (`<epoch><9 digits>`, taken from a block the caller got
--     from `next_block.lua`), so it is never reused; an id of another epoch reserves nothing.
--
-- Everything is read with one HMGET of the deal's hash (`deal`: the figures, what each shopper
-- holds as `u:<shopper>`, and idempotency keys as `k:<shopper>:<key>` holding the reservation),
-- and written with one
-- HINCRBY, one HSET and one ZADD. The reservation is the member of `res`, scored by its expiry:
-- `<id>|<qty>|<limit>|<units held after it>|<admission>|<key>|<shopper>`, all that confirming or
-- releasing it needs, so it has no key of its own.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  shopper id
-- ARGV[2]  the admission's join number, from the shopper's token
-- ARGV[3]  the epoch the admission was issued in
-- ARGV[4]  quantity
-- ARGV[5]  the shopper's limit
-- ARGV[6]  idempotency key
-- ARGV[7]  now, in milliseconds since the epoch (the deal's clock)
-- ARGV[8]  reservation TTL, in milliseconds
-- ARGV[9]  the order id to use
-- Returns {outcome, order id, reservation}: outcome is 'reserved', 'existing', 'not_admitted',
-- 'over_limit', 'held' (fewer left than asked for, but enough reserved that may come back),
-- 'sold_out' (nothing left or held), 'insufficient' (less left than asked for, for good),
-- 'stale_id' (the id is of another epoch: take a new block) or 'unavailable'.
local p, shopper, admission, admitted_in = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local qty, limit, key = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local now, ttl, id = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local deal, units, idem = p .. 'deal', 'u:' .. shopper, 'k:' .. shopper .. ':' .. key

local f = redis.call('HMGET', deal, 'epoch', 'total', 'sold', 'reserved', units, idem, 'keys')
local epoch = f[1]
if not epoch then
  return {'unavailable', '0', ''}
end
if f[6] then
  return {'existing', string.match(f[6], '^(%d+)') or '0', f[6]}
end
local until_ms = redis.call('ZSCORE', p .. 'active', admission)
if epoch ~= admitted_in or not until_ms or tonumber(until_ms) <= now then
  return {'not_admitted', '0', ''}
end
local held = tonumber(f[5] or '0')
local available = tonumber(f[2] or '0') - tonumber(f[3] or '0') - tonumber(f[4] or '0')
local refusal = nil
if held + qty > limit then
  refusal = 'over_limit'
elseif available < qty and available + tonumber(f[4] or '0') >= qty then
  -- Enough may come back from other checkouts: not final, the admission stays.
  return {'held', '0', ''}
elseif available <= 0 then
  refusal = 'sold_out'
elseif available < qty then
  refusal = 'insufficient'
end
if refusal then
  redis.call('ZREM', p .. 'active', admission)
  return {refusal, '0', ''}
end
if string.sub(id, 1, -10) ~= epoch then
  return {'stale_id', '0', ''}
end
local reservation = table.concat({id, qty, limit, held + qty, admission, key, shopper}, '|')
redis.call('HINCRBY', deal, 'reserved', qty)
redis.call('HSET', deal, units, held + qty, idem, reservation, 'a:' .. admission, 1,
  'keys', tonumber(f[7] or '0') + 1)
redis.call('ZADD', p .. 'res', now + ttl, reservation)
return {'reserved', id, reservation}
