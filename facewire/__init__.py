"""facewire: one face-detection core shared by a REST and a gRPC service.

This package is transport-free: it imports neither FastAPI nor grpc (the generated
protobuf modules in ``facewire.v1`` aside).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facewire")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
