"""Attack tests against the real hub, proxy, Jupyter server and sidecar (issue 15)."""
