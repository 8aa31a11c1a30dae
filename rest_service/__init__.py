"""FastAPI adapter: HTTP/1.1 + JSON in front of ``facewire.DataPlane``."""
