"""The wire formats, each with its codec, shared by the services and the client.

Neither side owns them: the services encode what the client decodes, and the other way
round, with the same code. Each module pairs its converters (``*_to_*`` and back), and
``tests/test_wire.py`` round-trips every pair.

- ``v1_json``: facewire's REST API, ``POST /v1/detect``'s JSON answer;
- ``v1_proto``: facewire's gRPC API, ``facewire.v1`` messages;
- ``v2_json``: the Open Inference Protocol over HTTP, JSON and Triton's binary tensor
  data extension;
- ``v2_proto``: the Open Inference Protocol over gRPC, ``inference`` messages.
"""
