-- The deal-wide figures every replica reads a few times a second, in one round trip: polls are
-- answered from these and the shopper's ticket, without Redis.
--
-- Invariant: read-only. Missing keys read as zero; a missing `epoch` (figures being restored)
-- reads as -1 and a missing `pre_count` (the pre-queue not yet drawn) as -1.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  now, in milliseconds since the epoch
-- Returns {epoch, total, sold, reserved, admitted and shopping, numbers taken, head (the last
-- place the line has moved past), pre-queue size, when the pre-queue closed (-1: not known),
-- idempotency keys ever given (`keys`, raised by `reserve.lua`)}.
local p, now = KEYS[1], tonumber(ARGV[1])
local stock = redis.call('HMGET', p .. 'deal', 'epoch', 'total', 'sold', 'reserved', 'keys')
local line = redis.call('MGET', p .. 'seq', p .. 'head', p .. 'pre_count', p .. 'closed_at')
local figures = {stock[1], stock[2], stock[3], stock[4], line[1], line[2], line[3], line[4]}
local function number(value, missing)
  return tonumber(value or missing)
end
return {
  number(figures[1], '-1'), number(figures[2], '0'), number(figures[3], '0'),
  number(figures[4], '0'), redis.call('ZCOUNT', p .. 'active', now + 1, '+inf'),
  number(figures[5], '0'), number(figures[6], '0'), number(figures[7], '-1'),
  number(figures[8], '-1'), number(stock[5], '0'),
}
