import os
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

# Page faults of allocating and filling a 64 MiB tensor, with huge pages (or not).
FAULTS = textwrap.dedent(
    """
    import resource, sys
    from viscy_utils import cpu_runtime
    if sys.argv[1] == "huge":
        cpu_runtime.enable_huge_page_buffers()
    import torch

    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(64 * 2**20 // 4)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    print(min(faults() for _ in range(3)))
    """
)
_TUNING_VARS = ("THP_MEM_ALLOC_ENABLE", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GOMP_SPINCOUNT")


def _faults(mode: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k not in _TUNING_VARS} | env
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True, env=environ)
    return int(out.stdout.split()[-1])


def _huge_pages_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not _huge_pages_available(), reason="no transparent huge pages on this system")
def test_huge_pages_back_large_tensors():
    # 64 MiB is 16384 pages of 4 KiB but only 32 huge pages of 2 MiB
    assert _faults("plain") > 10_000
    assert _faults("huge") < 4_000
    assert _faults("huge", THP_MEM_ALLOC_ENABLE="0") > 10_000  # the user's choice wins


# Bytes of a 64 MiB tensor that glibc served with a dedicated mmap (returned to the system on free).
MMAPPED = textwrap.dedent(
    """
    import ctypes, sys
    from viscy_utils import cpu_runtime
    getattr(cpu_runtime, sys.argv[1], lambda: None)()
    import torch

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    before = mallinfo2().hblkhd
    tensor = torch.empty(64 * 2**20, dtype=torch.uint8)
    print(mallinfo2().hblkhd - before)
    """
)


def _mmapped(mode: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k not in _TUNING_VARS} | env
    out = subprocess.run([sys.executable, "-c", MMAPPED, mode], capture_output=True, text=True, check=True, env=environ)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not _glibc(), reason="heap retention is a glibc setting")
@pytest.mark.parametrize("mode", ["retain_large_cpu_buffers", "tune_cpu_runtime"])
def test_large_buffers_come_from_the_reusable_heap(mode):
    assert _mmapped("none") >= 64 * 2**20  # glibc's default: a dedicated mapping, unmapped on free
    assert _mmapped(mode) == 0
    assert _mmapped(mode, MALLOC_TRIM_THRESHOLD_="131072") >= 64 * 2**20  # the user's setting wins


def test_retain_large_cpu_buffers_reports_whether_it_applied(monkeypatch):
    from viscy_utils.cpu_runtime import retain_large_cpu_buffers

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert retain_large_cpu_buffers() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert retain_large_cpu_buffers() is _glibc()


def test_settings_keep_an_explicit_choice(monkeypatch):
    from viscy_utils.cpu_runtime import enable_huge_page_buffers, quiet_idle_openmp_threads

    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    enable_huge_page_buffers()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    enable_huge_page_buffers()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"

    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    quiet_idle_openmp_threads()
    assert os.environ["GOMP_SPINCOUNT"] == "300000"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    quiet_idle_openmp_threads()
    assert "GOMP_SPINCOUNT" not in os.environ  # an explicit wait policy is not overridden either
    monkeypatch.delenv("OMP_WAIT_POLICY")
    quiet_idle_openmp_threads()
    assert os.environ["GOMP_SPINCOUNT"] == "0"


def test_cli_exposes_the_huge_page_switch():
    from viscy_utils import cli, cpu_runtime

    assert cli.enable_huge_page_buffers is cpu_runtime.enable_huge_page_buffers


def test_cli_tunes_the_cpu_only_when_asked(monkeypatch):
    from viscy_utils import cli

    calls = []
    monkeypatch.setattr(cli, "tune_cpu_runtime", lambda: calls.append(True))
    monkeypatch.delenv(cli.TUNE_CPU_ENV, raising=False)
    assert cli.split_tune_cpu(["fit", "-c", "a.yml"]) == (False, ["fit", "-c", "a.yml"])
    assert cli.split_tune_cpu(["fit", "--tune_cpu", "-c", "a.yml"]) == (True, ["fit", "-c", "a.yml"])
    assert cli.split_tune_cpu(["--tune-cpu", "predict"]) == (True, ["predict"])
    monkeypatch.setenv(cli.TUNE_CPU_ENV, "1")
    assert cli.split_tune_cpu(["fit"]) == (True, ["fit"])
    monkeypatch.setenv(cli.TUNE_CPU_ENV, "0")
    assert cli.split_tune_cpu(["fit"]) == (False, ["fit"])
    cli._setup_environment()
    assert calls == []
    cli._setup_environment(tune_cpu=True)
    assert calls == [True]
    torch.set_float32_matmul_precision("highest")  # _setup_environment sets "high" for the CLI


def test_importing_and_starting_the_command_lines_sets_nothing():
    """No tuning variable appears on import, on ``--help``, or on a subcommand run without the switch."""
    script = textwrap.dedent(
        """
        import os, sys
        import viscy_utils.cli, dynaclr.cli, viscy_data, viscy_transforms
        from viscy_utils.cli import run_cli
        run_cli(["--help"])
        import viscy_utils.cli as cli
        cli._setup_environment(*cli.split_tune_cpu(["fit"])[:1])
        print("SET:" + ",".join(k for k in sys.argv[1:] if k in os.environ))
        """
    )
    environ = {k: v for k, v in os.environ.items() if k not in _TUNING_VARS and k != "VISCY_TUNE_CPU"}
    out = subprocess.run(
        [sys.executable, "-c", script, *_TUNING_VARS], capture_output=True, text=True, check=True, env=environ
    )
    assert out.stdout.strip().splitlines()[-1] == "SET:"
    assert "--tune_cpu" in out.stdout  # documented in the top-level help
