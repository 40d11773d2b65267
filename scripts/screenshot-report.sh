#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian's `chromium`) and saves a PNG screenshot,
# to check that the self-contained report (inline SVG, no network) renders.
#   scripts/screenshot-report.sh checkpoints/quickstart [out.png]
set -euo pipefail
dir=${1:?usage: $0 RUN_DIR [OUT.png]}
out=${2:-$dir/report.png}
html=$(cd "$dir" && pwd)/report.html
[ -f "$html" ] || { echo "$html: no such file (run the recipe first)" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "installing Debian's chromium …" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q chromium >/dev/null; else sudo apt-get install -y -q chromium >/dev/null; fi
  browser=$(command -v chromium)
fi
# Network off: the report must not need it.
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --proxy-server=127.0.0.1:9 \
  --window-size=1200,${HEIGHT:-4200} --screenshot="$out" "file://$html" 2>/dev/null
echo "$out"
