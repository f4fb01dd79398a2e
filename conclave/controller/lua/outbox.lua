-- The webhook outbox, prepended to every controller script (before common.lua, whose emit() calls
-- outbox_record): a lifecycle event that a webhook wants is put on the outbox in the same Lua call
-- that commits the event, so an event that happened is delivered at least once.
-- Key layout (P = key prefix):
--   P:outbox               stream  one entry per (event, destination); consumer group "webhooks"
--   P:wh:subs:<tenant>     hash    subscription id -> {"url", "events", "description", "created_at"}
--   P:wh:dlv:<did>         hash    a delivery's record; did = "<rid>.<seq>@<destination>"
--   P:wh:dlvs:<tenant>     zset    the tenant's delivery ids by creation time (ms)
--   P:run:<rid> field "wh" the run's own webhook (JSON, "" for none), read once from its spec
local OUTBOX_EVENTS = {
  ["run.queued"] = true, ["run.started"] = true, ["run.resumed"] = true, ["run.cancel_requested"] = true,
  ["run.finished"] = true, ["run.waiting"] = true, ["run.paused"] = true,
  ["approval.requested"] = true, ["approval.resolved"] = true,
}

local function outbox_wants(events, etype)
  for _, e in ipairs(events or {}) do
    if e == etype then return true end
  end
  return false
end

local function outbox_put(P, tenant, rid, seq, now, etype, data, dest, url)
  local mid = rid .. "." .. seq
  local did = mid .. "@" .. dest
  local dk = P .. ":wh:dlv:" .. did
  if redis.call("EXISTS", dk) == 1 then return end
  redis.call("HSET", dk, "id", mid, "destination", dest, "tenant", tenant, "run_id", rid, "event_id", seq,
    "type", etype, "url", url, "status", "pending", "attempts", 0, "created_at", now)
  redis.call("ZADD", P .. ":wh:dlvs:" .. tenant, math.floor(tonumber(now) * 1000), did)
  redis.call("XADD", P .. ":outbox", "*", "did", did, "mid", mid, "dest", dest, "url", url, "tenant", tenant,
    "rid", rid, "seq", seq, "type", etype, "ts", now, "data", data)
end

local function outbox_record(P, rid, seq, now, etype, data)
  if not OUTBOX_EVENTS[etype] then return end
  local rk = P .. ":run:" .. rid
  local f = redis.call("HMGET", rk, "tenant", "wh")
  local tenant, wh = f[1], f[2]
  if not tenant then return end
  if not wh then
    -- the run's first lifecycle event (run.queued, written by submit.lua): read its webhook once
    wh = ""
    local ok, spec = pcall(cjson.decode, redis.call("HGET", rk, "spec") or "{}")
    if ok and type(spec) == "table" and type(spec.webhook) == "table" then wh = cjson.encode(spec.webhook) end
    redis.call("HSET", rk, "wh", wh)
  end
  if wh ~= "" then
    local w = cjson.decode(wh)
    if outbox_wants(w.events, etype) then outbox_put(P, tenant, rid, seq, now, etype, data, "run", w.url) end
  end
  local subs = redis.call("HGETALL", P .. ":wh:subs:" .. tenant)
  for i = 1, #subs, 2 do
    local s = cjson.decode(subs[i + 1])
    if outbox_wants(s.events, etype) then outbox_put(P, tenant, rid, seq, now, etype, data, subs[i], s.url) end
  end
end
