"""The packed GEMM (csrc/gemm.c) against NumPy: every M, N, K from 1 to 33, large primes that
cross the KC/NB/MB block edges, all transpose forms, alpha/beta, the epilogue, both dtypes,
1 and 2 threads, and through gg.matmul in compiled programs."""
import numpy as np
import pytest

import graphgrad as gg
from graphgrad._core import ffi, lib

DTYPES = [np.float32, np.float64]
FORMS = [(0, 0), (0, 1), (1, 0), (1, 1)]
ACTS = {"none": lib.GG_ACT_NONE, "relu": lib.GG_ACT_RELU, "sigmoid": lib.GG_ACT_SIGMOID}


def _sfx(dtype):
    return "f32" if dtype == np.float32 else "f64"


def _ptr(arr):
    return ffi.cast("float *" if arr.dtype == np.float32 else "double *", arr.ctypes.data)


def _operands(rng, dtype, m, n, k, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def run_gemm(c, a, b, m, n, k, ta, tb, alpha=1.0, beta=0.0, bias=None, act="none", threads=None, work=None):
    """gg_gemm_* on c in place, with a workspace sized by gg_gemm_workspace_bytes_* unless given."""
    sfx = _sfx(c.dtype)
    if work is None:
        nbytes = getattr(lib, f"gg_gemm_workspace_bytes_{sfx}")(m, n, k, threads or gg.get_num_threads())
        work = np.empty(max(nbytes, 1), np.uint8)
    keep = []
    ep = ffi.NULL
    if bias is not None or act != "none":
        ep = ffi.new("gg_epilogue *")
        ep.bias = _ptr(bias) if bias is not None else ffi.NULL
        ep.act = ACTS[act]
        keep.append(ep)
    getattr(lib, f"gg_gemm_{sfx}")(_ptr(c), _ptr(a), _ptr(b), m, n, k, ta, tb, alpha, beta, ep,
                                   ffi.cast("void *", work.ctypes.data), work.nbytes)
    return c


def expected(a, b, ta, tb, alpha=1.0, beta=0.0, c=None, bias=None, act="none"):
    """The float64 NumPy result and an error bound: k·eps times the sum of the magnitudes."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    oa, ob = (a64.T if ta else a64), (b64.T if tb else b64)
    out = alpha * (oa @ ob)
    scale = abs(alpha) * (np.abs(oa) @ np.abs(ob))
    if beta != 0.0:
        out = out + beta * c.astype(np.float64)
        scale = scale + abs(beta) * np.abs(c.astype(np.float64))
    if bias is not None:
        out = out + bias.astype(np.float64)
        scale = scale + np.abs(bias.astype(np.float64))
    if act == "relu":
        out = np.maximum(out, 0)
    elif act == "sigmoid":
        out = 1 / (1 + np.exp(-out))
    k = oa.shape[1]
    eps = np.finfo(a.dtype).eps
    return out, 2 * (k + 2) * eps * scale + 4 * eps


def check(got, want, bound):
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape) if err.size else None
    assert np.all(err <= bound), f"max error {err[worst]} > bound {bound[worst]} at {worst}"


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = gg.get_num_threads()
    gg.set_num_threads(request.param)
    yield request.param
    gg.set_num_threads(before)


def _small_shapes(seed):
    """33 (m, n, k) triples in which every value 1..33 appears once as M, once as N and once as K."""
    r = np.random.default_rng(seed)
    ms, ns, ks = r.permutation(33) + 1, r.permutation(33) + 1, r.permutation(33) + 1
    return list(zip(ms.tolist(), ns.tolist(), ks.tolist()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", FORMS, ids=["NN", "NT", "TN", "TT"])
def test_every_size_1_to_33(dtype, form, threads, rng):
    ta, tb = form
    shapes = _small_shapes(seed=7 * ta + 3 * tb)
    for dim in range(3):  # the sampling really covers every value in every dimension
        assert sorted(s[dim] for s in shapes) == list(range(1, 34))
    for m, n, k in shapes:
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        c = np.full((m, n), np.nan, dtype)  # beta == 0: C must not be read
        want, bound = expected(a, b, ta, tb)
        check(run_gemm(c, a, b, m, n, k, ta, tb), want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, -2.0), (-1.5, 0.0), (0.0, 0.75)])
def test_alpha_beta_accumulate(dtype, alpha, beta, threads, rng):
    for (m, n, k), (ta, tb) in zip([(17, 33, 9), (31, 5, 300), (40, 70, 29), (3, 97, 130)], FORMS):
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        want, bound = expected(a, b, ta, tb, alpha, beta, c0)
        check(run_gemm(c0.copy(), a, b, m, n, k, ta, tb, alpha, beta), want, bound)


def _prime_above(x: int) -> int:
    x += 1
    while any(x % d == 0 for d in range(2, int(x ** 0.5) + 1)):
        x += 1
    return x


# sizes that cross the blocking edges this machine's caches gave (gg.gemm_config: K over KC, N over NB,
# M over MB, in both dtypes), all prime so no tile is ever full at the edge
_BLOCKS = [gg.gemm_config(d) for d in ("float32", "float64")]
_KC, _NB, _MB = (max(c[key] for c in _BLOCKS) for key in ("kc", "nb", "mb"))
LARGE = [(257, 263, _prime_above(_KC)), (37, _prime_above(_NB), 131), (_prime_above(_MB), 19, 23),
         (101, _prime_above(2 * _NB), _prime_above(2 * _KC))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LARGE, ids=lambda s: "x".join(map(str, s)))
def test_large_primes_all_forms(dtype, shape, threads, rng):
    m, n, k = shape
    for ta, tb in FORMS:
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        want, bound = expected(a, b, ta, tb, 1.0, 0.5, c0)
        check(run_gemm(c0.copy(), a, b, m, n, k, ta, tb, 1.0, 0.5), want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["none", "relu", "sigmoid"])
def test_epilogue_bias_and_activation(dtype, act, threads, rng):
    for (m, n, k), (ta, tb) in zip([(1, 1, 1), (13, 45, 300), (64, 128, 77), (29, 7, 3)], FORMS):
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        bias = rng.standard_normal(n).astype(dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        want, bound = expected(a, b, ta, tb, 0.5, 1.0, c0, bias, act)
        check(run_gemm(c0.copy(), a, b, m, n, k, ta, tb, 0.5, 1.0, bias=bias, act=act), want, bound)
        # activation without a bias
        want, bound = expected(a, b, ta, tb, act=act)
        check(run_gemm(np.empty((m, n), dtype), a, b, m, n, k, ta, tb, act=act), want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["none", "relu", "sigmoid"])
def test_narrow_outputs_one_vector_tiles(dtype, act, threads, rng):
    """Products at most one vector wide (an output layer of 10 classes) run a k loop over one vector:
    widths around one and two vectors of both dtypes, over several K passes and M blocks of tiles,
    with bias, activation and beta."""
    k = _prime_above(_KC)
    for n in (1, 7, 8, 9, 10, 15, 16, 17):
        for ta, tb in FORMS:
            m = 250 + n
            a, b = _operands(rng, dtype, m, n, k, ta, tb)
            bias = rng.standard_normal(n).astype(dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            want, bound = expected(a, b, ta, tb, 0.5, 1.0, c0, bias, act)
            check(run_gemm(c0.copy(), a, b, m, n, k, ta, tb, 0.5, 1.0, bias=bias, act=act), want, bound)


# Shapes just over the serial cut whose 2-thread grid (gemm_grid) leaves the second thread a short share:
# row splits (784 -> 396 + 388 with AVX-512's 12-row tiles) and column splits (12 or 13 rows, 2048 or
# 1000 columns; 64 x 784), which of the two depending on the tile of the kernel set in use; with and
# without the write-back's epilogue path (bias + ReLU, alpha and beta), every transpose form.
SPLITS = [(784, 40, 40), (64, 784, 128), (100, 96, 97), (12, 2048, 64), (13, 1000, 70), (97, 97, 97)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SPLITS, ids=lambda s: "x".join(map(str, s)))
def test_thread_splits_match_numpy(dtype, shape, rng):
    m, n, k = shape
    before = gg.get_num_threads()
    gg.set_num_threads(2)
    try:
        for ta, tb in FORMS:
            a, b = _operands(rng, dtype, m, n, k, ta, tb)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            bias = rng.standard_normal(n).astype(dtype)
            want, bound = expected(a, b, ta, tb)
            check(run_gemm(np.full((m, n), np.nan, dtype), a, b, m, n, k, ta, tb), want, bound)
            want, bound = expected(a, b, ta, tb, 0.5, 1.0, c0, bias, "relu")
            check(run_gemm(c0.copy(), a, b, m, n, k, ta, tb, 0.5, 1.0, bias=bias, act="relu"), want, bound)
    finally:
        gg.set_num_threads(before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_loop_matches_numpy(dtype, rng):
    sfx = _sfx(dtype)
    for (m, n, k), (ta, tb) in zip([(5, 33, 17), (33, 1, 8), (16, 16, 300), (7, 9, 2)], FORMS):
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        ep = ffi.new("gg_epilogue *", {"bias": _ptr(bias), "act": lib.GG_ACT_RELU})
        c = c0.copy()
        getattr(lib, f"gg_gemm_ref_{sfx}")(_ptr(c), _ptr(a), _ptr(b), m, n, k, ta, tb, 2.0, -1.0, ep)
        want, bound = expected(a, b, ta, tb, 2.0, -1.0, c0, bias, "relu")
        check(c, want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_k_zero_scales_c_and_applies_epilogue(dtype):
    c = np.arange(6, dtype=dtype).reshape(2, 3) - 2
    a, b = np.empty((2, 0), dtype), np.empty((0, 3), dtype)
    bias = np.array([1, -10, 0], dtype)
    run_gemm(c, a, b, 2, 3, 0, 0, 0, 1.0, 2.0, bias=bias, act="relu")
    np.testing.assert_array_equal(c, np.maximum(2 * (np.arange(6).reshape(2, 3) - 2) + [1, -10, 0], 0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_workspace_bounds_threads_and_missing_workspace_falls_back(dtype, rng):
    """Room for one thread only, or none at all: still the right answer (fewer threads / the plain loop)."""
    sfx = _sfx(dtype)
    m, n, k = 150, 170, 190
    a, b = _operands(rng, dtype, m, n, k, 1, 0)
    want, bound = expected(a, b, 1, 0)
    one = getattr(lib, f"gg_gemm_workspace_bytes_{sfx}")(m, n, k, 1)
    two = getattr(lib, f"gg_gemm_workspace_bytes_{sfx}")(m, n, k, 2)
    assert 0 < one < two
    before = gg.get_num_threads()
    gg.set_num_threads(2)
    try:
        for size in (one, 0):
            work = np.empty(max(size, 1), np.uint8)[:size]
            check(run_gemm(np.empty((m, n), dtype), a, b, m, n, k, 1, 0, work=work), want, bound)
        # a misaligned workspace is aligned inside
        work = np.empty(two + 1, np.uint8)[1:]
        check(run_gemm(np.empty((m, n), dtype), a, b, m, n, k, 1, 0, work=work), want, bound)
    finally:
        gg.set_num_threads(before)


def test_kernel_info_names_the_isa():
    mr, nr = ffi.new("int32_t *"), ffi.new("int32_t *")
    isa = ffi.string(lib.gg_gemm_kernel_info_f32(mr, nr)).decode()
    assert isa in ("avx512", "avx2", "sse2", "portable")
    assert mr[0] >= 1 and nr[0] >= 1


# ---- through the compiler and the interpreter ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", FORMS, ids=["NN", "NT", "TN", "TT"])
def test_matmul_in_a_program(dtype, form, threads, rng):
    ta, tb = form
    m, n, k = 45, 70, 300
    a_val, b_val = _operands(rng, dtype, m, n, k, ta, tb)
    a = gg.placeholder(a_val.shape, dtype=dtype, name="a")
    b = gg.placeholder(b_val.shape, dtype=dtype, name="b")
    prog = gg.compile(gg.matmul(a, b, trans_a=bool(ta), trans_b=bool(tb)))
    want, bound = expected(a_val, b_val, ta, tb)
    check(prog(a=a_val, b=b_val), want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_gradients_in_a_program(dtype, threads, rng):
    """Backward runs the NT and TN forms; compare dX, dW of sum(X·W) with NumPy."""
    x_val = rng.standard_normal((67, 129)).astype(dtype)
    w_val = rng.standard_normal((129, 35)).astype(dtype)
    g_val = rng.standard_normal((67, 35)).astype(dtype)
    x = gg.placeholder(x_val.shape, dtype=dtype, name="x")
    g = gg.placeholder(g_val.shape, dtype=dtype, name="g")
    w = gg.variable(w_val, name="w", dtype=dtype)
    loss = gg.sum(gg.mul(gg.matmul(x, w), g))
    dx, dw = gg.grad(loss, [x, w])
    prog = gg.compile([loss, dx, dw])
    _, got_dx, got_dw = prog(x=x_val, g=g_val)
    want, bound = expected(g_val, w_val, 0, 1)
    check(got_dx, want, bound)
    want, bound = expected(x_val, g_val, 1, 0)
    check(got_dw, want, bound)
    assert lib.gg_program_workspace_bytes(prog.executable((x_val.shape, g_val.shape)).c_prog, 1) > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_matmul_instruction_with_epilogue(dtype, act, rng):
    """GG_OP_MATMUL with a bias buffer (in[2]) and an activation (dims[5]): the fusion pass's form."""
    m, n, k = 33, 47, 65
    a, b = _operands(rng, dtype, m, n, k, 0, 1)
    bias = rng.standard_normal(n).astype(dtype)
    c = np.empty((m, n), dtype)
    bufs = ffi.new("void *[]", [ffi.cast("void *", x.ctypes.data) for x in (c, a, b, bias)])
    ins = ffi.new("gg_instr[]", 1)
    ins[0].opcode, ins[0].dtype, ins[0].out, ins[0].n_in, ins[0].out_size = (
        lib.GG_OP_MATMUL, lib.GG_F32 if dtype == np.float32 else lib.GG_F64, 0, 3, m * n)
    for i, v in enumerate([1, 2, 3]):
        getattr(ins[0], "in")[i] = v
    for i, v in enumerate([m, n, k, 0, 1, ACTS[act]]):
        ins[0].dims[i] = v
    ins[0].attrs[0], ins[0].attrs[1] = 1.0, 0.0
    prog = ffi.new("gg_program *")
    prog.n_instr, prog.instrs, prog.n_buffers, prog.buffers = 1, ins, 4, bufs
    nbytes = lib.gg_program_workspace_bytes(prog, 2)
    assert nbytes == getattr(lib, f"gg_gemm_workspace_bytes_{_sfx(dtype)}")(m, n, k, 2)
    work = np.empty(nbytes, np.uint8)
    prog.workspace, prog.workspace_bytes = ffi.cast("void *", work.ctypes.data), nbytes
    assert lib.gg_program_run(prog) == lib.GG_OK
    want, bound = expected(a, b, 0, 1, bias=bias, act=act)
    check(c, want, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", FORMS, ids=["NN", "NT", "TN", "TT"])
def test_epilogue_hook_sees_each_finished_block_once(dtype, form, threads, rng):
    """The hook (the fusion pass's seam) gets every block of C exactly once, after its final value."""
    ta, tb = form
    m, n, k = 61, 2 * _NB + 76, _KC + 44   # several row panels, 3 column blocks, 2-3 K passes
    a, b = _operands(rng, dtype, m, n, k, ta, tb)
    want, bound = expected(a, b, ta, tb, act="relu")
    c = np.empty((m, n), dtype)
    seen = np.zeros((m, n), np.int64)
    snapshot = np.empty((m, n), dtype)
    mr = ffi.new("int32_t *")
    getattr(lib, f"gg_gemm_kernel_info_{_sfx(dtype)}")(mr, ffi.NULL)
    sizes = []

    @ffi.callback("void(void *, void *, int64_t, int64_t, int64_t, int64_t)")
    def hook(ctx, ptr, row0, col0, rows, cols):
        assert int(ffi.cast("uintptr_t", ptr)) == c.ctypes.data + (row0 * n + col0) * c.itemsize
        seen[row0:row0 + rows, col0:col0 + cols] += 1
        snapshot[row0:row0 + rows, col0:col0 + cols] = c[row0:row0 + rows, col0:col0 + cols]
        sizes.append((rows, cols))

    sfx = _sfx(dtype)
    ep = ffi.new("gg_epilogue *", {"bias": ffi.NULL, "act": lib.GG_ACT_RELU, "hook": hook, "ctx": ffi.NULL})
    nbytes = getattr(lib, f"gg_gemm_workspace_bytes_{sfx}")(m, n, k, threads)
    work = np.empty(nbytes, np.uint8)
    getattr(lib, f"gg_gemm_{sfx}")(_ptr(c), _ptr(a), _ptr(b), m, n, k, ta, tb, 1.0, 0.0, ep,
                                   ffi.cast("void *", work.ctypes.data), nbytes)
    assert np.all(seen == 1)
    nb = gg.gemm_config(np.dtype(dtype).name)["nb"]
    assert max(r for r, _ in sizes) <= mr[0] and max(cl for _, cl in sizes) <= nb
    check(snapshot, want, bound)   # the hook saw the final values, activation applied
