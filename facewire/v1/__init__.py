"""Generated protobuf and gRPC modules for ``package facewire.v1`` (``make proto``)."""
