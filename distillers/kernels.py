"""Kernels and kernel ridge regression for the kernel methods (KIP, FRePO; REFERENCE §3).

- :func:`fc_kernels`: the closed-form infinite-width NNGP and NTK of a fully connected ReLU network in the NTK
  parameterisation (Jacot et al. 2018; Lee et al. 2019), by the usual layer recursion with the arc-cosine
  expectations of ReLU.
- :class:`NTKMLP`: that finite network, so its empirical NTK can be checked against the closed form.
- :func:`empirical_ntk`: the empirical NTK ``J(x1) J(x2)^T`` of any network at its current weights (torch.func),
  averaged over the output units (the infinite-width NTK is the same for every output and zero across them).
- :func:`krr_fit` / :func:`krr_predict`: kernel ridge regression, with the regulariser optionally scaled by
  the mean of the kernel's diagonal as in KIP (so one value works whatever the kernel's scale).

Everything is differentiable with respect to the inputs (KIP backpropagates the KRR loss into the images).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from distillers.errors import DDError


# ----------------------------------------------------------------------------------- kernel ridge regression
def krr_fit(k_ss: torch.Tensor, y_s: torch.Tensor, reg: float, *, relative: bool = True) -> torch.Tensor:
    """Dual coefficients ``alpha = (K_ss + lambda I)^-1 y_s`` of kernel ridge regression.

    ``relative=True`` uses ``lambda = reg * trace(K_ss) / n`` (KIP's scaling); ``relative=False`` uses
    ``lambda = reg`` (scikit-learn's ``KernelRidge(alpha=reg)``). Solved by Cholesky, falling back to a
    least-squares solve when the regularised kernel is not numerically positive definite; a kernel with NaN
    or Inf entries gives NaN coefficients.
    """
    if k_ss.ndim != 2 or k_ss.shape[0] != k_ss.shape[1]:
        raise DDError(f"krr_fit needs a square support kernel, got shape {tuple(k_ss.shape)}.")
    if y_s.shape[0] != k_ss.shape[0]:
        raise DDError(f"krr_fit: {k_ss.shape[0]} support points but {y_s.shape[0]} targets.")
    if reg < 0:
        raise DDError(f"krr_fit: the regulariser must be >= 0, got {reg}.")
    n = k_ss.shape[0]
    lam = reg * (torch.diagonal(k_ss).sum() / n if relative else 1.0)
    a = k_ss + lam * torch.eye(n, dtype=k_ss.dtype, device=k_ss.device)
    if not bool(torch.isfinite(a).all()):
        # Diverged inputs: NaN coefficients make the caller's loss NaN, which its divergence check names
        # (LAPACK would fail on them with an internal assertion instead).
        return torch.full_like(y_s, float("nan"))
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(y_s if y_s.ndim == 2 else y_s[:, None], chol).reshape(y_s.shape)
    return torch.linalg.lstsq(a, y_s).solution


def krr_predict(k_ts: torch.Tensor, k_ss: torch.Tensor, y_s: torch.Tensor, reg: float, *,
                relative: bool = True) -> torch.Tensor:
    """Kernel ridge regression predictions ``K_ts (K_ss + lambda I)^-1 y_s`` (see :func:`krr_fit`)."""
    if k_ts.shape[1] != k_ss.shape[0]:
        raise DDError(f"krr_predict: K_ts has {k_ts.shape[1]} columns but there are {k_ss.shape[0]} support points.")
    return k_ts @ krr_fit(k_ss, y_s, reg, relative=relative)


# --------------------------------------------------------------------------- closed-form FC ReLU kernels
def _relu_expectations(k12: torch.Tensor, k11: torch.Tensor, k22: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]).

    Arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009). The correlation is clamped inside [-1, 1] with a
    margin so that arccos keeps a finite gradient on the diagonal (where it is exactly 1).
    """
    norms = torch.sqrt(k11[:, None] * k22[None, :])
    rho = (k12 / norms).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    theta = torch.arccos(rho)
    e_phi = norms * (torch.sin(theta) + (math.pi - theta) * torch.cos(theta)) / (2 * math.pi)
    e_dphi = (math.pi - theta) / (2 * math.pi)
    return e_phi, e_dphi


def fc_kernels(x1: torch.Tensor, x2: torch.Tensor | None = None, *, depth: int = 2, w_std: float = math.sqrt(2.0),
               b_std: float = 0.1) -> dict[str, torch.Tensor]:
    """Closed-form ``{"nngp", "ntk"}`` of an infinite-width fully connected ReLU network.

    The network has ``depth`` layers (``depth - 1`` hidden ReLU layers) in the NTK parameterisation of
    :class:`NTKMLP`: ``h1 = w_std * W1 x / sqrt(d) + b_std * b1``, ``h(l+1) = w_std * W relu(hl) / sqrt(n)
    + b_std * b``, weights and biases standard normal. Inputs are flattened. Recursion (Lee et al. 2019):
    ``S1 = w_std^2 <x, x'> / d + b_std^2``, ``T1 = S1``; ``S(l+1) = w_std^2 E[relu relu] + b_std^2``,
    ``T(l+1) = T(l) * w_std^2 E[relu' relu'] + S(l+1)``.
    """
    if depth < 1:
        raise DDError(f"fc_kernels: depth must be >= 1, got {depth}.")
    a = x1.flatten(1)
    b = a if x2 is None else x2.flatten(1)
    if a.shape[1] != b.shape[1]:
        raise DDError(f"fc_kernels: inputs of {a.shape[1]} and {b.shape[1]} features.")
    d = a.shape[1]
    s12 = w_std ** 2 * (a @ b.T) / d + b_std ** 2
    s11 = w_std ** 2 * (a * a).sum(1) / d + b_std ** 2
    s22 = w_std ** 2 * (b * b).sum(1) / d + b_std ** 2
    t12 = s12
    for _ in range(depth - 1):
        e_phi, e_dphi = _relu_expectations(s12, s11, s22)
        t12 = t12 * (w_std ** 2 * e_dphi) + (w_std ** 2 * e_phi + b_std ** 2)
        s12 = w_std ** 2 * e_phi + b_std ** 2
        s11 = w_std ** 2 * s11 / 2 + b_std ** 2  # E[relu(u)^2] = k/2 on the diagonal
        s22 = w_std ** 2 * s22 / 2 + b_std ** 2
    return {"nngp": s12, "ntk": t12}


class NTKMLP(nn.Module):
    """The finite fully connected ReLU network whose infinite-width kernels :func:`fc_kernels` computes."""

    def __init__(self, in_features: int, width: int, out_features: int, *, depth: int = 2,
                 w_std: float = math.sqrt(2.0), b_std: float = 0.1, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        sizes = [in_features] + [width] * (depth - 1) + [out_features]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(o, i, generator=generator, dtype=dtype)) for i, o in zip(sizes[:-1], sizes[1:], strict=True))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.randn(o, generator=generator, dtype=dtype)) for o in sizes[1:])
        self.w_std, self.b_std = w_std, b_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i > 0:
                h = torch.relu(h)
            h = self.w_std * h @ w.T / math.sqrt(w.shape[1]) + self.b_std * b
        return h


# ------------------------------------------------------------------------------------------ empirical NTK
def empirical_ntk(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  params: Mapping[str, torch.Tensor] | None = None, chunk: int = 64) -> torch.Tensor:
    """``sum_p dF_k(x1)/dp dF_k(x2)/dp`` averaged over the outputs ``k``: an ``[n1, n2]`` kernel.

    ``params`` (default: the network's own trainable ones) are the weights the kernel is taken at;
    gradients flow to the inputs (and to ``params``). One output at a time, ``chunk`` inputs at a time
    (``torch.func``), so memory is about ``n * P`` numbers for ``P`` parameters, not ``n * K * P``.
    """
    from torch.func import functional_call, jacrev, vmap

    if params is None:
        params = {k: v for k, v in net.named_parameters() if v.requires_grad}
    buffers = dict(net.named_buffers())
    outputs = int(functional_call(net, ({**params}, buffers), (x1[:1],)).shape[1])

    def jacobian(x: torch.Tensor, k: int) -> list[torch.Tensor]:
        def f(p: Mapping[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
            return functional_call(net, ({**p}, buffers), (xi[None],))[0, k]

        jac = vmap(jacrev(f), in_dims=(None, 0))
        parts = [jac(params, x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
        return [torch.cat([part[name] for part in parts]).flatten(1) for name in params]  # [n, P_name]

    kernel: torch.Tensor | None = None
    for k in range(outputs):
        j1 = jacobian(x1, k)
        j2 = j1 if x2 is None else jacobian(x2, k)
        for a, b in zip(j1, j2, strict=True):
            kernel = a @ b.T if kernel is None else kernel + a @ b.T
    if kernel is None:
        raise DDError("empirical_ntk: the network has no parameters.")
    return kernel / outputs


__all__ = ["NTKMLP", "empirical_ntk", "fc_kernels", "krr_fit", "krr_predict"]
