-- Gives a reservation's stock back because its order will never be confirmed (payment
-- refused, the commit failed before it reached PostgreSQL, or the reservation lapsed).
--
-- Invariants:
--   * stock returns exactly once per reservation: a reservation already confirmed or released
--     is left as it is;
--   * a reservation of an earlier epoch is cleared without touching any figure (the restore
--     never counted it);
--   * an attempt that ends here wrote nothing and charged nothing in the end, so it frees its
--     idempotency key: the client may retry with the same key.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  order id (`<epoch><9-digit sequence>`)
-- ARGV[2]  the final state to record ('payment_failed', 'failed' or 'lapsed')
-- ARGV[3]  how long the order's state is remembered, in milliseconds
-- Returns the quantity given back (0 when nothing was pending, -1 for an earlier epoch, -2 while
-- the figures are being restored).
local p, id, final, keep = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local epoch = redis.call('GET', p .. 'epoch')
if not epoch then
  return -2
end
local res = p .. 'res:' .. id
local fields = redis.call('HMGET', res, 'shopper', 'qty', 'key')
if not fields[1] then
  return 0
end
local shopper, qty, key = fields[1], tonumber(fields[2]), fields[3]
redis.call('DEL', res)
redis.call('ZREM', p .. 'res_expiry', id)
if key then
  local idem = p .. 'idem:' .. shopper .. ':' .. key
  if redis.call('GET', idem) == id then
    redis.call('DEL', idem)
  end
end
if string.sub(id, 1, -10) ~= epoch then
  return -1
end
redis.call('DECRBY', p .. 'reserved', qty)
redis.call('HINCRBY', p .. 'held', shopper, -qty)
redis.call('SET', p .. 'state:' .. id, final, 'PX', keep)
return qty
