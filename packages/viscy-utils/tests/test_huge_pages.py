import os
import subprocess
import sys
import textwrap

import pytest

# Page faults of allocating and filling a 64 MiB tensor, after the CLI's environment setup (or not).
PROBE = textwrap.dedent(
    """
    import resource, sys
    from viscy_utils.cli import enable_huge_page_buffers
    if sys.argv[1] == "cli":
        enable_huge_page_buffers()
    import torch

    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(64 * 2**20 // 4)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    print(min(faults() for _ in range(3)))
    """
)


def _faults(mode: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | env
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=environ)
    return int(out.stdout.split()[-1])


def _huge_pages_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _huge_pages_available(), reason="no transparent huge pages on this system")
def test_cli_environment_backs_large_tensors_with_huge_pages():
    # 64 MiB is 16384 pages of 4 KiB but only 32 huge pages of 2 MiB
    assert _faults("plain") > 10_000
    assert _faults("cli") < 4_000
    assert _faults("cli", THP_MEM_ALLOC_ENABLE="0") > 10_000  # the user's choice wins


def test_enable_huge_page_buffers_keeps_an_explicit_setting(monkeypatch):
    from viscy_utils.cli import enable_huge_page_buffers

    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    enable_huge_page_buffers()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    enable_huge_page_buffers()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"
