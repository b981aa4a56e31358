-- wrk script for bench/run.ts: every request carries an x-user-id drawn from 10,000 users
-- (so a split route really splits), and one machine-readable line is printed at the end.
math.randomseed(os.time())
request = function()
  return wrk.format(nil, nil, { ["x-user-id"] = "user-" .. math.random(10000) })
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"total":%d,"rps":%.1f,"p50":%.3f,"p99":%.3f,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
