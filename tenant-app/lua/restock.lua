-- Returns the stock of a cancelled (refunded) order.
--
-- Invariant: each cancelled order returns its stock exactly once, however often this runs
-- (guarded by a per-order marker), and the shopper's count drops by the same amount.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  order id
-- ARGV[2]  shopper id
-- ARGV[3]  quantity
-- Returns 1 when the stock was returned now, 0 when it had been already.
local p, id, shopper, qty = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('SET', p .. 'restocked:' .. id, '1', 'NX') == false then
  return 0
end
redis.call('DECRBY', p .. 'sold', qty)
redis.call('DECRBY', p .. 'held:' .. shopper, qty)
redis.call('SET', p .. 'state:' .. id, 'cancelled')
return 1
