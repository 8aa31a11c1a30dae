"""The headless benchmark: ``python -m client.bench`` (``make bench``), and ``make perf``,
``make soak`` and ``make docker-bench`` beside it."""

from pathlib import Path

#: The benchmark's images (1280×720, JPEG q90), with what is in them (fixtures.json):
#: made from scikit-image's public-domain astronaut by ``make fixtures``.
FIXTURES = Path(__file__).parent / "fixtures"
FACE = FIXTURES / "face_1280x720.jpg"
NOFACE = FIXTURES / "noface_1280x720.jpg"
