-- wrk: availability reads of EVENT_ID (GET /tickets?eventId=).
local path = "/api/v1/tickets?eventId=" .. os.getenv("EVENT_ID")

request = function()
  return wrk.format("GET", path)
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
