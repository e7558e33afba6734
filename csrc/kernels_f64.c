/* kernels_f64.c — compiles every kernel source for float64 (`real` is double, names end in _f64). */
#define GG_REAL_F64
#include "gg_internal.h"
#include "elementwise.c"
#include "reduce.c"
#include "gemm.c"
#include "loss.c"
#include "optim.c"
#include "metrics.c"
#include "fused.c"
#include "random.c"
#include "conv.c"
