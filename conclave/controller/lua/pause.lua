-- The owner stops a run at a step boundary: running -> paused, holds released, entry acknowledged.
-- ARGV: P, rid, owner, reason, detail, output ("" = keep)
-- Returns 1, or 0 when owner no longer owns the run.
local P, rid, owner, reason, detail, output = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "owner", "status", "tenant", "created_ms", "qid")
if f[1] ~= owner then
  if f[2] == "paused" and not f[1] then return 1 end  -- a retried pause whose reply was lost
  return 0
end
redis.call("HINCRBY", rk, "clean", 1)
if output ~= "" then redis.call("HSET", rk, "output", output) end
steer_to_paused(P, rid, f[3], f[4], f[2], reason, detail, steer_time())
ack(P, f[5])
return 1
