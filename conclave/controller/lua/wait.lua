-- The owner stops a run at a step boundary to wait for people's decisions on calls:
-- running -> waiting, each call a pending approval (once per id), holds released, entry acknowledged.
-- ARGV: P, rid, owner, output ("" = keep), n, then per call:
--   aid, tool, kind, arguments_json, step_key, reserve_json, parameters_json, timeout_s ("" = none), on_timeout, event_json
-- Returns 1, or 0 when owner no longer owns the run.
local P, rid, owner, output, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "owner", "status", "tenant", "created_ms", "qid")
if f[1] ~= owner then
  if f[2] == "waiting" and not f[1] then return 1 end  -- a retried wait whose reply was lost
  return 0
end
local now = steer_time()
local tenant = f[3]
local ids = {}
local i = 6
for _ = 1, n do
  local aid, tool, kind, args, step_key, reserve, params, timeout, on_timeout, ev =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9]
  i = i + 10
  if not apr_get(P, rid, aid, "status") then
    apr_set(P, rid, aid, "id", aid, "run_id", rid, "tool", tool, "kind", kind, "arguments", args,
      "step_key", step_key, "reserve", reserve, "parameters", params, "status", "pending",
      "requested_at", steer_fmt(now), "on_timeout", on_timeout)
    local member = rid .. "|" .. aid
    if timeout ~= "" then
      local exp = now + tonumber(timeout)
      apr_set(P, rid, aid, "expires_at", steer_fmt(exp), "timeout_s", timeout)
      redis.call("ZADD", P .. ":approvals:due", exp, member)
    end
    redis.call("RPUSH", rk .. ":aprs", aid)
    redis.call("SADD", rk .. ":aprpend", aid)
    local ms = math.floor(now * 1000)
    redis.call("ZADD", P .. ":approvals:" .. tenant, ms, member)
    redis.call("ZADD", P .. ":approvals:" .. tenant .. ":pending", ms, member)
    emit(P, rid, steer_fmt(now), "approval.requested", ev)
    table.insert(ids, aid)
  end
end
if redis.call("SCARD", rk .. ":aprpend") == 0 then
  return redis.error_reply("wait: run " .. rid .. " has no pending approval to wait for")
end
redis.call("HINCRBY", rk, "clean", 1)
if output ~= "" then redis.call("HSET", rk, "output", output) end
ledger_release_all(P, rid)
set_status(P, rid, tenant, f[4], f[2], "waiting")
redis.call("HDEL", rk, "owner")
redis.call("HSET", rk, "idle_since", steer_fmt(now))
emit(P, rid, steer_fmt(now), "run.waiting", cjson.encode({approvals = redis.call("SMEMBERS", rk .. ":aprpend")}))
ack(P, f[5])
return 1
