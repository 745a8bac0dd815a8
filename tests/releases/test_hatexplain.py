"""HateXplain: dataset.json (one object keyed by post_id, three annotators each) +
post_id_divisions.json; posts in no division get split None.

The adapter is stages/releases/hatexplain.py; its docstring is the spec these tests check."""
from __future__ import annotations

import json
from collections import Counter

from stages.records import make_id
from tests.releases import examples


def test_hatexplain_real(real_dataset):
    folder = real_dataset("hatexplain")
    items = examples("hatexplain", folder)
    posts = json.loads((folder / "dataset.json").read_text())
    divisions = json.loads((folder / "post_id_divisions.json").read_text())
    split_of = {post_id: split for split, ids in divisions.items() for post_id in ids}
    assert len(items) == 7 and [e.manifest.id.split("_", 2)[2] for e in items] == list(posts)
    for e, (post_id, post) in zip(items, posts.items()):
        assert e.manifest.split == split_of[post_id]
        assert e.manifest.id == make_id("hatexplain", split_of[post_id], post_id)
        assert e.manifest.labels_raw == {"annotators": post["annotators"], "rationales": post["rationales"]}
        assert e.manifest.text_raw == " ".join(post["post_tokens"]) and e.manifest.image_path is None
    assert Counter(e.manifest.split for e in items) == {"train": 5, "val": 1, "test": 1}
    assert any(isinstance(a["annotator_id"], int) and a["target"] == ["None"]
               for e in items for a in e.manifest.labels_raw["annotators"])

