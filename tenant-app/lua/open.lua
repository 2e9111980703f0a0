-- Closes the pre-queue at the deal's start: the numbers taken so far are the pre-queue, placed
-- by the draw (a permutation keyed by the committed seed, computed on read and never stored).
--
-- Invariant: the pre-queue's size is fixed exactly once per epoch (`pre_count` is only ever set
-- when missing), so joining early or at the last millisecond before the start gives no edge, and
-- every number taken after it queues behind the whole pre-queue. With `seq` missing (nobody
-- joined, or Redis lost its data) the pre-queue is empty. The moment it closed is kept with it
-- (`closed_at`), set only with the size: the draw's beacon round is the first emitted after it.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  now, in milliseconds since the epoch (the deal's clock)
-- Returns the pre-queue's size when fixed now, -1 when it was fixed before.
local p = KEYS[1]
local n = tonumber(redis.call('GET', p .. 'seq') or '0')
if redis.call('SET', p .. 'pre_count', n, 'NX') == false then
  return -1
end
redis.call('SET', p .. 'closed_at', ARGV[1])
return n
