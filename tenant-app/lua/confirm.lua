-- Turns reservations into sales once their orders are committed to PostgreSQL: one call for a
-- whole committed batch.
--
-- Invariants:
--   * stock moves from reserved to sold exactly once per order: the reservation (a member of
--     `res`, see `reserve.lua`) is removed here, and one already gone (confirmed or released
--     before) changes nothing;
--   * a reservation of an earlier epoch changes no figure: the restore that opened this epoch
--     already counted every order PostgreSQL holds, this one included;
--   * a shopper whose units reached their limit with this order is done: their admission ends
--     and frees a place for the next shopper in line.
-- While the figures are being restored (`epoch` missing) nothing changes; the sweeper confirms
-- the orders when their reservations lapse.
--
-- KEYS[1]  key prefix of the deal
-- ARGV     the reservations of the committed orders
-- Returns how many were confirmed now, or -2 while the figures are being restored.
local p = KEYS[1]
local deal = p .. 'deal'
local epoch = redis.call('HGET', deal, 'epoch')
if not epoch then
  return -2
end
local units, confirmed = 0, 0
for i = 1, #ARGV do
  if redis.call('ZREM', p .. 'res', ARGV[i]) == 1 then
    local id, qty, limit, held, admission = string.match(ARGV[i], '^(%d+)|(%d+)|(%d+)|(%d+)|(%d+)|')
    if id and string.sub(id, 1, -10) == epoch then
      units = units + tonumber(qty)
      confirmed = confirmed + 1
      if tonumber(held) >= tonumber(limit) then
        redis.call('ZREM', p .. 'active', admission)
      end
    end
  end
end
if units > 0 then
  redis.call('HINCRBY', deal, 'reserved', -units)
  redis.call('HINCRBY', deal, 'sold', units)
end
return confirmed
