/* ops_table.h — expands the op table (ops.def) once with the row macros the includer defined.
 * A row macro left undefined expands to GG_ANY_ROW(ENUM, code, name) when that is defined, else to
 * nothing; every row macro is undefined again afterwards, so the table can be expanded many times. */
#ifndef GG_ANY_ROW
#define GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_BINARY
#define GG_BINARY(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_UNARY
#define GG_UNARY(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_UNARY_P
#define GG_UNARY_P(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_UNARY_PQ
#define GG_UNARY_PQ(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_BACKWARD
#define GG_BACKWARD(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_BACKWARD_P
#define GG_BACKWARD_P(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_BACKWARD_PQ
#define GG_BACKWARD_PQ(E, CODE, NAME, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_LOSS_BACKWARD
#define GG_LOSS_BACKWARD(E, CODE, NAME, COEF, BODY) GG_ANY_ROW(E, CODE, NAME)
#endif
#ifndef GG_OP
#define GG_OP(E, CODE, NAME, KERNEL, RUN, INPUTS, LAYOUT) GG_ANY_ROW(E, CODE, NAME)
#endif

#include "ops.def"

#undef GG_ANY_ROW
#undef GG_BINARY
#undef GG_UNARY
#undef GG_UNARY_P
#undef GG_UNARY_PQ
#undef GG_BACKWARD
#undef GG_BACKWARD_P
#undef GG_BACKWARD_PQ
#undef GG_LOSS_BACKWARD
#undef GG_OP
