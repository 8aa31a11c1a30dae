"""The bare FastAPI app ``make perf`` compares the REST service with (P4 and P1).

``python -m rest_service.bare PORT`` serves one route, ``POST /v1/detect``, that reads
the body and answers at once with what facewire sends for model ``echo`` (made once at
start-up), under the REST service's own uvicorn settings: what FastAPI and uvicorn
themselves cost, so that the service's ratio to it is what facewire adds.

With ``--core`` the route hands the body to the shared core instead (``DataPlane.detect``
on the same settings) and answers with its result: the least FastAPI code that can
serve the pipeline. The service and this twin differ only in facewire's own REST code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from facewire.dataplane import DataPlane
from facewire.errors import FacewireError
from facewire.messages import DetectionRequest, DetectionResult, Model
from facewire.settings import Settings
from facewire.wire.v1_json import result_to_json
from rest_service.server import DrainingServer, bind_socket, uvicorn_config

ECHO = result_to_json(DetectionResult(frame_id="", model=Model.ECHO)).model_dump_json()


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/detect")
    async def detect(request: Request) -> Response:
        await request.body()
        return Response(ECHO, media_type="application/json")

    return app


def core_app(dataplane: DataPlane) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(dataplane.start)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/detect")
    async def detect(request: Request, model: str = "haar") -> Response:
        try:
            core = DetectionRequest(await request.body(), model=Model.parse(model))
            result = await dataplane.detect(core)
        except FacewireError as error:
            return JSONResponse({"detail": error.message}, status_code=400)
        return Response(result_to_json(result).model_dump_json(), media_type="application/json")

    return app


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[1:] not in ([], ["--core"]) or not argv[0].isdigit():
        print("usage: python -m rest_service.bare PORT [--core]", file=sys.stderr)
        return 2
    settings = Settings()
    core = "--core" in argv
    app = core_app(DataPlane.from_settings(settings, "rest")) if core else echo_app()
    sock = bind_socket("127.0.0.1", int(argv[0]))
    DrainingServer(uvicorn_config(settings, app)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
