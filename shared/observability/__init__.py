"""Serving a service's metrics and health: `/metrics`, `/healthz`, `/readyz` (see `service.py`)."""
