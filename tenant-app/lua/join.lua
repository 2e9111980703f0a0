-- Puts a shopper in the queue, or tells them where they already are.
--
-- Invariant: one shopper holds at most one place. A shopper already waiting, admitted or in
-- the pre-queue keeps that place (a refresh or a second tab never issues a new ticket), and
-- tickets after the start are numbered strictly in arrival order (FIFO).
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  shopper id
-- ARGV[2]  now, in milliseconds since the epoch
-- ARGV[3]  the shopper's limit: a shopper who already owns it has nothing to queue for
-- While the stock figures are being restored (`epoch` missing) nobody new is placed: the
-- answer is 'unavailable', so a shopper is never told 'sold out' on figures that are not there.
--
-- Returns {state, ticket}: state is 'admitted', 'waiting', 'pre_queue', 'sold_out',
-- 'over_limit' or 'unavailable'.
local p, shopper, now, limit = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('ZSCORE', p .. 'active', shopper) then
  return {'admitted', 0}
end
local ticket = redis.call('ZSCORE', p .. 'line', shopper)
if ticket then
  redis.call('ZADD', p .. 'seen', now, shopper)
  return {'waiting', tonumber(ticket)}
end
if redis.call('ZSCORE', p .. 'pre', shopper) then
  redis.call('ZADD', p .. 'seen', now, shopper)
  return {'pre_queue', 0}
end
if redis.call('EXISTS', p .. 'epoch') == 0 then
  return {'unavailable', 0}
end
if tonumber(redis.call('HGET', p .. 'held', shopper) or '0') >= limit then
  return {'over_limit', 0}
end
local total = tonumber(redis.call('GET', p .. 'total') or '0')
local sold = tonumber(redis.call('GET', p .. 'sold') or '0')
local reserved = tonumber(redis.call('GET', p .. 'reserved') or '0')
if total - sold - reserved <= 0 and reserved <= 0 then
  return {'sold_out', 0}
end
redis.call('ZADD', p .. 'seen', now, shopper)
if redis.call('EXISTS', p .. 'opened') == 0 then
  redis.call('ZADD', p .. 'pre', now, shopper)
  return {'pre_queue', 0}
end
ticket = redis.call('INCR', p .. 'seq')
redis.call('ZADD', p .. 'line', ticket, shopper)
local waiting = redis.call('ZCARD', p .. 'line')
if waiting > tonumber(redis.call('GET', p .. 'peak_waiting') or '0') then
  redis.call('SET', p .. 'peak_waiting', waiting)
end
return {'waiting', ticket}
