#!/bin/sh
# repoint as a Helm post-renderer: Helm pipes the rendered chart in on
# stdin and installs what comes out on stdout.
#
#   helm install shop ./chart --post-renderer ./examples/helm/post-render.sh
#   helm template shop ./chart | ./examples/helm/post-render.sh    # the same, by hand
#
# Chart objects rarely name a namespace (Helm puts them in the release's);
# the pull Secret repoint generates for them must go there too, so pass the
# release namespace: REPOINT_NAMESPACE=shop helm install -n shop ...
#
# REPOINT_CONFIG names the config (default: examples/repoint.yaml beside
# this directory); REPOINT (default: `repoint` on PATH) the binary. A denial
# or an error exits non-zero, which makes Helm stop before installing.
set -eu
here=$(dirname "$0")
exec "${REPOINT:-repoint}" run \
  -c "${REPOINT_CONFIG:-$here/../repoint.yaml}" \
  -n "${REPOINT_NAMESPACE:-default}" \
  -
