#!/bin/sh
# Runs `sentinel monitor`. The admin key and the control token (and, if the pages and read API
# should not be open, a read token) arrive as files (compose or Kubernetes secrets); the sidecar's
# config reads them from SENTINEL_ADMIN_KEY / SENTINEL_TOKEN / SENTINEL_READ_TOKEN, so they are
# read here and never written into a compose file, a manifest or the image.
set -eu
if [ -n "${ADMIN_KEY_FILE:-}" ]; then
  SENTINEL_ADMIN_KEY="$(cat "$ADMIN_KEY_FILE")"
  export SENTINEL_ADMIN_KEY
fi
if [ -n "${TOKEN_FILE:-}" ]; then
  SENTINEL_TOKEN="$(cat "$TOKEN_FILE")"
  export SENTINEL_TOKEN
fi
if [ -n "${READ_TOKEN_FILE:-}" ]; then
  SENTINEL_READ_TOKEN="$(cat "$READ_TOKEN_FILE")"
  export SENTINEL_READ_TOKEN
fi
exec sentinel monitor "$@"
