"""Before/after comparison of the data-path benchmarks for issue 16 ("One data path"), in one run.

Runs, for two checkouts of the repository, each checkout's own copy of

- ``bench_multi_experiment_index.py`` (index build time and peak memory, positive sampling, cache reload),
- ``bench_multi_experiment_dataset.py`` (``MultiExperimentTripletDataset.__getitems__`` throughput),
- ``bench_multi_experiment_datamodule.py`` (``MultiExperimentDataModule`` train loader + transforms),

and ``__getitems__`` on the realistic 512 x 512 plates of ``realistic_plate.py`` in iohub's default layout
(unsharded, one compressed chunk per plane stack; code inlined here, public API only, since the "before"
checkout may predate ``realistic_plate.py``),

each in a fresh process with that checkout's own interpreter (its ``.venv``), alternating the two checkouts
(``before, after`` in even rounds, ``after, before`` in odd ones) so that a change of machine load hits both
alike, then prints mean +- sd per metric and the after/before ratio. The scripts time the same workload in
both checkouts (they differ only in how they reach the store handles), so the numbers are comparable.

Run, from the repository root (the "after" checkout)::

    uv run python benchmarks/compare_i16.py --before /tmp/i16-before --rounds 3

``--quick`` shrinks every workload (index: 2 x 16 FOVs instead of 2 x 256; fewer batches) to check that
the script works; its numbers say little. The "before" checkout needs its own environment
(``python3 -m uv sync --all-packages --all-extras`` inside it) or ``--before-python``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

AFTER = Path(__file__).resolve().parents[1]

#: benchmark -> (driver code run in benchmarks/ of a checkout, quick driver code)
DRIVERS = {
    "index": (
        "import bench_multi_experiment_index as b; b.main()",
        "import bench_multi_experiment_index as b; b.N_FOV_ROWS = b.N_FOV_COLS = 4; b.main()",
    ),
    "dataset": (
        "import bench_multi_experiment_dataset as b; b.main()",
        "import bench_multi_experiment_dataset as b; b.main(batch=32, repeats=4)",
    ),
    "datamodule": (
        "import bench_multi_experiment_datamodule as b; b.main()",
        "import bench_multi_experiment_datamodule as b; b.main(batches=3, batch_size=32)",
    ),
    # public API only (the "before" checkout has no patch reader and no realistic_plate.py): the realistic
    # 512 x 512 plates in iohub's default layout, one compressed chunk per plane stack (issue 18: "unsharded
    # plates: no slower than today"); {experiments} is the experiments file written by this script
    "unsharded": ("{unsharded}\nmain(seeds=3, batches=4)", "{unsharded}\nmain(seeds=1, batches=2)"),
}

#: the "unsharded" driver: batches of 64 random anchors + positives, 2 ch x Z 8 x 160 x 160, chunk cache off
UNSHARDED = """
import time
import numpy as np
from dynaclr.dataset import MultiExperimentTripletDataset
from dynaclr.experiment import ExperimentRegistry
from dynaclr.index import MultiExperimentIndex

def main(seeds, batches, batch_size=64):
    index = MultiExperimentIndex(ExperimentRegistry.from_yaml(EXPERIMENTS), slice(0, 8), (160, 160), (0.5, 1.0))
    dataset = MultiExperimentTripletDataset(index, tau_range_hours=(0.5, 1.0), cache_pool_bytes=0)
    rates = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        dataset.seed = seed
        draws = [rng.choice(len(dataset), batch_size, replace=False).tolist() for _ in range(batches + 1)]
        dataset.__getitems__(draws[0])  # opens the stores
        start = time.perf_counter()
        for draw in draws[1:]:
            dataset.__getitems__(draw)
        rates.append(batches * batch_size / (time.perf_counter() - start))
    print(f"realistic unsharded __getitems__: {np.mean(rates):.1f} samples/s (seeds {np.round(rates, 1).tolist()})")
"""

_NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"

#: metric name -> (benchmark, regex of its value in the benchmark's output, higher is better)
METRICS = {
    "index build (s)": ("index", rf"index build: {_NUMBER} s", False),
    "index build extra peak RSS (MB)": ("index", rf"extra peak RSS {_NUMBER} MB", False),
    "positive sampling (ms / batch of 64)": ("index", rf"positive sampling: {_NUMBER} ms", False),
    "index reload from cache (s)": ("index", rf"reload from cache: {_NUMBER} s", False),
    "__getitems__ (samples/s)": ("dataset", rf"__getitems__: {_NUMBER} samples/s", True),
    "__getitems__ / direct tensorstore": ("dataset", rf"ratio {_NUMBER}%", True),
    "DataModule loader + transforms (samples/s)": (
        "datamodule",
        rf"normalisation \+ augmentation: {_NUMBER} samples/s",
        True,
    ),
    "__getitems__ realistic unsharded 512 (samples/s)": (
        "unsharded",
        rf"unsharded __getitems__: {_NUMBER} samples/s",
        True,
    ),
}


def checkout_python(checkout: Path, explicit: str | None) -> str:
    """Return the interpreter that runs ``checkout``'s code (its ``.venv`` unless one is given)."""
    if explicit:
        return explicit
    python = checkout / ".venv" / "bin" / "python"
    if not python.exists():
        sys.exit(
            f"{checkout} has no .venv: run `python3 -m uv sync --all-packages --all-extras` there, "
            "or pass its interpreter with --before-python / --after-python"
        )
    return str(python)


def unsharded_driver() -> str:
    """The "unsharded" driver: reads the realistic 512 x 512 plates (made once by ``realistic_plate.py``)."""
    import dataclasses

    import yaml
    from realistic_plate import PlateSpec, build_experiments, plate_dir

    spec = PlateSpec(size=512)
    configs = build_experiments(spec)["original"]
    experiments = plate_dir(spec) / "experiments_original.yml"
    experiments.write_text(yaml.safe_dump({"experiments": [dataclasses.asdict(c) for c in configs]}))
    return f"EXPERIMENTS = {str(experiments)!r}\n" + UNSHARDED


def run_benchmark(python: str, checkout: Path, code: str, timeout: float) -> str:
    """Run one benchmark driver in a fresh process inside ``checkout/benchmarks`` and return its stdout."""
    probe = "import dynaclr, viscy_data; print('CODE_FROM', dynaclr.__file__, viscy_data.__file__); "
    done = subprocess.run(
        [python, "-c", probe + code],
        cwd=checkout / "benchmarks",
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{code!r} failed in {checkout} (exit {done.returncode}):\n{done.stderr[-3000:]}")
    # the packages must come from the checkout under test, never from the other one
    sources = re.search(r"CODE_FROM (\S+) (\S+)", done.stdout).groups()
    if not all(Path(source).resolve().is_relative_to(checkout) for source in sources):
        raise RuntimeError(f"{python} imports {sources}, not the code of {checkout}")
    return done.stdout


def parse(benchmark: str, output: str) -> dict[str, float]:
    """Read the metrics of ``benchmark`` from its printed output."""
    values = {}
    for name, (bench, pattern, _) in METRICS.items():
        if bench != benchmark:
            continue
        match = re.search(pattern, output)
        if match is None:
            raise RuntimeError(f"no '{name}' in the output of the {benchmark} benchmark:\n{output}")
        values[name] = float(match.group(1).replace(",", ""))
    return values


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} +- {sd:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the change")
    parser.add_argument("--after", type=Path, default=AFTER, help="checkout after the change (default: this one)")
    parser.add_argument("--before-python", help="interpreter for the before checkout (default: its .venv)")
    parser.add_argument("--after-python", help="interpreter for the after checkout (default: its .venv)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each benchmark per checkout")
    parser.add_argument("--benchmarks", nargs="+", choices=sorted(DRIVERS), default=list(DRIVERS))
    parser.add_argument("--quick", action="store_true", help="small workloads, to check the script works")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one benchmark run may take")
    parser.add_argument("--show-output", action="store_true", help="print each benchmark's full output")
    args = parser.parse_args(argv)

    checkouts = {
        "before": (args.before.resolve(), checkout_python(args.before.resolve(), args.before_python)),
        "after": (args.after.resolve(), checkout_python(args.after.resolve(), args.after_python)),
    }
    results: dict[str, dict[str, list[float]]] = {label: {m: [] for m in METRICS} for label in checkouts}
    unsharded = unsharded_driver() if "unsharded" in args.benchmarks else ""
    for round_ in range(args.rounds):
        order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
        for benchmark in args.benchmarks:
            code = DRIVERS[benchmark][1 if args.quick else 0].replace("{unsharded}", unsharded)
            for label in order:
                checkout, python = checkouts[label]
                start = time.perf_counter()
                output = run_benchmark(python, checkout, code, args.timeout)
                values = parse(benchmark, output)
                for name, value in values.items():
                    results[label][name].append(value)
                print(
                    f"round {round_ + 1}/{args.rounds} {benchmark:<10} {label:<6} "
                    f"({time.perf_counter() - start:.0f} s): " + ", ".join(f"{k} {v:g}" for k, v in values.items()),
                    flush=True,
                )
                if args.show_output:
                    print(textwrap.indent(output.split("\n", 1)[1].rstrip(), "    "), flush=True)

    print(f"\nbefore: {checkouts['before'][0]}\nafter:  {checkouts['after'][0]}")
    print(f"{args.rounds} rounds, alternating{' (quick workloads)' if args.quick else ''}; mean +- sd\n")
    header = f"| {'metric':<44} | {'before':>18} | {'after':>18} | {'after/before':>12} | better |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, (benchmark, _, higher_is_better) in METRICS.items():
        if benchmark not in args.benchmarks:
            continue
        before, after = results["before"][name], results["after"][name]
        ratio = statistics.fmean(after) / statistics.fmean(before) if statistics.fmean(before) else float("nan")
        better = "higher" if higher_is_better else "lower"
        print(f"| {name:<44} | {summary(before):>18} | {summary(after):>18} | {ratio:>12.2f} | {better:<6} |")


if __name__ == "__main__":
    main()
