"""What the online path reports about itself: ragtune's Prometheus metrics, the per-request record and log line, the
cluster scrape behind GET /metrics."""
