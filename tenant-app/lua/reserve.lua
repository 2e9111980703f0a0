-- Reserves stock for one order, in one round trip and without locks.
--
-- Invariants:
--   * never oversell: sold + reserved never exceeds total;
--   * nothing is reserved while the figures are not restored (`epoch` missing): the answer is
--     'unavailable' and nothing changes;
--   * only a shopper holding a live admission can reserve: the admission's join number is in
--     `active` with an expiry still ahead, in the epoch it was issued in, so a replayed token
--     from an admission that ended, or from before Redis lost its data, is refused;
--   * a shopper never holds or owns more than their limit;
--   * one idempotency key gives at most one reservation: a repeat returns the first order id;
--   * the order id carries the epoch (`<epoch><9-digit sequence>`), so it is never reused.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  shopper id
-- ARGV[2]  the admission's join number, from the shopper's token
-- ARGV[3]  quantity
-- ARGV[4]  the shopper's limit
-- ARGV[5]  idempotency key
-- ARGV[6]  now, in milliseconds since the epoch (the deal's clock)
-- ARGV[7]  reservation TTL, in milliseconds
-- ARGV[8]  how long an idempotency key is remembered, in milliseconds
-- ARGV[9]  the epoch the admission was issued in
-- Returns {outcome, order id}: outcome is 'reserved', 'existing', 'not_admitted', 'over_limit',
-- 'sold_out' (nothing left), 'insufficient' (less left than asked for) or 'unavailable'.
local p, shopper, nonce = KEYS[1], ARGV[1], ARGV[2]
local qty, limit, key = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local now, ttl, key_ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local admitted_in = ARGV[9]

local epoch = redis.call('GET', p .. 'epoch')
if not epoch then
  return {'unavailable', '0'}
end

local idem = p .. 'idem:' .. shopper .. ':' .. key
local existing = redis.call('GET', idem)
if existing then
  return {'existing', existing}
end

local until_ms = redis.call('ZSCORE', p .. 'active', nonce)
if epoch ~= admitted_in or not until_ms or tonumber(until_ms) <= now then
  return {'not_admitted', '0'}
end

local held = tonumber(redis.call('HGET', p .. 'held', shopper) or '0')
if held + qty > limit then
  return {'over_limit', '0'}
end

local total = tonumber(redis.call('GET', p .. 'total') or '0')
local sold = tonumber(redis.call('GET', p .. 'sold') or '0')
local reserved = tonumber(redis.call('GET', p .. 'reserved') or '0')
local available = total - sold - reserved
if available <= 0 then
  return {'sold_out', '0'}
end
if available < qty then
  return {'insufficient', '0'}
end

local seq = redis.call('INCR', p .. 'order_seq')
if seq > 999999999 then
  return {'unavailable', '0'}
end
local id = epoch .. string.format('%09d', seq)
redis.call('HSET', p .. 'res:' .. id, 'shopper', shopper, 'qty', qty, 'limit', limit, 'key', key, 'adm', nonce)
redis.call('ZADD', p .. 'res_expiry', now + ttl, id)
redis.call('INCRBY', p .. 'reserved', qty)
redis.call('HINCRBY', p .. 'held', shopper, qty)
redis.call('SET', idem, id, 'PX', key_ttl)
redis.call('SET', p .. 'state:' .. id, 'reserved', 'PX', key_ttl)
return {'reserved', id}
