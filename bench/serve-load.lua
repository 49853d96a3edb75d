-- wrk script for bench/serve-load.sh: POSTs one photo on every request, counts answers by
-- status and the faces in the 200s, and prints one JSON summary line at the end.
--   wrk -s bench/serve-load.lua URL -- PHOTO
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*all")
  wrk.headers["Content-Type"] = "application/octet-stream"
  f:close()
  statuses = {}
  faces = 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    local _, n = string.gsub(body, '"class":', "")
    faces = faces + n
  end
end

function done(summary, latency, requests)
  local counts, total_faces = {}, 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    total_faces = total_faces + t:get("faces")
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"seconds": %.3f, "requests": %d, "faces": %d, "statuses": {%s}, ' ..
    '"p50_ms": %.1f, "p95_ms": %.1f, "p99_ms": %.1f, "max_ms": %.1f, ' ..
    '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
    summary.duration / 1e6, summary.requests, total_faces, table.concat(parts, ", "),
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, e.connect, e.read, e.write, e.timeout))
end
