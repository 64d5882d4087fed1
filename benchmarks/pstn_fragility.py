"""Why does P-STN training on random-placement Fashion-MNIST sometimes lose the object? (issue 12)

    .venv/bin/python benchmarks/pstn_fragility.py trace --seed 1            # both layouts, step by step
    .venv/bin/python benchmarks/pstn_fragility.py rates --seeds 0-9 --jobs 2  # failure rates per layout
    .venv/bin/python benchmarks/pstn_fragility.py summary                   # write results/studies/pstn_fragility.json

The protocol is the `cpu` profile of `nbs/experiments/fashion_placement.ipynb`, cut to the part that fails: a CNN
trained on all 60,000 centred training images for 5 epochs (per seed and layout, as in the notebook), then the
P-STN localiser (S = 10, w = 3e-5, init_var = 0.01, the notebook's guard) for one epoch (250 steps) on 16,000
placed training images, evaluated on the first 2,000 placed test images. A run *fails* when the mean distance
between its mean translation and the true one exceeds 5 pixels (the published run: 2.0 px; every failure we saw:
more than 25 px).

Each run is one process with one torch thread; its result is a JSON file under `_results/fragility/` (resumable:
a finished run is never redone). `summary` gathers them, with Wilson 95% intervals for the failure rates.
"""
import argparse, json, math, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "_results" / "fragility"
OUT = ROOT / "results" / "studies" / "pstn_fragility.json"
FAIL_PX = 5.0


def _tensors(train: bool, n: int):
    import torch
    from pstn.data import FashionMNIST
    ds = FashionMNIST(train=train)
    return torch.utils.data.TensorDataset(ds.data[:n].unsqueeze(1).float() / 255, ds.targets[:n])


def cnn_for(seed: int, layout: str):
    "The frozen CNN of the notebook for (seed, layout), trained once and cached."
    import torch
    from pstn.stn import CNN, conv_net
    from pstn.training import train
    torch.manual_seed(seed)
    cnn = CNN(conv_net((1, 28, 28), 10))
    WORK.mkdir(parents=True, exist_ok=True)
    train(cnn, _tensors(True, 60000), epochs=5, batch_size=64, lr=1e-3, seed=seed, progress=False,
          checkpoint=WORK / f"cnn-{seed}-{layout}.pt", channels_last=layout == "channels_last")
    return cnn.eval().requires_grad_(False)


def build(seed: int, cnn, options: dict):
    import torch
    from pstn.families import get_family
    from pstn.stn import conv_net
    from pstn.pstn import PSTN
    from pstn.stn import STN
    torch.manual_seed(seed)
    kw = dict(S_train=10, S_test=10, w=3e-5, init_var=0.01, bound=[0.5, 0.25, 0.5, 0.5])
    kw.update(options)
    args = (get_family("similarity"), conv_net((1, 56, 56), 32, channels=(16, 32), hidden=46), cnn.net, (1, 56, 56))
    mu_bound = kw.pop("mu_bound", None)
    freeze_beta = kw.pop("freeze_beta", False)
    spread_warmup = kw.pop("spread_warmup", 0)
    if kw.pop("model", "pstn") == "stn": m = STN(*args, out_size=(28, 28))
    else: m = PSTN(*args, out_size=(28, 28), **kw)
    if mu_bound is not None: bound_head(m, mu_bound)
    if freeze_beta: m.beta_head.requires_grad_(False)
    if spread_warmup: warm_spread(m, spread_warmup)
    return m


def warm_spread(model, n):
    "Prototype: theta = mu + tau (theta_sample - mu) and KL weight tau w, tau rising linearly from 0 to 1 over n steps."
    import types
    from pstn.distributions import sample_theta
    from pstn.elbo import elbo_loss
    from pstn.stn import empty_fraction
    model._k = 0
    def loss(self, x, y, S=None):
        tau = min(1.0, self._k / n) if self.training else 1.0
        if self.training: self._k += 1
        mu, beta = self.posterior(x)
        th = sample_theta(mu, self.alpha, beta, self._S(S), bound=self.bound)
        th = mu + tau * (th - mu)
        lp = self.classify(x, th)
        l, nll, kl = elbo_loss(lp, y, self.alpha, beta, self.w * tau, self.alpha0, self.beta0)
        return l, {"nll": nll.item(), "kl": kl.item()}
    model.loss = types.MethodType(loss, model)


def bound_head(model, c):
    "Prototype: mu (or theta) = identity + soft_bound(head(h) - identity, c)."
    import torch
    from pstn.distributions import soft_bound
    head = model.head
    ident = model.family.identity(1)[0]
    class Bounded(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.inner = head
        def forward(self, h):
            return ident + soft_bound(self.inner(h) - ident, c)
    model.head = Bounded()


def data(seed: int, train_size: int = 16000, test_size: int = 2000):
    from pstn.variants import RandomPlacement
    from pstn.training import materialize
    place_train = materialize(RandomPlacement(_tensors(True, train_size), canvas=56, seed=seed), progress=False)
    pt = RandomPlacement(_tensors(False, test_size), canvas=56, seed=seed + 1)
    place_test = materialize(pt, progress=False)
    return place_train, place_test, pt.theta(place_test.tensors[2])


class Tracer:
    "Forward hooks on the mu head, the beta head and the classifier: per-step statistics of training."
    def __init__(self, model):
        self.rows, self.cur = [], {}
        self.model = model
        model.head.register_forward_hook(self._mu)
        if hasattr(model, "beta_head"): model.beta_head.register_forward_hook(self._beta)
        model.net.register_forward_hook(self._views)

    def _mu(self, m, i, o):
        if m.training:
            o = o.detach()
            self.cur.update(mu_mean=o.mean(0).tolist(), mu_std=o.std(0).tolist(),
                            t_norm=o[:, -2:].norm(dim=1).mean().item())

    def _beta(self, m, i, o):
        if m.training:
            import torch.nn.functional as F
            self.cur["beta_mean"] = (F.softplus(o.detach()) + 1e-6).mean(0).tolist()

    def _views(self, m, i, o):
        if m.training:
            v = i[0].detach().flatten(1)
            self.cur["empty_views"] = (v.abs().amax(1) < 1e-3).float().mean().item()
            self.rows.append(self.cur); self.cur = {}


class WarmupAdam:
    "Prototype (monkeypatch): Adam whose learning rate rises linearly over the first `n` steps."
    def __init__(self, n):
        import torch
        base = torch.optim.Adam
        class _A(base):
            def step(self, closure=None):
                k = getattr(self, "_k", 0) + 1; self._k = k
                for g in self.param_groups:
                    g.setdefault("lr0", g["lr"]); g["lr"] = g["lr0"] * min(1.0, k / n)
                return super().step(closure)
        torch.optim.Adam = _A


def one_run(seed: int, layout: str, cnn_layout: str | None = None, epochs: int = 1, options: dict | None = None,
            trace: bool = False, perturb: float = 0.0, tag: str = "", lr: float = 1e-3, warmup: int = 0) -> dict:
    "Train one P-STN as the notebook does; return its translation error, accuracy and (optionally) its trace."
    import torch
    from pstn.training import train, evaluate
    torch.set_num_threads(1)
    cnn = cnn_for(seed, cnn_layout or layout)
    place_train, place_test, theta_true = data(seed)
    model = build(seed, cnn, options or {})
    if perturb:                                      # a float-level nudge of the localiser's initial weights
        g = torch.Generator().manual_seed(10_000 + seed)
        with torch.no_grad():
            for p in model.localiser.parameters():
                p.mul_(1 + perturb * torch.randn(p.shape, generator=g))
    tracer = Tracer(model) if trace else None
    if warmup: WarmupAdam(warmup)
    t0 = time.perf_counter()
    hist = train(model, place_train, epochs=epochs, batch_size=64, lr=lr, seed=seed, progress=False,
                 channels_last=layout == "channels_last")
    seconds = time.perf_counter() - t0
    x = place_test.tensors[0]
    with torch.no_grad():
        model.eval()
        mu = torch.cat([model.head(model.features(xb)) for xb in x.split(512)])
    err_px = (mu[:, 2:] - theta_true[:, 2:]).norm(dim=1).mean().item() * 28
    res = {"seed": seed, "layout": layout, "cnn_layout": cnn_layout or layout, "epochs": epochs,
           "options": options or {}, "perturb": perturb, "tag": tag,
           "translation_error_px": err_px, "failed": err_px > FAIL_PX,
           "mean_scale": mu[:, 1].mean().item(), "accuracy": evaluate(model, place_test)["accuracy"],
           "history": hist, "seconds": seconds}
    if tracer: res["trace"] = tracer.rows
    return res


def run_file(seed, layout, tag):
    return WORK / "runs" / f"{tag or 'base'}-{layout}-{seed}.json"


DESCRIBE = {                                             # tag -> what the variant is, for the record and the book
    "": "P-STN as in the notebook (S = 10, w = 3e-5, init_var = 0.01, the guard), 1 epoch",
    "base2": "the same, 2 epochs",
    "perturbed": "the same, initial localiser weights multiplied by 1 + 1e-6 N(0, 1)",
    "stn": "STN (same trunk, same frozen CNN), 1 epoch",
    "stn2": "STN, 2 epochs",
    "stn_perturbed": "STN, initial localiser weights multiplied by 1 + 1e-6 N(0, 1)",
    "warmup": "P-STN, learning rate rising linearly over the first 100 steps",
    "initvar4": "P-STN, init_var = 1e-4",
    "kl0": "P-STN, w = 0 (no KL term)",
    "fixbeta": "P-STN, beta frozen at its initial value (spread fixed at sqrt(0.01))",
    "lr4": "P-STN, learning rate 1e-4 (the authors' localiser rate), 1 epoch",
    "pstn_det": "P-STN, S = 1, beta frozen at the floor 1e-6, w = 0, no guard: a nearly deterministic P-STN",
    "mubound": "P-STN, mu kept on the canvas: mu = identity + soft_bound(head - identity, (inf, 0.75, 1, 1))",
    "spread": "P-STN with warmup = 250: spread and KL weight rise from 0 over the first epoch, 2 epochs",
}

VARIANTS = {                                             # tag -> keyword arguments of one_run
    "": {},
    "perturbed": {"perturb": 1e-6},
    "stn": {"options": {"model": "stn"}},
    "stn_perturbed": {"options": {"model": "stn"}, "perturb": 1e-6},
    "pstn_det": {"options": {"init_var": 1e-12, "w": 0.0, "S_train": 1, "bound": None, "freeze_beta": True}},
    "spreadwarm": {"options": {"spread_warmup": 250}, "epochs": 2},
    "base2": {"epochs": 2},
    "spread": {"options": {"warmup": 250}, "epochs": 2},
    "stn2": {"options": {"model": "stn"}, "epochs": 2},
    "spreadwarm_lrwarm": {"options": {"spread_warmup": 250}, "epochs": 2, "warmup": 100},
    "spreadwarm_mubound": {"options": {"spread_warmup": 250, "mu_bound": [float("inf"), 0.75, 1.0, 1.0]}, "epochs": 2},
    "fixbeta": {"options": {"freeze_beta": True}},
    "mubound": {"options": {"mu_bound": [float("inf"), 0.75, 1.0, 1.0]}},
    "warmup": {"warmup": 100},
    "initvar4": {"options": {"init_var": 1e-4}},
    "lr4": {"lr": 1e-4},
    "kl0": {"options": {"w": 0.0}},
}


def cmd_one(a):
    f = run_file(a.seed, a.layout, a.tag)
    if f.exists(): return
    res = one_run(a.seed, a.layout, tag=a.tag, **VARIANTS[a.tag])
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(res)); os.replace(tmp, f)
    print(f"{a.tag or 'base'} {a.layout} seed {a.seed}: {res['translation_error_px']:.1f} px, "
          f"accuracy {res['accuracy']:.3f}, {res['seconds']:.0f} s", flush=True)


def seeds(spec: str) -> list[int]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def cmd_rates(a):
    jobs = [(s, l, t) for t in a.tags.split(",") for l in a.layouts.split(",") for s in seeds(a.seeds)
            if not run_file(s, l, "" if t == "base" else t).exists()]
    running = []
    for s, l, t in jobs:
        while len(running) >= a.jobs:
            running = [p for p in running if p.poll() is None]; time.sleep(1)
        running.append(subprocess.Popen([sys.executable, __file__, "one", "--seed", str(s), "--layout", l,
                                         "--tag", "" if t == "base" else t]))
    for p in running: p.wait()


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    "Wilson score interval of a binomial proportion k / n."
    if n == 0: return (0.0, 1.0)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, c - h), min(1.0, c + h))


def cmd_trace(a):
    "Both layouts from one seed (same CNN: the default layout's), step by step."
    out = {}
    for layout in ("default", "channels_last"):
        out[layout] = one_run(a.seed, layout, cnn_layout="default", trace=True)
        print(layout, out[layout]["translation_error_px"], flush=True)
    f = WORK / f"trace-{a.seed}.json"
    f.write_text(json.dumps(out))


def cnn_stats(seed: int, layout: str) -> dict:
    "The frozen CNN's mean NLL on the test canvases seen empty (all zeros) and seen whole (the identity window)."
    import torch
    import torch.nn.functional as F
    from pstn.families import get_family
    cnn = cnn_for(seed, layout)
    _, te, _ = data(seed)
    x, y = te.tensors[0], te.tensors[1]
    fam = get_family("similarity")
    with torch.no_grad():
        blank = F.nll_loss(cnn(torch.zeros(len(x), 1, 28, 28)), y).item()
        ident = F.nll_loss(cnn(fam.apply(x, fam.identity(len(x)), (28, 28))), y).item()
    return {"empty_view_loss": blank, "identity_view_loss": ident}


def landscape(seed: int = 4, n: int = 1000) -> dict:
    """The frozen CNN's loss along the scale s (r = t = 0) on n training canvases: at the point (what an STN's
    gradient sees) and averaged over P-STN samples at the initial spread (what a P-STN's gradient sees); and how
    much the summed gradient at the identity changes under Gaussian nudges of theta."""
    import torch
    import torch.nn.functional as F
    from pstn.families import get_family
    from pstn.distributions import sample_theta
    cnn = cnn_for(seed, "default")
    tr, _, _ = data(seed)
    x, y = tr.tensors[0][:n], tr.tensors[1][:n]
    fam = get_family("similarity")
    scales = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.4, 1.7, 2.0, 3.0, 5.0]
    point, smooth = [], []
    with torch.no_grad():
        for s in scales:
            th0 = torch.tensor([[0.0, s, 0.0, 0.0]]).expand(n, 4).contiguous()
            point.append(F.nll_loss(cnn(fam.apply(x, th0, (28, 28))), y).item())
            ths = sample_theta(th0, 1.0, torch.full((n, 4), 0.01), 10, bound=[0.5, 0.25, 0.5, 0.5],
                               generator=torch.Generator().manual_seed(0))
            smooth.append(torch.stack([F.nll_loss(cnn(fam.apply(x, t, (28, 28))), y) for t in ths]).mean().item())
        blank = F.nll_loss(cnn(torch.zeros(n, 1, 28, 28)), y).item()
    xb, yb = x[:64], y[:64]
    def grad_at(delta):
        t = (fam.identity(64) + delta).requires_grad_(True)
        F.nll_loss(cnn(fam.apply(xb, t, (28, 28))), yb).backward()
        return t.grad.sum(0)
    g0, gen, rough = grad_at(torch.zeros(4)), torch.Generator().manual_seed(0), {}
    for sd in (1e-4, 1e-3, 1e-2):
        cos = [F.cosine_similarity(grad_at(sd * torch.randn(64, 4, generator=gen)), g0, dim=0).item() for _ in range(10)]
        rough[str(sd)] = {"mean_cosine": sum(cos) / len(cos), "min_cosine": min(cos)}
    return {"seed": seed, "n": n, "scales": scales, "point_loss": point, "smoothed_loss": smooth,
            "empty_view_loss": blank, "gradient_at_identity": g0.tolist(), "gradient_cosine_under_nudges": rough}


def cmd_summary(a):
    sys.path.insert(0, str(Path(__file__).parent))
    from common import run_info
    runs = [json.loads(f.read_text()) for f in sorted((WORK / "runs").glob("*.json"))]
    groups = {}
    for r in runs:
        if r["tag"] in DESCRIBE: groups.setdefault((r["tag"], r["layout"]), []).append(r)
    rates = []
    for (tag, layout), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        k, n = sum(r["failed"] for r in rs), len(rs)
        rates.append({"variant": tag or "base", "describe": DESCRIBE[tag], "layout": layout, "n": n, "failures": k,
                      "rate": k / n, "wilson95": wilson(k, n), "epochs": rs[0]["epochs"],
                      "seeds": [r["seed"] for r in rs],
                      "translation_error_px": [round(r["translation_error_px"], 2) for r in rs],
                      "accuracy": [r["accuracy"] for r in rs]})
    stats = {f"{l}-{s}": cnn_stats(s, l) for l in ("default", "channels_last") for s in range(10)}
    traces = {}
    for name, kw in (("pstn", {}), ("pstn_warmup", {"options": {"warmup": 250}}), ("stn", {"options": {"model": "stn"}})):
        r = one_run(4, "default", trace=True, **kw)
        traces[name] = {"translation_error_px": r["translation_error_px"],
                        "s": [row["mu_mean"][1] for row in r["trace"]], "t_norm": [row["t_norm"] for row in r["trace"]],
                        "empty": [row["empty_views"] for row in r["trace"]]}
    lay = {l: one_run(1, l, cnn_layout="default", trace=True) for l in ("default", "channels_last")}
    diff = [max(abs(p - q) for p, q in zip(ra["mu_mean"], rb["mu_mean"]))
            for ra, rb in zip(lay["default"]["trace"], lay["channels_last"]["trace"])]
    out = {"what": "P-STN training on random-placement Fashion-MNIST: failure rates and mechanism (issue 12)",
           "protocol": __doc__.split("The protocol is", 1)[1].split("Each run", 1)[0].strip().replace("\n", " "),
           "fail_px": FAIL_PX, "run_info": run_info(), "rates": rates, "cnn": stats,
           "traces_seed4_default": traces,
           "layout_divergence_seed1": {"max_abs_mu_difference": diff,
                                       "translation_error_px": {l: r["translation_error_px"] for l, r in lay.items()}},
           "landscape": landscape()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1))
    print("wrote", OUT)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("one"); o.add_argument("--seed", type=int); o.add_argument("--layout"); o.add_argument("--tag", default="")
    r = sub.add_parser("rates"); r.add_argument("--seeds", default="0-9"); r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--layouts", default="default,channels_last"); r.add_argument("--tags", default="base")
    t = sub.add_parser("trace"); t.add_argument("--seed", type=int, default=1)
    sub.add_parser("summary")
    a = p.parse_args()
    {"one": cmd_one, "rates": cmd_rates, "trace": cmd_trace, "summary": cmd_summary}[a.cmd](a)
