-- wrk script for benchmarks/http_loadgen.py --wrk: after wrk's own report, one JSON line with the figures
-- the driver needs (latencies in microseconds, wrk's own units).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\n{"wrk_requests": %d, "wrk_duration_us": %d, "wrk_bytes": %d, "wrk_errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "wrk_p50": %d, "wrk_p99": %d, "wrk_p999": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
