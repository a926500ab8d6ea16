"""The sidecar-injection webhook: its certificates, its TLS upkeep and its HTTPS server."""
