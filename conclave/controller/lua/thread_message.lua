-- A message on a thread: a new run, placed by the thread's multitask policy, atomically.
-- ARGV: P, rid, tenant, spec_json, spec_hash, now, idem_key, queued_event, trace_json, kind, tid, multitask ("" =
--   the thread's), message (the input's text, shortened, for the thread.message event), key_id ("" = none)
-- Returns {outcome, rid or "", active or "", spec_hash}; outcome: started | enqueued | interrupting |
--   rolling_back | rejected | existing
local P, rid, tenant, spec, spec_hash, now, idem, evdata, tracectx, kind, tid, multitask, msg =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local key = ARGV[14] or ""
now = steer_fmt(steer_time())  -- the store's clock, as submit.lua (ARGV's time is ignored)
-- The thread first, on every outcome (an existing run too, whose key may have been used without a thread):
-- the answer names it, as the in-memory store's does.
local tk = thread_key(P, tenant, tid)
if redis.call("EXISTS", tk) == 0 then
  redis.call("HSET", tk, "id", tid, "tenant", tenant, "created_at", now, "multitask", "reject",
    "metadata", "{}", "n", 0, "active", "", "last", "")
  redis.call("ZADD", P .. ":threads:" .. tenant, math.floor(tonumber(now) * 1000), tid)
end
local ikey = P .. ":idem:" .. tenant .. ":" .. idem
if idem ~= "" then
  local existing = redis.call("GET", ikey)
  if existing then return {"existing", existing, "", redis.call("HGET", runkey(P, existing), "spec_hash") or ""} end
end
local policy = multitask
if policy == "" then policy = redis.call("HGET", tk, "multitask") end
local active = redis.call("HGET", tk, "active")
if active == "" or not active or TERMINAL[redis.call("HGET", runkey(P, active), "status") or "succeeded"] then
  active = nil
end
if active and policy == "reject" then return {"rejected", "", active, ""} end
if idem ~= "" then redis.call("SET", ikey, rid) end
steer_new_run(P, rid, tenant, spec, spec_hash, now, kind, tracectx, key)
local pos = redis.call("HINCRBY", tk, "n", 1)
redis.call("HSET", runkey(P, rid), "thread", tid, "thread_seq", pos)
redis.call("ZADD", tk .. ":runs", pos, rid)
redis.call("HSET", tk, "last", rid)
emit(P, rid, now, "run.queued", evdata)
emit(P, rid, now, "thread.message", cjson.encode({thread_id = tid, position = pos, multitask = policy,
  active_run = active or cjson.null, input = msg}))
local outcome = "started"
if active then
  local clock = steer_time()
  local ak = runkey(P, active)
  local a = redis.call("HMGET", ak, "status", "tenant", "created_ms", "cancel")
  if policy == "enqueue" then
    outcome = "enqueued"
  elseif policy == "interrupt" then
    outcome = "interrupting"
    local detail = "interrupted by a new message on thread " .. tid .. " (run " .. rid .. ")"
    if a[1] == "running" then
      redis.call("HSET", ak, "pause", "interrupt")
      emit(P, active, steer_fmt(clock), "run.pause_requested", cjson.encode({reason = "interrupt", by_run = rid}))
    else
      if a[1] == "waiting" then steer_close_approvals(P, active, clock, "superseded: " .. detail) end
      steer_to_paused(P, active, a[2], a[3], a[1], "interrupt", detail, clock)
    end
  elseif policy == "rollback" then
    outcome = "rolling_back"
    redis.call("SADD", tk .. ":dropped", active)
    if a[4] ~= "1" then
      redis.call("HSET", ak, "cancel", 1)
      emit(P, active, steer_fmt(clock), "run.cancel_requested", cjson.encode({reason = "rollback", by_run = rid}))
    end
    if a[1] == "running" then
      redis.call("PUBLISH", P .. ":cancel", active)
    else
      local detail = "rolled back by a new message on thread " .. tid .. " (run " .. rid .. ")"
      set_status(P, active, a[2], a[3], a[1], "cancelled")
      redis.call("HSET", ak, "stop_reason", "cancelled", "stop_detail", detail, "finished_at", steer_fmt(clock))
      redis.call("HDEL", ak, "owner")
      ledger_release_all(P, active)
      steer_ended(P, active, steer_fmt(clock))
      emit(P, active, steer_fmt(clock), "run.finished",
        cjson.encode({status = "cancelled", stop_reason = "cancelled", detail = detail}))
    end
  end
end
steer_start(P, rid)
return {outcome, rid, active or "", spec_hash}
