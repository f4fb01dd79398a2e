-- A delivery's last word: delivered, dead (its retry window ran out) or dropped (its subscription is
-- gone). The record and the outbox entry's acknowledgement change together, so a delivery that was
-- recorded as delivered is never sent again, and one that was not stays on the outbox.
-- ARGV: P, did, qid, outcome, now, status_code ("" = none), error ("" = none), keep_s
-- Returns 1 when this call ended the delivery, 0 when it had ended before (the entry is acknowledged).
local P, did, qid, outcome, now, code, err, keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7],
  tonumber(ARGV[8])
local dk = P .. ":wh:dlv:" .. did
local ended = 0
local f = redis.call("HMGET", dk, "status", "tenant")
if f[1] == "pending" then
  redis.call("HSET", dk, "status", outcome, "finished_at", now)
  if code ~= "" then redis.call("HSET", dk, "last_status_code", code) end
  if err ~= "" then redis.call("HSET", dk, "last_error", err) end
  if outcome == "dead" then
    redis.call("ZADD", P .. ":wh:dead:" .. f[2], math.floor(tonumber(now) * 1000), did)
  end
  redis.call("EXPIRE", dk, keep)
  -- the tenant's indexes forget what has expired (records live keep_s after they end)
  local horizon = math.floor((tonumber(now) - 2 * keep) * 1000)
  redis.call("ZREMRANGEBYSCORE", P .. ":wh:dlvs:" .. f[2], "-inf", horizon)
  redis.call("ZREMRANGEBYSCORE", P .. ":wh:dead:" .. f[2], "-inf", horizon)
  ended = 1
end
if qid ~= "" then
  redis.call("XACK", P .. ":outbox", "webhooks", qid)
  redis.call("XDEL", P .. ":outbox", qid)
end
return ended
