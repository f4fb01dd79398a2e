-- Set a run's budget caps once (HSETNX: a resumed run keeps the caps it started with) and release
-- reservations left by workers that no longer own the run.
-- ARGV: P, rid, owner, caps_json ({"<scope>|<limit>" = "n"})
-- Returns 1 when the run must reserve before every call (it has caps, or its tenant or key has a budget).
local P, rid, owner = ARGV[1], ARGV[2], ARGV[3]
local lk = lkey(P, rid)
local n = 0
for field, cap in pairs(cjson.decode(ARGV[4])) do
  redis.call("HSETNX", lk, "cap|" .. field, cap)
  n = n + 1
end
if owner ~= "" then ledger_release_foreign(P, rid, owner) end
if n > 0 then
  redis.call("HSET", lk, "capped", 1)
  return 1
end
for _, scope in ipairs(run_outer(P, rid)) do
  if redis.call("EXISTS", P .. ":budget:" .. scope) == 1 then return 1 end
end
return 0
