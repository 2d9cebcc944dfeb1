"""A plain-text summary table of a run's results (printed by ``ddeval run``)."""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _get(row: dict[str, Any] | None, key: str) -> float | None:
    return None if row is None else row.get(key)


def summary_table(results: dict[str, Any]) -> str:
    """One line per (ipc, method): accuracy ± std, gain over the random subset, attack AUC/TPR, NAS ρ."""
    acc = results.get("accuracy", {})
    rows = [r for r in acc.get("rows", []) if not r.get("cross_architecture")]
    privacy = {(r["target"], r.get("ipc")): r for r in results.get("privacy", {}).get("rows", [])}
    nas = {r["proxy"]: r for r in results.get("nas", {}).get("proxies", [])}
    nas_ipc = results.get("nas", {}).get("ipc")
    random_acc = {r["ipc"]: r["accuracy_mean"] for r in rows if r["method"] == "random"}
    header = (f"{'ipc':>4}  {'method':<10} {'accuracy %':>13} {'vs random':>10} {'MIA AUC':>8} "
              f"{'TPR@1%FPR':>10} {'NAS rho':>8}")
    lines = [f"Dataset: {results['dataset']['name']} ({results['dataset']['num_train']} train / "
             f"{results['dataset']['num_test']} test images)", header, "-" * len(header)]
    for r in rows:
        gain = r["accuracy_mean"] - random_acc[r["ipc"]] if r["ipc"] in random_acc else None
        gain_text = "" if gain is None or r["method"] == "random" else f"{100 * gain:+.1f}"
        p = privacy.get((r["method"], r["ipc"]))
        n = nas.get(r["method"]) if r["ipc"] == nas_ipc else None
        lines.append(
            f"{r['ipc']:>4}  {r['method']:<10} {_pct(r['accuracy_mean']):>6} ± {_pct(r['accuracy_std']):<4} "
            f"{gain_text:>10} "
            f"{_num(_get(p, 'auc'), '.3f'):>8} {_pct(_get(p, 'tpr_at_1pct_fpr')):>10} "
            f"{_num(_get(n, 'spearman'), '+.2f'):>8}"
        )
    full = acc.get("full_data")
    if full:
        p = privacy.get(("full-data", None))
        lines.append(f"{'all':>4}  {'full data':<10} {_pct(full['accuracy_mean']):>6} ± "
                     f"{_pct(full['accuracy_std']):<4} {'':>10} {_num(_get(p, 'auc'), '.3f'):>8} "
                     f"{_pct(_get(p, 'tpr_at_1pct_fpr')):>10} {'':>8}")
    lines.append(f"Total time: {results['run'].get('total_seconds', 0):.0f} s on {results['run'].get('device')}")
    return "\n".join(lines)
