-- Restores the deal's stock figures from what PostgreSQL knows, in one atomic step, and opens
-- a new epoch: after Redis lost them (first start, a pod replaced, a FLUSHALL), after it
-- restarted (its append-only file may be up to a second behind), or after it contradicted
-- PostgreSQL.
--
-- Invariants:
--   * until this has run, the deal's hash has no `epoch` and every script that changes stock
--     refuses, so nothing is sold on figures that are not PostgreSQL's;
--   * the figures restored are complete: total, sold (confirmed units, including orders whose
--     cancellation is not finished), reserved (0: reservations of an earlier epoch can never
--     commit, PostgreSQL refuses them), what each shopper owns (`u:<shopper>`), and the
--     idempotency key of every order PostgreSQL has (`k:<shopper>:<key>`, naming the order),
--     so the same order sent again is answered with it, never with "sold out";
--   * order ids embed the epoch (`<epoch><9 digits>`), so an id issued now can never be an id
--     still in flight from before, and confirm, release and restock of an earlier epoch change
--     no figure of this one;
--   * an epoch never goes back: a restore for an epoch older than or equal to the one Redis
--     holds does nothing (a slower replica's restore can never undo a newer one). A newer epoch
--     replaces the deal's hash whole (its idempotency keys, id blocks and restock marks belong
--     to the older epoch): PostgreSQL already refuses the older epoch's orders;
--   * the hash records the server's `run_id` (`run`): a server that restarts takes a new one,
--     so the storefront sees that these figures may be behind and restores them again;
--   * tickets and admissions of earlier epochs are void (`reserve.lua` refuses them, and their
--     shoppers join again), so they leave `active` (with their caps) and the head moves past every number
--     taken so far: a Redis that restarted with its data would otherwise admit numbers whose
--     shoppers hold no place any more, count them against the places to give until their
--     session ran out, and the line would stand still. The head only moves forward;
--   * the published admission log (PostgreSQL's) is never contradicted: join numbers and the
--     head move past the last place it gives, so a Redis that forgot admissions cannot give
--     those places again, and the pre-queue's size is PostgreSQL's once recorded there, so
--     the draw's places stay those published.
--
-- KEYS[1]  key prefix of the deal
-- ARGV[1]  the new epoch (just taken in PostgreSQL)
-- ARGV[2]  total stock from the spec
-- ARGV[3]  units sold according to PostgreSQL
-- ARGV[4]  the server's run_id
-- ARGV[5]  the last place the published admission log gives (0 when none)
-- ARGV[6]  the pre-queue's size as recorded in PostgreSQL, or '' when not yet fixed
-- ARGV[7], ARGV[8], ...  fields of the deal's hash and their values, in pairs: `u:<shopper>`
--                        and the units they own, `k:<shopper>:<key>` and the order it names
-- Returns 1 when restored now, 0 when Redis already holds this epoch or a newer one.
local p, epoch = KEYS[1], tonumber(ARGV[1])
local deal = p .. 'deal'
local current = tonumber(redis.call('HGET', deal, 'epoch') or '-1')
if current >= epoch then
  return 0
end
redis.call('DEL', deal, p .. 'active', p .. 'caps')
local published = tonumber(ARGV[5])
if ARGV[6] ~= '' then
  redis.call('SET', p .. 'pre_count', ARGV[6])
  published = math.max(published, tonumber(ARGV[6]))
end
local taken = math.max(tonumber(redis.call('GET', p .. 'seq') or '0'), published)
if taken > tonumber(redis.call('GET', p .. 'seq') or '0') then
  redis.call('SET', p .. 'seq', taken)
end
if taken > tonumber(redis.call('GET', p .. 'head') or '0') then
  redis.call('SET', p .. 'head', taken)
end
for i = 7, #ARGV, 2 do
  redis.call('HSET', deal, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', deal, 'total', ARGV[2], 'sold', ARGV[3], 'reserved', 0, 'blocks', 0,
  'epoch', epoch, 'run', ARGV[4])
return 1
