"""A plain-text summary table of a run's results (printed by ``ddeval run``)."""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def signed_points(gain: float) -> str:
    """An accuracy difference (a fraction) in signed points with one decimal; one that rounds to zero prints
    +0.0, never -0.0 (which reads as a loss)."""
    return f"{round(100 * gain, 1) + 0.0:+.1f}"


def _get(row: dict[str, Any] | None, key: str) -> float | None:
    return None if row is None else row.get(key)


def _dp_name(row: dict[str, Any]) -> str:
    eps = (row.get("dp") or {}).get("epsilon")
    return f"DP-SGD e={eps:.1f}" if eps is not None else str(row["target"])


def summary_table(results: dict[str, Any]) -> str:
    """One line per (ipc, method): accuracy ± std, gain over the random subset, attack AUC/TPR, NAS ρ."""
    acc = results.get("accuracy", {})
    rows = [r for r in acc.get("rows", []) if not r.get("cross_architecture")]
    priv = results.get("privacy", {})
    headline = priv.get("headline_attack")
    privacy = {(r["target"], r.get("ipc")): r for r in priv.get("rows", [])
               if headline is None or r.get("attack") == headline}
    nas = {r["proxy"]: r for r in results.get("nas", {}).get("proxies", [])}
    nas_ipc = results.get("nas", {}).get("ipc")
    random_acc = {r["ipc"]: r["accuracy_mean"] for r in rows if r["method"] == "random"}
    dp_rows = [r for r in priv.get("rows", []) if str(r.get("target", "")).startswith("dp-sgd")
               and r.get("attack") == headline]
    dp_names = [_dp_name(r) for r in dp_rows]
    w = max([10, *(len(str(r["method"])) for r in rows), *(len(n) for n in dp_names)])  # method column
    header = (f"{'ipc':>4}  {'method':<{w}} {'accuracy %':>13} {'vs random':>10} {'MIA AUC':>8} "
              f"{'TPR@1%FPR':>10} {'NAS rho':>8}")
    lines = [f"Dataset: {results['dataset']['name']} ({results['dataset']['num_train']} train / "
             f"{results['dataset']['num_test']} test images)", header, "-" * len(header)]
    for r in rows:
        gain = r["accuracy_mean"] - random_acc[r["ipc"]] if r["ipc"] in random_acc else None
        gain_text = "" if gain is None or r["method"] == "random" else signed_points(gain)
        p = privacy.get((r["method"], r["ipc"]))
        n = nas.get(r["method"]) if r["ipc"] == nas_ipc else None
        lines.append(
            f"{r['ipc']:>4}  {r['method']:<{w}} {_pct(r['accuracy_mean']):>6} ± {_pct(r['accuracy_std']):<4} "
            f"{gain_text:>10} "
            f"{_num(_get(p, 'auc'), '.3f'):>8} {_pct(_get(p, 'tpr_at_1pct_fpr')):>10} "
            f"{_num(_get(n, 'spearman'), '+.2f'):>8}"
        )
    full = acc.get("full_data")
    if full:
        p = privacy.get(("full-data", None))
        lines.append(f"{'all':>4}  {'full data':<{w}} {_pct(full['accuracy_mean']):>6} ± "
                     f"{_pct(full['accuracy_std']):<4} {'':>10} {_num(_get(p, 'auc'), '.3f'):>8} "
                     f"{_pct(_get(p, 'tpr_at_1pct_fpr')):>10} {'':>8}")
    for r, name in zip(dp_rows, dp_names, strict=True):
        lines.append(f"{'all':>4}  {name:<{w}} {_pct(r.get('target_accuracy')):>6}        {'':>10} "
                     f"{_num(r.get('auc'), '.3f'):>8} {_pct(r.get('tpr_at_1pct_fpr')):>10} {'':>8}")
    if headline:
        lines.append(f"MIA columns: the {headline} attack.")
    lines.append(_time_line(results["run"]))
    return "\n".join(lines)


def nas_table(results: dict[str, Any]) -> str:
    """One line per proxy, best rank agreement first: rho, tau, top-k overlap, regret, compute saved."""
    nas = results.get("nas") or {}
    from ddeval.nas.ranking import by_spearman

    rows = by_spearman(nas.get("proxies") or [])
    full = nas.get("full") or {}
    k = max(nas.get("top_k") or [10])
    k = min(k, max(2, int(nas.get("num_candidates") or 2) - 1))
    header = (f"{'proxy':<14} {'images':>6} {'rho':>6} {'tau':>6} {f'top-{k} overlap':>14} {'regret %':>9} "
              f"{'pick rank':>9} {'speed-up':>9} {'FLOPs saved':>11}")
    subset = f", stratified subset of {nas['subset']}" if nas.get("subset") else ""
    lines = [f"NAS proxies on {results['dataset']['name']}: {nas.get('num_candidates')} candidates "
             f"({nas.get('space')}{subset}, {nas.get('strategy')}); full data: best "
             f"{_pct(_best(full))} %, {_num(full.get('compute_seconds'), '.0f')} s of training", header,
             "-" * len(header)]
    for r in rows:
        overlap = next((t["overlap"] for t in r.get("top_k") or [] if t["k"] == k), None)
        lines.append(f"{r['proxy']:<14} {r.get('images', ''):>6} {_num(r.get('spearman'), '+.2f'):>6} "
                     f"{_num(r.get('kendall'), '+.2f'):>6} {_num(overlap, '.2f'):>14} "
                     f"{_pct(r.get('top1_regret')):>9} {r.get('proxy_pick_full_rank', '-'):>9} "
                     f"{_num(r.get('speedup'), '.1f'):>8}x {_num(r.get('flops_ratio'), '.1f'):>10}x")
    lines.append("speed-up: the full search's training time over the proxy's, distillation included; "
                 "FLOPs saved: training FLOPs, full over proxy.")
    lines.append(_time_line(results["run"]))
    return "\n".join(lines)


def _best(search: dict[str, Any]) -> float | None:
    accs = [t["accuracy"] for t in search.get("trials") or [] if t.get("accuracy") is not None]
    return max(accs) if accs else None


def _time_line(run: dict[str, Any]) -> str:
    text = f"Total time: {run.get('total_seconds', 0):.0f} s on {run.get('device')}"
    reused = (run.get("units") or {}).get("reused")
    if reused:
        text += f" ({reused} units reused; compute time of all units {run.get('unit_seconds', 0):.0f} s)"
    return text


def privacy_table(results: dict[str, Any]) -> str:
    """One line per privacy target (headline attack) plus the DP audits (printed by ``ddeval audit``)."""
    priv = results.get("privacy") or {}
    headline = priv.get("headline_attack")
    rows = [r for r in priv.get("rows", []) if r.get("attack") == headline]
    header = f"{'target':<18} {'ipc':>4} {'eps':>6} {'acc %':>6} {'AUC':>6} {'TPR@1%':>7} {'TPR@0.1%':>9}"
    lines = [f"Dataset: {results['dataset']['name']}; attack: {headline}; {priv.get('mode', '')}", header,
             "-" * len(header)]
    for r in rows:
        eps = (r.get("dp") or {}).get("epsilon")
        low = _pct(r.get("tpr_at_0p1pct_fpr")) if r.get("resolves_0p1pct_fpr") else "n/a"
        lines.append(f"{str(r['target']):<18} {str(r.get('ipc') or '-'):>4} "
                     f"{'-' if eps is None else format(eps, '.2f'):>6} {_pct(r.get('target_accuracy')):>6} "
                     f"{_num(r.get('auc'), '.3f'):>6} {_pct(r.get('tpr_at_1pct_fpr')):>7} {low:>9}")
    for a in priv.get("audits", []):
        canary, one_run = a.get("canary") or {}, a.get("one_run") or {}
        lines.append(f"audit {a.get('label')}: accountant eps {_num(a.get('epsilon_theory'), '.2f')}, "
                     f"canary lower bound {_num(canary.get('epsilon_lb'), '.2f')}, "
                     f"one-run lower bound {_num(one_run.get('epsilon_lb'), '.2f')}")
    lines.append(_time_line(results["run"]))
    return "\n".join(lines)

