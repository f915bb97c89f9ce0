#!/bin/sh
# repoint as a Helm post-renderer: Helm pipes the rendered chart in on
# stdin and installs what comes out on stdout.
#
#   helm install shop ./examples/helm/chart -n shop --post-renderer ./examples/helm/post-render.sh
#   helm template shop ./examples/helm/chart | ./examples/helm/post-render.sh    # the same, by hand
#
# Chart objects rarely name a namespace: Helm puts them in the release's,
# and tells a post-renderer neither the release nor its namespace. So the
# pull Secret repoint generates for them names none either, and Helm puts
# it in the release namespace beside them. REPOINT_NAMESPACE=NS writes NS
# into it instead (for `helm template ... | kubectl apply -f -`).
#
# REPOINT_CONFIG names the config (default: examples/repoint.yaml beside
# this directory); REPOINT (default: `repoint` on PATH) the binary. A denial
# or an error exits non-zero, which makes Helm stop before installing.
set -eu
here=$(dirname "$0")
if [ -n "${REPOINT_NAMESPACE:-}" ]; then
  where="--namespace=$REPOINT_NAMESPACE"
else
  where="--leave-namespace-unset"
fi
exec "${REPOINT:-repoint}" run -c "${REPOINT_CONFIG:-$here/../repoint.yaml}" "$where" -
