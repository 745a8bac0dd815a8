"""Scale run: pilot -> ingest -> split -> pack on a large pilot, each stage in its own process.

    python benchmarks/scale_run.py /tmp/scale_run --sizes 300 3000      # about 15-25 min on 2 cores
    python benchmarks/scale_run.py /tmp/scale_small --sizes 20 60       # smoke run, ~1 min

WORK_DIR must lie outside the repo (the stages then store absolute image paths, as for real data
kept elsewhere). For every size (examples per dataset; every dataset of stages/releases) the stages run as
`python -m stages.<name> ... --params WORK_DIR/n<size>/params.yaml` (dvc.yaml's command, every path explicit), and
each stage run records:
  wall time and examples/s (pilot: examples written; ingest/split: manifest records; pack: records
    processed),
  peak memory of the stage's process tree, sampled every 50 ms with psutil (sum over the process
    and all its descendants of RSS, and of PSS, which counts pages shared by the forked workers
    once), and the largest single process's exact peak RSS (ru_maxrss from wait4),
  the 1-minute load average before and after (other jobs share the CPU).
Then, between the smallest and the largest size: the peak-memory ratio per stage and the growth
per extra example (a stage holding images or shards in memory would grow by about an encoded
image, ~20-40 kB, per example), and the split stage's image hashing with 1 and 2 workers on the
largest pilot (images/s, speed-up; the splits must be byte-identical), judged against what the
machine delivers at that moment (2 busy loops vs 1: on a shared machine a second process may get
no extra core). Prints tables and, last, one JSON line with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import psutil  # noqa: E402
import yaml  # noqa: E402

from stages.common import stage_command  # noqa: E402
from stages.releases import DATASETS  # noqa: E402  the pilot writes every one, ingest reads every one

STAGES = ("pilot", "ingest", "split", "pack")
SAMPLE_SECONDS = 0.05
MB = 1024 * 1024


# ------------------------------------------------------------------ measuring one process tree


def tree_memory(root: psutil.Process) -> tuple[int, int, int]:
    """(sum of RSS, sum of PSS, number of processes) of `root` and its descendants, now."""
    rss = pss = count = 0
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except psutil.Error:  # exited between listing and reading
            continue
        rss, pss, count = rss + info.rss, pss + getattr(info, "pss", info.rss), count + 1
    return rss, pss, count


def run_measured(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Run `cmd`, sampling its process tree until it exits. Raises SystemExit on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "120"}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        peak_rss = peak_pss = max_procs = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:  # reaped here, so that wait4 gives us its rusage
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            rss, pss, count = tree_memory(root)
            peak_rss, peak_pss, max_procs = max(peak_rss, rss), max(peak_pss, pss), max(max_procs, count)
            time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime  # includes the workers it reaped
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "cores_used": round(cpu / seconds, 2),
            "peak_tree_rss_mb": round(peak_rss / MB, 1),
            "peak_tree_pss_mb": round(peak_pss / MB, 1),
            "max_process_rss_mb": round(usage.ru_maxrss / 1024, 1),  # kB on Linux; max over it and its reaped children
            "processes": max_procs, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


# ------------------------------------------------------------------ the pipeline at one size


def write_params(folder: Path, size: int) -> Path:
    """The repo's params.yaml with every path pointing into `folder` (the taxonomy stays the repo's)."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    pilot = folder / "pilot"
    params["pilot"].update(out=str(pilot), examples_per_dataset=size)
    params["ingest"].update(datasets={name: str(pilot / name) for name in DATASETS},
                            step2_manifest=None, step2_ocr=None,
                            manifest=str(folder / "Step_2/data_manifest.jsonl"), ocr=str(folder / "Step_2/ocr.jsonl"))
    params["split"].update(label_taxonomy=str(REPO_ROOT / "Step_3/label_taxonomy.json"),
                           splits=str(folder / "Step_3/splits.json"), report=str(folder / "Step_3/split_report.json"))
    params["pack"].update(output_dir=str(folder / "Step_3/shards"), stats=str(folder / "Step_3/stats.json"))
    params["releases"]["image_dirs"] = [str(pilot)]
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def run_size(work_dir: Path, size: int, workers: int) -> dict:
    folder = work_dir / f"n{size}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "logs").mkdir(parents=True)
    params = write_params(folder, size)
    commands = {stage: stage_command(stage, params) for stage in ("pilot", "ingest")}   # dvc.yaml's flags
    commands.update({stage: stage_command(stage, params) + ["--workers", str(workers)] for stage in ("split", "pack")})
    result = {}
    for stage in STAGES:
        print(f"  n={size}: {stage} ...", flush=True)
        result[stage] = run_measured(commands[stage], folder, folder / "logs" / f"{stage}.log")
    manifest = folder / "Step_2/data_manifest.jsonl"
    stats = json.loads((folder / "Step_3/stats.json").read_text(encoding="utf-8"))
    records = count_lines(manifest)
    examples = {"pilot": size * len(DATASETS), "ingest": records, "split": records, "pack": stats["total_examples"]}
    for stage in STAGES:
        result[stage]["examples"] = examples[stage]
        result[stage]["examples_per_s"] = round(examples[stage] / result[stage]["seconds"], 1)
    shards = sorted((folder / "Step_3/shards").rglob("*.tar"))
    result["data"] = {
        "records": records, "packed": stats["packed_examples"], "image_packed": stats["image_packed"],
        "pilot_mb": round(sum(p.stat().st_size for p in (folder / "pilot").rglob("*") if p.is_file()) / MB, 1),
        "shards": len(shards), "shards_mb": round(sum(p.stat().st_size for p in shards) / MB, 1),
        "packed_image_kb": round(sum(p.stat().st_size for p in shards if p.name.startswith("shard-"))
                                 / max(stats["image_packed"], 1) / 1024, 1)}
    return result


# ------------------------------------------------------------------ split hashing: 1 vs 2 workers


HASH_SNIPPET = """
from stages.cli import start
start()
import json, sys, time
from pathlib import Path
from stages.records import read_manifest
from stages.dedupe import hash_images
paths = sorted({r.image_path for r in read_manifest(sys.argv[1]) if r.image_path})
start = time.perf_counter()
hashes = hash_images(paths, Path("."), int(sys.argv[2]))
seconds = time.perf_counter() - start
print(json.dumps({"images": len(paths), "seconds": round(seconds, 2), "images_per_s": round(len(paths) / seconds, 1),
                  "ok": sum(h.status == "ok" for h in hashes)}))
"""


def _burn(seconds: float) -> None:
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def cpu_capacity(seconds: float = 1.5) -> dict:
    """What the machine gives right now: cores delivered to 1 and to 2 busy processes. On a shared
    machine 2 processes may get no more than 1 does; a worker speed-up can only be judged against it."""
    import multiprocessing

    start = time.perf_counter()
    _burn(seconds)
    one = seconds / (time.perf_counter() - start)
    start = time.perf_counter()
    with multiprocessing.Pool(2) as pool:
        pool.map(_burn, [seconds, seconds])
    two = 2 * seconds / (time.perf_counter() - start)
    return {"cores_for_1": round(one, 2), "cores_for_2": round(two, 2), "speedup": round(two / one, 2)}


def split_workers(work_dir: Path, size: int) -> dict:
    """hash_images alone with 1 and 2 workers, and the whole split stage with each (same output?)."""
    folder = work_dir / f"n{size}"
    params = folder / "params.yaml"
    out: dict = {"capacity_before": cpu_capacity()}
    for workers in (1, 2):
        log = folder / "logs" / f"hash_w{workers}.log"
        measured = run_measured([sys.executable, "-c", HASH_SNIPPET, str(folder / "Step_2/data_manifest.jsonl"),
                                 str(workers)], folder, log)
        hashing = json.loads(log.read_text(encoding="utf-8").strip().splitlines()[-1])
        splits = folder / f"Step_3/splits_w{workers}.json"
        stage = run_measured([*stage_command("split", params), "--workers", str(workers),
                              "--splits", str(splits), "--report", str(folder / f"Step_3/report_w{workers}.json")],
                             folder, folder / "logs" / f"split_w{workers}.log")
        out[f"workers_{workers}"] = {"hash": {**hashing, "peak_tree_rss_mb": measured["peak_tree_rss_mb"],
                                              "peak_tree_pss_mb": measured["peak_tree_pss_mb"],
                                              "cores_used": measured["cores_used"],
                                              "load_after": measured["load_after"]},
                                     "stage_seconds": stage["seconds"], "load_after": stage["load_after"]}
    out["capacity_after"] = cpu_capacity()
    w1, w2 = out["workers_1"], out["workers_2"]
    out["hash_speedup"] = round(w1["hash"]["seconds"] / w2["hash"]["seconds"], 2)
    out["stage_speedup"] = round(w1["stage_seconds"] / w2["stage_seconds"], 2)
    out["splits_identical"] = (folder / "Step_3/splits_w1.json").read_bytes() == \
        (folder / "Step_3/splits_w2.json").read_bytes() == (folder / "Step_3/splits.json").read_bytes()
    return out


# ------------------------------------------------------------------ report


def growth(results: dict[int, dict]) -> dict:
    """Peak-memory ratio largest/smallest size per stage, and kB of extra peak memory per extra example."""
    small, large = min(results), max(results)
    out = {}
    for stage in STAGES:
        a, b = results[small][stage], results[large][stage]
        extra = max(b["examples"] - a["examples"], 1)
        out[stage] = {"rss_ratio": round(b["peak_tree_rss_mb"] / a["peak_tree_rss_mb"], 2),
                      "pss_ratio": round(b["peak_tree_pss_mb"] / a["peak_tree_pss_mb"], 2),
                      "max_process_rss_ratio": round(b["max_process_rss_mb"] / a["max_process_rss_mb"], 2),
                      "pss_kb_per_extra_example":
                          round((b["peak_tree_pss_mb"] - a["peak_tree_pss_mb"]) * 1024 / extra, 2)}
    return out


def print_report(results: dict[int, dict], flat: dict, split_w: dict | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    if results:
        table = Table(title=f"Scale run on {os.cpu_count()} cores (tree = the stage process + its workers)")
        for column in ("size", "stage", "examples", "wall s", "examples/s", "cores used", "tree RSS MB",
                       "tree PSS MB", "max proc RSS MB", "procs", "load before/after"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for size, result in sorted(results.items()):
            for stage in STAGES:
                r = result[stage]
                table.add_row(str(size), stage, str(r["examples"]), f"{r['seconds']:.1f}", f"{r['examples_per_s']:.1f}",
                              f"{r['cores_used']:.2f}", f"{r['peak_tree_rss_mb']:.0f}", f"{r['peak_tree_pss_mb']:.0f}",
                              f"{r['max_process_rss_mb']:.0f}", str(r["processes"]),
                              f"{r['load_before']:.2f}/{r['load_after']:.2f}")
        console.print(table)
    if flat:
        small, large = min(results), max(results)
        ratios = Table(title=f"Peak memory, {large} vs {small} examples per dataset "
                             f"(packed image ~{results[large]['data']['packed_image_kb']:.0f} kB)")
        for column in ("stage", "tree RSS ratio", "tree PSS ratio", "max proc RSS ratio", "PSS kB / extra example"):
            ratios.add_column(column, justify="left" if column == "stage" else "right")
        for stage, g in flat.items():
            ratios.add_row(stage, f"{g['rss_ratio']:.2f}", f"{g['pss_ratio']:.2f}", f"{g['max_process_rss_ratio']:.2f}",
                           f"{g['pss_kb_per_extra_example']:.2f}")
        console.print(ratios)
    if split_w:
        w1, w2 = split_w["workers_1"], split_w["workers_2"]
        console.print(f"split image hashing ({w1['hash']['images']} images): 1 worker {w1['hash']['images_per_s']:.0f} "
                      f"images/s ({w1['hash']['cores_used']:.2f} cores used), 2 workers "
                      f"{w2['hash']['images_per_s']:.0f} images/s ({w2['hash']['cores_used']:.2f} cores) -> speed-up "
                      f"{split_w['hash_speedup']:.2f}x (whole split stage {w1['stage_seconds']:.1f} s -> "
                      f"{w2['stage_seconds']:.1f} s, {split_w['stage_speedup']:.2f}x); splits identical: "
                      f"{split_w['splits_identical']}; load average {os.getloadavg()[0]:.2f}; the machine's own "
                      f"speed-up for 2 busy loops vs 1: {split_w['capacity_before']['speedup']:.2f}x before, "
                      f"{split_w['capacity_after']['speedup']:.2f}x after")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("work_dir", type=Path, help="scratch folder outside the repo (n<size>/ is replaced)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 3000], help="examples per dataset")
    parser.add_argument("--workers", type=int, default=0, help="split/pack worker processes; 0 = all cores")
    parser.add_argument("--no-split-workers", action="store_true", help="skip the 1 vs 2 hashing workers comparison")
    parser.add_argument("--keep", action="store_true", help="keep the generated data (default: delete it at the end)")
    parser.add_argument("--split-workers-only", action="store_true",
                        help="only the 1 vs 2 hashing workers comparison, on the n<largest size> folder of an "
                             "earlier --keep run")
    args = parser.parse_args(argv)
    work_dir = args.work_dir.resolve()
    if work_dir == REPO_ROOT or REPO_ROOT in work_dir.parents:
        raise SystemExit(f"work dir {work_dir} is inside the repo; use a folder outside it (e.g. /tmp/scale_run)")
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.split_workers_only:
        split_w = split_workers(work_dir, max(args.sizes))
        print_report({}, {}, split_w)
        print(json.dumps({"cores": os.cpu_count(), "split_workers": split_w}, sort_keys=True))
        return
    started = time.perf_counter()
    results = {}
    for size in sorted(args.sizes):
        results[size] = run_size(work_dir, size, args.workers)
    split_w = None if args.no_split_workers else split_workers(work_dir, max(results))
    flat = growth(results) if len(results) > 1 else {}
    print_report(results, flat, split_w)
    summary = {"cores": os.cpu_count(), "workers": args.workers, "sizes": results, "growth": flat,
               "split_workers": split_w, "total_seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps(summary, sort_keys=True))
    if not args.keep:
        for size in results:
            shutil.rmtree(work_dir / f"n{size}", ignore_errors=True)


if __name__ == "__main__":
    main()
