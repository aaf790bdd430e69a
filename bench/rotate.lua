-- wrk script: rotate through pre-built requests (one "path<TAB>token" pair per line of
-- the file named by the first script argument), count response statuses, and print one
-- "BENCH_JSON {...}" line with throughput, latency percentiles and errors at the end.
-- Each thread starts at a different offset so threads do not move in lock-step.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    local path, token = line:match("^(%S+)\t(%S+)$")
    requests[#requests + 1] = wrk.format("GET", path, {Authorization = "Bearer " .. token})
  end
  position = (id * 7919) % #requests
  statuses = {}
end

function request()
  position = position % #requests + 1
  return requests[position]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals, counts = {}, {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    counts[#counts + 1] = string.format('"%d":%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(counts, ",")))
end
