-- Opens the queue at the deal's start: everyone who joined the pre-queue gets a place in
-- the line in an order drawn at random, once.
--
-- Invariant: the pre-queue is shuffled exactly once (guarded by `opened`), so joining early or
-- refreshing at the last millisecond before the start gives no advantage; arrivals after the
-- start always queue behind every pre-queue shopper.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  random seed chosen by the caller
-- Returns the number of pre-queue shoppers placed, or -1 when the queue was already open.
local p = KEYS[1]
if redis.call('SET', p .. 'opened', '1', 'NX') == false then
  return -1
end
math.randomseed(tonumber(ARGV[1]))
local members = redis.call('ZRANGE', p .. 'pre', 0, -1)
-- Fisher-Yates: every order of the pre-queue is equally likely.
for i = #members, 2, -1 do
  local j = math.random(i)
  members[i], members[j] = members[j], members[i]
end
for i, member in ipairs(members) do
  redis.call('ZADD', p .. 'line', i, member)
end
redis.call('SET', p .. 'seq', #members)
redis.call('DEL', p .. 'pre')
return #members
