"""The lecture's first model, as a computation graph:

    x1 = w · x,   x2 = x1 + b,   loss = |y_true − x2|,   with x = 2, w = 3, b = 1, y_true = 4.

Backpropagation is the chain rule along the graph's edges: dloss/dw is the product of the
local gradients on the path w → x1 → x2 → loss. This script prints both, and renders the
chain-rule picture (values and local gradients on the edges) to out/first_model.png.
"""
import argparse
import os

import graphgrad as gg


def build():
    x = gg.constant(2.0, name="x")
    w = gg.variable(3.0, name="w")
    b = gg.variable(1.0, name="b")
    y_true = gg.constant(4.0, name="y_true")
    x1 = gg.mul(w, x, name="x1")
    x2 = gg.add(x1, b, name="x2")
    loss = gg.l1(x2, y_true, name="loss")     # |x2 − y_true|, the absolute error
    return w, b, x1, x2, loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNGs")
    parser.add_argument("--quick", action="store_true", help="(no effect: this example is already instant)")
    args = parser.parse_args(argv)

    w, b, x1, x2, loss = build()
    dloss_dw, dloss_db = gg.grad(loss, [w, b])
    # the local gradients along the path, each a graph node too
    dloss_dx2 = gg.grad(loss, x2)
    dx2_dx1 = gg.grad(x2, x1)
    dx1_dw = gg.grad(x1, w)
    values = gg.compile([loss, dloss_dw, dloss_db, dloss_dx2, dx2_dx1, dx1_dw])()
    loss_v, dw, db, l_x2, x2_x1, x1_w = (float(v) for v in values)

    print(f"loss = |y_true - x2| = {loss_v:g}")
    print(f"chain rule: dloss/dx2 * dx2/dx1 * dx1/dw = {l_x2:g} * {x2_x1:g} * {x1_w:g} = {l_x2 * x2_x1 * x1_w:g}")
    print(f"gg.grad:    dloss/dw = {dw:g}")
    print(f"gg.grad:    dloss/db = {db:g}   (= dloss/dx2 * dx2/db = {l_x2:g} * 1)")

    os.makedirs(args.out, exist_ok=True)
    path = gg.render(loss, os.path.join(args.out, "first_model.png"), show_values=True,
                     title="the first model: values and local gradients on the edges")
    gg.render([dloss_dw, dloss_db], os.path.join(args.out, "first_model_backward.png"),
              title="forward (blue) and the backward nodes gg.grad added (orange)")
    print(f"wrote {path} and {os.path.join(args.out, 'first_model_backward.png')}")
    return {"loss": loss_v, "dw": dw, "db": db, "chain": l_x2 * x2_x1 * x1_w}


if __name__ == "__main__":
    main()
