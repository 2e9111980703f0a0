-- One step of the queue: ends admissions whose lease ran out, then moves the line's head
-- forward, admitting the shoppers at the next places who are still there and passing over those
-- who left. Every replica runs it a few times a second; running it more often or from more
-- replicas admits no one extra, because the admission rate's clock lives here, in Redis.
--
-- An admission is a lease: `active` holds each admitted join number scored by the end of its
-- lease, which the shopper's polls renew (`lease.lua`) up to the cap in `caps` (admission time
-- plus the session TTL). Leaving, an order that fills the limit, and a final refusal end it.
--
-- Invariants:
--   * admissions never exceed `rate` per second on average (a burst of at most one second's
--     worth after a pause): the clock carries the fraction of a millisecond each admission
--     costs, so small steps are charged in full at any rate;
--   * live leases never exceed `max_active`;
--   * claims (admissions whose shopper has not reserved yet) never exceed `claims` per unit
--     available, so the line moves whenever a unit is available (a shopper who reserved, noted
--     as `a:<number>` in the deal's hash by `reserve.lua`, is counted once, by the units
--     reserved or bought, and no longer as a claim) and never while none is;
--   * places are admitted in order, each at most once: `head` only grows, and the places after
--     the pre-queue are their own join numbers;
--   * no admission goes to a shopper who left: a number is admitted only if it never left
--     (bitmap `left`, set by a leave and never cleared, so a mark that arrives late cannot undo
--     it) and its holder was seen in this liveness window or the last (bitmaps `live:<window>`,
--     indexed by join number), or it was taken within the last poll gap (half a window), before
--     its holder's first poll was due (`taken:<second>` holds `seq` as each second began; the
--     oldest within the gap counts, and with none nothing is presumed); everyone else is
--     passed over, so leavers never stall the line;
--   * every admission is staged for the admission log, in order: one line per step,
--     `<epoch>|<now> <place>:<number> ...`, which the replicas publish to PostgreSQL
--     (`queue/record.rs`); the epoch tells a line made before a restore from one made after.
-- With `epoch` missing from the deal's hash (figures being restored) or the pre-queue not yet
-- drawn (`pre_count` missing) nobody is admitted. A replica whose view of the head is stale
-- admits nobody and is told the head, because it chose the pre-queue's numbers for the places
-- after the head it saw. Missing `caps`, `left` or liveness keys mean none.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  now, in milliseconds since the epoch
-- ARGV[2]  admission rate, shoppers per second
-- ARGV[3]  maximum live leases
-- ARGV[4]  session TTL: the longest an admission lasts, in milliseconds
-- ARGV[5]  1 when admissions are allowed now (the deal is live and not suspended), else 0
-- ARGV[6]  the liveness window, in milliseconds
-- ARGV[7]  the head the caller saw
-- ARGV[8]  the lease, in milliseconds
-- ARGV[9]  admitted shoppers without a reservation allowed per unit available
-- ARGV[10...]  the join numbers holding places head+1, head+2, ... while they are in the
--              pre-queue (from the draw)
-- Returns {admitted now, head, active, sold out (1/0), stale (1/0)}.
local p = KEYS[1]
local now, rate, max_active = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, allowed, window = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local seen_head, lease, claims = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local FIRST = 10

redis.call('ZREMRANGEBYSCORE', p .. 'active', '-inf', now)
redis.call('ZREMRANGEBYSCORE', p .. 'caps', '-inf', now)
local active = redis.call('ZCARD', p .. 'active')
local stock = redis.call('HMGET', p .. 'deal', 'epoch', 'total', 'sold', 'reserved')
local line = redis.call('MGET', p .. 'seq', p .. 'head', p .. 'pre_count', p .. 'clock')
local figures = {stock[1], stock[2], stock[3], stock[4], line[1], line[2], line[3], line[4]}
local head = tonumber(figures[6] or '0')
-- Where the numbers stood as each second began: those taken within the last poll gap (half a
-- window, when the join's answer tells the shopper to poll at the latest) are young.
local second, gap = math.floor(now / 1000), math.ceil(window / 2000)
redis.call('SET', p .. 'taken:' .. second, figures[5] or '0', 'NX', 'PX', (gap + 3) * 1000)
if not figures[1] or not figures[7] then
  return {0, head, active, 0, 0}
end
local seq = tonumber(figures[5] or '0')
local total, sold, reserved = tonumber(figures[2] or '0'), tonumber(figures[3] or '0'), tonumber(figures[4] or '0')
local available = total - sold - reserved
if total > 0 and available <= 0 and reserved <= 0 then
  return {0, head, active, 1, 0}
end
local pre = tonumber(figures[7])
if not allowed or rate <= 0 or head >= seq or available <= 0 then
  return {0, head, active, 0, 0}
end
if head < pre and head ~= seen_head then
  return {0, head, active, 0, 1}
end

-- Token bucket: credit accrues at `rate` per second, capped at one second's worth. The clock
-- is kept to a thousandth of a millisecond, so no admission is free however small the step.
local last = tonumber(figures[8] or tostring(now - 1000))
if now - last > 1000 then last = now - 1000 end
local credit = math.floor((now - last) * rate / 1000)
if math.min(credit, max_active - active) <= 0 then
  return {0, head, active, 0, 0}
end
-- Claims: live admissions whose shopper has not reserved (one HMGET of their `a:` notes).
local open_claims = 0
if active > 0 then
  local fields = {}
  for i, number in ipairs(redis.call('ZRANGE', p .. 'active', 0, -1)) do
    fields[i] = 'a:' .. number
  end
  for _, noted in ipairs(redis.call('HMGET', p .. 'deal', unpack(fields))) do
    if not noted then open_claims = open_claims + 1 end
  end
end
local n = math.min(credit, max_active - active, claims * available - open_claims)
if n <= 0 then
  return {0, head, active, 0, 0}
end

local w = math.floor(now / window)
local current, previous, left = p .. 'live:' .. w, p .. 'live:' .. (w - 1), p .. 'left'
-- The oldest record within the gap (after a start or a restore, the first one there is).
local since = {}
for s = second - gap, second do since[#since + 1] = p .. 'taken:' .. s end
local young = seq
for _, taken in ipairs(redis.call('MGET', unpack(since))) do
  if taken then
    young = tonumber(taken)
    break
  end
end
local function present(number)
  return (number > young
    or redis.call('GETBIT', current, number) == 1
    or redis.call('GETBIT', previous, number) == 1)
    and redis.call('GETBIT', left, number) == 0
end
-- The first number from `from` up to `seq` whose holder was seen lately or joined just now, or
-- nil when none.
local function next_seen(from)
  if from > young then return from end
  local found = nil
  for _, key in ipairs({current, previous}) do
    local at = redis.call('BITPOS', key, 1, from, young, 'BIT')
    if at >= 0 and (not found or at < found) then found = at end
  end
  if not found and young < seq then found = young + 1 end
  return found
end

local admitted, entry, place, scanned = 0, {}, head + 1, 0
local lease_end = now + math.min(lease, ttl)
while admitted < n and place <= seq and scanned < 5000 do
  local number
  scanned = scanned + 1
  if place <= pre then
    number = tonumber(ARGV[FIRST + place - head - 1])
    if not number then break end
    if not present(number) then number = nil end
  else
    number = next_seen(place)
    if not number then
      place = seq + 1
      break
    end
    place = number
    if redis.call('GETBIT', left, number) == 1 then number = nil end
  end
  if number then
    redis.call('ZADD', p .. 'active', lease_end, number)
    redis.call('ZADD', p .. 'caps', now + ttl, number)
    entry[#entry + 1] = place .. ':' .. number
    admitted = admitted + 1
  end
  place = place + 1
end
redis.call('SET', p .. 'head', place - 1)
if admitted > 0 then
  redis.call('SET', p .. 'clock', string.format('%.3f', last + admitted * 1000 / rate))
  redis.call('RPUSH', p .. 'log', figures[1] .. '|' .. now .. ' ' .. table.concat(entry, ' '))
end
return {admitted, place - 1, active + admitted, 0, 0}
