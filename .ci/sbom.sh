#!/usr/bin/env bash
# The image's software bill of materials: a CycloneDX 1.6 JSON document of every package the image
# installs (requirements.lock: name, version, PyPI purl, the locked hashes) and of the service itself
# (pyproject.toml). Usage: .ci/sbom.sh [output file, default build/sbom.cdx.json]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/sbom.cdx.json}
mkdir -p "$(dirname "$out")"
cyclonedx-py requirements requirements.lock --pyproject pyproject.toml --mc-type application \
  --sv 1.6 --of JSON --output-reproducible --validate -o "$out"
echo "sbom: $out ($(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["components"]))' "$out") components)"
