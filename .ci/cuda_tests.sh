#!/usr/bin/env bash
# Every CUDA test of the workspace in one call, for a machine with a CUDA device (CI has none):
#   .ci/cuda_tests.sh            # after `uv sync --all-packages --all-extras`
#   .ci/cuda_tests.sh -x -k loss # extra arguments go to pytest
# The tests are those marked `cuda`; elsewhere they are skipped. Here a missing device is an error,
# not a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if uv --version >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi

"${UV[@]}" run --frozen python -c "
import sys, torch
if not torch.cuda.is_available():
    sys.exit('no CUDA device visible to torch ' + torch.__version__ + ': the cuda tests would all be skipped')
print('CUDA device:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)
"
export MPLBACKEND=Agg
# -m cuda replaces the default "-m 'not slow'" of pyproject.toml's addopts
"${UV[@]}" run --frozen pytest -m cuda -p no:cacheprovider "$@"
