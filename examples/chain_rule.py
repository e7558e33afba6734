"""The chain rule on a chain of functions: y = f(g(h(j(x)))).

With j(x) = 3·x, h(u) = u + 1, g(u) = sigmoid(u), f(u) = u·u, the derivative dy/dx is the
product of the local derivatives along the chain:

    dy/dx = f'(g) · g'(h) · h'(j) · j'(x)

This script builds the chain from graph ops, asks gg.grad for each local derivative and for
dy/dx, prints the product next to gg.grad's answer, and renders the chain with values and
local gradients on its edges (out/chain_rule.png).
"""
import argparse
import os

import graphgrad as gg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--x", type=float, default=0.2, help="where to evaluate the derivative")
    parser.add_argument("--quick", action="store_true", help="(no effect: already instant)")
    args = parser.parse_args(argv)

    x = gg.placeholder((), name="x", dtype="float64")
    j = gg.mul(x, 3.0, name="j")            # j(x) = 3x
    h = gg.add(j, 1.0, name="h")            # h(j) = j + 1
    g = gg.sigmoid(h, name="g")             # g(h) = sigmoid(h)
    y = gg.mul(g, g, name="y")              # f(g) = g²

    local = [gg.grad(y, g), gg.grad(g, h), gg.grad(h, j), gg.grad(j, x)]
    dy_dx = gg.grad(y, x)
    values = gg.compile(local + [dy_dx, y])(x=args.x)
    dy_dg, dg_dh, dh_dj, dj_dx, total, y_value = (float(v) for v in values)
    product = dy_dg * dg_dh * dh_dj * dj_dx

    print(f"x = {args.x},  y = f(g(h(j(x)))) = {y_value:.6f}")
    print(f"local derivatives: dy/dg = {dy_dg:.6f}, dg/dh = {dg_dh:.6f}, dh/dj = {dh_dj:.6f}, dj/dx = {dj_dx:.6f}")
    print(f"their product      = {product:.10f}")
    print(f"gg.grad(y, x)      = {total:.10f}")

    os.makedirs(args.out, exist_ok=True)
    path = gg.render(y, os.path.join(args.out, "chain_rule.png"), show_values=True, feed_dict={x: args.x},
                     title="y = f(g(h(j(x)))): the local gradients on the edges multiply to dy/dx")
    print(f"wrote {path}")
    return {"product": product, "grad": total}


if __name__ == "__main__":
    main()
