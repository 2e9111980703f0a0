-- Sets the deal's stock figures when Redis holds none (first start, or after Redis lost its
-- data), from what PostgreSQL knows was sold; keeps the total in step with the spec.
--
-- Invariant: `sold` is only ever set when missing, so a running sale is never reset; the
-- order id sequence never goes back below an id already stored in PostgreSQL.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  total stock from the spec
-- ARGV[2]  units sold according to PostgreSQL
-- ARGV[3]  the highest order id in PostgreSQL
-- Returns 1 when the figures were initialised now, 0 when they were there already.
local p = KEYS[1]
redis.call('SET', p .. 'total', ARGV[1])
local fresh = redis.call('SET', p .. 'sold', ARGV[2], 'NX')
if tonumber(redis.call('GET', p .. 'order_seq') or '0') < tonumber(ARGV[3]) then
  redis.call('SET', p .. 'order_seq', ARGV[3])
end
if fresh then
  redis.call('SET', p .. 'reserved', 0, 'NX')
  return 1
end
return 0
