"""Past one machine, on one machine: replicas of both services behind nginx (per-request
L7 balancing, and TCP balancing that pins a connection to a replica), gRPC's own
client-side balancing and connection age, the proxy's cost, and a replica killed under
load (``make scale``; docs/scaling.md)."""
