"""``make perf``: the performance targets, each a ratio measured inside one run.

``python -m client.bench.perf [--quick] [--rounds N] [--out DIR]`` starts its own
services (and bare servers to compare them with) on free loopback ports, sends the face
fixture (1280×720, JPEG q90, one face), and prints every target's ratio against its bound.
``--rest-url`` and ``--grpc-target`` measure services already running instead (P4 and P7,
which read the services' CPU and memory, are then skipped).
Rounds interleave the in-process floor with the protocol windows, and each ratio is the
median over rounds of a value taken from neighbouring measurements, so that a noisy
machine moves numerator and denominator together. Nothing here fails on a slow
machine: the exit status is 0 unless a measurement itself went wrong.

The modules: ``targets`` (the bounds, the plan, the results), ``pipeline`` (the floor,
and the opt-in decodes against the specified pipeline), ``services`` (P1, P2, P3, P5,
P7), ``references`` (P4, and P1-P3 against the bare frameworks), ``gui`` (P6),
``windows`` (one measured window), ``report`` (the table) and ``__main__`` (the run).
"""
