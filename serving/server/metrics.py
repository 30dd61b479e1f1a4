"""Prometheus metrics of the local server, served at TF Serving's path `/monitoring/prometheus/metrics`.

One registry per server (several servers can live in one test process). Counted at the one place every
Predict goes through (`Dispatcher`), for gRPC and REST alike.
"""

import prometheus_client

PATH = "/monitoring/prometheus/metrics"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
  """Request counts, latencies, batch sizes and queue rejections."""

  def __init__(self):
    self.registry = prometheus_client.CollectorRegistry()
    self.requests = prometheus_client.Counter(
      "atcon_serving_requests",
      "Predict requests by model, version, signature, API and status (gRPC status code name).",
      ["model", "version", "signature", "api", "status"],
      registry=self.registry,
    )
    self.latency = prometheus_client.Histogram(
      "atcon_serving_request_latency_seconds",
      "Predict latency in the server, from request parsed to response ready.",
      ["model", "signature", "api"],
      buckets=_LATENCY_BUCKETS,
      registry=self.registry,
    )
    self.batch_size = prometheus_client.Histogram(
      "atcon_serving_batch_size",
      "Examples per batch the dynamic batcher ran (after padding to an allowed size).",
      ["model", "signature"],
      buckets=_BATCH_BUCKETS,
      registry=self.registry,
    )
    self.versions = prometheus_client.Gauge(
      "atcon_serving_loaded_versions", "Versions available per model.", ["model"], registry=self.registry
    )

  def observe(self, model, version, signature, api, status, seconds):
    self.requests.labels(model, str(version or ""), signature or "", api, status).inc()
    if status == "OK":
      self.latency.labels(model, signature or "", api).observe(seconds)

  def exposition(self):
    """(body bytes, content type) of the text exposition format."""
    return prometheus_client.generate_latest(self.registry), prometheus_client.CONTENT_TYPE_LATEST
