"""End to end: the README's `dvc repro` in a fresh clone, on the built-in pilot.

One module-scoped clone and one full pipeline run (train.epochs 1, 128-pixel vision inputs) are
shared by every test here; the tests run in file order on that clone, each leaving it as it found it:
  - the first run ran every stage, printed no wall of warnings and left DVC outputs out of git; fuse
    fused the memes, left text-only examples to the text expert, and ignores test labels when fitting;
  - a second `dvc repro`, a touch of every file, and the bytecode and editor files a user's Python
    and editor leave in the code folders run nothing (every command here runs with bytecode on);
  - a train param puts only the two trainings out of date (`dvc status`, `dvc repro --dry`; the
    experiment test is its real rerun); a pack param reruns pack for real and then puts only the
    two trainings out of date; going back restores pack from the run-cache, running nothing;
  - a failing stage leaves dvc.lock and the other stages' outputs as they were, `dvc checkout
    Step_3/shards` brings its removed outputs back, and once the cause is fixed nothing recomputes;
  - the README's other commands as a user types them: `dvc dag`, `python -m stages.<name> --help`,
    `python -m stages.ingest --dataset ...`, `dvc push`/`dvc pull` through a local-folder remote into
    a second clone with a shared cache, `python -m pytest -m "not slow"` (collection only), the three
    quick benchmark scripts at tiny sizes;
  - the Step 4 notebook runs top to bottom, loading the experts, then retraining them;
  - a raw release versioned with `dvc add Datasets/<name>` comes back in a second clone with `dvc pull`;
  - the queued sweep `dvc exp run --queue -S 'train.learning_rate=1e-5,3e-5'` + `dvc queue start`
    runs both experiments, side by side in the README's `dvc exp show` command;
  - `dvc exp run -S train.epochs=2` reruns only the trainings and fuse; `dvc exp show` (within 200
    columns), `dvc metrics diff` and `dvc plots diff` (a page that loads nothing remote) show the
    params, headline metrics and curves that matter; every metrics file holds at most 40 numbers.

The clone is `git clone` of this repo's HEAD plus its uncommitted changes (modified, deleted and
untracked-but-not-ignored files, never files inside a cached DVC output), committed in the clone:
the test exercises what will land, and fails if the pipeline needs a git-ignored file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stages.common import dvc_yaml as resolved_dvc_yaml
from tests.test_plots_page import remote_references

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "Step_4/step4_unimodal_experts.ipynb"
# One epoch and 128-pixel vision inputs keep the trainings short; the rest as params.yaml says
# (the pilot at 60 examples per dataset).
TEST_PARAMS = {"train": {"epochs": 1}, "vision": {"image_size": 128}}
QUICK_NOTEBOOK_TRAINING = 'params["vision"]["image_size"] = 64   # injected by tests/test_pipeline.py: a quick run\n'

MAX_WARNING_LINES_PER_STAGE = 10
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "pipeline test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
                "GIT_COMMITTER_NAME": "pipeline test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}


# ---------------------------------------------------------------- helpers

def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 900,
        columns: int = 120) -> subprocess.CompletedProcess:
    """Run a command, stdout and stderr together; on an unexpected exit code fail with its output.
    Python writes bytecode, as a user's does (the machines here set PYTHONDONTWRITEBYTECODE)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(GIT_IDENTITY, PYTHONUNBUFFERED="1", COLUMNS=str(columns))
    result = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited with {result.returncode}:\n{result.stdout[-6000:]}")
    return result


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], repo, check=check)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo).stdout


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+)'", output))


def skipped_stages(output: str) -> set[str]:
    return set(re.findall(r"Stage '([\w-]+)' didn't change, skipping", output))


def restored_stages(output: str) -> set[str]:
    return set(re.findall(r"Stage '([\w-]+)' is cached - skipping run, checking out outputs", output))


def digest(path: Path) -> dict[str, str]:
    """sha256 of every file under `path` (or of the file), by relative path; {} when absent."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def stage_names(repo: Path) -> list[str]:
    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def declared_outputs(dvc_yaml: Path) -> tuple[list[str], list[str]]:
    """(cached outputs, uncached outputs) of every stage: outs, metrics and plots entries."""
    cached, uncached = [], []
    for stage in resolved_dvc_yaml(dvc_yaml.parent)["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                (cached if (options or {}).get("cache", True) else uncached).append(path)
    return cached, uncached


def inside(path: str, folders: list[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def clone_working_tree(source: Path, dest: Path) -> None:
    """`git clone` of source's HEAD, then source's uncommitted changes on top (modified, deleted and
    untracked-but-not-ignored files; never files inside a cached DVC output)."""
    if run(["git", "rev-parse", "--verify", "HEAD"], source, check=False).returncode != 0:
        pytest.skip(f"{source} is not a git checkout with a commit")
    run(["git", "clone", "--quiet", "--no-hardlinks", str(source), str(dest)], source.parent)
    cached_outs, _ = declared_outputs(source / "dvc.yaml")
    changed = git(source, "ls-files", "-z", "--modified", "--others", "--exclude-standard").split("\0")
    for rel in filter(None, changed):
        if inside(rel, cached_outs):
            continue
        if (source / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, dest / rel)
        else:
            (dest / rel).unlink(missing_ok=True)   # deleted in the working tree


def set_params(repo: Path, changes: dict[str, dict]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for group, values in changes.items():
        params[group].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@contextlib.contextmanager
def changed_params(repo: Path, changes: dict[str, dict]):
    """params.yaml with `changes` inside the block; the original bytes are back afterwards."""
    original = (repo / "params.yaml").read_bytes()
    set_params(repo, changes)
    try:
        yield
    finally:
        (repo / "params.yaml").write_bytes(original)


def stage_logs(output: str) -> dict[str, str]:
    """`dvc repro` output cut into each stage's part."""
    parts = re.split(r"^Running stage '([\w-]+)':$", output, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def warning_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(r"\bWARNING\b|Warning\b|warnings\.warn", line)]


@dataclass(frozen=True)
class Pipeline:
    repo: Path
    first_run: str                # `dvc repro` output in the fresh clone
    status_after_run: list[str]   # `git status --porcelain` lines right after it
    seconds: float


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Pipeline:
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    clone_working_tree(REPO_ROOT, repo)
    for key, value in (("user.name", "pipeline test"), ("user.email", "test@example.invalid")):
        git(repo, "config", key, value)   # dvc exp commits need an identity even on a bare machine
    set_params(repo, TEST_PARAMS)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "pipeline under test")
    run([sys.executable, "-m", "stages.plots_page"], repo)   # the quick start's offline plots page (git-ignored)
    start = time.perf_counter()
    first = dvc(repo, "repro")
    seconds = time.perf_counter() - start
    status = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    git(repo, "add", "-A")   # what a user commits after `dvc repro`: dvc.lock, metrics, dvc's .gitignore lines
    git(repo, "commit", "--quiet", "-m", "dvc repro")
    print(f"\nfirst dvc repro in the fresh clone: {seconds:.0f} s")
    return Pipeline(repo, first.stdout, status, seconds)


def assert_clean(repo: Path) -> None:
    """Workspace = the clone's HEAD (dvc.lock, params and metrics as committed)."""
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


# ---------------------------------------------------------------- dvc repro

def test_repro_in_a_fresh_clone_runs_every_stage(pipeline):
    assert ran_stages(pipeline.first_run) == set(stage_names(pipeline.repo))
    for name in ("text", "vision"):
        model = pipeline.repo / f"Step_4/models/{name}_expert"
        assert (model / "model.safetensors").is_file() and (model / "config.json").is_file()
        metrics = json.loads((pipeline.repo / f"Step_4/metrics/{name}.json").read_text())
        report = json.loads((pipeline.repo / f"Step_4/reports/{name}.json").read_text())
        assert report["epochs"] == 1 and metrics["epochs_run"] == report["epochs_run"] == 1
        for split in ("val", "test"):
            assert 0 <= metrics[split]["f1_macro"] <= 1 and metrics[split]["support"] > 0
            assert metrics[split]["f1_macro"] == report[split]["f1_macro"]
    assert_pilot_fusion(pipeline.repo)


def assert_pilot_fusion(repo: Path) -> None:
    """fuse on the pilot's predictions: one row per example either expert scored, memes fused, text-only
    datasets (and the diagnostic suite) by the text expert alone, counted; rerun on copies whose test
    labels are flipped, the same weights."""
    expert_ids = {name: {json.loads(line)["id"] for line in (repo / f"Step_4/predictions/{name}.jsonl").open()}
                  for name in ("text", "vision")}
    rows = [json.loads(line) for line in (repo / "Step_4/predictions/fusion.jsonl").open()]
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) and set(ids) == expert_ids["text"] | expert_ids["vision"]
    for row in rows:
        assert row["experts"] == [name for name in ("text", "vision") if row["id"] in expert_ids[name]]
        assert 0 <= row["probs"]["abuse_hate"] <= 1
    metrics = json.loads((repo / "Step_4/metrics/fusion.json").read_text())
    assert metrics["examples"]["fused"] == len(expert_ids["text"] & expert_ids["vision"]) > 0
    assert metrics["examples"]["text_alone_no_image"] == len(expert_ids["text"] - expert_ids["vision"]) > 0
    assert min(metrics["abuse_hate"]["weights"].values()) >= 0
    report = json.loads((repo / "Step_4/reports/fusion.json").read_text())
    assert report["examples"]["hatecheck"]["fused"] == 0 and report["examples"]["hateful_memes"]["fused"] > 0

    flipped = repo / "flipped"   # test labels flipped in both experts' files: the fit must not move
    flipped.mkdir()
    for name in ("text", "vision"):
        lines = [json.loads(line) for line in (repo / f"Step_4/predictions/{name}.jsonl").open()]
        (flipped / f"{name}.jsonl").write_text("".join(
            json.dumps({**row, "labels": {f: 1 - y if row["split"] == "test" and y in (0, 1) else y
                                          for f, y in row["labels"].items()}}) + "\n"
            for row in lines))
    run([sys.executable, "-m", "stages.fuse", "--text-predictions", "flipped/text.jsonl", "--vision-predictions",
         "flipped/vision.jsonl", "--fuse-predictions", "flipped/fusion.jsonl", "--metrics", "flipped/metrics.json",
         "--fuse-report", "flipped/report.json"], repo)
    flipped_report = json.loads((flipped / "report.json").read_text())
    shutil.rmtree(flipped)
    assert flipped_report["model"] == report["model"]
    assert flipped_report["scores"]["abuse_hate"]["test"] != report["scores"]["abuse_hate"]["test"]


def test_a_fresh_clone_reproduces_the_committed_results(tmp_path):
    """The README's quick start as is (default params): `dvc repro` in a fresh clone leaves `git
    status` clean, i.e. dvc.lock, the metrics and the plot data equal the committed ones byte for
    byte, wherever and beside whatever it runs (stages/threads.py)."""
    repo = tmp_path / "repo"
    clone_working_tree(REPO_ROOT, repo)
    if git(repo, "status", "--porcelain", "--untracked-files=all"):
        pytest.skip("uncommitted changes: the committed results cannot match them")
    start = time.perf_counter()
    dvc(repo, "repro")
    print(f"\nquick start `dvc repro` (default params) in a fresh clone: {time.perf_counter() - start:.0f} s")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_stage_logs_are_quiet(pipeline):
    logs = stage_logs(pipeline.first_run)
    assert "Traceback" not in pipeline.first_run
    noisy = {stage: lines for stage, lines in ((s, warning_lines(log)) for s, log in logs.items())
             if len(lines) > MAX_WARNING_LINES_PER_STAGE}
    assert not noisy, f"stages printing more than {MAX_WARNING_LINES_PER_STAGE} warning lines: {noisy}"
    for name in ("train_text", "train_vision"):   # a rich summary table, no library chatter
        assert "f1_macro" in logs[name] and "━" in logs[name]
        assert not re.search(r"UserWarning|FutureWarning|Some weights|You should probably TRAIN", logs[name])


def test_dvc_outputs_stay_out_of_git(pipeline):
    repo = pipeline.repo
    cached, uncached = declared_outputs(repo / "dvc.yaml")
    # after `dvc repro`: only dvc.lock, uncached metrics and plot data, and the .gitignore lines dvc adds
    for line in pipeline.status_after_run:
        path = line[3:]
        if path.endswith(".gitignore"):
            folder = str(Path(path).parent)
            for entry in filter(None, (repo / path).read_text().splitlines()):
                assert inside(f"{folder}/{entry.strip('/')}", cached), f"{path}: unexpected entry {entry}"
        else:
            assert path == "dvc.lock" or inside(path, uncached), f"dvc repro left {line!r} for git"
    for out in cached:
        assert git(repo, "ls-files", out) == "", f"{out} is a DVC output but tracked by git"
        assert run(["git", "check-ignore", "-q", out], repo, check=False).returncode == 0, f"{out} is not git-ignored"


def test_second_repro_runs_nothing(pipeline):
    result = dvc(pipeline.repo, "repro")
    assert ran_stages(result.stdout) == set()
    assert skipped_stages(result.stdout) == set(stage_names(pipeline.repo))
    assert "Data and pipelines are up to date." in dvc(pipeline.repo, "status").stdout
    assert_clean(pipeline.repo)


def test_touching_files_without_changing_them_runs_nothing(pipeline):
    later = time.time() + 60
    for path in pipeline.repo.rglob("*"):
        if path.is_file() and not {".git", ".dvc"} & set(path.relative_to(pipeline.repo).parts):
            os.utime(path, (later, later))
    assert "Data and pipelines are up to date." in dvc(pipeline.repo, "status").stdout
    assert ran_stages(dvc(pipeline.repo, "repro").stdout) == set()
    assert_clean(pipeline.repo)


def test_bytecode_and_editor_files_never_make_a_stage_dirty(pipeline):
    """A user's Python writes __pycache__/ beside every module it imports, editors leave swap and
    backup files: none of them is a change to a stage (.dvcignore)."""
    repo = pipeline.repo
    modules = sorted(".".join(p.relative_to(repo).with_suffix("").parts).removesuffix(".__init__")
                     for p in (repo / "stages").rglob("*.py"))
    run([sys.executable, "-c", "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)],
        repo)
    for folder in ("stages", "stages/releases", "stages/training"):   # the last two are folder deps of stages
        assert list((repo / folder / "__pycache__").glob("*.pyc")), f"no bytecode written in {folder}"
    litter = [repo / "stages/releases/.olid.py.swp", repo / "stages/training/data.py~", repo / "Datasets/.DS_Store",
              repo / "data/pilot/olid/.#olid-training-v1.0.tsv", repo / "stages/releases/.ipynb_checkpoints/x.py"]
    try:
        for path in litter:
            path.parent.mkdir(exist_ok=True)
            path.write_text("editor state\n")
        assert "Data and pipelines are up to date." in dvc(repo, "status").stdout
        assert ran_stages(dvc(repo, "repro").stdout) == set()
    finally:
        for path in litter:
            path.unlink(missing_ok=True)
        shutil.rmtree(repo / "stages/releases/.ipynb_checkpoints", ignore_errors=True)
    assert_clean(repo)


def test_a_train_param_reruns_only_the_two_trainings(pipeline):
    with changed_params(pipeline.repo, {"train": {"epochs": 2}}):
        status = json.loads(dvc(pipeline.repo, "status", "--json").stdout)
        assert set(status) == {"train_text", "train_vision"}
        assert ran_stages(dvc(pipeline.repo, "repro", "--dry").stdout) == {"train_text", "train_vision"}
    assert "Data and pipelines are up to date." in dvc(pipeline.repo, "status").stdout


def test_a_pack_param_reruns_pack_and_both_trainings_only(pipeline):
    repo = pipeline.repo
    shards = digest(repo / "Step_3/shards")
    with changed_params(repo, {"pack": {"jpeg_quality": 90}}):
        assert set(json.loads(dvc(repo, "status", "--json").stdout)) == {"pack"}
        result = dvc(repo, "repro", "pack")   # a real rerun of pack (the trainings' real rerun: the experiment test)
        assert ran_stages(result.stdout) == {"pack"}
        assert skipped_stages(result.stdout) == {"pilot", "ingest", "split"}
        assert digest(repo / "Step_3/shards") != shards
        assert json.loads((repo / "Step_3/stats.json").read_text())["image"]["jpeg_quality"] == 90
        # new shards: both trainings are out of date, and only they
        status = json.loads(dvc(repo, "status", "--json").stdout)
        assert set(status) == {"train_text", "train_vision"}
        assert ran_stages(dvc(repo, "repro", "--dry").stdout) == {"train_text", "train_vision"}
    # back to the committed params: pack's outputs come back from the run-cache, nothing runs
    result = dvc(repo, "repro")
    assert ran_stages(result.stdout) == set()
    assert restored_stages(result.stdout) == {"pack"}
    assert digest(repo / "Step_3/shards") == shards
    assert_clean(repo)


def test_a_failed_stage_keeps_dvc_lock_and_previous_outputs(pipeline):
    repo = pipeline.repo
    pack_outputs = ("Step_3/shards", "Step_3/stats.json", "Step_3/metrics/pack.json")   # cached and git-kept alike
    later = ("Step_4/models", "Step_4/metrics", "Step_4/reports", "Step_4/live", "Step_4/predictions")
    watched = ("dvc.lock", *pack_outputs, *later)
    before = {path: digest(repo / path) for path in watched}
    with changed_params(repo, {"pack": {"max_image_pixels": 1}}):   # every image fails the gate
        result = dvc(repo, "repro", check=False)
        assert result.returncode != 0
        assert "pack: failure rate" in result.stdout and "Traceback" not in result.stdout
        assert ran_stages(result.stdout) == {"pack"}
        assert not list((repo / "Step_3").glob(".*.tmp")), "partial outputs left behind"
        for path in ("dvc.lock", *later):
            assert digest(repo / path) == before[path], f"{path} changed by a failed pack"
        for path in pack_outputs:
            # dvc removes a stage's (non-persist) outputs before running it; whatever is left is the old output
            assert digest(repo / path) in (before[path], {}), f"{path}: a failed pack left new or partial files"
        restore = readme_restore_command()   # the README's way back, before the cause is fixed
        run(["bash", "-c", restore.replace("dvc ", f"{sys.executable} -m dvc ")], repo)
        for path in pack_outputs:
            assert digest(repo / path) == before[path], f"{path} not restored by `{restore}`"
    result = dvc(repo, "repro")   # cause fixed: the previous outputs come back without recomputing
    assert ran_stages(result.stdout) == set()
    assert {path: digest(repo / path) for path in watched} == before
    assert_clean(repo)


def readme_restore_command() -> str:
    """The README's one line that brings back a failed stage's previous outputs."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^dvc checkout && git checkout -- .*$", readme, re.M)
    assert len(found) == 1, "the README should say how to restore outputs after a failed stage"
    return found[0]


# ---------------------------------------------------------------- the README's other commands

# dvc.yaml's dependency graph as the README draws it (pack also reads the Step 2 files, hence ingest -> pack)
PIPELINE_EDGES = {("pilot", "ingest"), ("pilot", "split"), ("pilot", "pack"), ("ingest", "split"),
                  ("ingest", "pack"), ("split", "pack"), ("pack", "train_text"), ("pack", "train_vision"),
                  ("train_text", "fuse"), ("train_vision", "fuse")}


def test_dvc_dag_draws_the_seven_stages(pipeline):
    drawing = dvc(pipeline.repo, "dag").stdout
    assert set(re.findall(r"\| (\w+) \|", drawing)) == set(stage_names(pipeline.repo))
    edges = set(re.findall(r'^"(\w+)" -> "(\w+)";$', dvc(pipeline.repo, "dag", "--dot").stdout, re.M))
    assert edges == PIPELINE_EDGES


def test_every_stage_is_a_module_with_help():
    stages = resolved_dvc_yaml(REPO_ROOT)["stages"]
    for name, stage in stages.items():
        assert stage["cmd"].split()[:3] == ["python", "-m", f"stages.{name}"]
        result = run([sys.executable, "-m", f"stages.{name}", "--help"], REPO_ROOT)
        assert result.stdout.startswith("usage:"), f"{name}: {result.stdout[:300]}"
        assert "--params" in result.stdout and "--verbose" in result.stdout, f"{name}: no --params/--verbose"


def test_ingest_one_dataset_from_the_command_line(pipeline, tmp_path):
    """`python -m stages.ingest --dataset olid=<folder> --manifest M --ocr O` writes exactly the OLID
    records the pipeline's ingest wrote, and touches nothing of the pipeline."""
    repo = pipeline.repo
    manifest, ocr = tmp_path / "M.jsonl", tmp_path / "O.jsonl"
    run([sys.executable, "-m", "stages.ingest", "--dataset", "olid=data/pilot/olid",
         "--manifest", str(manifest), "--ocr", str(ocr)], repo)
    pipeline_olid = [line for line in (repo / "Step_2/data_manifest.jsonl").read_text().splitlines()
                     if json.loads(line)["dataset"] == "olid"]
    assert pipeline_olid and manifest.read_text().splitlines() == pipeline_olid
    assert ocr.read_text() == ""   # OLID ships tweets, no meme transcriptions
    assert_clean(repo)


def test_remote_push_then_pull_into_a_second_clone_runs_nothing(pipeline, tmp_path):
    """The README's remote section with a local-folder remote: push from this clone, then a teammate's
    clone (no cache, no outputs, a shared cache dir) pulls and `dvc repro` has nothing to do."""
    repo, mate = pipeline.repo, tmp_path / "mate"
    storage, shared_cache = tmp_path / "dvc-store", tmp_path / "shared-cache"
    run(["git", "clone", "--quiet", str(repo), str(mate)], tmp_path)
    cached, _ = declared_outputs(mate / "dvc.yaml")
    assert not (mate / ".dvc/cache").exists() and not any((mate / out).exists() for out in cached)

    dvc(repo, "remote", "add", "-d", "storage", str(storage))
    git(repo, "add", ".dvc/config")
    git(repo, "commit", "--quiet", "-m", "DVC remote")
    try:
        dvc(repo, "push", "--run-cache")
        git(mate, "pull", "--quiet")
        dvc(mate, "cache", "dir", str(shared_cache))
        dvc(mate, "config", "cache.shared", "group")
        dvc(mate, "pull", "Step_3/shards")   # what a training node needs
        assert digest(mate / "Step_3/shards") == digest(repo / "Step_3/shards")
        assert [out for out in cached if (mate / out).exists()] == ["Step_3/shards"]
        dvc(mate, "pull", "--run-cache")
        result = dvc(mate, "repro")
        assert ran_stages(result.stdout) == set()
        assert skipped_stages(result.stdout) == set(stage_names(mate))
        assert "Data and pipelines are up to date." in dvc(mate, "status").stdout
        for out in cached:
            assert digest(mate / out) == digest(repo / out), f"{out} differs after dvc pull"
        assert any((shared_cache / "runs").iterdir()), "the run-cache did not arrive"
        assert any((shared_cache / "files").rglob("*")) and not (mate / ".dvc/cache").exists()
    finally:
        git(repo, "reset", "--quiet", "--hard", "HEAD~1")   # back to the clone's HEAD, without the remote
    assert_clean(repo)


def test_a_release_added_with_dvc_add_comes_back_with_dvc_pull(pipeline, tmp_path):
    """The README's way to version a raw release: `dvc add Datasets/<name>`, commit the .dvc file,
    `dvc push`; a second clone with the same (local folder) remote restores it with `dvc pull`."""
    repo, mate, storage = pipeline.repo, tmp_path / "mate", tmp_path / "dvc-store"
    shutil.copytree(repo / "data/pilot/olid", repo / "Datasets/olid")   # a release, as its authors ship it
    commands = readme_block_after("To version the releases themselves")
    assert [c.split()[:2] for c in commands] == [["dvc", "add"], ["git", "add"], ["git", "pull"]]
    head = git(repo, "rev-parse", "HEAD").strip()
    try:
        dvc(repo, "remote", "add", "-d", "storage", str(storage))
        run(["bash", "-c", with_this_python(commands[0])], repo)
        assert git(repo, "status", "--porcelain", "--untracked-files=all", "Datasets").split() == ["??",
                                                                                              "Datasets/olid.dvc"]
        run(["bash", "-c", with_this_python(commands[1]).replace("git commit", "git add .dvc/config && git commit")],
            repo)
        run(["git", "clone", "--quiet", str(repo), str(mate)], tmp_path)
        assert not (mate / "Datasets/olid").exists() and (mate / "Datasets/olid.dvc").is_file()
        dvc(mate, "pull", "Datasets/olid.dvc")
        assert digest(mate / "Datasets/olid") == digest(repo / "Datasets/olid") != {}
    finally:
        git(repo, "reset", "--quiet", "--hard", head)   # back to the clone's HEAD: no .dvc file, no remote
        shutil.rmtree(repo / "Datasets/olid")
        (repo / "Datasets/olid.dvc").unlink(missing_ok=True)
    assert_clean(repo)
    assert "Data and pipelines are up to date." in dvc(repo, "status").stdout


def with_this_python(command: str) -> str:
    """A README shell line with each `dvc` command run by this test's Python."""
    return re.sub(r"(^|&&\s*)dvc ", lambda m: f"{m[1]}{sys.executable} -m dvc ", command)


def readme_block_after(marker: str) -> list[str]:
    """The command lines (comments cut) of the first bash block after `marker` in the README."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", readme[readme.index(marker):], re.S)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_not_slow_marker_leaves_out_only_this_module():
    """`python -m pytest -m "not slow"` (collection only: CI runs the tests themselves)."""
    result = run([sys.executable, "-m", "pytest", "-m", "not slow", "--collect-only", "-p", "no:cacheprovider"],
                 REPO_ROOT)
    collected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    test_files = {path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "tests").rglob("test_*.py")}
    assert collected == test_files - {"tests/test_pipeline.py"}
    deselected = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", result.stdout)
    assert deselected and int(deselected[3]) > 0


# ---------------------------------------------------------------- the README's real-data walkthrough

REAL_SAMPLES = REPO_ROOT.parent / "shared" / "real_samples"
WALKTHROUGH = "**Try it on the public label files**"   # where the README's walkthrough on them starts


def readme_walkthrough() -> tuple[dict, list[str]]:
    """The params block and the commands of the README's walkthrough on ../shared/real_samples."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(WALKTHROUGH):]
    section = section[:section.index("\n## ")]
    blocks = re.findall(r"```(yaml|bash)\n(.*?)```", section, re.S)
    params = yaml.safe_load(next(text for kind, text in blocks if kind == "yaml"))
    commands = [line for kind, text in blocks if kind == "bash" for line in text.splitlines() if line.strip()]
    return params, commands


def test_readme_real_data_walkthrough_reaches_trained_text_metrics(tmp_path):
    """A fresh clone, the real label files copied into Datasets/, then the README's commands as written."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REAL_SAMPLES}")
    repo = tmp_path / "repo"
    clone_working_tree(REPO_ROOT, repo)
    params, commands = readme_walkthrough()
    set_params(repo, params)
    assert [c.split()[:2] for c in commands] == [["cp", "-r"], ["dvc", "repro"]]
    copy = run(["bash", "-c", commands[0].replace("../shared/real_samples", str(REAL_SAMPLES))], repo)
    assert copy.returncode == 0 and (repo / "Datasets/mami/truth.txt").is_file()
    start = time.perf_counter()
    result = dvc(repo, *commands[1].split()[1:])
    print(f"\nREADME real-data walkthrough: {time.perf_counter() - start:.0f} s")
    assert ran_stages(result.stdout) == {"pilot", "ingest", "split", "pack", "train_text"}
    assert "Traceback" not in result.stdout

    report = json.loads((repo / "Step_2/ingest_report.json").read_text())
    assert sorted(report["datasets"]) == sorted(params["ingest"]["datasets"])
    assert report["datasets"]["memotion1"]["examples"] == {"train": 6992, "test": 1878}
    split_report = json.loads((repo / "Step_3/split_report.json").read_text())
    assert "hateful_memes/test/abuse_hate: 0" in split_report["eval_labeled"]["below"]
    assert "hateful_memes/test/abuse_hate: 0" in stage_logs(result.stdout)["split"]
    stats = json.loads((repo / "Step_3/stats.json").read_text())
    assert stats["total_examples"] == params["pack"]["examples_limit"] and stats["failure_rate"] <= 0.005
    mami = stats["datasets"]["mami"]   # truth.txt alone: labels without text or image
    assert mami["skipped"] > 0 and mami["train"] == mami["val"] == mami["test"] == mami["failed"] == 0
    assert stats["skipped"]["no_text_no_image"]["count"] >= mami["skipped"]
    metrics = json.loads((repo / "Step_4/reports/text.json").read_text())
    assert ((metrics["epochs"], metrics["task"]) == (params["train"]["epochs"], *params["train"]["tasks"])
            == (1, "offensive"))
    for split in ("val", "test"):
        assert metrics[split]["support"] > 0 and 0 <= metrics[split]["f1_macro"] <= 1


def benchmark(script: str, *args: str, cwd: Path = REPO_ROOT) -> str:
    return run([sys.executable, f"benchmarks/{script}", *args], cwd, timeout=300).stdout


def ratio(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"no match for {pattern!r} in:\n{text[-3000:]}"
    return float(found[1])


def test_pack_benchmark_runs_at_a_tiny_size(tmp_path):
    out = benchmark("pack_bench.py", "--examples", "20", "--rss-sizes", "5", "50", "--rounds", "1",
                    "--work-dir", str(tmp_path))
    assert ratio(r"\(a\) pack, 2 workers:\s+([\d.]+) examples/s", out) > 0
    assert ratio(r"\(c\) pack / \(plain floor x 2 cores\):\s+([\d.]+)", out) > 0
    assert ratio(r"\(d\) speed-up 1 -> 2 workers:\s+([\d.]+)", out) > 0
    assert ratio(r"\(e\) peak RSS process tree sum .*ratio ([\d.]+)", out) > 0


def test_train_benchmark_runs_on_the_pipeline_shards(pipeline):
    out = benchmark("train_bench.py", "--shards", "Step_3/shards", "--steps", "2", cwd=pipeline.repo)
    assert ratio(r"dynamic padding speed-up: ([\d.]+)x", out) > 0
    assert ratio(r"loader / training \(dynamic\): ([\d.]+)x", out) > 0
    assert_clean(pipeline.repo)


def test_contention_benchmark_runs_briefly_on_the_pipeline_shards(pipeline):
    out = benchmark("contention.py", "--shards", "Step_3/shards", "--seconds", "1", "--experts", "text",
                    cwd=pipeline.repo)
    assert ratio(r"text: policy under one competitor ([\d.]+)x quiet", out) > 0
    assert ratio(r"policy quiet / defaults quiet ([\d.]+)", out) > 0
    assert "vision" not in out
    assert_clean(pipeline.repo)


def test_scale_run_benchmark_runs_at_tiny_sizes(tmp_path):
    out = benchmark("scale_run.py", str(tmp_path / "scale_run"), "--sizes", "3", "6")
    summary = json.loads(out.splitlines()[-1])
    assert set(summary["sizes"]) == {"3", "6"}
    for size, result in summary["sizes"].items():
        for stage in ("pilot", "ingest", "split", "pack"):
            assert result[stage]["examples"] > 0 and result[stage]["peak_tree_rss_mb"] > 0, (size, stage)
        assert 0 < result["data"]["packed"] <= result["data"]["records"]
    assert summary["split_workers"]["splits_identical"] is True   # 1 vs 2 hashing workers
    assert not list((tmp_path / "scale_run").glob("n*")), "generated data left behind without --keep"


# ---------------------------------------------------------------- the Step 4 notebook

def execute_notebook(repo: Path, train: bool):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(repo / NOTEBOOK, as_version=4)
    setup = notebook.cells[1]
    assert "TRAIN = False" in setup.source
    if train:
        setup.source = setup.source.replace("TRAIN = False", "TRAIN = True", 1) + "\n" + QUICK_NOTEBOOK_TRAINING
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(repo)}}).execute()
    return notebook


def notebook_text(notebook) -> str:
    return "\n".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for output in cell.outputs if output.output_type == "stream")


def test_notebook_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(REPO_ROOT / NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is None and cell.outputs == []


@pytest.mark.parametrize("train", [False, True], ids=["load_experts", "train_experts"])
def test_notebook_runs_top_to_bottom(pipeline, train):
    notebook = execute_notebook(pipeline.repo, train)
    text = notebook_text(notebook)
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3   # example grid, scored validation grid, training curves
    assert "TRAIN=True" in text if train else "TRAIN=False" in text
    for name in ("text", "vision"):   # the reloaded experts reproduce the stage's predictions
        assert re.search(rf"^{name}: \d+ examples also in the stage's predictions", text, re.M)
    if train:
        scratch = pipeline.repo / "Step_4/scratch/notebook"
        assert json.loads((scratch / "metrics/text.json").read_text())["epochs_run"] == 1
        assert (scratch / "models/vision_expert/model.safetensors").is_file()
    assert_clean(pipeline.repo)   # the DVC outputs are untouched and nothing new is left for git


# ---------------------------------------------------------------- experiments

def experiment_rows(exp_show: list[dict]) -> tuple[dict, list[dict]]:
    """(baseline row data, [experiment row data]) of `dvc exp show --json` for the workspace's HEAD."""
    baseline = next(row for row in exp_show if row["rev"] != "workspace")
    experiments = [rev for exp in baseline.get("experiments") or [] for rev in exp["revs"]]
    return baseline, experiments


def flat_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        keys |= flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def plot_specs(html: str) -> dict[str, dict]:
    """The vega-lite spec of every plot in a `dvc plots` HTML page, by div id."""
    found = re.findall(r'<div id = "([^"]+)">\s*<script type = "text/javascript">\s*var spec = (.*?);\s*vegaEmbed',
                       html, re.S)
    return {div: json.loads(spec) for div, spec in found}   # json takes Infinity/NaN, as JavaScript does


def declared_plots(repo: Path) -> dict[str, tuple[list[str], list[str]]]:
    """div id -> (numeric fields, y fields) of each top-level plot in dvc.yaml (a horizontal bar
    plot's y is its category, e.g. the diagnostic functionality)."""
    plots = {}
    for entry in resolved_dvc_yaml(repo)["plots"]:
        (name, spec), = entry.items()
        y = spec["y"]
        fields = sorted(set(y.values())) if isinstance(y, dict) else [y]
        bars = spec.get("template", "").startswith("bar_horizontal")
        plots[re.sub(r"[^\w-]", "_", name)] = ([spec["x"]] if bars else [spec["x"], *fields], fields)
    return plots


SWEEP_LEARNING_RATES = {1e-5, 3e-5}   # the README's queued sweep
SWEEP_TIMEOUT = 600                   # seconds for both queued experiments (each retrains both experts)


def queue_status(repo: Path) -> dict[str, str]:
    """experiment name -> task status (Queued, Running, Success, Failed, ...) from `dvc queue status`."""
    rows = re.findall(r"^[0-9a-f]{7,}\s+(\S+)\s.*\s(\w+)\s*$", dvc(repo, "queue", "status").stdout, re.M)
    return dict(rows)


def wait_for_queue(repo: Path, names: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        status = {name: queue_status(repo).get(name, "missing") for name in names}
        if not {"Queued", "Running"} & set(status.values()) or time.monotonic() > deadline:
            return status
        time.sleep(5)


def readme_exp_show() -> list[str]:
    """The README's `dvc exp show` command that compares experiments, as argv."""
    line, = [c for c in readme_block_after("## Experiments") if c.startswith("dvc exp show")]
    return shlex.split(line)[1:]


def exp_show_table(repo: Path) -> tuple[list[str], str]:
    """(column names, table) of the README's command in a 200-column terminal."""
    table = run([sys.executable, "-m", "dvc", *readme_exp_show()], repo, columns=200).stdout
    assert max(map(len, table.splitlines())) <= 200 and "…" not in table, f"does not fit in 200 columns:\n{table}"
    return next(line for line in table.splitlines() if line.split()[:1] == ["Experiment"]).split(), table


def test_queued_sweep_runs_both_experiments(pipeline):
    """`dvc exp run --queue -S 'train.learning_rate=1e-5,3e-5'`, `dvc queue start`, then the README's
    `dvc exp show` lists both runs side by side within 200 columns."""
    repo = pipeline.repo
    result = dvc(repo, "exp", "run", "--queue", "-S", "train.learning_rate=1e-5,3e-5")
    names = re.findall(r"Queued experiment '([\w-]+)' for future execution", result.stdout)
    assert len(names) == 2, result.stdout
    try:
        assert queue_status(repo) == {name: "Queued" for name in names}
        start = time.perf_counter()
        assert "Started '1' new experiments task queue worker" in dvc(repo, "queue", "start").stdout
        status = wait_for_queue(repo, names, SWEEP_TIMEOUT)
        print(f"\nqueued sweep of two experiments: {time.perf_counter() - start:.0f} s")
        if status != {name: "Success" for name in names}:
            logs = {name: dvc(repo, "queue", "logs", name, check=False).stdout[-3000:] for name in names}
            pytest.fail(f"queue after {SWEEP_TIMEOUT} s at most: {status}\n{logs}")

        baseline, experiments = experiment_rows(json.loads(dvc(repo, "exp", "show", "--json").stdout))
        assert {row["name"] for row in experiments} == set(names)
        rates = {row["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"] for row in experiments}
        assert rates == SWEEP_LEARNING_RATES
        text_scores = []
        for row in experiments:
            assert row["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] == TEST_PARAMS["train"]["epochs"]
            for name in ("text", "vision"):
                metrics = row["data"]["metrics"][f"Step_4/metrics/{name}.json"]["data"]
                assert metrics["epochs_run"] == 1 and 0 <= metrics["val"]["f1_macro"] <= 1
            text_scores.append(row["data"]["metrics"]["Step_4/metrics/text.json"]["data"]["test"])
        assert text_scores[0] != text_scores[1], "two learning rates, the same text expert"
        columns, table = exp_show_table(repo)
        assert "train.learning_rate" in columns and "train.epochs" not in columns   # changed vs unchanged
        # vision.learning_rate is its own (the linear probe's 0.01): the sweep changes the text expert only
        assert [c for c in columns if ":" in c] == ["Step_4/metrics/text.json:val.f1_macro"]
        assert all(f"[{name}]" in table for name in names)
    finally:   # leave no experiments, tasks or workers behind for the next test
        dvc(repo, "queue", "stop", "--kill", check=False)
        dvc(repo, "exp", "remove", *names, check=False)
        dvc(repo, "queue", "remove", "--all", check=False)
    assert experiment_rows(json.loads(dvc(repo, "exp", "show", "--json").stdout))[1] == []
    assert_clean(repo)


def test_experiment_show_metrics_diff_and_plots_diff(pipeline, tmp_path):
    repo = pipeline.repo
    result = dvc(repo, "exp", "run", "-S", "train.epochs=2")
    assert ran_stages(result.stdout) == {"train_text", "train_vision", "fuse"}

    baseline, experiments = experiment_rows(json.loads(dvc(repo, "exp", "show", "--json").stdout))
    assert len(experiments) == 1
    experiment = experiments[0]
    for row, epochs in ((baseline, 1), (experiment, 2)):
        data = row["data"]
        assert set(data["params"]) == {"params.yaml"}, "only params.yaml: no DVCLive params.yaml in exp show"
        params = data["params"]["params.yaml"]["data"]
        assert params["train"]["epochs"] == epochs
        assert not {"output_dir", "per_device_train_batch_size"} & flat_keys(params)
        for name in ("text", "vision"):
            metrics = data["metrics"][f"Step_4/metrics/{name}.json"]["data"]
            assert metrics["epochs_run"] == epochs
            assert {"val.f1_macro", "test.f1_macro", "test.auroc", "test.ece"} <= flat_keys(metrics)

    metrics_files = json.loads(dvc(repo, "metrics", "show", "--json").stdout)[""]["data"]
    assert {path: len(flat_keys(entry["data"])) <= 40 for path, entry in metrics_files.items()} == {
        path: True for path in metrics_files}, "a metrics file DVC shows holds more than 40 numbers"
    columns, table = exp_show_table(repo)   # the README's comparison: both runs, both experts' headline
    assert columns[:3] == ["Experiment", "Step_4/metrics/text.json:val.f1_macro",
                           "Step_4/metrics/vision.json:val.f1_macro"]
    assert "train.epochs" in columns
    for row, epochs in ((baseline, 1), (experiment, 2)):
        line = next(line for line in table.splitlines() if (row.get("name") or row["rev"][:7]) in line)
        assert line.split()[-1] == str(epochs)
    side_by_side = dvc(repo, "metrics", "diff", "HEAD", experiment["name"]).stdout
    assert max(map(len, side_by_side.splitlines())) <= 200
    for name in ("text", "vision"):
        for key in ("val.f1_macro", "test.f1_macro", "test.auroc"):
            assert re.search(rf"Step_4/metrics/{name}\.json\s+{re.escape(key)}\s", side_by_side), (name, key)

    diff = json.loads(dvc(repo, "metrics", "diff", "--json").stdout)   # HEAD -> workspace (the experiment)
    for name in ("text", "vision"):
        changes = diff[f"Step_4/metrics/{name}.json"]
        assert changes["epochs_run"]["old"] == 1 and changes["epochs_run"]["new"] == 2
        assert any(key.startswith(("val.", "test.")) for key in changes), f"{name}: no score changed"
    assert any(key.startswith("abuse_hate.") for key in diff["Step_4/metrics/fusion.json"]), "fusion: nothing changed"

    out = tmp_path / "plots"
    dvc(repo, "plots", "diff", "HEAD", experiment["name"], "-o", str(out))
    page = (out / "index.html").read_text(encoding="utf-8")
    assert remote_references(page) == [], "the plots page loads something remote"
    specs = plot_specs(page)
    for div, (numeric, fields) in declared_plots(repo).items():
        assert div in specs, f"plot {div} missing from the page"
        values = specs[div]["data"]["values"]
        assert values, f"plot {div} has no data"
        assert {v["rev"] for v in values} == {"HEAD", experiment["name"]}, f"plot {div}: not both revisions"
        for v in values:   # the plotted fields are finite numbers (ROC's threshold may be Infinity)
            for field in numeric:
                if field in v:
                    assert math.isfinite(float(v[field])), f"plot {div}: {field}={v[field]!r}"
        assert any(field in v for v in values for field in fields), f"plot {div}: no {fields} values"
    assert_plots_diff_head_needs_no_cache(repo, tmp_path)


def assert_plots_diff_head_needs_no_cache(repo: Path, tmp_path: Path) -> None:
    """`dvc plots diff HEAD` after an experiment, as in a fresh clone whose cache never held HEAD's
    outputs: HEAD's curves come from git (the DVCLive plots dirs are kept in git), and the HTML goes
    to the git-ignored dvc_plots/."""
    dvc(repo, "config", "--local", "cache.dir", str(tmp_path / "empty-cache"))
    try:
        result = dvc(repo, "plots", "diff", "HEAD")
    finally:
        dvc(repo, "config", "--local", "--unset", "cache.dir")
    assert "failed to load" not in result.stdout, result.stdout
    specs = plot_specs((repo / "dvc_plots" / "index.html").read_text(encoding="utf-8"))
    for div, (_, fields) in declared_plots(repo).items():
        values = specs[div]["data"]["values"]
        for rev in ("HEAD", "workspace"):
            assert any(v["rev"] == rev and any(f in v for f in fields) for v in values), f"plot {div}: no {rev} data"
    assert run(["git", "check-ignore", "-q", "dvc_plots/index.html"], repo, check=False).returncode == 0
