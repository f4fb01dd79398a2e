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
local function runkey(P, rid) return P .. ":run:" .. rid end

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
end

local function ack(P, qid)
  if qid and qid ~= "" then
    redis.call("XACK", P .. ":queue", "workers", qid)
  end
end
