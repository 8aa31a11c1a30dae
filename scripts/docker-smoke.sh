#!/usr/bin/env bash
# Where a Docker engine runs: build and start both services with compose, send one
# request per protocol, check the answers, and take everything down again.
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker compose}
PY=${PY:-.venv/bin/python}
IMAGE=tests/fixtures/face_1280x720.jpg

if ! docker info >/dev/null 2>&1; then
  echo "docker-smoke: no Docker engine here (docker info failed); nothing was run." >&2
  exit 1
fi
trap '$COMPOSE down --timeout 20' EXIT
mkdir -p storage/rest storage/grpc
FACEWIRE_UID=$(id -u) FACEWIRE_GID=$(id -g) $COMPOSE up --build -d --wait --wait-timeout 180

echo "REST:"
curl -fsS -X POST --data-binary @"$IMAGE" "http://127.0.0.1:8001/v1/detect?save=true&frame_id=smoke" \
  | "$PY" -c 'import json,sys; r=json.load(sys.stdin); assert len(r["boxes"])==1 and r["saved_image"], r; print(" ", r["boxes"], r["saved_image"])'

echo "gRPC:"
"$PY" - "$IMAGE" <<'PY'
import sys
import grpc
from facewire.v1 import face_detection_pb2 as pb, face_detection_pb2_grpc as pb_grpc
with grpc.insecure_channel("127.0.0.1:50051") as channel:
    reply = pb_grpc.FaceDetectionStub(channel).Detect(
        pb.DetectRequest(image=open(sys.argv[1], "rb").read(), save=True, frame_id="smoke"),
        timeout=30,
    )
assert len(reply.boxes) == 1 and reply.saved_image, reply
print(" ", [(b.x, b.y, b.width, b.height) for b in reply.boxes], reply.saved_image)
PY
test -s storage/rest/records.csv && test -s storage/grpc/records.csv
echo "docker-smoke: OK (both services answered and stored their frames in ./storage)"
