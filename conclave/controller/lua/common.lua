-- Shared helpers, prepended to every controller script.
-- Key layout (P = key prefix):
--   P:run:<rid>          hash   run record
--   P:run:<rid>:ev       stream events, ids "<seq>-0"
--   P:run:<rid>:steps    hash   committed step results by step key
--   P:run:<rid>:ws       hash   workspace files (path -> bytes)
--   P:runs:<tenant>      zset   runs by creation time (ms)
--   P:run:<rid>:commits  hash   ids of commits without a step key that were applied
--   P:run:<rid>:ledger / :resv / :resvexp   the budget ledger (see ledger.lua)
--   P:runs:<tenant>:s:<status>  zset, same, per status
--   P:runs:<tenant>:k:<kind>    zset, same, per kind
--   P:queue / P:dead     streams; consumer group "workers" on P:queue
--   P:tenants            set    every tenant that submitted a run
--   P:retention / P:finished:<tenant> / P:expiring    retention (below)
local function runkey(P, rid) return P .. ":run:" .. rid end

-- Redis's clock, the one clock every worker shares (a worker's own clock may be skewed).
local function redis_now()
  local t = redis.call("TIME")
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Retention: P:retention hash, "default" and "tenant:<t>" → seconds a finished run is kept (0/absent:
-- for ever). A run that ends is recorded in P:finished:<tenant> (rid by end time) and, when it has a
-- retention, in P:expiring (rid by expiry), where the sweeper (purge.lua) finds it; its keys also get a
-- TTL a day past that, so nothing outlives the policy even if no sweeper runs.
local RUN_KEYS = {"", ":ev", ":steps", ":ws", ":ledger", ":resv", ":resvexp", ":commits",
  ":order", ":wsundo", ":apr", ":aprs", ":aprpend"}  -- the last five: steering (steer.lua)

local function retention_of(P, tenant)
  local v = redis.call("HGET", P .. ":retention", "tenant:" .. tenant)
  if not v then v = redis.call("HGET", P .. ":retention", "default") end
  return tonumber(v or "0") or 0
end

local function retire(P, rid, tenant)
  local now = redis_now()
  redis.call("ZADD", P .. ":finished:" .. tenant, now, rid)
  local ttl = retention_of(P, tenant)
  if ttl > 0 then
    redis.call("ZADD", P .. ":expiring", now + ttl, rid)
    for _, suffix in ipairs(RUN_KEYS) do
      redis.call("EXPIRE", runkey(P, rid) .. suffix, math.ceil(ttl + 86400))
    end
  end
end

local TERMINAL = {succeeded = true, failed = true, cancelled = true, budget_exhausted = true}

local function emit(P, rid, now, etype, data)
  local seq = redis.call("HINCRBY", runkey(P, rid), "seq", 1)
  redis.call("XADD", runkey(P, rid) .. ":ev", seq .. "-0", "type", etype, "ts", now, "data", data)
  outbox_record(P, rid, seq, now, etype, data)  -- outbox.lua: webhooks, in the same call as the event
  return seq
end

local function set_status(P, rid, tenant, created_ms, old, new)
  if old == new then return end
  local base = P .. ":runs:" .. tenant .. ":s:"
  if old then redis.call("ZREM", base .. old, rid) end
  redis.call("ZADD", base .. new, created_ms, rid)
  redis.call("HSET", runkey(P, rid), "status", new)
  if TERMINAL[new] then retire(P, rid, tenant) end
end

local function ack(P, qid)
  if qid and qid ~= "" then
    redis.call("XACK", P .. ":queue", "workers", qid)
  end
end
