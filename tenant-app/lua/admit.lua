-- One step of the queue: lets go of shoppers who left, then admits the next shoppers in line.
-- Every replica runs it a few times a second; running it more often or from more replicas
-- admits no one extra, because the clock of the admission rate lives here, in Redis.
--
-- Invariants:
--   * admissions never exceed `rate` per second on average (a burst of at most one second's
--     worth after a pause);
--   * admitted-and-not-done shoppers never exceed `max_active`, nor the units still available
--     (admitting more than could still buy only makes people wait for nothing);
--   * admitted shoppers idle past the session TTL and waiting shoppers silent past the grace
--     period lose their place, so they never stall the line;
--   * once the stock is gone (nothing available, nothing reserved) the line is closed: every
--     waiting shopper is let go at once.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  now, in milliseconds since the epoch
-- ARGV[2]  admission rate, shoppers per second
-- ARGV[3]  maximum admitted shoppers
-- ARGV[4]  session TTL of an admission, in milliseconds
-- ARGV[5]  grace period for waiting shoppers who stop polling, in milliseconds
-- ARGV[6]  1 when admissions are allowed now (the deal is live and not suspended), else 0
-- Returns {admitted now, waiting, active, sold out (1/0)}.
local p = KEYS[1]
local now, rate, max_active = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, grace, allowed = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'

-- Admitted shoppers whose session ran out are done.
local expired = redis.call('ZRANGEBYSCORE', p .. 'active', '-inf', now)
for _, shopper in ipairs(expired) do
  redis.call('HDEL', p .. 'adm', shopper)
end
redis.call('ZREMRANGEBYSCORE', p .. 'active', '-inf', now)

-- Waiting shoppers who stopped polling have left.
local gone = redis.call('ZRANGEBYSCORE', p .. 'seen', '-inf', now - grace, 'LIMIT', 0, 1000)
for _, shopper in ipairs(gone) do
  redis.call('ZREM', p .. 'line', shopper)
  redis.call('ZREM', p .. 'pre', shopper)
  redis.call('ZREM', p .. 'seen', shopper)
end

-- Nobody is admitted on figures that are being restored (nor is the line closed).
if redis.call('EXISTS', p .. 'epoch') == 0 then
  return {0, redis.call('ZCARD', p .. 'line'), redis.call('ZCARD', p .. 'active'), 0}
end

local total = tonumber(redis.call('GET', p .. 'total') or '0')
local sold = tonumber(redis.call('GET', p .. 'sold') or '0')
local reserved = tonumber(redis.call('GET', p .. 'reserved') or '0')
local available = total - sold - reserved
if total > 0 and available <= 0 and reserved <= 0 then
  redis.call('DEL', p .. 'line', p .. 'pre', p .. 'seen')
  return {0, 0, redis.call('ZCARD', p .. 'active'), 1}
end

local waiting = redis.call('ZCARD', p .. 'line')
local active = redis.call('ZCARD', p .. 'active')
-- The rate's clock is left alone here: a replica that believes the deal is not live (a deal
-- file synced late) must not reset it for the replicas that are admitting. The bucket's cap
-- below already bounds the burst after a pause.
if not allowed or rate <= 0 then
  return {0, waiting, active, 0}
end

-- Token bucket: credit accrues at `rate` per second, capped at one second's worth.
local last = tonumber(redis.call('GET', p .. 'clock') or tostring(now - 1000))
if now - last > 1000 then last = now - 1000 end
local credit = math.floor((now - last) * rate / 1000)
local room = math.min(max_active, available) - active
local n = math.min(credit, room, waiting)
if n <= 0 then
  return {0, waiting, active, 0}
end
redis.call('SET', p .. 'clock', last + math.floor(n * 1000 / rate))
local next_in_line = redis.call('ZPOPMIN', p .. 'line', n)
for i = 1, #next_in_line, 2 do
  local shopper = next_in_line[i]
  local nonce = redis.call('INCR', p .. 'admitted_total')
  redis.call('ZADD', p .. 'active', now + ttl, shopper)
  redis.call('HSET', p .. 'adm', shopper, nonce)
  redis.call('ZREM', p .. 'seen', shopper)
  redis.call('ZADD', p .. 'admits', now, shopper .. ':' .. nonce)
end
redis.call('ZREMRANGEBYSCORE', p .. 'admits', '-inf', now - 60000)
return {n, waiting - n, active + n, 0}
