#!/usr/bin/env bash
# Nightly factory run from cron or a systemd timer, e.g. in crontab:
#   0 2 * * *  /opt/imagefactory/pipelines/cron.sh /srv/golden-images >> /var/log/imagefactory.log 2>&1
# flock keeps two runs on this host from piling up; the factory's own lock (a lease in the
# factory's storage) refuses a run from another host, naming the run that holds it.
set -euo pipefail
repo="${1:?usage: cron.sh REPOSITORY}"
reports="${IMAGEFACTORY_REPORTS:-$repo/.imagefactory/reports}"
mkdir -p "$reports"
cd "$repo"
git pull --ff-only --quiet
stamp="$(date -u +%Y%m%d-%H%M%S)"
exec flock --nonblock --conflict-exit-code 75 "$repo/.imagefactory.cron.lock" \
  imagefactory run --repo "$repo" --report-json "$reports/$stamp.json" --summary-md "$reports/$stamp.md"
