"""The headless benchmark: ``python -m client.bench`` (``make bench``)."""
