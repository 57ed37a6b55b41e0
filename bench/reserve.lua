-- wrk: each request reserves one GA ticket of EVENT_ID as one of the users in TOKENS_FILE.
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do tokens[#tokens + 1] = line end
local body = '{"eventId":"' .. os.getenv("EVENT_ID") .. '","tickets":[{"tier":"GA","quantity":1}]}'
local n = math.random(#tokens)

request = function()
  n = n % #tokens + 1
  return wrk.format("POST", "/api/v1/booking/reserve",
    { ["Authorization"] = "Bearer " .. tokens[n], ["Content-Type"] = "application/json" }, body)
end

done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d errors_non2xx=%d socket_errors=%d rps=%.0f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
