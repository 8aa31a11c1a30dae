"""grpcio (asyncio) adapter: HTTP/2 + protobuf in front of ``facewire.DataPlane``."""
