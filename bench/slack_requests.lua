-- wrk script: POST pre-signed Slack requests to /slack/events, cycling through a file of them.
-- Usage: wrk ... -s bench/slack_requests.lua URL -- FILE NTHREADS EXPECT
--   FILE: one request a line, "timestamp<TAB>signature<TAB>form-encoded body" (bodies have no raw newline)
--   EXPECT: a substring every good answer contains ("" = any HTTP 200 is good)
-- Each thread takes every NTHREADS-th line, so no two threads send the same request.
-- Prints one line "WRKJSON {...}" with latency percentiles (microseconds) and error counts.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local reqs = {}
local n = 0
local i = 0
local expect = ""
bad = 0
bad_sample = ""

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  expect = args[3] or ""
  local k = 0
  for line in io.lines(path) do
    if k % nthreads == id then
      local ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      n = n + 1
      reqs[n] = wrk.format("POST", "/slack/events", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Slack-Request-Timestamp"] = ts,
        ["X-Slack-Signature"] = sig,
      }, body)
    end
    k = k + 1
  end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function response(status, headers, body)
  if status ~= 200 or (expect ~= "" and not (body and body:find(expect, 1, true))) then
    bad = bad + 1
    if bad_sample == "" then bad_sample = tostring(status) .. " " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local bad_total, sample = 0, ""
  for _, t in ipairs(threads) do
    bad_total = bad_total + (t:get("bad") or 0)
    local s = t:get("bad_sample")
    if s and s ~= "" and sample == "" then sample = s end
  end
  sample = sample:gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("[%c]", " ")
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"bad":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f,"bad_sample":"%s"}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, bad_total,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, sample))
end
