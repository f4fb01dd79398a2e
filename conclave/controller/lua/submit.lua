-- ARGV: P, rid, tenant, spec_json, spec_hash, now, idem_key ("" = none), queued_event_data, trace_json, kind,
--       key_id ("" = none: the API key that submitted it, whose budget the run is charged to as well)
local P, rid, tenant, spec, spec_hash, now, idem, evdata, tracectx, kind, key =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9] or "", ARGV[10], ARGV[11] or ""
now = string.format("%.6f", redis_now())  -- Redis's clock, not the worker's (ARGV's time is ignored)
if idem ~= "" then
  local ikey = P .. ":idem:" .. tenant .. ":" .. idem
  local existing = redis.call("GET", ikey)
  if existing then
    return {0, existing, redis.call("HGET", runkey(P, existing), "spec_hash") or ""}
  end
  redis.call("SET", ikey, rid)
end
if redis.call("EXISTS", runkey(P, rid)) == 1 then return {1, rid, spec_hash} end
local created_ms = math.floor(tonumber(now) * 1000)
redis.call("HSET", runkey(P, rid), "id", rid, "tenant", tenant, "spec", spec, "spec_hash", spec_hash,
  "kind", kind, "status", "queued", "created_at", now, "created_ms", created_ms, "attempts", 0, "seq", 0, "cancel", 0)
redis.call("ZADD", P .. ":runs:" .. tenant, created_ms, rid)
redis.call("SADD", P .. ":tenants", tenant)
redis.call("ZADD", P .. ":runs:" .. tenant .. ":s:queued", created_ms, rid)
redis.call("ZADD", P .. ":runs:" .. tenant .. ":k:" .. kind, created_ms, rid)
if tracectx ~= "" then redis.call("HSET", runkey(P, rid), "trace", tracectx) end
if key ~= "" then redis.call("HSET", runkey(P, rid), "key", key) end
if idem ~= "" then redis.call("HSET", runkey(P, rid), "idem", idem) end
local qid = redis.call("XADD", P .. ":queue", "*", "rid", rid)
redis.call("HSET", runkey(P, rid), "qid", qid)
emit(P, rid, now, "run.queued", evdata)
return {1, rid, spec_hash}
