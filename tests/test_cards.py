"""Data cards (trajbench.cards): contents against the store, hashes recomputed
independently with hashlib, determinism, JSON-LD structure, bad input, and the CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
import zarr

from trajbench.bench.splits import assign_splits
from trajbench.cards import build_card, render_markdown, write_card
from trajbench.cards_cli import add_card_parser
from trajbench.errors import NotAStoreError, StoreNotFoundError, TrajbenchError
from trajbench.generate import generate
from trajbench.store.hashing import store_sha256
from trajbench.store.reader import open_store

pytestmark = pytest.mark.micro


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cards") / "micro.zarr"
    summary = generate("micro", out, workers=1, progress=False)
    assert summary.ok
    return out


@pytest.fixture(scope="module")
def written(micro: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_card(micro, tmp_path_factory.mktemp("card-out"))


@pytest.fixture(scope="module")
def card(written: tuple[Path, Path]) -> dict:
    return json.loads(written[1].read_text(encoding="utf-8"))


def _independent_array_hashes(root: Path) -> dict[str, str]:
    """Each array's line of trajbench-values-v1, hashed: the values read with xarray
    (a second reader), the attributes from the zarr.json files with json only."""
    import numpy as np
    import xarray as xr

    volatile = {
        "created_at", "updated_at", "created_by", "library_versions", "platform",
        "generator", "numeric_profile", "format_version", "compression",
        "default_compression", "snapshots_per_chunk",
    }  # fmt: skip

    def attrs_sha(attrs: dict) -> str:
        kept = {k: v for k, v in attrs.items() if k not in volatile}
        text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    out = {}
    for meta in sorted(root.rglob("zarr.json")):
        doc = json.loads(meta.read_text())
        if doc["node_type"] != "array":
            continue
        array = meta.parent
        group = json.loads((array.parent / "zarr.json").read_text())["attributes"]
        rel = array.relative_to(root).as_posix()
        name = array.name
        ds = xr.open_zarr(array.parent, consolidated=False, zarr_format=3)
        values = np.asarray(ds[name].values)
        dims = doc.get("dimension_names") or []
        if isinstance(group.get("n_snapshots"), int) and dims and dims[0] == "snapshot":
            values = values[: group["n_snapshots"]]
        values = np.ascontiguousarray(values, dtype=np.dtype(doc_dtype(doc)).newbyteorder("<"))
        shape = "x".join(str(d) for d in values.shape)
        line = (
            f"array\t{rel}\t{values.dtype.str}\t{shape}\t"
            f"{hashlib.sha256(values.tobytes()).hexdigest()}\t{attrs_sha(doc.get('attributes', {}))}\n"
        )
        out[rel] = hashlib.sha256(line.encode()).hexdigest()
    return out


def doc_dtype(doc: dict) -> str:
    return str(doc["data_type"])


def test_files_are_named_after_the_suite(written: tuple[Path, Path]) -> None:
    md, js = written
    assert (md.name, js.name) == ("micro.md", "micro.json")
    assert md.parent == js.parent


def test_composition_matches_the_store(micro: Path, card: dict) -> None:
    runs = open_store(micro).runs()
    tb = card["tb:card"]
    c = tb["composition"]
    real = runs[runs["group"] == "runs"]
    assert c["runs"] == len(real) == 5
    assert c["synthetic_series"] == int((runs["group"] != "runs").sum()) == 2
    assert c["status"] == {k: int(v) for k, v in Counter(runs["status"]).items()}
    assert c["snapshots"] == int(runs["n_snapshots"].sum())
    assert c["scalars"] == int((runs["n_snapshots"] * runs["n_params"]).sum())
    assert set(c["tasks"]) == set(real["task"])
    for task, t in c["tasks"].items():
        mine = real[real["task"] == task]
        assert t["runs"] == len(mine)
        assert t["n_params"] == sorted(set(int(n) for n in mine["n_params"]))
        assert t["seeds"] == sorted(set(int(s) for s in mine["seed"]))
        assert t["snapshots"]["total"] == int(mine["n_snapshots"].sum())
        assert t["status"] == {k: int(v) for k, v in Counter(mine["status"]).items()}
    # Parameter kinds from the layout: the CNN records BatchNorm buffers.
    cnn = next(a for a in c["architectures"].values() if a["task"] == "digits-cnn")
    assert {"conv", "norm", "buffer", "linear", "bias"} <= set(cnn["kinds"])
    assert sum(k["scalars"] for k in cnn["kinds"].values()) == cnn["n_params"]
    assert set(c["synthetic_families"]) == {"quadratic_sgd"}
    suites = tb["recipe"]["suites"]
    assert [(s["name"], s["runs"], s["matches_shipped_file"]) for s in suites] == [
        ("micro", 7, True)
    ]
    assert card["version"] == "1.1"


def test_per_array_sha256_recomputed_independently(micro: Path, card: dict) -> None:
    expected = _independent_array_hashes(micro)
    listed = {d["@id"]: d["sha256"] for d in card["distribution"] if "sha256" in d}
    assert listed == expected
    assert card["tb:card"]["hashes"]["arrays"] == len(expected)
    # Every run has weights, step and epoch arrays listed.
    for path in open_store(micro).run_paths():
        assert {f"{path}/weights", f"{path}/step", f"{path}/epoch"} <= set(listed)


def test_splits_are_the_harness_splits(micro: Path, card: dict) -> None:
    table = assign_splits(open_store(micro))
    listed = card["tb:card"]["splits"]["runs"]
    assert listed == {
        p: {"config": c, "split": s}
        for p, c, s in zip(table["path"], table["config"], table["split"], strict=True)
    }
    totals = card["tb:card"]["splits"]["totals"]
    assert sum(t["runs"] for t in totals.values()) == len(table)
    assert {"train", "validation", "test", "unseen", "synthetic"} == set(totals)


def test_same_store_gives_byte_identical_cards(
    micro: Path, written: tuple[Path, Path], tmp_path: Path
) -> None:
    md2, js2 = write_card(str(micro), tmp_path)
    assert md2.read_bytes() == written[0].read_bytes()
    assert js2.read_bytes() == written[1].read_bytes()
    created_at = open_store(micro).attrs["created_at"]
    assert created_at not in md2.read_text() and created_at not in js2.read_text()


def test_card_ignores_timestamps_but_not_data(
    micro: Path, written: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two generations differ only in created_at / updated_at: same card. A changed chunk: another card."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(micro, copy)
    for meta in copy.rglob("zarr.json"):
        doc = json.loads(meta.read_text())
        attrs = doc.get("attributes", {})
        if "created_at" in attrs or "updated_at" in attrs:
            for key in ("created_at", "updated_at"):
                if key in attrs:
                    attrs[key] = "1999-01-01T00:00:00Z"
            meta.write_text(json.dumps(doc, indent=2))
    assert store_sha256(copy) == store_sha256(micro)
    md, js = write_card(copy, tmp_path / "cards")
    assert md.read_bytes() == written[0].read_bytes() and js.read_bytes() == written[1].read_bytes()

    chunk = next(
        p
        for p in sorted((copy / "runs").rglob("*"))
        if p.is_file() and "/weights/c/" in p.as_posix()
    )
    # Change one value through zarr (chunks may be compressed: a flipped byte would not decode).
    weights_dir = next(p for p in chunk.parents if p.name == "weights")
    weights = zarr.open_array(weights_dir, mode="r+")
    index = tuple(
        int(b) * c
        for b, c in zip(chunk.relative_to(weights_dir / "c").parts, weights.chunks, strict=True)
    )
    weights[index] = weights[index] + 1
    assert store_sha256(copy) != store_sha256(micro)
    changed = build_card(copy)
    array = chunk.relative_to(copy).as_posix().split("/weights/")[0] + "/weights"
    hashes = {d["@id"]: d["sha256"] for d in changed["distribution"] if "sha256" in d}
    before = {
        d["@id"]: d["sha256"]
        for d in json.loads(written[1].read_text())["distribution"]
        if "sha256" in d
    }
    assert [k for k in hashes if hashes[k] != before[k]] == [array]


def test_jsonld_has_the_croissant_keys(card: dict, written: tuple[Path, Path]) -> None:
    ctx = card["@context"]
    assert ctx["sc"] == "https://schema.org/" and ctx["cr"] == "http://mlcommons.org/croissant/"
    assert card["@type"] == "sc:Dataset"
    for key in ("name", "description", "license", "distribution", "recordSet", "conformsTo"):
        assert card[key], key
    assert card["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert all(d["@type"] in ("cr:FileObject", "cr:FileSet") for d in card["distribution"])
    ids = {d["@id"] for d in card["distribution"]}
    fields = {f["name"]: f for rs in card["recordSet"] for f in rs["field"]}
    assert {"weights", "step", "epoch", "val_loss", "val_acc", "train_loss", "lr"} <= set(fields)
    for f in fields.values():
        assert f["@type"] == "cr:Field" and f["dataType"].startswith("sc:")
        if "source" in f:
            assert f["source"]["fileSet"]["@id"] in ids
    tb = card["tb:card"]
    for key in (
        "card_format",
        "motivation",
        "composition",
        "recipe",
        "splits",
        "leakage",
        "hashes",
        "licenses",
        "intended_uses",
        "limitations",
    ):
        assert tb[key], key
    assert len(tb["hashes"]["store_sha256"]) == 64
    assert (
        tb["licenses"]["store"]["spdx"] == "CC-BY-4.0"
        and tb["licenses"]["code"]["spdx"] == "Apache-2.0"
    )
    assert any("handwritten digits" in n for n in tb["leakage"]["notes"])
    assert render_markdown(card) == written[0].read_text(encoding="utf-8")


def test_markdown_names_what_matters(written: tuple[Path, Path], card: dict) -> None:
    md = written[0].read_text(encoding="utf-8")
    for text in (
        "## Motivation",
        "## Composition",
        "## Recipe",
        "## Benchmark splits",
        "## Leakage notes",
        "## Integrity",
        "## License",
        "## Intended uses",
        "## Limitations",
        "CC-BY-4.0",
        "Apache-2.0",
        "public domain",
        "digits-cnn",
        "quadratic_sgd",
        card["tb:card"]["hashes"]["store_sha256"],
        "trajbench/generate/suites/micro.toml",
    ):
        assert text in md, text
    for d in card["distribution"]:
        if "sha256" in d:
            assert d["sha256"] in md


@pytest.mark.parametrize("suite", ["tiny", "small"])
def test_committed_cards_render_byte_for_byte(suite: str) -> None:
    """The committed JSON-LD card, rendered again, gives the committed Markdown card and
    its own text (the rendering is split into sections; its output must not move)."""
    root = Path(__file__).resolve().parents[1] / "data_cards"
    text = (root / f"{suite}.json").read_text(encoding="utf-8")
    card = json.loads(text)
    assert render_markdown(card) == (root / f"{suite}.md").read_text(encoding="utf-8")
    assert json.dumps(card, indent=2, ensure_ascii=False, allow_nan=False) + "\n" == text


def test_copy_section_records_when_this_copy_was_made(micro: Path) -> None:
    card = build_card(micro, include_copy=True)
    copy = card["tb:card"]["copy"]
    assert copy == {"created_at": open_store(micro).attrs["created_at"]}
    assert copy["created_at"] in render_markdown(card)
    assert card["tb:card"]["hashes"]["store_sha256"] == store_sha256(micro)


def test_bad_input(micro: Path, tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        write_card(tmp_path / "missing.zarr", tmp_path / "out")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file.txt").write_text("x")
    with pytest.raises(NotAStoreError):
        write_card(tmp_path / "plain", tmp_path / "out")
    with pytest.raises(TrajbenchError, match="card name"):
        write_card(micro, tmp_path / "out", suite="no spaces")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(TrajbenchError, match="not a directory"):
        write_card(micro, tmp_path / "afile")
    with pytest.raises(TrajbenchError, match="store must be"):
        build_card(42)  # type: ignore[arg-type]


def test_stores_without_runs_or_without_a_suite(tmp_path: Path) -> None:
    from trajbench import Recorder
    from trajbench.store.root import open_root

    empty = tmp_path / "empty.zarr"
    open_root(str(empty), mode="a")
    with pytest.raises(TrajbenchError, match="nothing to describe"):
        build_card(empty)
    mine = tmp_path / "mine.zarr"
    model = torch.nn.Linear(3, 2)
    with Recorder(str(mine), "hand-made", model, meta={"task": "toy"}) as rec:
        for step in range(3):
            rec.snapshot(step=step)
    with pytest.raises(TrajbenchError, match="--suite"):
        build_card(mine)
    md, js = write_card(mine, tmp_path / "cards", suite="hand-made")
    assert md.name == "hand-made.md"
    card = json.loads(js.read_text())
    assert card["tb:card"]["composition"]["runs"] == 1 and "version" not in card


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trajbench")
    add_card_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_handler(
    micro: Path, written: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args(["card", str(micro), "--out", str(tmp_path / "c"), "--json"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert Path(printed["markdown"]).read_bytes() == written[0].read_bytes()
    args = _parser().parse_args(
        ["card", str(tmp_path / "missing.zarr"), "--out", str(tmp_path / "c")]
    )
    with pytest.raises(TrajbenchError):
        args.func(args)


def test_main_cli_runs_card(
    micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.cli import build_parser, main

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    # a missing command is a regression, not a reason to skip
    assert "card" in sub.choices, "`trajbench card` is not wired into trajbench.cli"
    assert main(["card", str(micro), "--out", str(tmp_path / "c"), "--suite", "renamed"]) == 0
    assert (tmp_path / "c" / "renamed.md").is_file() and (tmp_path / "c" / "renamed.json").is_file()
    capsys.readouterr()
    assert main(["card", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trajbench: error:") and err.count("\n") == 1


def test_runs_that_are_not_complete_are_listed(micro: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.zarr"
    shutil.copytree(micro, copy)
    path = open_store(copy).run_paths()[0]
    meta = copy / path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"].update({"status": "failed", "error": "RuntimeError: boom"})
    meta.write_text(json.dumps(doc))
    card = build_card(copy)
    c = card["tb:card"]["composition"]
    assert c["status"] == {"complete": 6, "failed": 1}
    assert c["problems"] == [f"{path}: status failed (RuntimeError: boom)"]
    assert "RuntimeError: boom" in render_markdown(card)
    assert (
        card["tb:card"]["hashes"]["store_sha256"]
        != build_card(micro)["tb:card"]["hashes"]["store_sha256"]
    )


def test_card_refuses_to_overwrite_without_force(
    micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trajbench.cli import main

    out = tmp_path / "c"
    assert main(["card", str(micro), "--out", str(out)]) == 0
    md = next(out.glob("*.md"))
    before = md.read_bytes()
    md.write_text("edited")
    capsys.readouterr()
    assert main(["card", str(micro), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and md.name in err and "--force" in err
    assert md.read_text() == "edited" and not list(out.glob(".card-*"))
    assert main(["card", str(micro), "--out", str(out), "--force"]) == 0
    assert md.read_bytes() == before


def test_a_step_cadence_store_shows_its_cadence(tmp_path: Path) -> None:
    from trajbench.generate import parse_suite

    suite = parse_suite(
        '[suite]\nname = "steps"\nversion = "1"\nepochs = 1\nsnapshot_every_steps = 2\n'
        '[[tasks]]\ntask = "digits-logreg"\nparams = { train_size = 96 }\n'
        '  [[tasks.grid]]\n  optimizer = "sgd"\n  lr = 0.1\n  batch_size = 32\n'
    )
    out = tmp_path / "steps.zarr"
    assert generate(suite, out, progress=False, numeric_profile=None).ok
    card = build_card(out)
    facts = card["tb:card"]["composition"]["tasks"]["digits-logreg"]
    assert facts["snapshot_every_steps"] == [2] and facts["snapshots_per_epoch"] == []
    assert facts["snapshots"]["total"] == 2  # 96 // 32 = 3 steps: snapshots at 0 and 2
    row = next(
        line
        for line in render_markdown(card).splitlines()
        if line.startswith("| `digits-logreg` | sgd |")  # the outcomes table
    )
    assert "| every 2 steps |" in row


def test_the_hand_written_nino_card_matches_its_suite() -> None:
    """data_cards/nino.* are written by hand (the data is the user's, so no store exists
    here): they must state what nino.toml defines."""
    from trajbench.generate import load_suite

    root = Path(__file__).resolve().parents[1] / "data_cards"
    card = json.loads((root / "nino.json").read_text(encoding="utf-8"))["tb:card"]
    suite = load_suite("nino")
    assert card["suite"]["version"] == suite.version and card["composition"]["runs"] == len(
        suite.runs()
    )
    assert card["composition"]["evaluation_windows"] == suite.windows.to_json()  # type: ignore[union-attr]
    tasks = card["composition"]["tasks"]
    assert set(tasks) == {e.task for e in suite.tasks}
    for entry in suite.tasks:
        (config,) = entry.configs
        t = tasks[entry.task]
        assert t["snapshot_cadence"] == config.cadence and t["epochs"] == config.epochs
        assert t["seeds"] == list(entry.seeds) and t["batch_size"] == config.batch_size
        assert {k: config.optimizer[k] for k in ("name", "lr", "weight_decay")} == t["optimizer"]
        assert (t["target"]["metric"], t["target"]["value"]) == (
            entry.target.metric,  # type: ignore[union-attr]
            entry.target.value,  # type: ignore[union-attr]
        )
    md = (root / "nino.md").read_text(encoding="utf-8")
    for text in ("cannot be generated", "MIT", "CC BY-SA", "Apache-2.0", "unverified"):
        assert text in md, text
