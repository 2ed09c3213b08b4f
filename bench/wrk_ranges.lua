-- wrk script for bench/edge.py: random byte ranges of one size inside equally sized files.
--
--   wrk -t2 -c64 -d10s -s bench/wrk_ranges.lua http://127.0.0.1:PORT \
--       -- RANGE_BYTES FILE_BYTES PATH [PATH ...]
--
-- Each request picks a random PATH (which may carry a signed query string) and a random first
-- byte, 4 KiB aligned for half of the requests and unaligned for the other half, and asks for
-- `Range: bytes=first-(first+RANGE_BYTES-1)`.
--
-- No response() callback on purpose: defining one makes wrk hand every header and body to Lua,
-- which would cost more CPU than the 8 MiB servers under test. Statuses >= 400 are counted by
-- wrk itself (errors.status); bench/edge.py checks bytes per request against the range size to
-- catch 200 or 3xx answers, and verifies sample responses before measuring.
--
-- done() prints one machine-readable line: "WRK_RESULT {json}" (durations in microseconds).

local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_id", counter)
end

local range_len, last_first, last_block, paths, npaths

function init(args)
   range_len = tonumber(args[1])
   local file_len = tonumber(args[2])
   if range_len == nil or file_len == nil or #args < 3 or range_len > file_len then
      error("usage: -- RANGE_BYTES FILE_BYTES PATH [PATH ...]")
   end
   paths = {}
   for i = 3, #args do
      paths[#paths + 1] = args[i]
   end
   npaths = #paths
   last_first = file_len - range_len
   last_block = math.floor(last_first / 4096)
   math.randomseed(os.time() * 1009 + (thread_id or 0) * 7919)
end

function request()
   local first
   if math.random() < 0.5 then
      first = math.random(0, last_block) * 4096
   else
      first = math.random(0, last_first)
   end
   return wrk.format("GET", paths[math.random(npaths)], {
      ["Range"] = string.format("bytes=%d-%d", first, first + range_len - 1),
   })
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
