-- wrk script for `clr serve` (bench/serve_load.sh runs it):
--   wrk -s bench/serve_load.lua URL -- IMAGE TASK_PREFIX TASKS BAD_EVERY
-- POSTs IMAGE to /v1/tasks/<TASK_PREFIX><k>/predict for k cycling over TASKS tasks.
-- With BAD_EVERY = n > 0, every n-th request is a bad one instead, in turn: bytes that
-- are no image (400), an unknown task (404), an empty body (400). Prints requests/s,
-- p50/p99 latency and the count of each status.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  image = f:read("*all")
  f:close()
  prefix = args[2]
  tasks = tonumber(args[3])
  bad_every = tonumber(args[4] or "0")
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  local k = counter % tasks
  local path = "/v1/tasks/" .. prefix .. k .. "/predict"
  local body = image
  if bad_every > 0 and counter % bad_every == 0 then
    local kind = (counter / bad_every) % 3
    if kind == 0 then
      body = "this is not an image"
    elseif kind == 1 then
      path = "/v1/tasks/no-such-task/predict"
    else
      body = ""
    end
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/octet-stream"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("requests %d in %.1f s: %.1f req/s; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d\n", summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
  local keys = {}
  for status in pairs(totals) do table.insert(keys, status) end
  table.sort(keys)
  for _, status in ipairs(keys) do
    io.write(string.format("status %d: %d\n", status, totals[status]))
  end
end
