"""The built-in pilot: native layouts and quirks, determinism, atomicity, learnable signal, and
that every adapter ingests it (stages.releases) and the taxonomy accepts every label."""
from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stages import pilot, releases
from stages.common import project_path
from stages.errors import ConfigError
from stages.pilot import PilotConfig, write_pilot
from stages.releases import DATASETS, Skip, read_release

REPO_ROOT = Path(__file__).resolve().parent.parent
WITH_IMAGES = [name for name in DATASETS if releases.SPECS[name].has_images]

LAYOUT = {  # the native release layouts (each stages/releases/<name>.py docstring)
    "hateful_memes": ["train.jsonl", "dev_seen.jsonl", "dev_unseen.jsonl", "test_seen.jsonl", "test_unseen.jsonl"],
    "mami": ["TRAINING/training.csv", "test/Test.csv", "test_labels.txt"],
    "mmhs150k": ["MMHS150K_GT.json", "splits/train_ids.txt", "splits/val_ids.txt", "splits/test_ids.txt"],
    "memotion1": ["memotion_dataset_7k/labels.csv", "memotion_test_data/test_data/2000_testdata.csv",
                  "memotion_test_data/test_data/Meme_groundTruth.csv"],
    "memotion2": ["memotion_train.csv", "memotion_val.csv"],
    "hatexplain": ["dataset.json", "post_id_divisions.json"],
    "olid": ["olid-training-v1.0.tsv", *(f"testset-level{x}.tsv" for x in "abc"),
             *(f"labels-level{x}.csv" for x in "abc")],
    "hatecheck": ["test_suite_cases.csv"],
}


@pytest.fixture(scope="module")
def pilot_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pilot") / "pilot"
    return write_pilot(PilotConfig(out=out))  # the defaults: seed 0, 60 examples per dataset


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def native_abusive(dataset: str, labels: dict | None) -> int | None:
    """The pilot's latent class read back from a dataset's own label fields (None: no majority/unlabeled)."""
    if labels is None:
        return None
    if dataset == "hateful_memes":
        return labels["label"]
    if dataset == "mami":
        return int(labels["misogynous"])
    if dataset == "mmhs150k":
        return int(sum(v > 0 for v in labels["labels"]) >= 2)
    if dataset in ("memotion1", "memotion2"):
        return int(labels["offensive"] in ("very_offensive", "hateful_offensive"))
    if dataset == "hatexplain":
        label, votes = Counter(a["label"] for a in labels["annotators"]).most_common(1)[0]
        return None if votes < 2 else int(label != "normal")
    if dataset == "hatecheck":
        return int(labels["label_gold"] == "hateful")
    return int(labels["subtask_a"] == "OFF")


def ingest(root: Path, dataset: str) -> list:
    return list(read_release(dataset, root / dataset))


# ---------------------------------------------------------------- layout, determinism, atomicity


def test_every_native_file_is_written_with_readme(pilot_run):
    for dataset, names in LAYOUT.items():
        for name in names:
            assert (pilot_run.out / dataset / name).is_file(), f"{dataset}/{name} missing"
    readme = (pilot_run.out / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "seed: 0" in readme
    assert set(pilot_run.counts) == set(DATASETS)
    assert pilot_run.images["hatexplain"] == pilot_run.images["olid"] == 0
    assert all(pilot_run.images[d] == 60 for d in WITH_IMAGES)


def test_same_params_give_identical_bytes_and_another_seed_differs(pilot_run, tmp_path):
    first = all_files(pilot_run.out)
    again = write_pilot(PilotConfig(out=tmp_path / "again"))
    assert all_files(again.out) == first  # names and bytes, images included
    other = all_files(write_pilot(PilotConfig(out=tmp_path / "other", seed=1)).out)
    assert other["olid/olid-training-v1.0.tsv"] != first["olid/olid-training-v1.0.tsv"]
    first_images = {v for k, v in first.items() if k.startswith("hateful_memes/img/")}
    assert not first_images & {v for k, v in other.items() if k.startswith("hateful_memes/img/")}


def test_a_failing_run_leaves_no_partial_output(tmp_path, monkeypatch):
    out = tmp_path / "pilot"
    write_pilot(PilotConfig(out=out, examples_per_dataset=3, datasets=("olid",)))
    before = all_files(out)

    def broken_writer(folder, rows, counts):
        next(iter(rows))
        raise RuntimeError("disk full")

    monkeypatch.setitem(pilot.RECIPES, "olid", replace(pilot.RECIPES["olid"], write=broken_writer))
    with pytest.raises(RuntimeError):
        write_pilot(PilotConfig(out=out, examples_per_dataset=5, datasets=("hatexplain", "olid")))
    assert all_files(out) == before  # the previous pilot is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pilot"]  # no temp dirs left
    with pytest.raises(RuntimeError):
        write_pilot(PilotConfig(out=tmp_path / "fresh", examples_per_dataset=5, datasets=("olid",)))
    assert not (tmp_path / "fresh").exists()


def test_main_reads_params_and_rejects_bad_values(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(f"pilot:\n  out: {tmp_path / 'p'}\n  seed: 3\n  examples_per_dataset: 4\n")
    result = pilot.main(["--params", str(params)])
    assert result.out == tmp_path / "p" and sum(result.counts["olid"].values()) == 4
    assert "seed: 3" in (tmp_path / "p" / "README.txt").read_text()
    with pytest.raises(ConfigError, match=r"^pilot.examples_per_dataset: 0 must be >= 1$"):
        pilot.main(["--params", str(params), "--examples-per-dataset", "0"])
    with pytest.raises(ConfigError, match=r"^pilot.image_noise: 0.9 must be <= 0.5$"):
        pilot.main(["--params", str(params), "--image-noise", "0.9"])


def test_memory_does_not_grow_with_size(tmp_path):
    def peak(n: int) -> int:
        tracemalloc.start()
        write_pilot(PilotConfig(out=tmp_path / f"p{n}", examples_per_dataset=n, datasets=("mmhs150k", "olid")))
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    small, large = peak(20), peak(200)
    assert large < small * 1.5 + 256_000, (small, large)


# ---------------------------------------------------------------- the formats' quirks


def test_hateful_memes_jsonl_quirks(pilot_run):
    root = pilot_run.out / "hateful_memes"
    train = (root / "train.jsonl").read_bytes()
    first = train.split(b"\n")[0].decode()
    assert re.fullmatch(r'\{"id":\d+,"img":"img\\/\d{5}\.png","label":[01],"text":"[^"]*"\}', first)
    assert not train.endswith(b"\n") and (root / "dev_seen.jsonl").read_bytes().endswith(b"\n")
    rows = {name.removesuffix(".jsonl"): [json.loads(line) for line in (root / name).read_text().splitlines()]
            for name in LAYOUT["hateful_memes"]}
    assert all(list(r) == ["id", "img", "text"] for r in rows["test_unseen"])
    assert all(list(r) == ["id", "img", "label", "text"] for r in rows["dev_seen"])
    seen, unseen = {r["id"] for r in rows["dev_seen"]}, {r["id"] for r in rows["dev_unseen"]}
    assert len(seen & unseen) >= len(seen) // 2 and unseen - seen  # shares most ids, has its own too
    all_rows = [r for split in rows.values() for r in split]
    assert any(r["id"] < 10000 for r in all_rows)  # leading zero lost: 8291 <-> img/08291.png
    assert all(r["img"] == f"img/{r['id']:05d}.png" for r in all_rows)
    modes = {Image.open(root / r["img"]).mode for r in all_rows}
    assert {"RGB", "RGBA", "P"} <= modes


def test_mami_tab_files(pilot_run):
    root = pilot_run.out / "mami"
    header = (root / "TRAINING" / "training.csv").read_text().splitlines()[0]
    assert header == "file_name\tmisogynous\tshaming\tstereotype\tobjectification\tviolence\tText Transcription"
    test_names = [line.split("\t")[0] for line in (root / "test" / "Test.csv").read_text().splitlines()[1:]]
    gold = [line.split("\t") for line in (root / "test_labels.txt").read_text().splitlines()]
    assert [g[0] for g in gold] == test_names and all(len(g) == 6 for g in gold)  # no header, 5 labels
    assert all((root / "test" / name).is_file() for name in test_names)
    assert Image.open(root / "test" / test_names[0]).format == "JPEG"


def test_memotion1_crlf_quoted_newlines_index_column_mixed_extensions(pilot_run):
    root = pilot_run.out / "memotion1"
    raw = (root / "memotion_dataset_7k" / "labels.csv").read_bytes()
    assert raw.startswith(b",image_name,text_ocr,text_corrected,humour,sarcasm,offensive,motivational,"
                          b"overall_sentiment\r\n")
    rows = list(csv.reader(io.StringIO(raw.decode(), newline="")))[1:]
    assert [r[0] for r in rows] == [str(i) for i in range(len(rows))]  # the pandas index
    assert any("\n" in r[3] and "\r" not in r[3] for r in rows)  # quoted field with a bare LF
    assert raw.count(b"\r\n") == len(rows) + 1  # every record ends in CRLF, embedded newlines do not
    assert any(not r[3] and r[2] for r in rows)  # only the OCR text: the readers fall back to it
    extensions = {r[1].rsplit(".", 1)[1] for r in rows}
    assert {"jpg", "png", "jpeg", "JPG", "PNG"} <= extensions
    for r in rows:
        fmt = Image.open(root / "memotion_dataset_7k" / "images" / r[1]).format
        assert fmt == ("PNG" if r[1].lower().endswith(".png") else "JPEG")
    test_dir = root / "memotion_test_data" / "test_data"
    gold = list(csv.reader(open(test_dir / "Meme_groundTruth.csv", newline="")))
    assert gold[0] == ["Image_name", "Labels"]
    assert all(re.fullmatch(r"(-1|0|1)_[01]{4}_[0-3]{3}[01]", code) for _, code in gold[1:])
    assert all((test_dir / "2000_data" / name).is_file() for name, _ in gold[1:])


def test_mmhs150k_gt_splits_ocr_and_gif_under_jpg(pilot_run):
    root = pilot_run.out / "mmhs150k"
    text = (root / "MMHS150K_GT.json").read_text()
    assert "\n" not in text and text.startswith('{"') and text.endswith("}}")
    gt = json.loads(text)
    first = next(iter(gt.values()))
    assert list(first) == ["tweet_text", "labels", "labels_str", "tweet_url", "img_url"]
    split_ids = [tweet_id for split in ("train", "val", "test")
                 for tweet_id in (root / "splits" / f"{split}_ids.txt").read_text().split()]
    assert sorted(split_ids) == sorted(gt)
    with_text = {p.stem for p in (root / "img_txt").iterdir()}
    assert 0 < len(with_text) < len(gt)  # not every image has OCR text
    formats = Counter(Image.open(root / "img_resized" / f"{i}.jpg").format for i in gt)
    assert formats["GIF"] >= 1 and formats["JPEG"] > formats["GIF"]


def test_hatexplain_json_and_divisions(pilot_run):
    root = pilot_run.out / "hatexplain"
    data = json.loads((root / "dataset.json").read_text())
    raw_divisions = (root / "post_id_divisions.json").read_text()
    assert raw_divisions.startswith('{\n    "test": [\n        "') and not raw_divisions.endswith("\n")
    divisions = json.loads(raw_divisions)
    assert list(divisions) == ["test", "train", "val"]
    undivided = set(data) - {p for ids in divisions.values() for p in ids}
    assert undivided and all(len({a["label"] for a in data[p]["annotators"]}) == 3 for p in undivided)
    for post_id, post in data.items():
        assert list(post) == ["post_id", "annotators", "rationales", "post_tokens"]
        assert re.fullmatch(r"\d+_(gab|twitter)", post_id) and len(post["annotators"]) == 3
        assert len(post["rationales"]) == sum(a["label"] != "normal" for a in post["annotators"])
        assert all(len(r) == len(post["post_tokens"]) for r in post["rationales"])


def test_olid_crlf_csv_quoting_and_level_subsets(pilot_run):
    root = pilot_run.out / "olid"
    raw = (root / "olid-training-v1.0.tsv").read_bytes()
    assert raw.startswith(b"id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\r\n") and raw.endswith(b"\r\n")
    assert re.search(rb'\t"[^\t]*""[^\t]*"\t(OFF|NOT)\t', raw)  # a quoted tweet with doubled quotes
    rows = list(csv.reader(io.StringIO(raw.decode(), newline=""), delimiter="\t"))[1:]
    assert any(r[1].startswith("@USER") for r in rows) and any(r[1].endswith(" URL") for r in rows)
    assert {tuple(r[2:]) for r in rows} <= {("NOT", "NULL", "NULL"), ("OFF", "UNT", "NULL"), ("OFF", "TIN", "IND"),
                                             ("OFF", "TIN", "GRP"), ("OFF", "TIN", "OTH")}
    levels = {x: list(csv.reader(open(root / f"labels-level{x}.csv", newline="")))[1:] for x in "abc"}
    tweets = {x: list(csv.reader(open(root / f"testset-level{x}.tsv", newline=""), delimiter="\t"))[1:] for x in "abc"}
    for x in "abc":
        assert [r[0] for r in tweets[x]] == [r[0] for r in levels[x]]  # same id order
    off = [i for i, label in levels["a"] if label == "OFF"]
    assert [i for i, _ in levels["b"]] == off  # level b = the OFF tweets
    assert [i for i, _ in levels["c"]] == [i for i, label in levels["b"] if label == "TIN"]


def test_images_vary_in_size_format_and_mode(pilot_run):
    images = [p for d in WITH_IMAGES for p in (pilot_run.out / d).rglob("*")
              if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    opened = [Image.open(p) for p in images]
    sides = [side for im in opened for side in im.size]
    assert min(sides) >= 140 and max(sides) <= 900 and np.std(sides) > 100
    assert {"PNG", "JPEG", "GIF"} <= {im.format for im in opened}
    assert {"RGB", "RGBA", "P"} <= {im.mode for im in opened}


def test_planted_duplicates(pilot_run):
    root = pilot_run.out / "hateful_memes"
    images = sorted((root / "img").iterdir())
    by_bytes = Counter(p.read_bytes() for p in images)
    assert max(by_bytes.values()) >= 2  # the same image under two ids
    hashes = {p.name: (imagehash.phash(Image.open(p)), Image.open(p).size) for p in images}
    near = [(a, b) for a in hashes for b in hashes if a < b and hashes[a][1] != hashes[b][1]
            and hashes[a][0] - hashes[b][0] <= 4]
    assert near  # a re-encoded, smaller copy that the split stage's pHash threshold catches
    rows = [json.loads(line) for s in ("train", "dev_seen", "test_seen", "test_unseen")
            for line in (root / f"{s}.jsonl").read_text().splitlines()]
    images_of_text: dict[str, set[bytes]] = {}
    for row in rows:
        images_of_text.setdefault(row["text"], set()).add((root / row["img"]).read_bytes())
    assert any(len(images) >= 2 for images in images_of_text.values())  # the same text on two memes


# ---------------------------------------------------------------- ingest and signal


def test_every_adapter_ingests_the_pilot_with_the_expected_counts_and_labels(pilot_run):
    from stages.taxonomy import Taxonomy

    taxonomy = Taxonomy.load(project_path("split", "label_taxonomy"))
    config = PilotConfig(out=pilot_run.out)
    for dataset in DATASETS:
        items = ingest(pilot_run.out, dataset)
        assert not [i for i in items if isinstance(i, Skip)], dataset
        records = [i.manifest for i in items]
        counts = Counter("none" if r.split is None else r.split for r in records)
        assert dict(counts) == pilot_run.counts[dataset], dataset
        assert len({r.id for r in records}) == len(records)
        for record in records:
            taxonomy.map(record)  # every raw value is one the taxonomy knows
            if record.image_path:
                assert Path(record.image_path).is_file(), record.image_path
        # the latent class of each generated example comes back through the native label fields
        expected = Counter((e.split, int(e.abusive)) for e in pilot.examples(releases.SPECS[dataset], config)
                           if e.split not in ("dev_unseen", "test_unseen", "none"))
        got = Counter((r.split, native_abusive(dataset, r.labels_raw)) for r in records
                      if r.split not in ("dev_unseen", "test_unseen", None))
        assert got == expected, dataset
        if dataset == "hateful_memes":
            assert all(r.labels_raw is None for r in records if r.split == "test_unseen")
        if dataset in WITH_IMAGES and dataset != "mmhs150k":
            assert all(i.ocr is not None and i.ocr.source == "dataset_transcription" for i in items)


def test_text_and_colour_cues_beat_the_majority_baseline(pilot_run):
    rows = []  # (is_train, text, image_path, label)
    for dataset in DATASETS:
        for item in ingest(pilot_run.out, dataset):
            record = item.manifest
            label = native_abusive(dataset, record.labels_raw)
            if label is not None:
                text = record.text_raw or item.ocr.lines[0].text
                rows.append((record.split in ("train", "training"), text, record.image_path, label))
    train = [r for r in rows if r[0]]
    held_out = [r for r in rows if not r[0]]

    def macro_f1_vs_majority(model, x_train, x_test, y_train, y_test) -> tuple[float, float]:
        predicted = model.fit(x_train, y_train).predict(x_test)
        majority = Counter(y_train).most_common(1)[0][0]
        return (f1_score(y_test, predicted, average="macro"),
                f1_score(y_test, [majority] * len(y_test), average="macro"))

    words = CountVectorizer().fit([r[1] for r in train])
    text_f1, baseline = macro_f1_vs_majority(LogisticRegression(max_iter=2000), words.transform([r[1] for r in train]),
                                             words.transform([r[1] for r in held_out]), [r[3] for r in train],
                                             [r[3] for r in held_out])
    assert text_f1 > baseline + 0.25 and text_f1 < 0.98, (text_f1, baseline)  # learnable, not trivial

    def colour_histogram(path: str) -> np.ndarray:
        rgb = np.asarray(Image.open(path).convert("RGB").resize((48, 48))) // 64
        bins = rgb[..., 0] * 16 + rgb[..., 1] * 4 + rgb[..., 2]
        return np.bincount(bins.ravel(), minlength=64) / bins.size

    with_images = [r for r in rows if r[2]]
    x = {r[2]: colour_histogram(r[2]) for r in with_images}
    train_i, test_i = [r for r in with_images if r[0]], [r for r in with_images if not r[0]]
    image_f1, baseline = macro_f1_vs_majority(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                                              np.array([x[r[2]] for r in train_i]), np.array([x[r[2]] for r in test_i]),
                                              [r[3] for r in train_i], [r[3] for r in test_i])
    assert image_f1 > baseline + 0.15 and image_f1 < 0.98, (image_f1, baseline)


def test_headers_and_line_shapes_match_the_real_samples(pilot_run, real_dataset):
    def first_line(path: Path) -> bytes:
        return path.read_bytes().split(b"\n")[0]

    olid_real, olid_ours = real_dataset("olid"), pilot_run.out / "olid"
    for name in LAYOUT["olid"]:
        assert first_line(olid_ours / name) == first_line(olid_real / name), name  # header + CRLF
    hm_line = rb'\{"id":\d+,"img":"img\\/\d{5}\.png",("label":[01],)?"text":"[^"]*"\}'
    for name in ("train.jsonl", "dev_seen.jsonl", "dev_unseen.jsonl", "test_unseen.jsonl"):
        real, ours = real_dataset("hateful_memes") / name, pilot_run.out / "hateful_memes" / name
        assert re.fullmatch(hm_line, first_line(real)) and re.fullmatch(hm_line, first_line(ours))
        assert real.read_bytes().endswith(b"\n") == ours.read_bytes().endswith(b"\n")  # only dev_seen does
    real_divisions = (real_dataset("hatexplain") / "post_id_divisions.json").read_text()
    ours = (pilot_run.out / "hatexplain" / "post_id_divisions.json").read_text()
    assert ours[:20] == real_divisions[:20] and ours[-8:] == real_divisions[-8:]  # '{\n    "test": [' ... ']\n}'
    real_post = json.loads((real_dataset("hatexplain") / "dataset.json").read_text())
    our_post = json.loads((pilot_run.out / "hatexplain" / "dataset.json").read_text())
    assert [list(p) for p in real_post.values()][0] == [list(p) for p in our_post.values()][0]
    hatecheck_real = (real_dataset("hatecheck") / "test_suite_cases.csv").read_text(encoding="utf-8").splitlines()
    hatecheck_ours = (pilot_run.out / "hatecheck" / "test_suite_cases.csv").read_text(encoding="utf-8").splitlines()
    assert hatecheck_ours[0] == hatecheck_real[0]  # header with the unnamed index column
    row = re.compile(r"\d+,\w+_n?h,\d+,[^,]+\. ,(hateful|non-hateful),[\w ]*,(general|directed|-),.*")
    assert row.fullmatch(hatecheck_real[1]) and all(row.fullmatch(line) for line in hatecheck_ours[1:])
    truth_header = first_line(real_dataset("mami") / "truth.txt").decode()
    training_header = first_line(pilot_run.out / "mami" / "TRAINING" / "training.csv").decode()
    assert training_header == truth_header + "\tText Transcription"
