-- The `lock` reference server's unlock, as Redisson does it: release the lock only if this
-- holder still owns it.
-- Invariant: a holder whose lease expired never deletes the lock another holder has taken since.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
