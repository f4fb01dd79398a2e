-- Commit one step atomically: its result, workspace writes, events, ledger usage.
-- Fenced by the owner token: a worker that lost its lease cannot commit.
-- ARGV: P, rid, owner, now, commit_id, step_key ("" = none), step_value,
--       n_events, (type, data)*n, n_ws, (op, path, content)*n, n_ledger, (ledger_json)*n
-- Returns {seq, cancel} or {-1, "lease lost"}
-- Idempotent: a commit retried after its reply was lost (redis-py retries on a dropped connection) is
-- applied once — by its step key when it has one, else by its commit id.
local P, rid, owner, now, cid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
now = string.format("%.6f", redis_now())  -- Redis's clock, not the worker's (ARGV's time is ignored)
local rk = runkey(P, rid)
local f = redis.call("HMGET", rk, "owner", "cancel")
local i = 6
local step_key, step_value = ARGV[i], ARGV[i + 1]
i = i + 2
local applied
if step_key ~= "" then
  applied = redis.call("HEXISTS", rk .. ":steps", step_key) == 1
else
  applied = redis.call("HEXISTS", rk .. ":commits", cid) == 1
end
if applied then return {tonumber(redis.call("HGET", rk, "seq")), tonumber(f[2] or "0"), steer_pause_flag(P, rid)} end
if f[1] ~= owner then return {-1, "lease lost"} end
if step_key ~= "" then
  redis.call("HSET", rk .. ":steps", step_key, step_value)
else
  redis.call("HSET", rk .. ":commits", cid, now)
end
local n_ev = tonumber(ARGV[i]); i = i + 1
local seq = 0
for _ = 1, n_ev do
  seq = emit(P, rid, now, ARGV[i], ARGV[i + 1]); i = i + 2
end
local n_ws = tonumber(ARGV[i]); i = i + 1
local tag = n_ws > 0 and steer_tag(P, rid) or 0
for _ = 1, n_ws do
  local op, path, content = ARGV[i], ARGV[i + 1], ARGV[i + 2]; i = i + 3
  steer_undo(P, rid, tag, path)
  if op == "w" then redis.call("HSET", rk .. ":ws", path, content)
  elseif op == "d" then redis.call("HDEL", rk .. ":ws", path) end
end
local n_led = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_led do
  ledger_commit(P, rid, owner, now, cjson.decode(ARGV[i])); i = i + 1
end
if seq == 0 then seq = tonumber(redis.call("HGET", rk, "seq")) end
if step_key ~= "" then steer_step_done(P, rid, step_key, seq) end
return {seq, tonumber(f[2] or "0"), steer_pause_flag(P, rid)}
