-- Returns the stock of a cancelled (refunded) order.
--
-- Invariants:
--   * each cancelled order returns its stock exactly once, however often this runs (guarded
--     by the field `c:<id>` of the deal's hash), and the shopper's units drop by the same
--     amount;
--   * a cancellation recorded in an earlier epoch changes nothing: the restore that opened
--     this epoch read the order as cancelled and never counted it as sold;
--   * while the figures are being restored (`epoch` missing) nothing changes; the sweeper
--     retries.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  order id
-- ARGV[2]  shopper id
-- ARGV[3]  quantity
-- ARGV[4]  the epoch in which the cancellation was recorded in PostgreSQL
-- Returns 1 when the stock was returned now, 0 when it had been already, -1 when the
-- cancellation belongs to an earlier epoch, -2 while the figures are being restored.
local p, id, shopper, qty, at = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local deal = p .. 'deal'
local epoch = redis.call('HGET', deal, 'epoch')
if not epoch then
  return -2
end
if epoch ~= at then
  return -1
end
if redis.call('HSETNX', deal, 'c:' .. id, 1) == 0 then
  return 0
end
redis.call('HINCRBY', deal, 'sold', -qty)
redis.call('HINCRBY', deal, 'u:' .. shopper, -qty)
return 1
