"""What the C core chose for this machine: the kernel set (gg.isa()) and the GEMM's blocking
(gg.gemm_config()). Both are fixed once the core is loaded."""
from __future__ import annotations

from ._core import ISA, built_kernel_sets, ffi, lib, supported_kernel_sets


def isa() -> str:
    """The kernel set in use: "avx512", "avx2", "generic", or "custom" (a GRAPHGRAD_CFLAGS build).
    Chosen at import as the best this CPU and OS run; GRAPHGRAD_ISA forces one."""
    return ISA


def gemm_config(dtype: str = "float32") -> dict:
    """The GEMM's choices for `dtype` ("float32" or "float64"): micro-kernel ISA and MR×NR tile, the
    KC/NB/MB cache blocks and the cache sizes they were derived from (as reported by the machine, or
    the fallbacks), the multiply-add count under which a product runs on one thread, and the kernel
    sets built and runnable here."""
    sfx = {"float32": "f32", "float64": "f64"}[str(dtype)]
    cfg = ffi.new("gg_gemm_config *")
    getattr(lib, f"gg_gemm_config_{sfx}")(cfg)
    return {"kernel_set": ISA, "micro_kernel": ffi.string(cfg.isa).decode(), "mr": cfg.mr, "nr": cfg.nr,
            "kc": cfg.kc, "nb": cfg.nb, "mb": cfg.mb, "l1d_bytes": cfg.l1d_bytes, "l2_bytes": cfg.l2_bytes,
            "l3_bytes": cfg.l3_bytes, "serial_macs": cfg.serial_macs,
            "built": built_kernel_sets(), "supported": supported_kernel_sets()}
