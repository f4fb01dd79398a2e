-- Set a run's budget caps once (HSETNX: a resumed run keeps the caps it started with) and
-- release reservations left by workers that no longer own the run.
-- ARGV: P, rid, owner, caps_json ({"<scope>|<limit>" = "n"})
local P, rid, owner = ARGV[1], ARGV[2], ARGV[3]
local lk = lkey(P, rid)
for field, cap in pairs(cjson.decode(ARGV[4])) do
  redis.call("HSETNX", lk, "cap|" .. field, cap)
end
if owner ~= "" then ledger_release_foreign(P, rid, owner) end
return 1
