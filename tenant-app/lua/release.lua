-- Gives a reservation's stock back because its order will never be confirmed (payment
-- refused, the commit failed before it reached PostgreSQL, or the reservation lapsed).
--
-- Invariants:
--   * stock returns exactly once per reservation: the reservation (a member of `res`) is
--     removed here, and one already confirmed or released is left as it is;
--   * a reservation of an earlier epoch is cleared without touching any figure (the restore
--     never counted it);
--   * an attempt that ends here wrote nothing and charged nothing in the end, so it frees its
--     idempotency key: the client may send the same order again.
-- While the figures are being restored (`epoch` missing) nothing changes.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  the reservation
-- Returns the quantity given back (0 when nothing was pending, -1 for an earlier epoch, -2 while
-- the figures are being restored).
local p, reservation = KEYS[1], ARGV[1]
local deal = p .. 'deal'
local epoch = redis.call('HGET', deal, 'epoch')
if not epoch then
  return -2
end
if redis.call('ZREM', p .. 'res', reservation) == 0 then
  return 0
end
local id, qty, key, shopper = string.match(reservation, '^(%d+)|(%d+)|%d+|%d+|%d+|([^|]*)|(.*)$')
if not id or string.sub(id, 1, -10) ~= epoch then
  return -1
end
qty = tonumber(qty)
redis.call('HINCRBY', deal, 'reserved', -qty)
redis.call('HINCRBY', deal, 'u:' .. shopper, -qty)
local idem = 'k:' .. shopper .. ':' .. key
if redis.call('HGET', deal, idem) == reservation then
  redis.call('HDEL', deal, idem)
end
return qty
