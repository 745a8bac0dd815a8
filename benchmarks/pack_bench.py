"""Benchmark of the pack stage on generated meme-like images (800x800 JPEG, ~110 kB).

    python benchmarks/pack_bench.py [--examples 600] [--rss-sizes 150 1500] [--work-dir /tmp/pack_bench]

Prints, in one run:
  (a) pack examples/s with all cores (steady state: the one-off ~1 s import of webdataset/torch
      is excluded)
  (b) the floor: a plain single-core Pillow loop doing the same decode + resize + encode, and
      the same loop with pack's JPEG draft decoding (DCT-domain downscale, as Image.thumbnail)
  (c) pack / (floor x cores)                                   goal >= 0.9
      also against the draft floor (pack's own overhead) and against the draft floor run in
      `cores` plain processes (what the machine's cores deliver at that moment)
  (d) speed-up from 1 worker to all cores                      goal >= 1.8 on 2 cores
  (e) peak RSS of the stage at two dataset sizes 10x apart, each in a fresh child process
      (getrusage of the child's main process; psutil samples of its workers and the tree sum)
                                                               goal: ratio <= 1.2
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps  # noqa: E402

from stages.images import ImageSpec  # noqa: E402
from stages.pack import PackConfig, pack, resolve_workers  # noqa: E402

SIDE = 800
BACKGROUNDS = 16
WORDS = "when you finally get the joke but everyone already left the chat and nobody cares anyway".split()


# ------------------------------------------------------------------ data


def background(seed: int) -> Image.Image:
    """A photo-like picture: gradient, blurred blobs and sensor noise (compresses like a photo)."""
    rng = random.Random(seed)
    im = Image.linear_gradient("L").resize((SIDE, SIDE)).convert("RGB")
    im = Image.merge("RGB", [band.point(lambda v, k=rng.uniform(0.3, 1.0): int(v * k)) for band in im.split()])
    draw = ImageDraw.Draw(im)
    for _ in range(14):
        x, y, r = rng.randrange(SIDE), rng.randrange(SIDE), rng.randrange(30, 220)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randrange(256) for _ in range(3)))
    im = im.filter(ImageFilter.GaussianBlur(4))
    noise = Image.effect_noise((SIDE, SIDE), 18).convert("RGB")
    return Image.blend(im, noise, 0.12)


def meme(index: int, backgrounds: list[Image.Image]) -> tuple[bytes, str]:
    """A distinct meme: a background with impact-style top and bottom text; (jpeg bytes, caption)."""
    rng = random.Random(index)
    im = backgrounds[index % len(backgrounds)].copy()
    top = " ".join(rng.choice(WORDS) for _ in range(4)).upper()
    bottom = f"{' '.join(rng.choice(WORDS) for _ in range(3)).upper()} #{index}"
    draw, font = ImageDraw.Draw(im), ImageFont.load_default(size=56)
    for y, line in ((30, top), (SIDE - 100, bottom)):
        draw.text((30, y), line, font=font, fill="white", stroke_width=4, stroke_fill="black")
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue(), f"{top} {bottom}"


def _write_memes(args) -> list[str]:
    folder, indices = args
    backgrounds = [background(seed) for seed in range(BACKGROUNDS)]
    captions = []
    for index in indices:
        data, caption = meme(index, backgrounds)
        (Path(folder) / f"{index:06d}.jpg").write_bytes(data)
        captions.append(caption)
    return captions


def make_images(folder: Path, n: int) -> dict[int, str]:
    """n distinct meme images (cached in `folder`); returns their captions by index."""
    captions_file = folder / "captions.json"
    if captions_file.exists():
        return {int(k): v for k, v in json.loads(captions_file.read_text()).items()}
    (folder / "img").mkdir(parents=True, exist_ok=True)
    cores = resolve_workers(0)
    jobs = [(str(folder / "img"), range(start, n, cores)) for start in range(cores)]
    with multiprocessing.Pool(cores) as pool:
        per_job = pool.map(_write_memes, jobs)
    captions = {index: caption for (_, indices), caps in zip(jobs, per_job) for index, caption in zip(indices, caps)}
    captions_file.write_text(json.dumps(captions))
    return captions


def write_inputs(folder: Path, images: Path, captions: dict[int, str], n: int) -> dict[str, Path]:
    """Manifest, OCR and splits for the first n images, in the Step 2/3 formats."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"manifest": folder / "manifest.jsonl", "ocr": folder / "ocr.jsonl", "splits": folder / "splits.json"}
    splits, rng = {}, random.Random(0)
    with open(paths["manifest"], "w") as manifest, open(paths["ocr"], "w") as ocr:
        for index in range(n):
            example_id = f"hateful_memes_train_{index:06d}"
            image_path = str(images / f"{index:06d}.jpg")
            head = {"id": example_id, "dataset": "hateful_memes", "split": "train", "image_path": image_path}
            manifest.write(json.dumps({**head, "text_raw": None, "labels_raw": {"label": rng.randrange(2)}}) + "\n")
            lines = [{"text": captions[index], "conf": None, "bbox": None}]
            ocr.write(json.dumps({**head, "ocr": {"lines": lines, "source": "dataset_transcription"}}) + "\n")
            splits[example_id] = rng.choices(("train", "val", "test"), (8, 1, 1))[0]
    paths["splits"].write_text(json.dumps(splits, sort_keys=True))
    return paths


def config_for(paths: dict[str, Path], out: Path, workers: int) -> PackConfig:
    return PackConfig(manifest=paths["manifest"], ocr=paths["ocr"], output_dir=out / "shards", stats=out / "stats.json",
                      label_taxonomy=REPO_ROOT / "Step_3" / "label_taxonomy.json", splits=paths["splits"],
                      image=ImageSpec(), examples_per_shard=5000, workers=workers,
                      image_dirs=(paths["manifest"].parent.parent,))   # the work dir: inputs and images


# ------------------------------------------------------------------ measurements


def cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (the Pool's workers, once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(run, n: int) -> tuple[float, float]:
    """(examples per wall-clock second, CPU milliseconds per example) of run()."""
    cpu, start = cpu_seconds(), time.perf_counter()
    run()
    return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n * 1000


def pack_run(config: PackConfig, n: int) -> None:
    stats = pack(config)
    assert stats["packed_examples"] == n, stats["failures"]
    shutil.rmtree(config.output_dir)


def floor_run(files: list[Path], draft: bool, spec: ImageSpec = ImageSpec()) -> None:
    """The plain Pillow loop: decode, orient, RGB, bicubic resize, JPEG encode — one core."""
    for path in files:
        with Image.open(path) as im:
            if draft:
                im.draft("RGB", (spec.image_size, spec.image_size))
            side = spec.image_size
            im = ImageOps.exif_transpose(im).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            im.save(io.BytesIO(), "JPEG", quality=spec.jpeg_quality)


def peak_rss(paths: dict[str, Path], out: Path) -> dict[str, float]:
    """Run the stage in a fresh child; peak RSS (MB) of the child, its largest worker, and the tree sum."""
    import psutil

    cmd = [sys.executable, __file__, "--rss-child", "--manifest", str(paths["manifest"]), "--ocr", str(paths["ocr"]),
           "--splits", str(paths["splits"]), "--output-dir", str(out / "shards"), "--stats", str(out / "stats.json"),
           "--label-taxonomy", str(REPO_ROOT / "Step_3" / "label_taxonomy.json"), "--workers", "0",
           "--image-dirs", str(paths["manifest"].parent.parent)]
    child = psutil.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    tree_peak, worker_peak, done = 0, 0, threading.Event()

    def sample() -> None:
        nonlocal tree_peak, worker_peak
        while not done.is_set():
            try:
                workers = [p.memory_info().rss for p in child.children(recursive=True)]
                tree_peak = max(tree_peak, child.memory_info().rss + sum(workers))
                worker_peak = max([worker_peak, *workers])
            except psutil.Error:
                pass
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"pack child failed (exit {child.returncode})")
    shutil.rmtree(out, ignore_errors=True)
    return {**json.loads(stdout.strip().splitlines()[-1]), "largest_worker_mb": worker_peak / 2**20,
            "tree_sum_mb": tree_peak / 2**20}


def rss_child(pack_argv: list[str]) -> None:
    """Child mode: run the stage, then report this process's peak RSS (getrusage). Workers are
    sampled by the parent with psutil: getrusage(RUSAGE_CHILDREN) would also count the helper
    subprocesses torch's import forks from the 500 MB main process."""
    from stages import cli
    from stages.pack import main as pack_main

    cli.run("pack", pack_main, pack_argv)
    print(json.dumps({"main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def parallel_floor_run(files: list[Path], cores: int) -> None:
    """The floor loop in `cores` plain processes (no pack machinery): what this machine's cores
    deliver right now, to tell pack's overhead from cores taken by other processes."""
    procs = [multiprocessing.Process(target=floor_run, args=(files[i::cores], True)) for i in range(cores)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--rss-child"]:
        return rss_child(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=600, help="examples for the speed runs")
    p.add_argument("--rss-sizes", type=int, nargs=2, default=(150, 1500), help="two dataset sizes (10x apart)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the best of each is kept")
    p.add_argument("--work-dir", default="/tmp/pack_bench", help="generated data (cached) and scratch output")
    args = p.parse_args(argv)
    work, cores = Path(args.work_dir), resolve_workers(0)
    big = max(args.examples, *args.rss_sizes)
    t0 = time.perf_counter()
    images = work / f"images_{big}"
    captions = make_images(images, big)
    data = write_inputs(work / "inputs_speed", images / "img", captions, args.examples)
    files = sorted((images / "img").glob("*.jpg"))[: args.examples]
    mean_kb = sum(f.stat().st_size for f in files) / len(files) / 1024
    print(f"data: {big} distinct {SIDE}x{SIDE} JPEG memes, mean {mean_kb:.0f} kB ({time.perf_counter() - t0:.0f} s to "
          f"generate or load); speed runs on the first {args.examples}; {cores} cores; output 384x384 JPEG q95")

    import webdataset  # noqa: F401  (the one-off import, ~1 s, stays out of the timings)

    load_before = os.getloadavg()[0]

    # Rounds interleave the runs and keep each one's best: other processes on a shared machine
    # then bias every figure alike instead of whichever run they happened to overlap.
    rate: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}
    runs = {"floor": lambda: floor_run(files, draft=True), "floor_full": lambda: floor_run(files, draft=False),
            "floor_parallel": lambda: parallel_floor_run(files, cores),
            "one": lambda: pack_run(config_for(data, work / "run", 1), args.examples),
            "every": lambda: pack_run(config_for(data, work / "run", cores), args.examples)}
    for _ in range(args.rounds):
        for name, run in runs.items():
            wall, cpu = timed(run, args.examples)
            rate[name], cpu_ms[name] = max(rate.get(name, 0.0), wall), min(cpu_ms.get(name, 1e9), cpu)
    plain, matched, one, every = rate["floor_full"], rate["floor"], rate["one"], rate["every"]
    speedup = every / one
    load_after = os.getloadavg()[0]
    busy = "  (BUSY MACHINE: wall-clock figures are understated)" if load_before > 0.5 * cores else ""
    print(f"best of {args.rounds} interleaved rounds; 1-min load average before/after: {load_before:.2f} / "
          f"{load_after:.2f}{busy}")
    print(f"(a) pack, {cores} workers:                  {every:7.1f} examples/s  "
          f"({cpu_ms['every']:.2f} CPU ms/example)")
    print(f"(b) floor, plain Pillow loop, 1 core:    {plain:7.1f} images/s    "
          f"({cpu_ms['floor_full']:.2f} CPU ms/image)")
    print(f"    same loop with pack's JPEG draft decode: {matched:5.1f} images/s    "
          f"({cpu_ms['floor']:.2f} CPU ms/image)")
    print(f"(c) pack / (plain floor x {cores} cores):     {every / (plain * cores):7.2f}   goal >= 0.9  "
          f"{verdict(every / (plain * cores) >= 0.9)}")
    print(f"    pack / (draft floor x {cores} cores):     {every / (matched * cores):7.2f}   (pack's overhead alone; "
          f"CPU time draft floor/pack {cpu_ms['floor'] / cpu_ms['every']:.2f})")
    print(f"    the draft floor in {cores} plain processes: {rate['floor_parallel']:.1f} images/s "
          f"(= {rate['floor_parallel'] / matched:.2f} x 1 core: what the cores give right now); "
          f"pack / that: {every / rate['floor_parallel']:.2f}")
    print(f"(d) speed-up 1 -> {cores} workers:              {speedup:7.2f}   ({one:.1f} -> {every:.1f} examples/s)  "
          f"goal >= 1.8 on 2 cores  {verdict(speedup >= 1.8)}")
    small, large = sorted(args.rss_sizes)
    rss = {}
    for n in (small, large):
        rss[n] = peak_rss(write_inputs(work / f"inputs_{n}", images / "img", captions, n), work / "rss_run")
    for key, label in (("main_mb", "main process"), ("largest_worker_mb", "largest worker"),
                       ("tree_sum_mb", "process tree sum")):
        r = rss[large][key] / rss[small][key]
        print(f"(e) peak RSS {label:17s} {small:5d} ex: {rss[small][key]:6.0f} MB   {large:5d} ex: "
              f"{rss[large][key]:6.0f} MB   ratio {r:.2f}  goal <= 1.2  {verdict(r <= 1.2)}")


if __name__ == "__main__":
    main()
