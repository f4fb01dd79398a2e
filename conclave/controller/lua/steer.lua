-- Steering helpers (pause / resume, approvals, threads, forks), prepended to every controller script
-- after common.lua and ledger.lua, so the shared scripts can call them at their hook points.
-- Keys (P = prefix; see conclave/core/keys.py):
--   P:run:<rid>:order      list   "<last event id>|<step key>" per committed step, in commit order
--   P:run:<rid>:wsundo     stream t=<step index> p=<path> h=<1 had a file|0> v=<its bytes>: what a commit overwrote
--   P:run:<rid>:apr        hash   "<aid>|<field>" -> value: the run's approval records (apr_get / apr_set)
--   P:run:<rid>:aprs       list   approval ids in request order;  P:run:<rid>:aprpend  set: the pending ones
--   P:approvals:<tenant>[:pending]  zset "<rid>|<aid>" by request ms;  P:approvals:due zset by expiry (store clock)
--   P:thread:<tenant>:<tid>          hash   id tenant created_at multitask metadata n active last
--   P:thread:<tenant>:<tid>:runs     zset   run ids by position;  :pending list (enqueued);  :dropped set (rolled back)
--   P:threads:<tenant>               zset   thread ids by creation ms
-- Run record fields: pause (requested reason), pause_reason, paused_at, idle_since, idle_s, clean (clean
-- hand-overs, not crashes), thread, thread_seq, fork_of, fork_step.

-- The store's clock (tenant.lua's redis_now): timeouts and idle time are measured on it, whatever the
-- workers' clocks say.
local function steer_time() return redis_now() end

local function steer_fmt(t) return string.format("%.6f", t) end

-- One approval's fields live in the run's approval hash (one key per run, so retention covers them).
local function apr_get(P, rid, aid, field) return redis.call("HGET", runkey(P, rid) .. ":apr", aid .. "|" .. field) end

local function apr_set(P, rid, aid, ...)
  local kv, args = {...}, {}
  for j = 1, #kv, 2 do
    args[#args + 1] = aid .. "|" .. kv[j]
    args[#args + 1] = kv[j + 1]
  end
  redis.call("HSET", runkey(P, rid) .. ":apr", unpack(args))
end

local function thread_key(P, tenant, tid) return P .. ":thread:" .. tenant .. ":" .. tid end

-- Clean hand-overs (pause, wait) of a run: claims that were not crashes.
local function steer_clean(P, rid) return tonumber(redis.call("HGET", runkey(P, rid), "clean") or "0") end

-- The pause flag a commit reports (1 when a pause was asked of the running run).
local function steer_pause_flag(P, rid)
  local v = redis.call("HGET", runkey(P, rid), "pause")
  if v and v ~= "" then return 1 end
  return 0
end

-- A claim of an entry that is out of date: the run is paused or waiting, or was re-queued with another entry.
local function steer_stale(P, rid, status, qid)
  if status == "paused" or status == "waiting" then return true end
  local cur = redis.call("HGET", runkey(P, rid), "qid")
  return cur ~= false and cur ~= "" and cur ~= qid
end

-- The index the next committed step gets (tags workspace undo entries of the commit under way).
local function steer_tag(P, rid) return redis.call("LLEN", runkey(P, rid) .. ":order") end

-- Remember what a workspace op of this commit overwrites.
local function steer_undo(P, rid, tag, path)
  local rk = runkey(P, rid)
  local prev = redis.call("HGET", rk .. ":ws", path)
  if prev then
    redis.call("XADD", rk .. ":wsundo", "*", "t", tag, "p", path, "h", "1", "v", prev)
  else
    redis.call("XADD", rk .. ":wsundo", "*", "t", tag, "p", path, "h", "0", "v", "")
  end
end

local function steer_step_done(P, rid, step_key, seq)
  redis.call("RPUSH", runkey(P, rid) .. ":order", seq .. "|" .. step_key)
end

-- Put a run on the queue with a new entry.
local function steer_queue(P, rid)
  local qid = redis.call("XADD", P .. ":queue", "*", "rid", rid)
  redis.call("HSET", runkey(P, rid), "qid", qid)
  return qid
end

-- Start a run: on the queue now, or behind its thread's active run. Returns "started" or "enqueued".
local function steer_start(P, rid)
  local rk = runkey(P, rid)
  local f = redis.call("HMGET", rk, "thread", "tenant")
  if f[1] and f[1] ~= "" then
    local tk = thread_key(P, f[2], f[1])
    local active = redis.call("HGET", tk, "active")
    if active and active ~= "" and active ~= rid then
      if not redis.call("LPOS", tk .. ":pending", rid) then redis.call("RPUSH", tk .. ":pending", rid) end
      redis.call("HSET", rk, "qid", "")
      return "enqueued"
    end
    redis.call("HSET", tk, "active", rid)
  end
  steer_queue(P, rid)
  return "started"
end

-- The run no longer holds its thread (it ended, or an interrupt paused it): the next enqueued run starts.
local function steer_release(P, rid)
  local f = redis.call("HMGET", runkey(P, rid), "thread", "tenant")
  if not f[1] or f[1] == "" then return end
  local tk = thread_key(P, f[2], f[1])
  redis.call("LREM", tk .. ":pending", 0, rid)
  if redis.call("HGET", tk, "active") ~= rid then return end
  redis.call("HSET", tk, "active", "")
  while true do
    local nxt = redis.call("LPOP", tk .. ":pending")
    if not nxt then return end
    -- a run paused while it was enqueued leaves the line; its resume starts it
    if redis.call("HGET", runkey(P, nxt), "status") == "queued" then
      redis.call("HSET", tk, "active", nxt)
      steer_queue(P, nxt)
      return
    end
  end
end

-- Leaving waiting or paused: the idle time is added up (a wall_seconds budget counts only running).
local function steer_wake(P, rid, now)
  local rk = runkey(P, rid)
  local since = redis.call("HGET", rk, "idle_since")
  if since and since ~= "" then
    local idle = tonumber(redis.call("HGET", rk, "idle_s") or "0") + math.max(0, now - tonumber(since))
    redis.call("HSET", rk, "idle_s", steer_fmt(idle))
    redis.call("HDEL", rk, "idle_since")
  end
end

-- Expire every pending approval of a run (it ended, or was superseded while it waited).
local function steer_close_approvals(P, rid, now, reason)
  local rk = runkey(P, rid)
  local pending = redis.call("SMEMBERS", rk .. ":aprpend")
  if #pending == 0 then return end
  local tenant = redis.call("HGET", rk, "tenant")
  for _, aid in ipairs(pending) do
    apr_set(P, rid, aid, "status", "expired", "reason", reason, "decided_at", steer_fmt(now))
    redis.call("ZREM", P .. ":approvals:" .. tenant .. ":pending", rid .. "|" .. aid)
    redis.call("ZREM", P .. ":approvals:due", rid .. "|" .. aid)
    emit(P, rid, steer_fmt(now), "approval.resolved",
      cjson.encode({approval_id = aid, status = "expired", reason = reason}))
  end
  redis.call("DEL", rk .. ":aprpend")
end

-- Hook of every terminal transition, called before its run.finished event.
local function steer_ended(P, rid, now)
  steer_close_approvals(P, rid, tonumber(now), "the run ended before this call was decided")
  redis.call("HDEL", runkey(P, rid), "pause")
  steer_release(P, rid)
end

-- A run that holds no worker (queued, waiting, paused, or its owner at a step boundary) becomes paused.
local function steer_to_paused(P, rid, tenant, created_ms, old, reason, detail, now)
  local rk = runkey(P, rid)
  ledger_release_all(P, rid)
  set_status(P, rid, tenant, created_ms, old, "paused")
  redis.call("HDEL", rk, "owner", "pause")
  redis.call("HSET", rk, "pause_reason", reason, "paused_at", steer_fmt(now))
  if not redis.call("HGET", rk, "idle_since") then redis.call("HSET", rk, "idle_since", steer_fmt(now)) end
  local ev = {reason = reason}
  if detail and detail ~= "" then ev.detail = detail end
  emit(P, rid, steer_fmt(now), "run.paused", cjson.encode(ev))
  if reason == "interrupt" then steer_release(P, rid) end
end

-- The run record every creation writes (submit.lua's layout). ``now`` is the store's clock, formatted.
local function steer_new_run(P, rid, tenant, spec, spec_hash, now, kind, tracectx, key)
  local created_ms = math.floor(tonumber(now) * 1000)
  redis.call("HSET", runkey(P, rid), "id", rid, "tenant", tenant, "spec", spec, "spec_hash", spec_hash,
    "kind", kind, "status", "queued", "created_at", now, "created_ms", created_ms, "attempts", 0, "seq", 0, "cancel", 0)
  redis.call("ZADD", P .. ":runs:" .. tenant, created_ms, rid)
  redis.call("ZADD", P .. ":runs:" .. tenant .. ":s:queued", created_ms, rid)
  redis.call("ZADD", P .. ":runs:" .. tenant .. ":k:" .. kind, created_ms, rid)
  if tracectx ~= "" then redis.call("HSET", runkey(P, rid), "trace", tracectx) end
  if key and key ~= "" then redis.call("HSET", runkey(P, rid), "key", key) end
  return created_ms
end

-- Hook of purge.lua, before a run's keys go: its approvals leave the tenant's and the timeout indexes.
local function steer_purged(P, rid, tenant)
  local rk = runkey(P, rid)
  for _, aid in ipairs(redis.call("LRANGE", rk .. ":aprs", 0, -1)) do
    local member = rid .. "|" .. aid
    redis.call("ZREM", P .. ":approvals:" .. tenant, member)
    redis.call("ZREM", P .. ":approvals:" .. tenant .. ":pending", member)
    redis.call("ZREM", P .. ":approvals:due", member)
  end
end
