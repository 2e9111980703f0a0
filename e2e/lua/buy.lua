-- The `bare` reference server's purchase: one decrement, nothing else.
-- Invariant: the stock key never goes below zero; a purchase either takes exactly one unit
-- (returns what is left) or takes nothing (returns -1).
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock <= 0 then
  return -1
end
return redis.call('DECR', KEYS[1])
