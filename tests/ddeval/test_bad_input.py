"""Bad-input matrix (issue 9): every user-facing entry point, fed what users really feed it.

Each case runs the CLI in-process from an empty working directory and must end with exit status 2 (the
documented "mistake you can fix" status), exactly one ``error:`` line that names the fix, no traceback, and
no file written or changed anywhere under the working directory. The entry points: every subcommand, suite
YAML files, data set specs (npz files), SyntheticSet folders, run directories and baseline files.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ddeval.cli import EXIT_USER_ERROR, main

TINY_SUITE = """\
name: tiny
dataset: digits
ipc: [1]
network: convnet-d2
network_args: {width: 8}
methods:
  random: {}
accuracy: {networks: [mlp], eval_seeds: 1, epochs: 1, full_data: false}
privacy: {enabled: false}
nas: {enabled: false}
"""


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A valid synthetic set, run directory and baseline, made once; cases copy and damage them."""
    root = tmp_path_factory.mktemp("assets")
    syn = root / "syn"
    assert main(["distill", "random", "--ipc", "1", "--out", str(syn)]) == 0
    (root / "tiny.yaml").write_text(TINY_SUITE)
    run = root / "run"
    assert main(["run", str(root / "tiny.yaml"), "--out", str(run), "--device", "cpu"]) == 0
    assert main(["check", str(run), "--baseline", str(root / "base.json"), "--update-baseline"]) == 0
    return root


# ----------------------------------------------------------------------------------------------- builders
def _syn(d: Path, assets: Path, *, tensors: dict | None = None, meta: Callable[[dict], None] | None = None,
         raw_tensors: bytes | None = None, raw_meta: str | None = None, drop: str | None = None,
         rehash: bool | None = True) -> None:
    """A copy of the valid synthetic set at d/syn with one thing damaged. Changed tensors get a matching
    checksum in meta.json (``rehash``), as a tool writing a bad set consistently would, so that the content
    checks are what is tested; ``rehash=False`` leaves the stale checksum, and None drops it (old sets)."""
    folder = d / "syn"
    shutil.copytree(assets / "syn", folder)
    if tensors is not None:
        loaded = torch.load(folder / "tensors.pt", weights_only=True)
        loaded.update(tensors)
        torch.save({k: v for k, v in loaded.items() if v is not None}, folder / "tensors.pt")
        if rehash is not False:
            data = json.loads((folder / "meta.json").read_text())
            digest = hashlib.sha256((folder / "tensors.pt").read_bytes()).hexdigest()
            data["tensors_sha256"] = digest if rehash else None
            (folder / "meta.json").write_text(json.dumps(data))
    if meta is not None:
        data = json.loads((folder / "meta.json").read_text())
        meta(data)
        (folder / "meta.json").write_text(json.dumps(data))
    if raw_tensors is not None:
        (folder / "tensors.pt").write_bytes(raw_tensors)
    if raw_meta is not None:
        (folder / "meta.json").write_text(raw_meta)
    if drop:
        (folder / drop).unlink()


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _npz(d: Path, **changes) -> None:
    """A valid small npz data set at d/data.npz, with ``changes`` replacing (or, with None, removing) arrays."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), "y_train": np.arange(40) % 4,
              "x_test": rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), "y_test": np.arange(12) % 4}
    arrays.update(changes)
    np.savez(d / "data.npz", **{k: v for k, v in arrays.items() if v is not None})


def _yaml(text: str) -> Callable[[Path, Path], None]:
    def setup(d: Path, assets: Path) -> None:
        (d / "suite.yaml").write_text(text)
    return setup


def _tiny_with(**replace: str) -> str:
    """TINY_SUITE with top-level lines replaced (key -> new line, or '' to delete)."""
    lines = []
    for line in TINY_SUITE.splitlines():
        key = line.split(":", 1)[0]
        if key in replace and not line.startswith(" "):
            if replace[key]:
                lines.append(replace[key])
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def _copy_run(d: Path, assets: Path, damage: Callable[[Path], None] | None = None) -> None:
    shutil.copytree(assets / "run", d / "run", ignore=shutil.ignore_patterns("units", "synthetic"))
    if damage:
        damage(d / "run" / "results.json")


def _baseline(d: Path, assets: Path, damage: Callable[[Path], None] | None = None) -> None:
    _copy_run(d, assets)
    shutil.copy(assets / "base.json", d / "base.json")
    if damage:
        damage(d / "base.json")


def _edit_json(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
    return damage


def _write(text: str | bytes) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
    return damage


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    pattern: str  # regex the error line must match (the cause, and where it helps, the fix)
    setup: Callable[[Path, Path], None] | None = None


RUN = ("run", "--device", "cpu")
DISTILL = ("distill", "random", "--ipc", "1", "--out", "out")
EVAL = ("evaluate", "syn", "--network", "mlp", "--seeds", "1", "--epochs", "1", "--device", "cpu")

CASES = [
    # ---- suite YAML files (ddeval run / audit / nas)
    Case("suite-missing", (*RUN, "missing.yaml"), r"missing\.yaml.*does not exist"),
    Case("suite-empty", (*RUN, "suite.yaml"), r"suite\.yaml.*empty", _yaml("")),
    Case("suite-not-yaml", (*RUN, "suite.yaml"), r"suite\.yaml.*YAML", _yaml("name: [unclosed\n  ipc: {")),
    Case("suite-truncated", (*RUN, "suite.yaml"), r"methods must be a mapping", _yaml(TINY_SUITE[: TINY_SUITE.index("methods") + 12])),
    Case("suite-top-level-list", (*RUN, "suite.yaml"), r"suite\.yaml.*mapping", _yaml("- dm\n- random\n")),
    Case("suite-misspelled-key", (*RUN, "suite.yaml"), r'Unknown key "methds".*Did you mean "methods"',
         _yaml(TINY_SUITE.replace("methods:", "methds:"))),
    Case("suite-ipc-wrong-type", (*RUN, "suite.yaml"), r"ipc", _yaml(_tiny_with(ipc='ipc: "ten"'))),
    Case("suite-ipc-zero", (*RUN, "suite.yaml"), r"ipc must be a list of positive integers", _yaml(_tiny_with(ipc="ipc: [0]"))),
    Case("suite-ipc-negative", (*RUN, "suite.yaml"), r"ipc must be a list of positive integers", _yaml(_tiny_with(ipc="ipc: [-2]"))),
    Case("suite-ipc-above-class-size", (*RUN, "suite.yaml"), r"ipc 500 exceeds the smallest class of digits \(131 images\); lower ipc",
         _yaml(_tiny_with(ipc="ipc: [500]"))),
    Case("suite-unknown-method", (*RUN, "suite.yaml"), r'Unknown method "dmm"',
         _yaml(TINY_SUITE.replace("random: {}", "dmm: {}"))),
    Case("suite-method-not-mapping", (*RUN, "suite.yaml"), r"dm.*mapping",
         _yaml(TINY_SUITE.replace("random: {}", "dm: 300"))),
    Case("suite-method-unknown-key", (*RUN, "suite.yaml"), r'Unknown key "iteratons".*Did you mean "iterations"',
         _yaml(TINY_SUITE.replace("random: {}", "dm: {iteratons: 3}"))),
    Case("suite-method-wrong-type", (*RUN, "suite.yaml"), r"iterations.*integer",
         _yaml(TINY_SUITE.replace("random: {}", "dm: {iterations: many}"))),
    Case("suite-method-zero-iterations", (*RUN, "suite.yaml"), r"iterations must be at least 1",
         _yaml(TINY_SUITE.replace("random: {}", "dm: {iterations: 0}"))),
    Case("suite-by-ipc-not-run", (*RUN, "suite.yaml"), r"by_ipc has overrides for ipc \[10\], which the suite does not run",
         _yaml(TINY_SUITE.replace("random: {}", "dm: {iterations: 2, by_ipc: {10: {iterations: 3}}}"))),
    Case("suite-unknown-network", (*RUN, "suite.yaml"), r'Unknown network "convnett"',
         _yaml(_tiny_with(network="network: convnett"))),
    Case("suite-eval-seeds-zero", (*RUN, "suite.yaml"), r"eval_seeds must be >= 1",
         _yaml(TINY_SUITE.replace("eval_seeds: 1", "eval_seeds: 0"))),
    Case("suite-epochs-negative", (*RUN, "suite.yaml"), r"epochs.*>= 1",
         _yaml(TINY_SUITE.replace("epochs: 1", "epochs: -5"))),
    Case("suite-accuracy-not-mapping", (*RUN, "suite.yaml"), r"accuracy.*mapping",
         _yaml(_tiny_with(accuracy="accuracy: 300"))),
    Case("suite-config-value-not-evaluated", (*RUN, "suite.yaml"), r"iterations.*integer",
         _yaml(TINY_SUITE.replace("random: {}", "dm: {iterations: '__import__(\"os\").getcwd()'}"))),
    # ---- --set overrides
    Case("set-no-equals", (*RUN, "--set", "ipc"), r"must look like key=value"),
    Case("set-unknown-top-key", (*RUN, "--set", "ipcs=1"), r'Unknown key "ipcs".*Did you mean "ipc"'),
    Case("set-unknown-method", (*RUN, "--set", "methods=dmm"), r'Unknown method "dmm".*Did you mean "dm"'),
    Case("set-misspelled-nested", (*RUN, "--set", "accuracy.epoch=3"), r'Unknown key "epoch".*"epochs"'),
    Case("set-ipc-not-a-number", (*RUN, "--set", "ipc=one"), r"ipc"),
    Case("set-eval-seeds-negative", (*RUN, "--set", "accuracy.eval_seeds=-1"), r"eval_seeds must be >= 1"),
    Case("set-unknown-dataset", (*RUN, "--set", "dataset=digitz"), r'Unknown dataset "digitz"'),
    # ---- data set specs and npz files
    Case("npz-missing", (*DISTILL, "--dataset", "npz:nothing.npz"), r"nothing\.npz"),
    Case("npz-empty", (*DISTILL, "--dataset", "npz:data.npz"), r"data\.npz",
         lambda d, a: (d / "data.npz").write_bytes(b"")),
    Case("npz-truncated", (*DISTILL, "--dataset", "npz:data.npz"), r"data\.npz",
         lambda d, a: (_npz(d), _truncate(d / "data.npz"))),
    Case("npz-missing-array", (*DISTILL, "--dataset", "npz:data.npz"), r"y_train",
         lambda d, a: _npz(d, y_train=None)),
    Case("npz-wrong-shape", (*DISTILL, "--dataset", "npz:data.npz"), r"x_train.*shape",
         lambda d, a: _npz(d, x_train=np.zeros(40, dtype=np.uint8))),
    Case("npz-wrong-dtype", (*DISTILL, "--dataset", "npz:data.npz"), r"x_train",
         lambda d, a: _npz(d, x_train=np.full((40, 8, 8), "a"))),
    Case("npz-nan-pixels", (*DISTILL, "--dataset", "npz:data.npz"), r"x_train.*(NaN|finite)",
         lambda d, a: _npz(d, x_train=np.full((40, 8, 8), np.nan, dtype=np.float32))),
    Case("npz-inf-pixels", (*DISTILL, "--dataset", "npz:data.npz"), r"x_test.*(Inf|finite)",
         lambda d, a: _npz(d, x_test=np.full((12, 8, 8), np.inf, dtype=np.float32))),
    Case("npz-negative-labels", (*DISTILL, "--dataset", "npz:data.npz"), r"y_train.*label",
         lambda d, a: _npz(d, y_train=np.arange(40) % 4 - 1)),
    Case("npz-labels-out-of-range", (*DISTILL, "--dataset", "npz:data.npz"), r"label\(s\) 4, 5",
         lambda d, a: _npz(d, y_test=np.arange(12) % 4 + 7)),
    Case("npz-length-mismatch", (*DISTILL, "--dataset", "npz:data.npz"), r"y_train",
         lambda d, a: _npz(d, y_train=np.arange(39) % 4)),
    Case("npz-float-labels", (*DISTILL, "--dataset", "npz:data.npz"), r"y_train.*integer",
         lambda d, a: _npz(d, y_train=(np.arange(40) % 4) + 0.5)),
    Case("npz-not-an-npz", (*DISTILL, "--dataset", "npz:data.npz"), r"data\.npz",
         lambda d, a: (d / "data.npz").write_text("x_train,y_train\n1,2\n")),
    Case("dataset-unknown-kind", (*DISTILL, "--dataset", "cifar11"), r'Unknown dataset "cifar11"'),
    Case("imagefolder-missing", (*DISTILL, "--dataset", "imagefolder:nowhere"), r"nowhere"),
    # ---- ddeval distill
    Case("distill-unknown-method", ("distill", "dmm", "--out", "out"), r'Unknown method "dmm".*"dm"'),
    Case("distill-ipc-zero", ("distill", "random", "--ipc", "0", "--out", "out"), r"ipc \(images per class\) must be a positive"),
    Case("distill-ipc-negative", ("distill", "random", "--ipc", "-3", "--out", "out"), r"ipc \(images per class\) must be a positive"),
    Case("distill-ipc-above-class-size", ("distill", "random", "--ipc", "1000", "--out", "out"),
         r"ipc=1000 but class '8' has only 131 real images; lower ipc"),
    Case("distill-unknown-key", ("distill", "dm", "--set", "iteratons=2", "--out", "out"),
         r'Unknown key "iteratons".*"iterations"'),
    Case("distill-wrong-type", ("distill", "dm", "--set", "lr_img=fast", "--out", "out"), r"must be a number"),
    Case("distill-negative-lr", ("distill", "dm", "--set", "lr_img=-1", "--out", "out"), r"lr_img must be positive"),
    Case("distill-ipc-not-int", ("distill", "random", "--ipc", "ten", "--out", "out"), r"ipc.*int"),
    Case("distill-out-is-a-file", ("distill", "random", "--ipc", "1", "--out", "taken"), r"taken.*file",
         lambda d, a: (d / "taken").write_text("keep me")),
    # ---- SyntheticSet folders (ddeval evaluate)
    Case("syn-missing-folder", EVAL, r"No synthetic set at syn"),
    Case("syn-no-tensors", EVAL, r"No synthetic set at syn", lambda d, a: _syn(d, a, drop="tensors.pt")),
    Case("syn-no-meta", EVAL, r"No synthetic set at syn", lambda d, a: _syn(d, a, drop="meta.json")),
    Case("syn-empty-tensors", EVAL, r"tensors\.pt.*damaged", lambda d, a: _syn(d, a, raw_tensors=b"")),
    Case("syn-truncated-tensors", EVAL, r"tensors\.pt.*(damaged|checksum)",
         lambda d, a: (_syn(d, a), _truncate(d / "syn" / "tensors.pt"))),
    Case("syn-pickled-object", EVAL, r"tensors\.pt",
         lambda d, a: _syn(d, a, tensors={"evil": _Evil()})),
    Case("syn-meta-not-json", EVAL, r"meta\.json.*JSON", lambda d, a: _syn(d, a, raw_meta="{not json")),
    Case("syn-meta-empty", EVAL, r"meta\.json.*JSON", lambda d, a: _syn(d, a, raw_meta="")),
    Case("syn-meta-wrong-version", EVAL, r"format_version",
         lambda d, a: _syn(d, a, meta=lambda m: m.update(format_version=99))),
    Case("syn-meta-missing-classes", EVAL, r"classes",
         lambda d, a: _syn(d, a, meta=lambda m: m.pop("classes"))),
    Case("syn-images-wrong-rank", EVAL, r"\[M, C, H, W\]",
         lambda d, a: _syn(d, a, tensors={"images": torch.zeros(10, 8, 8)})),
    Case("syn-images-wrong-dtype", EVAL, r"stores torch.int64 images",
         lambda d, a: _syn(d, a, tensors={"images": torch.zeros(10, 1, 8, 8, dtype=torch.int64)})),
    Case("syn-images-nan", EVAL, r"NaN or Inf",
         lambda d, a: _syn(d, a, tensors={"images": torch.full((10, 1, 8, 8), float("nan"))})),
    Case("syn-images-inf", EVAL, r"NaN or Inf",
         lambda d, a: _syn(d, a, tensors={"images": torch.full((10, 1, 8, 8), float("inf"))})),
    Case("syn-labels-out-of-range", EVAL, r"labels must lie in 0\.\.9",
         lambda d, a: _syn(d, a, tensors={"labels": torch.arange(10) + 5})),
    Case("syn-labels-negative", EVAL, r"labels must lie in 0\.\.9",
         lambda d, a: _syn(d, a, tensors={"labels": torch.arange(10) - 1})),
    Case("syn-labels-count", EVAL, r"10 images but 9 labels",
         lambda d, a: _syn(d, a, tensors={"labels": torch.arange(9)})),
    Case("syn-soft-labels-not-distributions", EVAL, r"distributions",
         lambda d, a: _syn(d, a, tensors={"labels": torch.full((10, 10), 0.5)})),
    Case("syn-wrong-image-size-for-data", EVAL, r"shape",
         lambda d, a: _syn(d, a, tensors={"images": torch.zeros(10, 1, 12, 12)},
                           meta=lambda m: m.update(image_shape=[1, 12, 12]))),
    Case("syn-tensors-replaced", EVAL, r"tensors\.pt.*checksum",
         lambda d, a: _syn(d, a, tensors={"images": torch.ones(10, 1, 8, 8)}, rehash=False)),
    Case("syn-old-format-without-checksum-nan", EVAL, r"NaN or Inf",
         lambda d, a: _syn(d, a, tensors={"images": torch.full((10, 1, 8, 8), float("nan"))}, rehash=None)),
    # ---- ddeval evaluate options
    Case("evaluate-unknown-network", ("evaluate", "syn", "--network", "lenett", "--seeds", "1"),
         r'Unknown network "lenett"', lambda d, a: _syn(d, a)),
    Case("evaluate-seeds-zero", ("evaluate", "syn", "--seeds", "0"), r"seeds.*>= 1", lambda d, a: _syn(d, a)),
    Case("evaluate-epochs-zero", ("evaluate", "syn", "--epochs", "0"), r"epochs.*>= 1", lambda d, a: _syn(d, a)),
    Case("evaluate-lr-negative", ("evaluate", "syn", "--lr", "-0.1"), r"lr must be positive", lambda d, a: _syn(d, a)),
    Case("evaluate-lr-nan", ("evaluate", "syn", "--lr", "nan"), r"lr must be positive", lambda d, a: _syn(d, a)),
    # ---- run directories (ddeval report / check)
    Case("report-missing-run", ("report", "nowhere"), r"No results\.json in nowhere"),
    Case("report-empty-results", ("report", "run"), r"results\.json",
         lambda d, a: _copy_run(d, a, _write(""))),
    Case("report-truncated-results", ("report", "run"), r"results\.json",
         lambda d, a: _copy_run(d, a, _truncate)),
    Case("report-wrong-schema-version", ("report", "run"), r"schema",
         lambda d, a: _copy_run(d, a, _edit_json(lambda r: r.update(schema_version=99)))),
    Case("report-results-not-mapping", ("report", "run"), r"results\.json",
         lambda d, a: _copy_run(d, a, _write("[1, 2, 3]"))),
    Case("report-three-runs", ("report", "run", "run", "run"), r"one run directory.*or two"),
    Case("check-missing-run", ("check", "nowhere", "--baseline", "base.json"), r"nowhere"),
    # ---- baselines (ddeval check)
    Case("baseline-missing", ("check", "run", "--baseline", "none.json"), r"none\.json.*--update-baseline",
         lambda d, a: _copy_run(d, a)),
    Case("baseline-empty", ("check", "run", "--baseline", "base.json"), r"base\.json",
         lambda d, a: _baseline(d, a, _write(""))),
    Case("baseline-truncated", ("check", "run", "--baseline", "base.json"), r"base\.json",
         lambda d, a: _baseline(d, a, _truncate)),
    Case("baseline-not-mapping", ("check", "run", "--baseline", "base.json"), r"base\.json",
         lambda d, a: _baseline(d, a, _write("[]"))),
    Case("baseline-wrong-version", ("check", "run", "--baseline", "base.json"), r"base\.json",
         lambda d, a: _baseline(d, a, _edit_json(lambda b: b.update(version=99)))),
    Case("baseline-metric-value-not-number", ("check", "run", "--baseline", "base.json"), r"base\.json",
         lambda d, a: _baseline(d, a, _edit_json(
             lambda b: b["metrics"][0].update(value="high")))),
    Case("tolerance-no-equals", ("check", "run", "--baseline", "base.json", "--tolerance", "accuracy"),
         r"METRIC=VALUE", lambda d, a: _baseline(d, a)),
    Case("tolerance-not-number", ("check", "run", "--baseline", "base.json", "--tolerance", "accuracy=lots"),
         r"lots", lambda d, a: _baseline(d, a)),
    Case("tolerance-negative", ("check", "run", "--baseline", "base.json", "--tolerance", "accuracy=-1"),
         r"-1", lambda d, a: _baseline(d, a)),
    Case("tolerance-unknown-metric", ("check", "run", "--baseline", "base.json", "--tolerance", "acuracy=0.01"),
         r'"acuracy".*"accuracy"', lambda d, a: _baseline(d, a)),
    # ---- ddeval audit / nas / bench / ls
    Case("audit-negative-shadows", ("audit", "--set", "privacy.shadows=-1"), r"shadows"),
    Case("audit-zero-epsilon", ("audit", "--set", "privacy.dp_epsilons=0"), r"dp_epsilons|epsilon"),
    Case("nas-unknown-space", ("nas", "--set", "nas.space=huge"), r'Unknown.*"huge"'),
    Case("nas-unknown-strategy", ("nas", "--set", "nas.strategy=magic"), r"Unknown NAS strategy 'magic'"),
    Case("nas-proxy-no-equals", ("nas", "--proxy", "syn"), r"NAME=FOLDER"),
    Case("nas-proxy-missing-folder", ("nas", "--proxy", "mine=nowhere"), r"nowhere"),
    Case("bench-zero-repeats", ("bench", "--repeats", "0", "--out", "out"), r"repeats must be at least 1"),
    Case("bench-unknown-method", ("bench", "--methods", "dmm", "--out", "out"), r'Unknown method "dmm"'),
    Case("ls-unknown-kind", ("ls", "metods"), r"invalid choice"),
    Case("unknown-subcommand", ("distil",), r"invalid choice"),
]


def _snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_with_one_clear_line_and_writes_nothing(case, assets, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if case.setup is not None:
        case.setup(work, assets)
    before = _snapshot(work)
    capsys.readouterr()
    try:
        code = main(list(case.argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    assert "this must never run" not in captured.out + captured.err, "a pickled object was executed"
    assert code == EXIT_USER_ERROR, captured.err
    assert "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1, captured.err
    assert re.search(case.pattern, errors[0]), errors[0]
    after = _snapshot(work)
    assert after == before, f"files written or changed: {sorted(set(after) ^ set(before)) or 'contents'}"
