#!/usr/bin/env bash
# `make docker-smoke`: the compose stack up (healthy), one saved request per protocol
# through the published ports, an audit of both storage folders, and down again (both
# containers must drain and exit 0). Compose v2 or v1, as scripts/compose.sh finds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
IMAGE=client/bench/fixtures/face_1280x720.jpg
STORAGE=${FACEWIRE_STORAGE:-./storage}
REST="http://127.0.0.1:${FACEWIRE_PUBLISH_REST_PORT:-8001}"
GRPC="127.0.0.1:${FACEWIRE_PUBLISH_GRPC_PORT:-50051}"

down() { ./scripts/compose.sh down; }
trap 'down || true' EXIT
./scripts/compose.sh up

echo "REST:"
curl -fsS -X POST --data-binary @"$IMAGE" "$REST/v1/detect?save=true&frame_id=smoke" \
  | "$PY" -c 'import json,sys; r=json.load(sys.stdin); assert len(r["boxes"])==1 and r["saved_image"], r; print(" ", r["boxes"], r["saved_image"])'

echo "gRPC:"
"$PY" - "$IMAGE" "$GRPC" <<'PY'
import sys
import grpc
from facewire.v1 import face_detection_pb2 as pb, face_detection_pb2_grpc as pb_grpc
with grpc.insecure_channel(sys.argv[2]) as channel:
    reply = pb_grpc.FaceDetectionStub(channel).Detect(
        pb.DetectRequest(image=open(sys.argv[1], "rb").read(), save=True, frame_id="smoke"),
        timeout=30,
    )
assert len(reply.boxes) == 1 and reply.saved_image, reply
print(" ", [(b.x, b.y, b.width, b.height) for b in reply.boxes], reply.saved_image)
PY
"$PY" -m facewire.audit "$STORAGE/rest" "$STORAGE/grpc"
trap - EXIT
down
echo "docker-smoke: OK (both answered, stored their frames in $STORAGE, and drained)"
