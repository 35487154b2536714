-- wrk script for scripts/callgrind-per-request: the shared anchor bench's chat
-- request (../shared/bench/chat.lua: the same 312-byte body and headers), sent
-- COUNT times over one keep-alive connection (run with -c1 -t1), then stop.
-- Environment: BENCH_MODEL, BENCH_STREAM=1, BENCH_KEY (as in chat.lua), COUNT.
local model  = os.getenv("BENCH_MODEL") or "gpt-4o-mini"
local stream = os.getenv("BENCH_STREAM") == "1"
local key    = os.getenv("BENCH_KEY")
local count  = tonumber(os.getenv("COUNT") or "100")

local body = '{"model":"' .. model .. '","messages":['
  .. '{"role":"system","content":"You are a concise assistant for a platform engineering team. Answer in plain English."},'
  .. '{"role":"user","content":"In two sentences, explain what a circuit breaker does in an API gateway and when it should open."}'
  .. '],"temperature":0.2,"max_tokens":128'
if stream then
  body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
end
body = body .. '}'

wrk.method = "POST"
wrk.body   = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = stream and "text/event-stream" or "application/json"
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

local seen = 0
function response(status, headers, body)
  seen = seen + 1
  if seen == count then
    wrk.thread:stop()
    -- wrk's main thread sleeps out -d; a SIGINT ends that sleep once this
    -- thread has exited (else the signal may land here). $PPID is wrk.
    os.execute("(sleep 0.2; kill -INT $PPID) &")
  end
end

function done(summary, latency, requests)
  io.write(string.format("COUNT requests=%d non2xx=%d errors=%d\n", summary.requests,
    summary.errors.status, summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
