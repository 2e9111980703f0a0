-- Turns a reservation into a sale once its order is committed to PostgreSQL.
--
-- Invariants:
--   * stock moves from reserved to sold exactly once per order (a repeat is a no-op);
--   * a reservation of an earlier epoch changes no figure: the restore that opened this epoch
--     already counted every order PostgreSQL holds, this one included;
--   * a shopper who now owns their limit is done: their admission ends and frees a place for
--     the next shopper in line.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  order id (`<epoch><9-digit sequence>`)
-- ARGV[2]  how long the order's state is remembered, in milliseconds
-- Returns 1 when confirmed now, 0 when it was not pending, -1 when it belonged to an earlier
-- epoch (cleared), -2 when the figures are being restored (nothing changed).
local p, id, keep = KEYS[1], ARGV[1], tonumber(ARGV[2])
local epoch = redis.call('GET', p .. 'epoch')
if not epoch then
  return -2
end
local res = p .. 'res:' .. id
local fields = redis.call('HMGET', res, 'shopper', 'qty', 'limit', 'adm')
if not fields[1] then
  return 0
end
redis.call('DEL', res)
redis.call('ZREM', p .. 'res_expiry', id)
if string.sub(id, 1, -10) ~= epoch then
  return -1
end
local shopper, qty, limit = fields[1], tonumber(fields[2]), tonumber(fields[3])
redis.call('DECRBY', p .. 'reserved', qty)
redis.call('INCRBY', p .. 'sold', qty)
redis.call('SET', p .. 'state:' .. id, 'confirmed', 'PX', keep)
if fields[4] and tonumber(redis.call('HGET', p .. 'held', shopper) or '0') >= limit then
  redis.call('ZREM', p .. 'active', fields[4])
end
return 1
