-- Apply approval timeouts that have passed, on the store's clock. Policy "deny": the approval expires and
-- the run continues once nothing else of it is pending; "fail": the run ends failed / approval_timeout.
-- ARGV: P, limit. Returns how many approvals expired.
local P, limit = ARGV[1], tonumber(ARGV[2])
local now = steer_time()
local due = redis.call("ZRANGEBYSCORE", P .. ":approvals:due", "-inf", now, "LIMIT", 0, limit)
local n = 0
for _, member in ipairs(due) do
  redis.call("ZREM", P .. ":approvals:due", member)
  local sep = string.find(member, "|", 1, true)
  local rid, aid = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local rk = runkey(P, rid)
  local a = {apr_get(P, rid, aid, "status"), apr_get(P, rid, aid, "on_timeout"), apr_get(P, rid, aid, "timeout_s"),
    apr_get(P, rid, aid, "tool")}
  if a[1] == "pending" then
    local f = redis.call("HMGET", rk, "status", "tenant", "created_ms")
    local reason = "no decision within " .. a[3] .. " s"
    apr_set(P, rid, aid, "status", "expired", "reason", reason, "decided_at", steer_fmt(now))
    redis.call("SREM", rk .. ":aprpend", aid)
    redis.call("ZREM", P .. ":approvals:" .. f[2] .. ":pending", member)
    emit(P, rid, steer_fmt(now), "approval.resolved",
      cjson.encode({approval_id = aid, status = "expired", reason = reason, on_timeout = a[2]}))
    n = n + 1
    if f[1] == "waiting" then
      if a[2] == "fail" then
        local msg = "the call " .. a[4] .. " waited for approval longer than " .. a[3] .. " s"
        set_status(P, rid, f[2], f[3], "waiting", "failed")
        redis.call("HSET", rk, "stop_reason", "approval_timeout", "stop_detail", msg, "error", msg,
          "finished_at", steer_fmt(now))
        steer_ended(P, rid, steer_fmt(now))
        emit(P, rid, steer_fmt(now), "run.finished",
          cjson.encode({status = "failed", stop_reason = "approval_timeout", detail = msg}))
      elseif redis.call("SCARD", rk .. ":aprpend") == 0 then
        steer_wake(P, rid, now)
        set_status(P, rid, f[2], f[3], "waiting", "queued")
        emit(P, rid, steer_fmt(now), "run.resumed", cjson.encode({reason = "approval_timeout"}))
        steer_queue(P, rid)
      end
    end
  end
end
return n
