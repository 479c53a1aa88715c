-- wrk script of bench/booking.py (`make bench-booking`).
--
--   wrk -t T -c C -d 10s -s bench/booking.lua URL -- LINES_FILE T PATH
--
-- LINES_FILE holds one "<token> <slot-id>" line per request. Thread i of T takes every T-th
-- line starting at line i, so no two threads (and no two requests) use the same line. Each
-- request is `POST PATH` with the line's bearer token and `{"slot_id": "<slot-id>"}`. When a
-- thread has used all its lines it starts again at its first one and counts that in
-- `wrapped` (the benchmark sizes the file so that this does not happen).
--
-- done() prints one line "BENCH-WRK {json}": wrk's summary, its latency percentiles (in
-- microseconds), the status codes counted in response(), one response body per status other
-- than 201, and the requests sent and answered (the difference was still in flight when wrk
-- stopped); `sent_by_thread` tells which lines were used (thread i: its first n lines).

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
counts = {}
samples = {}

local queue = {}
local position = 0
local target = "/bookings"
local headers = { ["Content-Type"] = "application/json" }

function init(args)
   local path, parts = args[1], tonumber(args[2])
   target = args[3] or target
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
         stdev = latency.stdev,
         p50 = latency:percentile(50),
         p90 = latency:percentile(90),
         p99 = latency:percentile(99),
         p999 = latency:percentile(99.9),
      },
      sent = 0,
      answered = 0,
      wrapped = 0,
      lines = 0,
      statuses = {},
      samples = {},
      sent_by_thread = {},
   }
   for _, thread in ipairs(threads) do
      result.sent_by_thread[thread:get("id")] = thread:get("sent")
      for _, key in ipairs({ "sent", "answered", "wrapped", "lines" }) do
         result[key] = result[key] + thread:get(key)
      end
      for status, count in pairs(thread:get("counts")) do
         result.statuses[status] = (result.statuses[status] or 0) + count
      end
      for status, body in pairs(thread:get("samples")) do
         result.samples[status] = body
      end
   end
   io.write("BENCH-WRK " .. encode(result) .. "\n")
end
