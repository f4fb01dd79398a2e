-- Set a run's budget caps once (HSETNX: a resumed run keeps the caps it started with) and release
-- reservations left by workers that no longer own the run.
-- ARGV: P, rid, owner, caps_json ({"<scope>|<limit>" = "n"})
-- Returns {outer, "<scope>|<limit>", ...}: outer is 1 when the run's tenant or key has a budget (then every
-- call reserves), followed by the run's capped fields as stored.
local P, rid, owner = ARGV[1], ARGV[2], ARGV[3]
local lk = lkey(P, rid)
for field, cap in pairs(cjson.decode(ARGV[4])) do
  redis.call("HSETNX", lk, "cap|" .. field, cap)
end
if owner ~= "" then ledger_release_foreign(P, rid, owner) end
local out = {0}
for _, scope in ipairs(run_outer(P, rid)) do
  if redis.call("EXISTS", P .. ":budget:" .. scope) == 1 then out[1] = 1 end
end
local all = redis.call("HKEYS", lk)
for _, f in ipairs(all) do
  if string.sub(f, 1, 4) == "cap|" then out[#out + 1] = string.sub(f, 5) end
end
return out
