-- Gives a reservation's stock back because its order will never be confirmed (payment
-- refused, the commit failed before it reached PostgreSQL, or the reservation lapsed).
--
-- Invariant: stock returns exactly once per reservation: a reservation already confirmed or
-- released is left as it is.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  order id
-- ARGV[2]  the final state to record ('payment_failed', 'failed' or 'lapsed')
-- ARGV[3]  how long the order's state is remembered, in milliseconds
-- Returns the quantity given back (0 when nothing was pending).
local p, id, final, keep = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local res = p .. 'res:' .. id
local fields = redis.call('HMGET', res, 'shopper', 'qty')
if not fields[1] then
  return 0
end
local shopper, qty = fields[1], tonumber(fields[2])
redis.call('DECRBY', p .. 'reserved', qty)
redis.call('DECRBY', p .. 'held:' .. shopper, qty)
redis.call('DEL', res)
redis.call('ZREM', p .. 'res_expiry', id)
redis.call('SET', p .. 'state:' .. id, final, 'PX', keep)
return qty
