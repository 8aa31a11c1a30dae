"""Hostile clients at the protocol level: HTTP/2 and HTTP/1.1 attacks, connection
floods and large-message pressure against both services, with a well-behaved client
measuring beside them (``make attack``; docs/reliability.md)."""
