-- Fork: a new queued run whose checkpoint holds the source's committed steps up to and including one
-- (in commit order), whose workspace is the source's as it was right after that step, and whose events
-- start with the source's non-lifecycle events up to that step, each marked replayed. The source is read only.
-- ARGV: P, new_rid, tenant, src_rid, step_key, spec_json, spec_hash, now (ignored: the store's clock), kind,
--   queued_event, trace_json, lifecycle_json (event types not taken over), key_id ("" = none)
-- Returns {"forked"} | {"missing"} | {"no_step"}
local P, rid, tenant, src, step_key, spec, spec_hash, now, kind, evdata, tracectx, lifecycle_json =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local key = ARGV[13] or ""
now = steer_fmt(steer_time())
local sk = runkey(P, src)
if redis.call("HGET", sk, "tenant") ~= tenant then return {"missing"} end
local order = redis.call("LRANGE", sk .. ":order", 0, -1)
local k = nil
local seqs, keys = {}, {}
for idx, entry in ipairs(order) do
  local sep = string.find(entry, "|", 1, true)
  seqs[idx] = tonumber(string.sub(entry, 1, sep - 1))
  keys[idx] = string.sub(entry, sep + 1)
  if keys[idx] == step_key then k = idx; break end
end
if not k then return {"no_step"} end
local rk = runkey(P, rid)
steer_new_run(P, rid, tenant, spec, spec_hash, now, kind, tracectx, key)
redis.call("HSET", rk, "fork_of", src, "fork_step", step_key)
emit(P, rid, now, "run.queued", evdata)
-- the steps, in order, with the last event id each has in the new stream
local lifecycle = {}
for _, t in ipairs(cjson.decode(lifecycle_json)) do lifecycle[t] = true end
local events = redis.call("XRANGE", sk .. ":ev", "-", seqs[k] .. "-0")
local e = 1
local last = redis.call("HGET", rk, "seq")
for idx = 1, k do
  while e <= #events and tonumber(string.match(events[e][1], "^(%d+)")) <= seqs[idx] do
    local id, fields = events[e][1], events[e][2]
    local h = {}
    for j = 1, #fields, 2 do h[fields[j]] = fields[j + 1] end
    if not lifecycle[h.type] then
      local old = string.match(id, "^(%d+)")
      local marker = '{"replayed":{"run":"' .. src .. '","event":' .. old .. '}'
      local data = h.data
      if data == "{}" or data == "" then data = marker .. "}" else data = marker .. "," .. string.sub(data, 2) end
      last = emit(P, rid, h.ts, h.type, data)
    end
    e = e + 1
  end
  redis.call("HSET", rk .. ":steps", keys[idx], redis.call("HGET", sk .. ":steps", keys[idx]))
  redis.call("RPUSH", rk .. ":order", last .. "|" .. keys[idx])
end
-- the workspace after step k (index k - 1 in the source's tags): today's files, undoing every later change
local files = redis.call("HGETALL", sk .. ":ws")
for j = 1, #files, 2 do redis.call("HSET", rk .. ":ws", files[j], files[j + 1]) end
local undo = redis.call("XREVRANGE", sk .. ":wsundo", "+", "-")
local keep_until = nil
for _, u in ipairs(undo) do
  local h = {}
  for j = 1, #u[2], 2 do h[u[2][j]] = u[2][j + 1] end
  if tonumber(h.t) <= k - 1 then keep_until = u[1]; break end
  if h.h == "1" then redis.call("HSET", rk .. ":ws", h.p, h.v) else redis.call("HDEL", rk .. ":ws", h.p) end
end
-- the fork inherits the undo entries of what it took over, so a fork of the fork can rebuild too
if keep_until then
  for _, u in ipairs(redis.call("XRANGE", sk .. ":wsundo", "-", keep_until)) do
    redis.call("XADD", rk .. ":wsundo", "*", unpack(u[2]))
  end
end
steer_queue(P, rid)
return {"forked"}
