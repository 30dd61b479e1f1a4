"""Serving ATCON classifiers with their attention maps: export, TF Serving config, client, local server.

- `serving.export`: SavedModel export (`export_model`, `python -m serving.export`).
- `serving.config`: TF Serving `models.config` and `batching_parameters.txt` writers.
- `serving.client`: gRPC and REST clients for TF Serving (`ServingClient`, `RestClient`, `python -m serving.client`).
- `serving.server`: a local TF-Serving-compatible server (gRPC, REST, batching, metrics) for local use and tests.
Production serving uses TF Serving (`tensorflow/serving`); see docs/serving.md.
"""
