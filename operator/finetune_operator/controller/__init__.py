"""The kopf handlers and the Kubernetes I/O they need: the only layer that talks to the API server."""
