"""K-FAC's factors against two implementations this project did not write: BackPACK
(Dangel, Kunstner & Hennig 2020; its KFAC, KFLR extensions) and curvlinops
(``KFACLinearOperator``), for a tanh and a ReLU MLP (categorical) and a Bernoulli
autoencoder, in float64 and float32.

* A equals BackPACK's (the weight's input factor, without the bias' ones column) and
  curvlinops' (``separate_weight_and_bias=False``: with it).
* G for the empirical Fisher (the observed labels) and for the sampled Fisher with the same
  labels (those K-FAC drew) equals BackPACK's KFAC factor with those labels fed to its
  Monte-Carlo path, and curvlinops' factor with those labels as targets.
* The mean of many sampled G equals the exact expectation over y ~ p(y|x) (BackPACK's KFLR,
  curvlinops' type-2) within its Monte-Carlo error, and the two references agree.

BackPACK 1.7.1's BCEWithLogitsLoss derivatives accept only scalar outputs and binary
targets (its ``_check_input_dims``, ``_check_binary``); their Monte-Carlo gradient
σ(f) - y is element-wise and exact for any width, so the autoencoder's checks against
BackPACK bypass the two checks and use reduction="sum" (BackPACK's "mean" divides by N
alone); its exact expectation (KFLR) exists for scalar outputs only, so the autoencoder's
expectation is checked against curvlinops.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch
from torch import nn

pytest.importorskip("backpack")
pytest.importorskip("curvlinops")

from backpack import backpack, extend  # noqa: E402
from backpack.core.derivatives.bcewithlogitsloss import BCELossWithLogitsDerivatives  # noqa: E402
from backpack.core.derivatives.crossentropyloss import CrossEntropyLossDerivatives  # noqa: E402
from backpack.extensions import KFAC as BackpackKFAC, KFLR  # noqa: E402
from curvlinops import KFACLinearOperator  # noqa: E402

from mletui.engine.optim.kfac import KFAC  # noqa: E402
from mletui.engine.optim.likelihoods import get_likelihood  # noqa: E402

CASES = ("tanh_mlp", "relu_mlp", "bernoulli_autoencoder")
DTYPES = (torch.float64, torch.float32)
N = 24


def _problem(case: str, dtype: torch.dtype, seed: int = 0):
    """(model, x, observed y, likelihood name, torch loss for the references)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if case == "bernoulli_autoencoder":
        model = nn.Sequential(nn.Linear(10, 6), nn.Tanh(), nn.Linear(6, 3), nn.Tanh(),
                              nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 10))
        x = torch.rand(N, 10, generator=g)
        return model.to(dtype), x.to(dtype), x.to(dtype), "bernoulli", nn.BCEWithLogitsLoss()
    act = nn.Tanh if case == "tanh_mlp" else nn.ReLU
    model = nn.Sequential(nn.Linear(6, 9), act(), nn.Linear(9, 7), act(), nn.Linear(7, 4))
    with torch.no_grad():
        model[-1].weight.mul_(3.0)          # confident predictions: true and empirical G differ
    x = torch.randn(N, 6, generator=g)
    y = torch.randint(0, 4, (N,), generator=g)
    return model.to(dtype), x.to(dtype), y, "categorical", nn.CrossEntropyLoss()


def _linear(model):
    return [m for m in model if isinstance(m, nn.Linear)]


def _ours(model, x, labels, fisher="empirical", generator=None):
    """K-FAC's fresh factors (A, G) per layer from one batch; G from ``labels`` (empirical)
    or from labels the optimizer samples with ``generator`` (true)."""
    lik = "bernoulli" if isinstance(labels, torch.Tensor) and labels.is_floating_point() else "categorical"
    opt = KFAC(model, likelihood=lik, fisher=fisher, stat_decay=0.0, generator=generator)
    with opt.capture():
        out = model(x)
    opt.update_stats(out, labels)
    return [(layer.A.clone(), layer.G.clone()) for layer in opt.layers]


def _sampled_labels(model, x, likelihood, seed):
    """The labels K-FAC draws with a generator seeded ``seed`` (the same call it makes)."""
    with torch.no_grad():
        out = model(x)
    return get_likelihood(likelihood).sample(out, torch.Generator().manual_seed(seed))


class _Given:
    """A stand-in for BackPACK's likelihood distribution whose samples are given labels."""

    def __init__(self, labels: torch.Tensor) -> None:
        self.labels = labels

    def sample(self, shape=torch.Size()):
        return self.labels.expand(*shape, *self.labels.shape)


@contextlib.contextmanager
def _backpack_labels(labels: torch.Tensor):
    """BackPACK's Monte-Carlo path with ``labels`` as its one sample per example."""
    mp = pytest.MonkeyPatch()
    given = lambda self, inp: _Given(labels)          # noqa: E731
    mp.setattr(CrossEntropyLossDerivatives, "_make_distribution", given)
    mp.setattr(BCELossWithLogitsDerivatives, "_make_distribution", given)
    mp.setattr(BCELossWithLogitsDerivatives, "_check_binary", lambda self, module: None)
    mp.setattr(BCELossWithLogitsDerivatives, "_check_input_dims", lambda self, module: None)
    try:
        yield
    finally:
        mp.undo()


def _backpack(model, x, target, loss, extension, labels=None):
    """BackPACK's factors per layer: (A of the weight, G), G in this project's scale."""
    bmodel = extend(copy.deepcopy(model))
    bernoulli = isinstance(loss, nn.BCEWithLogitsLoss)
    bloss = extend(nn.BCEWithLogitsLoss(reduction="sum") if bernoulli else nn.CrossEntropyLoss())
    ctx = _backpack_labels(labels) if labels is not None else contextlib.nullcontext()
    with ctx, backpack(extension), warnings.catch_warnings():
        # (BackPACK's module hooks fire on outputs when the input needs no gradient)
        warnings.filterwarnings("ignore", message="Full backward hook")
        bloss(bmodel(x), target).backward()
    field = extension.savefield
    scale = 1.0 / (x.shape[0] * target.shape[1]) if bernoulli else 1.0   # sum -> mean over N and D
    out = []
    for m in _linear(bmodel):
        G, A = getattr(m.weight, field)
        (Gb,) = getattr(m.bias, field)
        torch.testing.assert_close(Gb, G, rtol=0, atol=0)      # the bias shares the weight's G
        out.append((A, G * scale))
    return out


def _curvlinops(model, x, target, loss, fisher_type):
    op = KFACLinearOperator(model, loss, list(model.parameters()), [(x, target)], fisher_type=fisher_type,
                            separate_weight_and_bias=False, check_deterministic=False)
    op.compute_kronecker_factors()
    sd = op.state_dict()
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return [(sd["input_covariances"][n], sd["gradient_covariances"][n]) for n in names]


def _observed_label_factors(case, dtype):
    """(ours, BackPACK's, curvlinops') factors of the empirical Fisher (observed labels)."""
    model, x, y, _, loss = _problem(case, dtype)
    return (_ours(model, x, y), _backpack(model, x, y, loss, BackpackKFAC(), labels=y),
            _curvlinops(model, x, y, loss, "empirical"))


def _same_G(ours, *refs, dtype):
    for (_, G), *others in zip(ours, *refs):
        for _, G_ref in others:
            _close(G, G_ref, dtype)


def _close(ours, ref, dtype):
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-7)
    scale = max(float(ref.abs().max()), 1e-30)
    torch.testing.assert_close(ours / scale, ref / scale, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_A_equals_backpack_and_curvlinops(case, dtype):
    ours, bp, cl = _observed_label_factors(case, dtype)
    for (A, _), (A_bp, _), (A_cl, _) in zip(ours, bp, cl):
        assert A.dtype == dtype
        _close(A[:-1, :-1], A_bp, dtype)      # BackPACK: the weight's factor, no ones column
        _close(A, A_cl, dtype)                # curvlinops with weight and bias joined: with it


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_empirical_G_equals_backpack_and_curvlinops_with_the_observed_labels(case, dtype):
    _same_G(*_observed_label_factors(case, dtype), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_sampled_G_equals_backpack_and_curvlinops_with_the_same_sampled_labels(case, dtype):
    model, x, y, lik, loss = _problem(case, dtype)
    labels = _sampled_labels(model, x, lik, seed=5)
    assert not torch.equal(labels, y)
    ours = _ours(model, x, y, fisher="true", generator=torch.Generator().manual_seed(5))
    # those are the labels K-FAC drew: the empirical path fed with them gives the same G
    for (_, G), (_, G_given) in zip(ours, _ours(model, x, labels)):
        torch.testing.assert_close(G, G_given, rtol=0, atol=0)
    target = labels if lik == "bernoulli" else y
    bp = _backpack(model, x, target, loss, BackpackKFAC(mc_samples=1), labels=labels)
    _same_G(ours, bp, _curvlinops(model, x, labels, loss, "empirical"), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES)
def test_mean_of_sampled_G_equals_the_exact_expectation_within_monte_carlo_error(case, dtype):
    model, x, y, lik, loss = _problem(case, dtype)
    # (the exact expectation does not depend on the targets; curvlinops wants binary ones)
    target = (y > 0.5).to(y.dtype) if lik == "bernoulli" else y
    exact = [G for _, G in _curvlinops(model, x, target, loss, "type-2")]
    if lik == "categorical":        # BackPACK's exact expectation agrees with curvlinops'
        for (_, G_bp), G_cl in zip(_backpack(model, x, y, loss, KFLR()), exact):
            _close(G_bp, G_cl, dtype)
    draws = 400
    gen = torch.Generator().manual_seed(11)
    opt = KFAC(model, likelihood=lik, fisher="true", stat_decay=0.0, generator=gen)
    samples = [[] for _ in opt.layers]
    for _ in range(draws):
        with opt.capture():
            out = model(x)
        opt.update_stats(out, y)
        for i, layer in enumerate(opt.layers):
            samples[i].append(layer.G.double().clone())
    for G_exact, gs in zip(exact, samples):
        gs, G_exact = torch.stack(gs), G_exact.double()
        mean, se = gs.mean(0), gs.std(0) / draws ** 0.5
        noisy = se > 0               # a dead ReLU unit's row of G is 0 in every draw
        assert bool(noisy.any())
        torch.testing.assert_close(mean[~noisy], G_exact[~noisy], rtol=0, atol=1e-12)
        assert float(((mean - G_exact) / se)[noisy].abs().max()) < 5.0
        # E‖mean - exact‖² = Σ se² whatever the entries' correlation: the error is the MC
        # error (a 10 % bias of G would make this ratio ~25), and one draw is far off
        mc = float((se * se).sum())
        assert float(((mean - G_exact) ** 2).sum()) / mc < 4.0
        assert float(((gs[0] - G_exact) ** 2).sum()) / mc > 25.0
