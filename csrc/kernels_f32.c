/* kernels_f32.c — compiles every kernel source for float32 (`real` is float, names end in _f32). */
#define GG_REAL_F32
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
