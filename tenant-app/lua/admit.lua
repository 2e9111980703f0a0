-- One step of the queue: ends admissions that ran out, then moves the line's head forward,
-- admitting the shoppers at the next places who are still there and passing over those who left.
-- Every replica runs it a few times a second; running it more often or from more replicas
-- admits no one extra, because the admission rate's clock lives here, in Redis.
--
-- Invariants:
--   * admissions never exceed `rate` per second on average (a burst of at most one second's
--     worth after a pause);
--   * admitted-and-not-done shoppers never exceed `max_active`, nor the units still available;
--   * places are admitted in order, each at most once: `head` only grows, and the places after
--     the pre-queue are their own join numbers;
--   * no admission goes to a shopper who left: a number is admitted only if its holder was seen
--     in this liveness window or the last (bitmaps `live:<window>`, indexed by join number), or
--     if it was taken so recently that its holder had no whole window to be seen (numbers above
--     `wseq:<last window>`); everyone else is passed over, so leavers never stall the line;
--   * every admission is staged for the admission log, in order: one line per step,
--     `<epoch>|<now> <place>:<number> ...`, which the replicas publish to PostgreSQL
--     (`queue/record.rs`); the epoch tells a line made before a restore from one made after.
-- With `epoch` missing from the deal's hash (figures being restored) or the pre-queue not yet drawn (`pre_count`
-- missing) nobody is admitted. A replica whose view of the head is stale admits nobody and is
-- told the head, because it chose the pre-queue's numbers for the places after the head it saw.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  now, in milliseconds since the epoch
-- ARGV[2]  admission rate, shoppers per second
-- ARGV[3]  maximum admitted shoppers
-- ARGV[4]  session TTL of an admission, in milliseconds
-- ARGV[5]  1 when admissions are allowed now (the deal is live and not suspended), else 0
-- ARGV[6]  the liveness window, in milliseconds
-- ARGV[7]  the head the caller saw
-- ARGV[8...]  the join numbers holding places head+1, head+2, ... while they are in the
--             pre-queue (from the draw)
-- Returns {admitted now, head, active, sold out (1/0), stale (1/0)}.
local p = KEYS[1]
local now, rate, max_active = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, allowed, window = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local seen_head = tonumber(ARGV[7])

redis.call('ZREMRANGEBYSCORE', p .. 'active', '-inf', now)
local active = redis.call('ZCARD', p .. 'active')
local stock = redis.call('HMGET', p .. 'deal', 'epoch', 'total', 'sold', 'reserved')
local line = redis.call('MGET', p .. 'seq', p .. 'head', p .. 'pre_count', p .. 'clock')
local figures = {stock[1], stock[2], stock[3], stock[4], line[1], line[2], line[3], line[4]}
local head = tonumber(figures[6] or '0')
if not figures[1] then
  return {0, head, active, 0, 0}
end
local seq = tonumber(figures[5] or '0')
-- Where the numbers stood when this window began: the pre-queue's too, so that at the start
-- those who left it long before are already known.
local w = math.floor(now / window)
redis.call('SET', p .. 'wseq:' .. w, seq, 'NX', 'PX', 3 * window)
if not figures[7] then
  return {0, head, active, 0, 0}
end
local total, sold, reserved = tonumber(figures[2] or '0'), tonumber(figures[3] or '0'), tonumber(figures[4] or '0')
local available = total - sold - reserved
if total > 0 and available <= 0 and reserved <= 0 then
  return {0, head, active, 1, 0}
end
local pre = tonumber(figures[7])
if not allowed or rate <= 0 or head >= seq then
  return {0, head, active, 0, 0}
end
if head < pre and head ~= seen_head then
  return {0, head, active, 0, 1}
end

-- Token bucket: credit accrues at `rate` per second, capped at one second's worth.
local last = tonumber(figures[8] or tostring(now - 1000))
if now - last > 1000 then last = now - 1000 end
local credit = math.floor((now - last) * rate / 1000)
local n = math.min(credit, math.min(max_active, available) - active)
if n <= 0 then
  return {0, head, active, 0, 0}
end

local current, previous = p .. 'live:' .. w, p .. 'live:' .. (w - 1)
-- Numbers above this were taken during the last window or this one: presumed present.
local young = tonumber(redis.call('GET', p .. 'wseq:' .. (w - 1)) or '-1')
local function present(number)
  return number > young
    or redis.call('GETBIT', current, number) == 1
    or redis.call('GETBIT', previous, number) == 1
end
-- The first number from `from` whose holder is present, or nil when none up to `seq`.
local function next_present(from)
  if from > young then
    return from
  end
  local found = young + 1
  for _, key in ipairs({current, previous}) do
    local at = redis.call('BITPOS', key, 1, from, young, 'BIT')
    if at >= 0 and at < found then found = at end
  end
  if found > seq then return nil end
  return found
end

local admitted, entry, place, scanned = 0, {}, head + 1, 0
while admitted < n and place <= seq and scanned < 5000 do
  local number
  if place <= pre then
    number = tonumber(ARGV[7 + place - head])
    if not number then break end
    scanned = scanned + 1
    if not present(number) then number = nil end
  else
    number = next_present(place)
    if not number then
      place = seq + 1
      break
    end
    place = number
  end
  if number then
    redis.call('ZADD', p .. 'active', now + ttl, number)
    entry[#entry + 1] = place .. ':' .. number
    admitted = admitted + 1
  end
  place = place + 1
end
redis.call('SET', p .. 'head', place - 1)
if admitted > 0 then
  redis.call('SET', p .. 'clock', last + math.floor(admitted * 1000 / rate))
  redis.call('RPUSH', p .. 'log', figures[1] .. '|' .. now .. ' ' .. table.concat(entry, ' '))
end
return {admitted, place - 1, active + admitted, 0, 0}
