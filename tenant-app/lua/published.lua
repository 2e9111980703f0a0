-- Drops from the front of the staged admission log (`log`) the lines now in PostgreSQL, or
-- judged there (`queue/record.rs`).
--
-- Invariant: a line is dropped only while the front of the list equals the next line given,
-- so a line staged meanwhile (appended at the back), or one another replica dropped first, is
-- never lost by a drop meant for another: replicas may publish the same lines at once. With
-- `log` missing nothing is dropped.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1...]  the lines handled, in the order they were staged
-- Returns how many lines were dropped.
local key = KEYS[1] .. 'log'
local dropped = 0
for i = 1, #ARGV do
  if redis.call('LINDEX', key, 0) ~= ARGV[i] then
    break
  end
  redis.call('LPOP', key)
  dropped = dropped + 1
end
return dropped
