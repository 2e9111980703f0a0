-- Where one shopper stands, and the figures the estimate needs, in one round trip. Also
-- records that the shopper is still there (a poll), so waiting shoppers who stop polling can be
-- let go after the grace period without stalling the line.
--
-- Invariant: read-only except for the shopper's own `seen` time.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  shopper id ('' for figures only)
-- ARGV[2]  now, in milliseconds since the epoch
-- ARGV[3]  the window, in milliseconds, over which recent admissions are counted
-- Returns numbers only: {state (0 outside, 1 pre-queue, 2 waiting, 3 admitted), position, admission nonce (or ticket while waiting), admission expiry,
--          waiting, active, available, reserved, sold, recent admissions, pre-queue size,
--          opened, units the shopper holds or owns, figures restored (1/0)}.
local p, shopper, now, window = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local state, position, nonce, expiry, held = 0, 0, 0, 0, 0
if shopper ~= '' then
  held = tonumber(redis.call('HGET', p .. 'held', shopper) or '0')
  local until_ms = redis.call('ZSCORE', p .. 'active', shopper)
  if until_ms and tonumber(until_ms) > now then
    state = 3
    nonce = tonumber(redis.call('HGET', p .. 'adm', shopper) or '0')
    expiry = tonumber(until_ms)
  else
    local rank = redis.call('ZRANK', p .. 'line', shopper)
    if rank then
      state, position = 2, rank + 1
      nonce = tonumber(redis.call('ZSCORE', p .. 'line', shopper))
      redis.call('ZADD', p .. 'seen', now, shopper)
    elseif redis.call('ZSCORE', p .. 'pre', shopper) then
      state = 1
      redis.call('ZADD', p .. 'seen', now, shopper)
    end
  end
end
local total = tonumber(redis.call('GET', p .. 'total') or '0')
local sold = tonumber(redis.call('GET', p .. 'sold') or '0')
local reserved = tonumber(redis.call('GET', p .. 'reserved') or '0')
local recent = redis.call('ZCOUNT', p .. 'admits', now - window, '+inf')
return {
  state, position, nonce, expiry,
  redis.call('ZCARD', p .. 'line'),
  redis.call('ZCOUNT', p .. 'active', now + 1, '+inf'),
  total - sold - reserved, reserved, sold, recent,
  redis.call('ZCARD', p .. 'pre'),
  redis.call('EXISTS', p .. 'opened'),
  held,
  redis.call('EXISTS', p .. 'epoch'),
}
