"""Logging set-up and the start-up banner both services print."""

from __future__ import annotations

import logging
import platform

import cv2

import facewire
from facewire.settings import Settings


def configure(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        force=True,
    )


def log_startup(
    logger: logging.Logger, what: str, address: str, settings: Settings, **versions: str
) -> None:
    """One line with where it listens (tests parse it), one with versions, one with settings."""
    logger.info("%s listening on %s", what, address)
    stack = {
        "facewire": facewire.__version__,
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        **versions,
    }
    logger.info("versions: %s", ", ".join(f"{k} {v}" for k, v in stack.items()))
    logger.info("settings: %s", settings.model_dump_json())
