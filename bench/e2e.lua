-- wrk script of bench/e2e.py (`make bench-e2e`): POST /bookings at a fixed offered rate.
--
--   wrk -t T -c C -d Ds --timeout 30s -s bench/e2e.lua URL -- LINES_FILE T RATE [PATH]
--
-- LINES_FILE holds one "<token> <slot-id>" line per request. Thread i of T takes every T-th
-- line starting at line i, so no two requests use the same line (each is a distinct user
-- booking a distinct slot). Each request is `POST PATH` (default /bookings) with the line's
-- bearer token and `{"slot_id": "<slot-id>"}`. A thread that has used all its lines starts
-- again at its first one and counts that in `wrapped` (bench/e2e.py sizes the file so that
-- this does not happen).
--
-- Pacing. wrk is closed-loop: a connection sends its next request only after the answer to
-- the previous one. delay() is asked before every request; here it hands out the send times
-- of a fixed schedule, per thread RATE / T requests per second, thread i offset by i / RATE
-- seconds, so the T threads together offer RATE requests per second. A connection that asks
-- waits until the next free time of the schedule (read from CLOCK_MONOTONIC through LuaJIT's
-- FFI). A thread that falls behind its schedule (every connection busy waiting for answers)
-- sends as soon as a connection is free until it has caught up, and records how far behind
-- it was (`behind_max_ms`) and how many requests left more than LATE_MS after their time
-- (`late_sends`): the offered rate is then no longer what sets the rate, the answers'
-- latency is. The rate actually sent is the request count over wrk's duration.
--
-- done() prints one line "BENCH-E2E {json}": wrk's summary, its latency percentiles (in
-- microseconds, from the moment a request was written), the status codes counted in
-- response(), one response body per status other than 201, the requests sent and answered
-- (the difference was still in flight when wrk stopped), and how far the threads fell behind
-- their schedule.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_e2e_timespec;
int clock_gettime(int clock_id, bench_e2e_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local LATE_MS = 10
local timespec = ffi.new("bench_e2e_timespec")

local function now_ms()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
   return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Per thread (globals, so that done() can read them with thread:get).
sent = 0
answered = 0
wrapped = 0
lines = 0
behind_max_ms = 0
late_sends = 0
counts = {}
samples = {}

local queue = {}
local position = 0
local target = "/bookings"
local headers = { ["Content-Type"] = "application/json" }
local period_ms = 0
local offset_ms = 0
local next_at = nil

function init(args)
   local path, parts, rate = args[1], tonumber(args[2]), tonumber(args[3])
   target = args[4] or target
   period_ms = 1000 * parts / rate
   offset_ms = 1000 * id / rate
   local n = 0
   for line in io.lines(path) do
      if n % parts == id then
         local token, slot = line:match("^(%S+) (%S+)$")
         if token then
            queue[#queue + 1] = { "Bearer " .. token, '{"slot_id": "' .. slot .. '"}' }
         end
      end
      n = n + 1
   end
   lines = #queue
end

function delay()
   local now = now_ms()
   if next_at == nil then
      next_at = now + offset_ms
   end
   local wait = next_at - now
   next_at = next_at + period_ms
   if wait < 0 then
      if -wait > LATE_MS then
         late_sends = late_sends + 1
      end
      if -wait > behind_max_ms then
         behind_max_ms = -wait
      end
      return 0
   end
   return math.floor(wait)
end

function request()
   position = position + 1
   if position > #queue then
      position = 1
      wrapped = wrapped + 1
   end
   local item = queue[position]
   headers["Authorization"] = item[1]
   sent = sent + 1
   return wrk.format("POST", target, headers, item[2])
end

function response(status, _, body)
   answered = answered + 1
   local key = tostring(status)
   counts[key] = (counts[key] or 0) + 1
   if status ~= 201 and samples[key] == nil then
      samples[key] = body
   end
end

local function encode(value)
   local kind = type(value)
   if kind == "number" then
      return string.format("%.17g", value)
   elseif kind == "string" then
      local escaped = value:gsub('[%c"\\]', function(c)
         return string.format("\\u%04x", c:byte())
      end)
      return '"' .. escaped .. '"'
   elseif kind == "boolean" then
      return tostring(value)
   elseif kind == "table" then
      local parts = {}
      for k, v in pairs(value) do
         parts[#parts + 1] = encode(tostring(k)) .. ":" .. encode(v)
      end
      return "{" .. table.concat(parts, ",") .. "}"
   end
   return "null"
end

function done(summary, latency, _)
   local result = {
      duration_us = summary.duration,
      requests = summary.requests,
      bytes = summary.bytes,
      errors = summary.errors,
      latency_us = {
         min = latency.min,
         max = latency.max,
         mean = latency.mean,
         p50 = latency:percentile(50),
         p90 = latency:percentile(90),
         p99 = latency:percentile(99),
      },
      sent = 0,
      answered = 0,
      wrapped = 0,
      lines = 0,
      late_sends = 0,
      behind_max_ms = 0,
      statuses = {},
      samples = {},
   }
   for _, thread in ipairs(threads) do
      for _, key in ipairs({ "sent", "answered", "wrapped", "lines", "late_sends" }) do
         result[key] = result[key] + thread:get(key)
      end
      result.behind_max_ms = math.max(result.behind_max_ms, thread:get("behind_max_ms"))
      for status, count in pairs(thread:get("counts")) do
         result.statuses[status] = (result.statuses[status] or 0) + count
      end
      for status, body in pairs(thread:get("samples")) do
         result.samples[status] = body
      end
   end
   io.write("BENCH-E2E " .. encode(result) .. "\n")
end
