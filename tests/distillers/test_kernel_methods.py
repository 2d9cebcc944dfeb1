"""KIP on tiny digits: it learns (loss down, images move), beats the random real subset at ipc 10, learns
labels that networks then regress onto (label_loss "mse"), and runs with the empirical NTK of a network."""

from __future__ import annotations

import pytest
import torch

import distillers
from distillers.errors import DDError
from distillers.methods.kernel import centred_one_hot
from distillers.protocol import MSE_SCALE, TrainConfig, label_loss_fn, loss_spec, train_and_evaluate
from distillers.synthetic import SyntheticSet

NET = {"width": 32, "depth": 2}


def _accuracy(syn: SyntheticSet, test, seeds=(0, 1)) -> float:
    runs = [train_and_evaluate("convnet", syn, test, TrainConfig(epochs=200), seed=s, network_args=NET)
            for s in seeds]
    return sum(r["accuracy"] for r in runs) / len(runs)


def test_kip_learns_and_beats_the_random_subset_at_ipc_10(tiny_digits) -> None:
    real, test = tiny_digits
    kip = distillers.create("kip", iterations=150).distill(real, 10, seed=0, progress=False)
    start = real.x[real.stratified_indices(10, torch.Generator().manual_seed(0))]
    history = kip.meta["loss_history"]
    assert sum(history[-10:]) < 0.5 * sum(history[:10]), history
    assert (kip.images - start).abs().mean() > 0.05 and kip.label_loss == "ce" and not kip.soft_labels
    random = distillers.create("random").distill(real, 10, seed=0, progress=False)
    ours, baseline = _accuracy(kip, test), _accuracy(random, test)
    assert ours > baseline + 0.01, (ours, baseline)


def test_kip_learned_labels_are_regressed_onto(tiny_digits, tmp_path) -> None:
    real, test = tiny_digits
    syn = distillers.create("kip", iterations=60, learn_labels=True).distill(real, 5, seed=1, progress=False)
    assert syn.soft_labels and syn.label_loss == "mse"
    start = centred_one_hot(torch.arange(10).repeat_interleave(5), 10)
    assert (syn.labels - start).abs().max() > 1e-3  # the labels moved
    again = SyntheticSet.load(syn.save(tmp_path / "kip"))
    assert again.label_loss == "mse" and torch.equal(again.labels, syn.labels)
    assert _accuracy(again, test, seeds=(0,)) > 0.5


def test_kip_with_the_empirical_ntk_of_a_network(tiny_digits) -> None:
    real, _ = tiny_digits
    syn = distillers.create("kip", kernel="empirical", network="convnet", network_args={"width": 8, "depth": 1},
                            iterations=3, batch_target=20).distill(real, 1, seed=0, progress=False)
    assert torch.isfinite(syn.images).all() and len(syn.meta["loss_history"]) == 3


def test_label_loss_checks() -> None:
    images = torch.zeros(2, 1, 4, 4)
    kw = {"classes": ("a", "b"), "mean": (0.0,), "std": (1.0,)}
    with pytest.raises(DDError, match="float labels"):
        SyntheticSet(images, torch.tensor([0, 1]), label_loss="mse", **kw)
    with pytest.raises(DDError, match="distributions"):
        SyntheticSet(images, torch.tensor([[0.5, -0.5], [-0.5, 0.5]]), **kw)
    with pytest.raises(DDError, match="label_loss"):
        SyntheticSet(images, torch.tensor([0, 1]), label_loss="hinge", **kw)
    ok = SyntheticSet(images, torch.tensor([[0.5, -0.5], [-0.5, 0.5]]), label_loss="mse", **kw)
    assert ok.soft_labels and ok.hard_labels.tolist() == [0, 1]


def test_frepo_beats_the_random_subset_at_ipc_1_and_learns_labels(tiny_digits) -> None:
    real, test = tiny_digits
    syn = distillers.create("frepo", iterations=200, lr_img=0.003, pool_size=4, max_online_updates=20,
                            network_args={"norm": "none", **NET}).distill(real, 1, seed=0, progress=False)
    assert syn.soft_labels and syn.label_loss == "mse"
    start = centred_one_hot(torch.arange(10), 10)
    assert (syn.labels - start).abs().max() > 1e-3
    assert syn.meta["resets"] >= 4  # 200 online steps plus the staggered start, over 4 models reset every 20
    history = syn.meta["loss_history"]
    assert sum(history[-10:]) < 0.7 * sum(history[:10]), history  # measured: 0.52
    random = distillers.create("random").distill(real, 1, seed=0, progress=False)
    ours, baseline = _accuracy(syn, test), _accuracy(random, test)
    # measured: 0.808 against 0.682. At ipc 10 this budget ties the random subset (0.913 against 0.925)
    # under the quarter-scaled squared error; the full sum that won there diverges on MNIST.
    assert ours > baseline + 0.05, (ours, baseline)


def test_squared_error_sets_train_with_the_quarter_scaled_loss_and_key_it() -> None:
    images = torch.zeros(2, 1, 4, 4)
    kw = {"classes": ("a", "b"), "mean": (0.0,), "std": (1.0,)}
    mse = SyntheticSet(images, torch.tensor([[0.5, -0.5], [-0.5, 0.5]]), label_loss="mse", **kw)
    ce = SyntheticSet(images, torch.tensor([0, 1]), **kw)
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), mse.labels
    expected = MSE_SCALE * ((logits - target) ** 2).sum() / 2  # per example, averaged over the batch
    assert torch.allclose(label_loss_fn(mse)(logits, target), expected)
    assert label_loss_fn(ce) is torch.nn.functional.cross_entropy
    assert loss_spec(mse) == {"label_loss": "mse", "mse_scale": MSE_SCALE} and loss_spec(ce) == {}


def test_margin_penalty_rewards_a_lead_of_up_to_one_over_k() -> None:
    from distillers.methods.kernel import margin_penalty

    labels = torch.tensor([[0.9, 0.0, 0.1, 0.0], [0.3, 0.2, 0.0, 0.0]])
    assert float(margin_penalty(labels)) == pytest.approx(-(0.25 + 0.1) / 2)


def test_lamb_steps_by_lr_times_the_tensor_norm() -> None:
    from distillers.optim import Lamb

    w = torch.tensor([3.0, 4.0], requires_grad=True)
    zero = torch.zeros(2, requires_grad=True)
    opt = Lamb([w, zero], lr=0.01)
    (w * torch.tensor([1.0, -2.0])).sum().add((zero * 1.0).sum()).backward()
    before = w.detach().clone()
    opt.step()
    assert float((w.detach() - before).norm()) == pytest.approx(0.01 * 5.0, rel=1e-5)  # lr * ||w||
    assert w[0] < 3.0 and w[1] > 4.0  # along minus the Adam direction
    assert zero.detach().abs().max() > 0  # a zero tensor still moves (trust ratio 1)
