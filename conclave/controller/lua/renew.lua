-- Renew a worker's leases: reset the idle time of each queue entry it still owns.
-- ARGV: P, consumer, (rid, owner, qid)*n. Returns the rids whose lease was lost.
local P, consumer = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV, 3 do
  local rid, owner, qid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call("HGET", runkey(P, rid), "owner") == owner then
    redis.call("XCLAIM", P .. ":queue", "workers", consumer, 0, qid, "JUSTID")
  else
    table.insert(lost, rid)
  end
end
return lost
