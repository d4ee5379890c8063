#!/usr/bin/env bash
# Nightly factory run from cron, e.g.:  0 2 * * *  /opt/imagefactory/pipelines/cron.sh /srv/golden-images
# A second run while one is going is refused by the factory's own lock (exit 1, naming the holder);
# flock here also keeps two cron runs on this host from piling up.
set -euo pipefail
repo="${1:?usage: cron.sh REPOSITORY}"
cd "$repo"
git pull --ff-only --quiet
exec flock -n /tmp/imagefactory.lock imagefactory run --repo "$repo"
