#!/bin/sh
# Starts tritonserver the way Sentinel needs it: explicit model control (the sidecar switches
# versions through the repository API), that API behind an admin key read from a file (a compose or
# Kubernetes secret, never an environment literal), metrics on, and a short exit timeout (the
# default 30 s can stall a stop after failing requests). Extra arguments are passed to tritonserver.
set -eu

key_file="${TRITON_ADMIN_KEY_FILE:-/run/secrets/admin_key}"
if [ ! -s "$key_file" ]; then
  echo "error: no admin key in $key_file (set TRITON_ADMIN_KEY_FILE to a secret file):" \
       "the model-repository API must not be left open" >&2
  exit 2
fi
key="$(cat "$key_file")"

# The key is on tritonserver's command line because that is the only way Triton takes it; other
# containers of the pod do not share its process namespace, so they cannot read it there.
set -- --model-repository="${MODEL_REPOSITORY:-/models}" \
  --model-control-mode=explicit --disable-auto-complete-config \
  --exit-on-error=false --exit-timeout-secs=5 \
  --http-port=8000 --grpc-port=8001 --metrics-port=8002 \
  --allow-metrics=true --metrics-interval-ms=1000 \
  --http-restricted-api="model-repository:admin-key=$key" \
  --grpc-restricted-protocol="model-repository:admin-key=$key" \
  "$@"
for model in $(echo "${TRITON_MODELS:-ranker}" | tr ',' ' '); do
  set -- "$@" --load-model="$model"
done
exec tritonserver "$@"
