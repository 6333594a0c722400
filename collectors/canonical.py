"""trimtab's canonical metric names: what the agent exports and the cockpit's model reads.

Other instrumentations are mapped onto these (:mod:`.mappings`); a Prometheus source asks
its server for these (:mod:`.prometheus.source`); ``app.model.extract`` reads them.
"""

from __future__ import annotations

HIST_BUCKET = "trimtab_http_request_duration_seconds_bucket"
REQUESTS = "trimtab_http_requests_total"
SIZE_SUM = "trimtab_http_response_size_bytes_sum"  # response body bytes (histogram)
SIZE_COUNT = "trimtab_http_response_size_bytes_count"
CACHE = "trimtab_cache_requests_total"
# Rate limit decisions {route, limit, result=allowed|limited|shadow_limited}; the 429s
# are also in REQUESTS{status="429"}.
RATELIMIT = "trimtab_ratelimit_requests_total"
LB_REQUESTS = "trimtab_balancer_requests_total"
LB_EXPECTED = "trimtab_balancer_expected_share"
LB_WEIGHT = "trimtab_balancer_server_weight"
LB_IN_FLIGHT = "trimtab_balancer_in_flight"
LB_UP = "trimtab_balancer_server_up"
LB_STATE = "trimtab_balancer_server_state"
LB_ERRORS = "trimtab_balancer_errors_total"
LB_BUCKET = "trimtab_balancer_upstream_request_duration_seconds_bucket"
PROCESS_START = "process_start_time_seconds"
# ``_created`` series → the Counters field whose values they date (a change is a reset).
CREATED = {
    "trimtab_http_request_duration_seconds_created": "buckets",
    "trimtab_http_requests_created": "requests",  # also dates ``errors`` (same series)
    "trimtab_http_response_size_bytes_created": "sizes",
    "trimtab_cache_requests_created": "cache",
    "trimtab_ratelimit_requests_created": "ratelimit",
    "trimtab_balancer_requests_created": "lb_requests",
    "trimtab_balancer_errors_created": "lb_errors",
    "trimtab_balancer_upstream_request_duration_seconds_created": "lb_buckets",
}
# Every name above, in the order a Prometheus source asks for them.
ALL = (
    HIST_BUCKET, "trimtab_http_request_duration_seconds_created",
    REQUESTS, "trimtab_http_requests_created",
    SIZE_SUM, SIZE_COUNT, "trimtab_http_response_size_bytes_created",
    CACHE, "trimtab_cache_requests_created",
    RATELIMIT, "trimtab_ratelimit_requests_created",
    LB_REQUESTS, "trimtab_balancer_requests_created",
    LB_EXPECTED, LB_WEIGHT,
    LB_IN_FLIGHT, LB_UP, LB_STATE,
    LB_ERRORS, "trimtab_balancer_errors_created",
    LB_BUCKET,
    "trimtab_balancer_upstream_request_duration_seconds_created",
    PROCESS_START,
)
