"""The GPU gives the CPU's answers: every family's `apply`, an STN and a P-STN training step, and CPAB 1-D and 2-D
forward and backward, computed on CUDA and compared with the same computation on the CPU. Also: a P-STN training
step reads nothing back from the GPU (`torch.cuda.set_sync_debug_mode("error")`).

Marked `gpu` and skipped, with the reason, where CUDA is absent; `make gpu-check` runs them (with the experiments'
smoke profiles on CUDA and the timings of benchmarks/gpu.py) on a machine that has one.

Tolerances: float32 work on a GPU runs its reductions (convolutions, matrix products) in another order than on
the CPU, and may use TF32 (10-bit mantissa) for convolutions unless it is switched off, which these tests do; the
differences are then a few float32 ulps per operation, amplified by the depth of the network: 1e-4 relative, with
an absolute floor, covers them. Float64 paths (the CPAB 1-D flow, the Student-t draw) agree to 1e-10.
"""
import pytest
import torch
import torch.nn.functional as F

from pstn.families import FAMILIES, get_family
from pstn.stn import STN, conv_net
from pstn.pstn import PSTN

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="no CUDA device here: the GPU checks run where one is (make gpu-check)")]

CUDA = torch.device("cuda")
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(autouse=True)
def exact_float32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def close(gpu, cpu, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(gpu.detach().cpu(), cpu.detach(), rtol=rtol, atol=atol)


def _input_for(fam, B=4):
    shape = {1: (B, 2, 40), 2: (B, 2, 20, 24), 3: (B, 2, 8, 10, 12)}[fam.ndim]
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_apply_matches_cpu(name):
    fam = get_family(name)
    x = _input_for(fam)
    g = torch.Generator().manual_seed(1)
    theta = (fam.identity(4) + 0.05 * torch.randn(4, fam.n_params, generator=g)).requires_grad_(True)
    y = fam.apply(x, theta)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    theta_c = theta.detach().to(CUDA).requires_grad_(True)
    y_c = fam.apply(x.to(CUDA), theta_c)
    (y_c * torch.linspace(-1, 1, y_c.numel(), device=CUDA).view_as(y_c)).sum().backward()
    close(y_c, y)
    close(theta_c.grad, theta.grad, rtol=1e-3, atol=1e-4)      # sums over all pixels: looser


def _models(kind):
    torch.manual_seed(0)
    fam, shape = get_family("similarity"), (1, 28, 28)
    args = (fam, conv_net(shape, 16, channels=(4, 8), hidden=16), conv_net(shape, 10, channels=(4, 8), hidden=16), shape)
    if kind == "stn": return STN(*args)
    return PSTN(*args, S_train=3, w=1e-3, init_var=0.01, bound=[0.5, 0.25, 0.5, 0.5])


@pytest.mark.parametrize("kind", ["stn", "pstn"])
def test_training_step_matches_cpu(kind):
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    cpu = _models(kind)
    with torch.no_grad():
        cpu.head.weight.normal_(0, 0.05)                       # leave the identity, to test something
    gpu = _models(kind)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to(CUDA)
    if kind == "stn":
        l_cpu, _ = cpu.loss(x, y)
        l_gpu, _ = gpu.loss(x.to(CUDA), y.to(CUDA))
    else:                                                      # the same samples on both: drawn on the CPU
        mu, beta = cpu.posterior(x)
        mu_g, beta_g = gpu.posterior(x.to(CUDA))
        close(mu_g, mu); close(beta_g, beta)
        eps = torch.randn(3, 8, 4)
        l_cpu = F.nll_loss(cpu.classify(x, mu + 0.1 * eps).flatten(0, 1), y.repeat(3))
        l_gpu = F.nll_loss(gpu.classify(x.to(CUDA), mu_g + 0.1 * eps.to(CUDA)).flatten(0, 1), y.to(CUDA).repeat(3))
    l_cpu.backward(); l_gpu.backward()
    close(l_gpu, l_cpu)
    for (n, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
        if p.grad is not None: close(q.grad, p.grad, rtol=1e-3, atol=1e-5)


def test_pstn_step_reads_nothing_back():
    model = _models("pstn").to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.rand(8, 1, 28, 28, device=CUDA), torch.randint(0, 10, (8,), device=CUDA)
    model.loss(x, y)                                           # first call: lazy initialisations may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            loss, parts = model.loss(x, y)
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("name,kw", [("cpab1d", {"nc": 8}), ("cpab2d", {})])
def test_cpab_forward_backward_matches_cpu(name, kw):
    fam = get_family(name, **kw)
    x = _input_for(fam).double()
    theta = (0.5 * torch.randn(4, fam.n_params, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).requires_grad_(True)
    g = fam.grid(theta, x.shape[2:])
    (g * torch.linspace(-1, 1, g.numel(), dtype=torch.float64).view_as(g)).sum().backward()
    theta_c = theta.detach().to(CUDA).requires_grad_(True)
    g_c = fam.grid(theta_c, x.shape[2:])
    (g_c * torch.linspace(-1, 1, g_c.numel(), dtype=torch.float64, device=CUDA).view_as(g_c)).sum().backward()
    close(g_c, g, rtol=1e-10, atol=1e-10)
    close(theta_c.grad, theta.grad, rtol=1e-9, atol=1e-9)
