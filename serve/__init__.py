"""Serve: one typed stack spec rendered into vLLM workers behind a LiteLLM proxy, and their supervisor."""
