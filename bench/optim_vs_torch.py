"""graphgrad's optimizers and schedules against torch.optim itself (not a transcription): the
least-squares problem of tests/test_optim.py, 50 float64 steps per configuration, and the
largest |graphgrad − torch| over every step and parameter. Ftrl and Lion have no torch.optim
twin and are skipped here (tests/test_optim.py checks them against their published rules).
Run: python bench/optim_vs_torch.py   (needs torch; writes bench/results/optim_vs_torch.json)
"""
from __future__ import annotations

import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))
sys.path.insert(2, os.path.join(os.path.dirname(HERE), "tests"))
import _common  # noqa: E402


def optimizers():
    import numpy as np
    import torch
    import graphgrad as gg
    from test_optim import CASES, build, make_problem
    rows = []
    for name, hyper in CASES:
        if not hasattr(torch.optim, name):
            continue
        X, Y, w0, b0 = make_problem()
        x, y, w, b, loss = build("float64", w0, b0)
        step = gg.compile(loss, optimizer=getattr(gg.optim, name)(**hyper))
        tw = torch.tensor(w0, requires_grad=True)
        tb = torch.tensor(b0, requires_grad=True)
        topt = getattr(torch.optim, name)([tw, tb], **hyper, foreach=False)
        Xt, Yt = torch.tensor(X), torch.tensor(Y)
        err = 0.0
        for _ in range(50):
            step(x=X, y=Y)
            topt.zero_grad()
            ((Xt @ tw + tb - Yt) ** 2).mean().backward()
            topt.step()
            err = max(err, float(np.abs(w.value - tw.detach().numpy()).max()),
                      float(np.abs(b.value - tb.detach().numpy()).max()))
        rows.append({"optimizer": name, "hyper": {k: list(v) if isinstance(v, tuple) else v for k, v in hyper.items()},
                     "max_abs_diff": err})
    return rows


def schedules():
    import numpy as np
    import torch
    import graphgrad as gg

    def run(lib, make, opt):
        sched, lrs = make(lib, opt), []
        for _ in range(30):
            lrs.append(opt.param_groups[0]["lr"])
            if isinstance(opt, torch.optim.Optimizer):
                opt.step()
            sched.step()
        return np.array(lrs)

    cases = {
        "StepLR": lambda m, o: m.StepLR(o, 3, gamma=0.5),
        "MultiStepLR": lambda m, o: m.MultiStepLR(o, [2, 5], gamma=0.3),
        "ExponentialLR": lambda m, o: m.ExponentialLR(o, 0.9),
        "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.01),
        "LinearLR (warm-up)": lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=6),
        "LambdaLR": lambda m, o: m.LambdaLR(o, lambda t: 0.95 ** t),
        "SequentialLR (warm-up, cosine)": lambda m, o: m.SequentialLR(
            o, [m.LinearLR(o, 0.2, total_iters=4), m.CosineAnnealingLR(o, T_max=10)], milestones=[4]),
    }
    rows = []
    for label, make in cases.items():
        ours = run(gg.optim, make, gg.optim.SGD([gg.variable(np.zeros(1))], lr=0.5))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = run(torch.optim.lr_scheduler, make, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5))
        rows.append({"schedule": label, "max_abs_diff": float(np.abs(ours - theirs).max())})
    return rows


def main():
    if not _common.torch_available():
        print("torch is not installed: nothing to compare against")
        return
    import torch
    torch.set_default_dtype(torch.float64)
    opt_rows, sched_rows = optimizers(), schedules()
    print("max |graphgrad − torch.optim| over 50 float64 steps")
    for r in opt_rows:
        print(f"  {r['optimizer']:<9} {str(r['hyper']):<88} {r['max_abs_diff']:.1e}")
    print("max |graphgrad − torch.optim.lr_scheduler| over 30 counts")
    for r in sched_rows:
        print(f"  {r['schedule']:<32} {r['max_abs_diff']:.1e}")
    path = _common.write_json("optim_vs_torch.json", {"machine": _common.machine(), "torch": torch.__version__,
                                                      "optimizers": opt_rows, "schedules": sched_rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
