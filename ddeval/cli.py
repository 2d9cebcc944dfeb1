"""Command line: ``ddeval run | audit | nas | distill | evaluate | report | check | bench | ls``.

Each subcommand is a small class with its own arguments and examples. Exit status: 0 success; 1 ``ddeval
check`` found a regression (or a baseline metric missing from the run); 2 a mistake the user can fix, with
one ``error:`` line naming the fix; 130 interrupted (rerun the same command with the same ``--out`` to resume).
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ddeval.entry import EXIT_INTERRUPTED, INTERRUPTED, caused_by_interrupt, terminate_as_interrupt
from distillers.errors import DDError, Diverged

if TYPE_CHECKING:
    from distillers.synthetic import SyntheticSet

EXIT_REGRESSION = 1
EXIT_USER_ERROR = 2


class Command:
    name = ""
    help = ""
    examples = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU when present, else CPU), cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--no-fast", dest="fast", action="store_false",
                        help="plain float32 eager PyTorch: no bf16 autocast, no torch.compile (the fast path "
                             "is on by default where the device supports it)")


class RunCommand(Command):
    name = "run"
    help = "distil, evaluate (accuracy, privacy, NAS proxy) and write a report for a suite"
    examples = """examples:
  ddeval run                                   # packaged quickstart suite on bundled digits
  ddeval run my_suite.yaml --out runs/exp1     # your suite; rerun the same line to resume
  ddeval run --set methods=dm,random --set accuracy.eval_seeds=5 --set nas.enabled=false"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("suite", nargs="?", default=None,
                            help="suite YAML file or packaged suite name (default: quickstart)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a suite value, e.g. ipc=1,10 or methods.dm.iterations=100")
        parser.add_argument("--out", default=None, help="run directory (default: runs/<suite>-<time>)")
        _add_device(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ddeval.pipeline import run_suite
        from ddeval.summary import summary_table

        overrides = list(args.overrides) + ([] if args.fast else ["fast=false"])
        results = run_suite(args.suite, overrides=overrides, run_dir=args.out, device=args.device)
        print(summary_table(results))
        run_dir = Path(results["run"]["dir"])
        print(f"\nReport: {run_dir / 'report.html'}\n        {run_dir / 'report.md'}")
        return 0


class AuditCommand(Command):
    name = "audit"
    help = "privacy only: membership inference (threshold attacks, LiRA with shadow pipelines), DP-SGD, DP audits"
    examples = """examples:
  ddeval audit                                  # packaged privacy suite on bundled digits
  ddeval audit --set privacy.shadows=32 --out runs/priv   # rerun the same line to resume
  ddeval audit quickstart --set privacy.audit.enabled=true
  ddeval audit privacy-mnist --out reports/privacy-mnist/run    # MNIST (../shared/data), about 2 h"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("suite", nargs="?", default="privacy",
                            help="suite YAML file or packaged suite name (default: privacy)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a suite value, e.g. privacy.shadows=16 or privacy.dp_epsilons=1,8")
        parser.add_argument("--out", default=None, help="run directory (default: runs/<suite>-<time>)")
        _add_device(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ddeval.pipeline import run_suite
        from ddeval.summary import privacy_table

        overrides = ["accuracy.enabled=false", "nas.enabled=false", "privacy.enabled=true",
                     *args.overrides, *([] if args.fast else ["fast=false"])]
        results = run_suite(args.suite, overrides=overrides, run_dir=args.out, device=args.device)
        print(privacy_table(results))
        run_dir = Path(results["run"]["dir"])
        print(f"\nReport: {run_dir / 'report.html'}\n        {run_dir / 'report.md'}")
        return 0


class NasCommand(Command):
    name = "nas"
    help = "search architectures on distilled proxies and on the full data; score how well the rankings agree"
    examples = """examples:
  ddeval nas                                        # packaged nas suite: digits, 48 ConvNets, 5 proxies
  ddeval nas nas-mnist --out reports/nas-mnist/run  # the MNIST report; rerun the same line to resume
  ddeval nas --set nas.strategy=tpe --set nas.max_trials=12
  ddeval nas --proxy mine=syn/dm10 --set nas.proxies=random   # a saved set (ddeval distill --out) as proxy
  ddeval nas --set nas.cache_dir=~/.cache/ddeval-nas  # share full-data trials between runs"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("suite", nargs="?", default="nas",
                            help="suite YAML file or packaged suite name (default: nas)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="override a suite value, e.g. nas.space=full-96 or nas.proxies=dm,random")
        parser.add_argument("--proxy", dest="proxies", action="append", default=[], metavar="NAME=FOLDER",
                            help="also score a saved synthetic set as a proxy (repeatable)")
        parser.add_argument("--out", default=None, help="run directory (default: runs/<suite>-<time>)")
        _add_device(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ddeval.pipeline import run_suite
        from ddeval.summary import nas_table

        proxies = []
        for item in args.proxies:
            name, sep, folder = item.partition("=")
            if not sep or not name.strip() or not folder.strip() or "." in name:
                raise DDError(f'--proxy "{item}" must look like NAME=FOLDER (a name without dots, and the '
                              "folder of a saved synthetic set).")
            proxies.append(f"nas.proxy_sets.{name.strip()}={folder.strip()}")
        overrides = ["accuracy.enabled=false", "privacy.enabled=false", "nas.enabled=true", *proxies,
                     *args.overrides, *([] if args.fast else ["fast=false"])]
        results = run_suite(args.suite, overrides=overrides, run_dir=args.out, device=args.device)
        print(nas_table(results))
        run_dir = Path(results["run"]["dir"])
        print(f"\nReport: {run_dir / 'report.html'}\n        {run_dir / 'report.md'}")
        return 0


class DistillCommand(Command):
    name = "distill"
    help = "distil a data set with one method and save the synthetic set"
    examples = """examples:
  ddeval distill dm --dataset digits --ipc 10 --out syn/dm10 --set iterations=200
  ddeval distill herding --dataset npz:../shared/data/mnist-5k.npz --ipc 1 --out syn/herding1"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("method", help="method name (see `ddeval ls methods`)")
        parser.add_argument("--dataset", default="digits", help="data set spec (default: digits)")
        parser.add_argument("--data-root", default=None, help="folder with torchvision data sets")
        parser.add_argument("--download", action="store_true", help="allow torchvision downloads")
        parser.add_argument("--ipc", type=int, default=10, help="images per class (default: 10)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                            help="method config value, e.g. iterations=200")
        parser.add_argument("--out", required=True, help="folder to write the synthetic set into")
        _add_device(parser)

    def run(self, args: argparse.Namespace) -> int:
        import distillers
        from ddeval import datasets
        from ddeval.config import apply_overrides
        from distillers.methods import config_keys
        from distillers.protocol import resolve_device

        cfg = apply_overrides({}, args.overrides)
        if not args.fast and "fast" in config_keys(args.method):
            cfg["fast"] = False
        method = distillers.create(args.method, **cfg)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise DDError(f"--out {out} is a file, not a folder; give a folder for the synthetic set (a set "
                          "already in it is replaced).")
        train, _ = datasets.load(args.dataset, root=args.data_root, download=args.download)
        try:
            syn = method.distill(train, args.ipc, seed=args.seed, device=str(resolve_device(args.device)))
        except Diverged as err:
            if err.last_good is None:
                raise
            kept = Path(f"{Path(args.out)}.diverged")
            cast("SyntheticSet", err.last_good).save(kept)
            raise DDError(f"{err} Its synthetic set after iteration {err.iteration - 1} is in {kept}; nothing "
                          f"was written to {args.out}.") from None
        syn.save(args.out)
        print(f"Saved {len(syn)} images ({args.method}, ipc={args.ipc}, "
              f"{syn.meta['distill_seconds']:.1f} s) to {args.out}")
        return 0


class EvaluateCommand(Command):
    name = "evaluate"
    help = "train fresh networks on a saved synthetic set and report test accuracy"
    examples = """examples:
  ddeval evaluate syn/dm10 --dataset digits --seeds 3
  ddeval evaluate syn/dm10 --dataset digits --network convnet --network mlp --epochs 300"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("synthetic", help="folder written by `ddeval distill` or a run's synthetic/ set")
        parser.add_argument("--dataset", default="digits", help="data set whose test split is used")
        parser.add_argument("--data-root", default=None)
        parser.add_argument("--download", action="store_true")
        parser.add_argument("--network", action="append", default=None, help="network(s) (default: convnet)")
        parser.add_argument("--seeds", type=int, default=3, help="evaluation seeds (default: 3)")
        parser.add_argument("--epochs", type=int, default=300)
        parser.add_argument("--augment", action="store_true", help="DSA augmentation while training")
        parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default: 0.01)")
        parser.add_argument("--learned-lr", action="store_true",
                            help="train with the set's own learned learning rate (MTT, TESLA, DD) when it has one")
        _add_device(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ddeval import datasets
        from ddeval.accuracy import evaluate_over_seeds, recipe, set_recipe
        from ddeval.config import AccuracyConfig
        from distillers.augment import default_strategy
        from distillers.protocol import resolve_device
        from distillers.synthetic import SyntheticSet

        syn = SyntheticSet.load(args.synthetic)
        _, test = datasets.load(args.dataset, root=args.data_root, download=args.download)
        check_compatible(syn, test, args.dataset)
        acc = AccuracyConfig(networks=tuple(args.network or ["convnet"]), eval_seeds=args.seeds,
                             epochs=args.epochs, augment=args.augment, lr=args.lr, learned_lr=args.learned_lr)
        cfg = set_recipe(recipe(acc, augment=default_strategy(test.name), fast=args.fast), syn, acc.learned_lr)
        device = str(resolve_device(args.device))
        print(f"{'network':<12} {'accuracy (%)':>16}  seeds  (lr {cfg.lr:.4g})")
        for network in acc.networks:
            res = evaluate_over_seeds(syn, test, network=network, network_args={}, train_config=cfg,
                                      seeds=list(range(1000, 1000 + args.seeds)), device=device,
                                      run_unit=lambda kind, spec, compute: compute(), unit_spec={})
            print(f"{network:<12} {100 * res['accuracy_mean']:>9.2f} ± {100 * res['accuracy_std']:<5.2f} "
                  f"{args.seeds}")
        return 0


def check_compatible(syn: Any, test: Any, dataset: str) -> None:
    """A synthetic set must match the data set's image shape and classes to be evaluated on it."""
    if tuple(syn.images.shape[1:]) != tuple(test.image_shape):
        raise DDError(f"The synthetic images have shape {tuple(syn.images.shape[1:])} but {dataset} images are "
                      f"{tuple(test.image_shape)}; evaluate on the data set it was distilled from "
                      f"({syn.meta.get('source', {}).get('name', 'see its meta.json')}).")
    if syn.num_classes != test.num_classes:
        raise DDError(f"The synthetic set has {syn.num_classes} classes but {dataset} has {test.num_classes}; "
                      "evaluate on the data set it was distilled from.")


class ReportCommand(Command):
    name = "report"
    help = "re-render a run's report.md and report.html from its results.json, or compare two runs"
    examples = """examples:
  ddeval report runs/quickstart-20261205-1200          # re-render that run's report in place
  ddeval report runs/before runs/after --out cmp/     # side by side: A is the reference, B is checked"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one run directory, or two to compare")
        parser.add_argument("--out", default=None,
                            help="folder for a comparison (default: compare-<A>-vs-<B> beside run B)")

    def run(self, args: argparse.Namespace) -> int:
        if len(args.runs) > 2:
            raise DDError(f"ddeval report takes one run directory (re-render) or two (compare), got "
                          f"{len(args.runs)}.")
        if len(args.runs) == 1:
            from ddeval.report.render import render_run

            if args.out:
                raise DDError("--out applies to a comparison of two runs; one run's report is written "
                              "into its own directory.")
            paths = render_run(args.runs[0])
        else:
            from ddeval.report.compare import render_comparison

            a, b = (Path(r) for r in args.runs)
            out = Path(args.out) if args.out else b.resolve().parent / f"compare-{a.resolve().name}-vs-{b.resolve().name}"
            paths = render_comparison(a, b, out)
        print(f"Report: {paths['report.html']}\n        {paths['report.md']}")
        return 0


class CheckCommand(Command):
    name = "check"
    help = "regression check: compare a run's metrics with a baseline; exit 1 on regression"
    examples = """examples:
  ddeval check runs/nightly --baseline reports/baselines/nightly.json
  ddeval check runs/nightly --baseline base.json --tolerance accuracy=0.01 --tolerance auc=5%
  ddeval check runs/trusted --baseline base.json --update-baseline   # write (or replace) the baseline

Tolerances: METRIC=ABS (in the metric's unit; accuracy is a fraction, so 0.01 = 1 point), METRIC=REL%,
METRIC=ABS,REL% (the larger applies) or METRIC=off (reported, never fails). Timings are not gated unless
named. Exit status: 0 no regression, 1 regression or a baseline metric missing from the run, 2 usage error."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (or its results.json)")
        parser.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON file")
        parser.add_argument("--tolerance", action="append", default=[], metavar="METRIC=VALUE",
                            help="per-metric tolerance (repeatable); overrides the baseline's and the defaults")
        parser.add_argument("--update-baseline", action="store_true",
                            help="write the run's metrics as the new baseline (with these tolerances)")
        parser.add_argument("--all", dest="everything", action="store_true",
                            help="list every metric, not only the ones that moved")

    def run(self, args: argparse.Namespace) -> int:
        from ddeval import regression as rg

        tolerances = dict(rg.parse_tolerance(t) for t in args.tolerance)
        results = rg.load_results(args.run_dir)
        if args.update_baseline:
            previous = Path(args.baseline)
            kept: dict[str, rg.Tolerance] = {}
            if previous.is_file():
                try:
                    old = rg.load_baseline(previous)
                    kept = dict(old.tolerances)
                    print("Against the baseline being replaced:")
                    print(rg.compare(rg.extract(results), old, tolerances=tolerances).table())
                except DDError as err:
                    print(f"(the old baseline could not be read, so it is not compared: {err})")
            base = rg.baseline_from_results(results, tolerances={**kept, **tolerances},
                                            source={"run_dir": str(args.run_dir)})
            rg.save_baseline(base, args.baseline)
            print(f"Wrote baseline {args.baseline} ({len(base.metrics)} metrics). Review it and commit it.")
            return 0
        comparison = rg.compare(rg.extract(results), rg.load_baseline(args.baseline), tolerances=tolerances)
        print(comparison.table(everything=args.everything))
        return EXIT_REGRESSION if comparison.failed else 0


class BenchCommand(Command):
    name = "bench"
    help = "fp32 eager baseline vs fast path: training img/s, s per iteration, memory, FLOP/s vs peak"
    examples = """examples:
  ddeval bench                                  # full benchmark into reports/benchmarks/<cpu|cuda>/ (~30 min)
  ddeval bench --methods dm,dsa --no-scaling    # just those methods
  ddeval bench --quick --out /tmp/bench         # a one-minute smoke run (figures not meaningful)"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="reports/benchmarks",
                            help="folder; results go to <out>/<device kind>/ (default: reports/benchmarks)")
        parser.add_argument("--methods", default="", help="comma-separated method names (default: all)")
        parser.add_argument("--repeats", type=int, default=3, help="alternating repeats of evaluation training")
        parser.add_argument("--method-repeats", type=int, default=2,
                            help="alternating repeats for DM, DC and DSA (default: 2)")
        parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
        parser.add_argument("--no-scaling", dest="scaling", action="store_false",
                            help="skip the scaling measurements (ipc 1/10/50, real-set sizes)")
        parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, nothing more")
        parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")

    def run(self, args: argparse.Namespace) -> int:
        from ddeval.bench import BenchConfig, run_bench
        from distillers.config import build_config

        methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        cfg = build_config(BenchConfig, {"device": args.device, "quick": args.quick, "repeats": args.repeats,
                                         "method_repeats": args.method_repeats, "methods": methods,
                                         "scaling": args.scaling, "threads": args.threads}, what="bench")
        results = run_bench(cfg, out=args.out, log=lambda text: print(text, file=sys.stderr, flush=True))
        folder = Path(args.out) / results["machine"]["device"].split(":")[0]
        for row in results["training"]:
            print(f"{row['workload']}: {row['baseline']['images_per_second']:.0f} -> "
                  f"{row['fast']['images_per_second']:.0f} img/s ({row['speedup']:.2f}x, {row['fast']['path']})")
        for row in results["methods"]:
            print(f"{row['method']}: {row['baseline']['seconds']:.3g} -> {row['fast']['seconds']:.3g} s per "
                  f"{row['per']} ({row['speedup']}x)")
        print(f"\nReport: {folder / 'README.md'}")
        return 0


class ListCommand(Command):
    name = "ls"
    help = ("list methods, parameterisations, networks, datasets, evaluators, NAS spaces and strategies, and "
            "packaged suites")
    examples = """examples:
  ddeval ls
  ddeval ls methods"""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("kind", nargs="?", choices=["methods", "parameterizations", "networks", "datasets",
                                                        "evaluators", "spaces", "suites"])

    def run(self, args: argparse.Namespace) -> int:
        import distillers
        from ddeval.config import PACKAGED_SUITES
        from ddeval.datasets import DATASETS
        from ddeval.nas.space import SPACES
        from ddeval.privacy.attacks import ATTACKS
        from distillers.networks import NETWORKS
        from distillers.parameterize import PARAMETERIZATIONS

        tables = {
            "methods": [(n, distillers.METHODS.help(n)) for n in distillers.available()],
            "parameterizations": [(n, PARAMETERIZATIONS.help(n)) for n in PARAMETERIZATIONS.names()],
            "networks": [(n, NETWORKS.help(n)) for n in NETWORKS.names()],
            "datasets": [(n, DATASETS.help(n)) for n in DATASETS.names()],
            "evaluators": [("accuracy", "test accuracy of fresh networks trained on the set (mean ± std)"),
                           ("privacy", "membership inference on a model trained on the set; attacks: "
                                       + ", ".join(ATTACKS.names()) + ", LiRA online/offline/fixed variance "
                                       "(privacy.shadows > 0); DP-SGD baselines; DP audits (`ddeval audit`)"),
                           ("nas", "NNI architecture search on each proxy vs the full data: rank correlation, "
                                   "top-k agreement, regret, compute saved (`ddeval nas`); strategies grid, "
                                   "random, evolution, tpe")],
            "spaces": [(n, SPACES.help(n)) for n in SPACES.names()],
            "suites": [(n, "packaged suite") for n in PACKAGED_SUITES],
        }
        for kind, rows in tables.items():
            if args.kind and kind != args.kind:
                continue
            print(f"{kind}:")
            for name, text in rows:
                print(f"  {name:<22} {text}")
        return 0


COMMANDS = (RunCommand(), AuditCommand(), NasCommand(), DistillCommand(), EvaluateCommand(), ReportCommand(),
            CheckCommand(), BenchCommand(), ListCommand())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddeval", description="Evaluate distilled data sets: accuracy, "
                                     "privacy leakage and NAS-proxy quality.")
    from ddeval import __version__

    parser.add_argument("--version", action="version", version=f"ddeval {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help, epilog=command.examples,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(p)
        p.set_defaults(handler=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER_ERROR
    os.environ.setdefault("DDEVAL_COMMAND", "ddeval " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    previous = terminate_as_interrupt()
    try:
        try:
            return args.handler.run(args)
        except BaseException as err:
            if caused_by_interrupt(err) and not isinstance(err, KeyboardInterrupt):
                raise KeyboardInterrupt from err  # e.g. ImportError from an interrupted C-extension import
            raise
    except DDError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\n" + INTERRUPTED, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" while writing {err.filename}" if err.filename else ""
        print(f"error: no space left on the disk{where}: free some space or pass another --out; every file"
              " written before is intact and finished units are kept, so rerun the same command to resume.",
              file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    from ddeval.entry import main as entry_main

    sys.exit(entry_main())
