-- wrk script for bench/steering.py: POST /v1/steer, one content id per request.
--
--   wrk -t1 -c8 -d10s -s bench/wrk_steer.lua http://127.0.0.1:PORT -- BODIES_FILE
--
-- BODIES_FILE holds one JSON request body per line (random client addresses inside the
-- snapshot's prefixes, random content ids); each request sends a random line. Statuses >= 400
-- are counted by wrk (errors.status). done() prints "WRK_RESULT {json}" (microseconds).

local bodies, nbodies
local headers = {["Content-Type"] = "application/json"}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_id", counter)
end

function init(args)
   if #args < 1 then
      error("usage: -- BODIES_FILE")
   end
   bodies = {}
   for line in io.lines(args[1]) do
      bodies[#bodies + 1] = line
   end
   nbodies = #bodies
   math.randomseed(os.time() * 1009 + (thread_id or 0) * 7919)
end

function request()
   return wrk.format("POST", "/v1/steer", headers, bodies[math.random(nbodies)])
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"duration_us": %.0f, "requests": %.0f, "bytes": %.0f, '
         .. '"connect_errors": %.0f, "read_errors": %.0f, "write_errors": %.0f, '
         .. '"status_errors": %.0f, "timeouts": %.0f, '
         .. '"latency_p50_us": %.0f, "latency_p99_us": %.0f, "latency_max_us": %.0f}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max))
end
