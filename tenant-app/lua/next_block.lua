-- Hands a replica the next block of a million order ids in the current epoch.
--
-- Invariant: every block is handed out once per epoch (one HINCRBY of `blocks` in the deal's
-- hash, which a restore resets with the epoch), so ids `<epoch><block, 3 digits><6 digits>`
-- never collide. With `epoch` missing nothing is handed out; past block 999 the epoch's ids are
-- spent.
--
-- KEYS[1]  key prefix of the deal
-- Returns {epoch, block}, with block 0 when none can be handed out.
local deal = KEYS[1] .. 'deal'
local epoch = redis.call('HGET', deal, 'epoch')
if not epoch then
  return {0, 0}
end
local block = redis.call('HINCRBY', deal, 'blocks', 1)
if block > 999 then
  return {tonumber(epoch), 0}
end
return {tonumber(epoch), block}
