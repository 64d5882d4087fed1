"""Degenerate and extreme inputs across the public API, swept over every family.

Each case either returns a correct result (compared with `F.grid_sample` where one
exists: close values for a single pixel) or raises a
ValueError whose message names the problem. Any other exception (an internal reshape or
index error) fails the test.
"""
import re

import pytest
import torch

from pstn.distributions import sample_theta
from pstn.families import FAMILIES, get_family

NAMES = list(FAMILIES)
SAMPLERS = ("torch", "book")
DT = torch.float64


def _size(fam, n: int = 5) -> tuple:
    return (n,) * fam.ndim


def _theta(fam, B: int, scale: float = 0.05, seed: int = 0) -> torch.Tensor:
    "The identity plus a small deviation: a typical, valid theta."
    g = torch.Generator().manual_seed(seed)
    dev = torch.randn(B, fam.n_params, generator=g, dtype=DT)
    return fam.identity(B, dtype=DT) + scale * dev


def _correct_or_named(fn, names: str):
    """Run `fn`; return its result, or None after a ValueError whose message matches the
    regular expression `names` (the problem named). Any other exception propagates."""
    try:
        return fn()
    except ValueError as e:
        assert re.search(names, str(e)), f"ValueError does not name the problem: {e}"
        return None


# ---------------------------------------------------------------- empty batch

@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_grid(name):
    fam = get_family(name)
    theta = fam.identity(0, dtype=DT).requires_grad_()
    g = fam.grid(theta, _size(fam))
    assert g.shape == (0, *_size(fam), fam.ndim)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_apply(name, sampler):
    fam = get_family(name)
    x = torch.randn(0, 2, *_size(fam), dtype=DT, requires_grad=True)
    theta = fam.identity(0, dtype=DT).requires_grad_()
    y = fam.apply(x, theta, size=_size(fam, 4), sampler=sampler)
    ref = fam.apply(x.detach(), theta.detach(), size=_size(fam, 4), sampler="torch")
    assert y.shape == ref.shape == (0, 2, *_size(fam, 4))
    y.sum().backward()  # gradients of the right (empty) shapes, no error
    assert x.grad.shape == x.shape
    assert theta.grad is None or theta.grad.shape == theta.shape


# The sampler's and sample_theta's own empty-batch checks are in nbs/02_sampling and nbs/06_distributions.


# ---------------------------------------------------------------- a single pixel

@pytest.mark.parametrize("align_corners", (False, True))
@pytest.mark.parametrize("name", NAMES)
def test_single_pixel_output(name, align_corners):
    fam = get_family(name)
    x = torch.randn(2, 2, *_size(fam), dtype=DT)
    theta = _theta(fam, 2)
    size = (1,) * fam.ndim

    def run():
        book = fam.apply(x, theta, size=size, align_corners=align_corners,
                         sampler="book")
        ref = fam.apply(x, theta, size=size, align_corners=align_corners)
        assert book.shape == ref.shape == (2, 2, *size)
        torch.testing.assert_close(book, ref, atol=1e-10, rtol=1e-8)
        return book

    run()          # both conventions give one pixel: the centre (False) or the corner (True)


@pytest.mark.parametrize("name", NAMES)
def test_single_pixel_input(name):
    fam = get_family(name)
    x = torch.randn(2, 2, *(1,) * fam.ndim, dtype=DT)
    theta = _theta(fam, 2)
    book = fam.apply(x, theta, size=_size(fam, 3), sampler="book")
    ref = fam.apply(x, theta, size=_size(fam, 3))
    torch.testing.assert_close(book, ref, atol=1e-10, rtol=1e-8)


# ---------------------------------------------------------------- a single cell

SINGLE_CELL = [("cpab1d", dict(nc=1)), ("cpab1d", dict(nc=1, zero_boundary=False)),
               ("cpab1d", dict(nc=2)), ("cpab2d", dict(tess=(1, 1))),
               ("cpab2d", dict(tess=(1, 1), zero_boundary=False)),
               ("cpab2d", dict(tess=(1, 2))), ("tps", dict(n=2))]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name,kwargs", SINGLE_CELL)
def test_single_cell(name, kwargs, sampler):
    # one 1-D cell with zero boundary leaves only v = 0: refused, naming the dimension
    fam = _correct_or_named(lambda: get_family(name, **kwargs), r"dimension 0")
    if fam is None:
        assert kwargs == dict(nc=1)
        return
    x = torch.randn(2, 1, *_size(fam, 6), dtype=DT)
    theta = _theta(fam, 2, scale=0.3)
    y = fam.apply(x, theta, sampler=sampler)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    same = fam.apply(x, fam.identity(2, dtype=DT), sampler=sampler)
    torch.testing.assert_close(same, x, atol=1e-9, rtol=0)  # identity: no change
    g = fam.grid(theta, _size(fam, 6))
    if getattr(getattr(fam, "space", None), "zero_boundary", False):
        assert bool((g.abs() <= 1).all())  # the square (interval) maps onto itself


# ---------------------------------------------------------- huge and non-finite theta

HUGE = (1e6, 1e30)
NAMED_HUGE = r"theta|projective map undefined"
REFUSE_HUGE = {"projective", "cpab2d"}


@pytest.mark.parametrize("scale", HUGE)
@pytest.mark.parametrize("name", NAMES)
def test_huge_theta(name, scale):
    fam = get_family(name)
    g = torch.Generator().manual_seed(1)
    dev = torch.randn(3, fam.n_params, generator=g, dtype=DT)
    theta = fam.identity(3, dtype=DT) + scale * dev
    x = torch.randn(3, 2, *_size(fam), dtype=DT)

    def run():
        grid = fam.grid(theta, _size(fam))
        assert bool(torch.isfinite(grid).all()), "a finite theta gave a non-finite grid"
        if getattr(getattr(fam, "space", None), "zero_boundary", False):
            assert bool((grid.abs() <= 1).all())
        book = fam.apply(x, theta, sampler="book")
        ref = fam.apply(x, theta)
        assert bool(torch.isfinite(book).all())
        torch.testing.assert_close(book, ref, atol=1e-8, rtol=1e-6)
        return book

    out = _correct_or_named(run, NAMED_HUGE)
    # only these refuse a huge theta (the projective denominator crosses 0; the 2-D CPA
    # flow would need too many integration steps): every other family must warp finitely
    assert (out is None) == (name in REFUSE_HUGE), (name, out is None)


@pytest.mark.parametrize("bad", (float("inf"), float("-inf"), float("nan")))
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_theta(name, bad):
    fam = get_family(name)
    theta = fam.identity(2, dtype=DT)
    theta[1, -1] = bad
    x = torch.randn(2, 1, *_size(fam), dtype=DT)
    for call in (lambda: fam.grid(theta, _size(fam)),
                 lambda: fam.apply(x, theta, sampler="book"),
                 lambda: fam.apply(x, theta)):
        with pytest.raises(ValueError, match=r"theta: expected finite values"):
            call()


@pytest.mark.parametrize("align_corners", (False, True))
@pytest.mark.parametrize("name", ("cpab1d", "cpab2d"))
def test_huge_theta_cpab_boundary_points(name, align_corners):
    # with align_corners=True the grid holds the border points themselves, where the
    # velocity vanishes only up to round-off
    fam = get_family(name)
    gen = torch.Generator().manual_seed(2)
    theta = 1e6 * torch.randn(4, fam.n_params, generator=gen)
    grid = _correct_or_named(lambda: fam.grid(theta, _size(fam), align_corners),
                             NAMED_HUGE)
    assert (grid is None) == (name in REFUSE_HUGE), "refused where it must not be, or not refused"
    if grid is not None:
        assert bool(torch.isfinite(grid).all()) and bool((grid.abs() <= 1).all())


def test_huge_theta_without_zero_boundary_1d():
    fam = get_family("cpab1d", nc=1, zero_boundary=False)
    with pytest.raises(ValueError, match="theta is too large"):
        fam.grid(torch.tensor([[1e6, 1e6]]), (5,))


@pytest.mark.parametrize("scale", (1e6, 1e30))
def test_huge_mu_sample_theta(scale):
    mu = torch.full((2, 3), scale)
    th = sample_theta(mu, 1.0, torch.full((2, 3), scale), S=2)
    assert th.shape == (2, 2, 3) and bool(torch.isfinite(th).all())
