-- wrk script for bench/ingress.py: signed ~7 KB push deliveries, each with its own delivery id.
--
--   wrk -t2 -c32 -d10s -s bench/wrk_push.lua URL -- BODIES_FILE RUN_ID [STOP_AFTER [PARTITION]]
--
-- BODIES_FILE holds records "<X-Hub-Signature-256>\n<length>\n<body>" (bench/_common.py writes it).
-- Each thread rotates through the bodies; X-GitHub-Delivery is RUN_ID-<thread>-<counter>, so every
-- request is a new delivery (a real accept with its durable commit, never a duplicate). The requests
-- are pre-formatted per body at start-up: per request only the delivery id is spliced in.
-- STOP_AFTER > 0 stops each thread's requests after that many responses (wrk itself still runs
-- for its -d duration).
-- PARTITION = 1: thread k of n keeps only the records k, k + n, k + 2n, ... and starts at its first, so
-- each body is sent by one thread (the bodies are pushes in order: each arrives once per lap). Else each
-- thread goes through all the bodies, from its own starting point.
-- done() prints one line "BENCH_JSON {...}" with the totals, latency percentiles and status counts.

local threads = {}
local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_id", thread_counter)
  table.insert(threads, thread)
  for _, each in ipairs(threads) do  -- every thread learns the final count before init() runs
    each:set("thread_count", thread_counter)
  end
end

local prefixes, suffixes = {}, {}
local n, i, counter, responses, stop_after = 0, 0, 0, 0, 0
local run_id = "run"
statuses = {}

function init(args)
  local path = args[1]
  run_id = args[2] or "run"
  stop_after = tonumber(args[3] or "0") or 0
  local partition = (args[4] or "0") == "1"
  local me, count = (thread_id or 1) - 1, thread_count or 1
  local record = 0
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  local host = wrk.host .. ":" .. tostring(wrk.port)
  local pos = 1
  while pos <= #data do
    local sig_end = string.find(data, "\n", pos, true)
    local signature = string.sub(data, pos, sig_end - 1)
    local len_end = string.find(data, "\n", sig_end + 1, true)
    local length = tonumber(string.sub(data, sig_end + 1, len_end - 1))
    local body = string.sub(data, len_end + 1, len_end + length)
    pos = len_end + length + 1
    record = record + 1
    if partition and (record - 1) % count ~= me then
      goto continue
    end
    n = n + 1
    prefixes[n] = "POST " .. wrk.path .. " HTTP/1.1\r\n"
      .. "Host: " .. host .. "\r\n"
      .. "User-Agent: GitHub-Hookshot/bench\r\n"
      .. "Content-Type: application/json\r\n"
      .. "X-GitHub-Event: push\r\n"
      .. "X-GitHub-Hook-ID: 1\r\n"
      .. "X-Hub-Signature-256: " .. signature .. "\r\n"
      .. "Content-Length: " .. tostring(length) .. "\r\n"
      .. "X-GitHub-Delivery: "
    suffixes[n] = "\r\n\r\n" .. body
    ::continue::
  end
  if partition then
    i = 0  -- this thread's first body: its share of the pushes, in order
  else
    i = (thread_id or 1) * 7919 % n  -- threads start at different bodies
  end
  run_id = run_id .. "-" .. tostring(thread_id or 1)
end

function request()
  i = i % n + 1
  counter = counter + 1
  return prefixes[i] .. run_id .. "-" .. tostring(counter) .. suffixes[i]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  responses = responses + 1
  if stop_after > 0 and responses >= stop_after then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for key, value in pairs(counts) do
      merged[key] = (merged[key] or 0) + value
    end
  end
  local parts = {}
  for key, value in pairs(merged) do
    table.insert(parts, string.format('"%s": %d', key, value))
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors, table.concat(parts, ", ")))
end
