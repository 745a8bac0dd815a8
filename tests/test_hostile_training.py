"""What training may not take silently (issue 24, items 4 and 8): shards that went missing, were cut
short or were added after pack (training evaluated on 7 of 46 val examples and reported macro-F1 1.0),
and an environment variable that changed the saved model's bytes (HF_HUB_OFFLINE=1 wrote
`"local_files_only": true` into tokenizer_config.json, so a fresh `dvc repro` changed dvc.lock).
Each test failed on the unchanged code.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from stages import training
from stages.pack import pack
from stages.shards import INDEX
from tests.test_pack_hostile import config_for, tweet

REPO_ROOT = Path(__file__).resolve().parent.parent
ALL = ("image", "textonly")
OFFENSIVE = training.Tasks.read(["offensive"])


@pytest.fixture
def shards(tmp_path) -> Path:
    """Pack's own output: 12 tweets dealt to train/val/test, 2 per shard (2 shards per split)."""
    records = [tweet(f"t{i:02d}", f"tweet number {i}") for i in range(12)]
    config = config_for(tmp_path, records, examples_per_shard=2)
    config.splits.write_text(json.dumps({r["id"]: ("train", "val", "test")[i % 3] for i, r in enumerate(records)}))
    pack(config)
    return config.output_dir


def test_pack_lists_every_shard_with_its_examples(shards):
    index = json.loads((shards / INDEX).read_text())
    assert index == {f"{split}/textonly-0000{n}.tar": 2 for split in ("train", "val", "test") for n in (0, 1)}
    assert set(training.read_splits(shards, ALL, OFFENSIVE)) == {"train", "val", "test"}


def test_a_missing_shard_stops_training_in_one_line(shards):
    (shards / "val" / "textonly-00001.tar").unlink()
    with pytest.raises(training.TrainingInputError) as err:
        training.read_splits(shards, ALL, OFFENSIVE)
    assert str(err.value) == (f"{shards / 'val' / 'textonly-00001.tar'}: missing (pack wrote it with 2 examples); "
                              "re-run pack (dvc repro pack)")


def test_a_truncated_shard_stops_training_in_one_line(shards):
    shard = shards / "test" / "textonly-00000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    shard.chmod(0o644)
    with tarfile.open(shard, "w") as tar:   # cut at a member boundary: still a valid tar, one example short
        for member, data in members[:2]:
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(training.TrainingInputError, match=r"textonly-00000.tar: 1 examples, pack wrote 2 \(truncated "
                                                          r"or changed\); re-run pack \(dvc repro pack\)$"):
        training.read_splits(shards, ALL, OFFENSIVE)


def test_an_extra_shard_stops_training_in_one_line(shards):
    shutil.copy(shards / "train" / "textonly-00000.tar", shards / "train" / "textonly-00002.tar")
    with pytest.raises(training.TrainingInputError) as err:
        training.read_splits(shards, ALL, OFFENSIVE)
    assert str(err.value) == (f"{shards / 'train' / 'textonly-00002.tar'}: not written by pack (not in index.json); "
                              "remove it or re-run pack (dvc repro pack)")


def test_a_deleted_diagnostic_split_and_a_missing_index_are_one_line(shards):
    index = json.loads((shards / INDEX).read_text())
    (shards / INDEX).write_text(json.dumps({**index, "diagnostic/textonly-00000.tar": 5}))
    with pytest.raises(training.TrainingInputError, match="diagnostic/textonly-00000.tar: missing"):
        training.read_diagnostic(shards, ALL, OFFENSIVE)
    (shards / INDEX).unlink()   # shards from an older pack, or not from pack
    with pytest.raises(training.TrainingInputError, match=f"^{shards / INDEX}: not found; pack writes it"):
        training.read_splits(shards, ALL, OFFENSIVE)


SAVE_TEXT_MODEL = """
import sys
from pathlib import Path
import torch
from stages.train_text import TextConfig, build_text_expert
from stages.training.config import TrainConfig
from stages.training.outputs import save_model
torch.manual_seed(0)   # the new classifier head
save_model(build_text_expert(TextConfig(max_length=64), TrainConfig()), Path(sys.argv[1]))
"""


def test_the_saved_text_model_does_not_depend_on_hf_hub_offline(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    runs = {name: subprocess.Popen([sys.executable, "-c", SAVE_TEXT_MODEL, str(tmp_path / name)], cwd=REPO_ROOT,
                                   env={**env, **extra}, stderr=subprocess.PIPE, text=True)
            for name, extra in (("online", {}), ("offline", {"HF_HUB_OFFLINE": "1"}))}
    for run in runs.values():
        assert run.wait(timeout=300) == 0, run.stderr.read()
    online, offline = tmp_path / "online", tmp_path / "offline"
    names = sorted(p.name for p in online.iterdir())
    assert names == sorted(p.name for p in offline.iterdir()) and "tokenizer_config.json" in names
    for name in names:
        assert (online / name).read_bytes() == (offline / name).read_bytes(), name
    assert "local_files_only" not in (online / "tokenizer_config.json").read_text()
