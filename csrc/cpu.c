/* cpu.c — what the machine running us can do: which kernel set its CPU and OS can execute (read by
 * graphgrad/_core.py before it loads a compiled set) and the cache sizes it reports (read by the GEMM
 * to size its blocks). Compiled once into every kernel-set module; only the baseline module's copy
 * answers the ISA question, since it is the only one that loads on any x86-64.
 *
 * __builtin_cpu_supports reads cpuid and, for AVX and AVX-512, also checks with xgetbv that the OS
 * saves the wider registers (libgcc's cpuinfo does both), so "supported" means runnable here. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "graphgrad.h"

#if defined(__x86_64__) || defined(_M_X64)
#define GG_X86_64 1
#endif

#if defined(GG_X86_64)
/* x86-64-v2/v3/v4 as __builtin_cpu_supports names them (GCC 12, Clang 16 and later), else as the
 * features those levels add that the builtin knows in older compilers */
#if (defined(__clang__) && __clang_major__ >= 16) || (!defined(__clang__) && __GNUC__ >= 12)
#define GG_LEVEL_V2() (__builtin_cpu_supports("x86-64-v2") > 0)
#define GG_LEVEL_V3() (__builtin_cpu_supports("x86-64-v3") > 0)
#define GG_LEVEL_V4() (__builtin_cpu_supports("x86-64-v4") > 0)
#else
#define GG_LEVEL_V2() (__builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt"))
#define GG_LEVEL_V3() (GG_LEVEL_V2() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && \
                       __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2"))
#define GG_LEVEL_V4() (GG_LEVEL_V3() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && \
                       __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&            \
                       __builtin_cpu_supports("avx512vl"))
#endif
#endif

/* 1 when this CPU and OS can run the kernel set `isa` ("avx512", "avx2", "generic"), 0 when they
 * cannot, -1 for a name that is not a kernel set */
int32_t gg_cpu_supports(const char *isa) {
    if (isa == NULL) return -1;
    if (strcmp(isa, "generic") == 0) {
#if defined(GG_X86_64)
        __builtin_cpu_init();
        return GG_LEVEL_V2();
#else
        return 1;
#endif
    }
    if (strcmp(isa, "avx2") != 0 && strcmp(isa, "avx512") != 0) return -1;
#if defined(GG_X86_64)
    __builtin_cpu_init();
    /* the same levels the modules are compiled for (-march=x86-64-v3 / -v4), so no instruction the
     * compiler may emit for that level is missing */
    if (strcmp(isa, "avx2") == 0) return GG_LEVEL_V3();
    return GG_LEVEL_V4();
#else
    return 0;
#endif
}

/* the "size" file of /sys's cache index whose level is `level` and type Data or Unified, in bytes;
 * 0 when there is none (not Linux, or not exported) */
static int64_t sys_cache_bytes(int32_t level) {
    for (int index = 0; index < 16; index++) {
        char path[96], text[32];
        int64_t got_level = -1, size = 0;
        int data = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
        FILE *f = fopen(path, "r");
        if (!f) break;
        if (fscanf(f, "%ld", &got_level) != 1) got_level = -1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", index);
        if ((f = fopen(path, "r"))) {
            data = fgets(text, sizeof text, f) && (strncmp(text, "Data", 4) == 0 || strncmp(text, "Unified", 7) == 0);
            fclose(f);
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
        if ((f = fopen(path, "r"))) {
            char unit = 0;
            int got = fscanf(f, "%ld%c", &size, &unit);
            fclose(f);
            if (got < 1) size = 0;
            else if (unit == 'K') size *= 1024;
            else if (unit == 'M') size *= 1024 * 1024;
        }
        if (got_level == level && data && size > 0) return size;
    }
    return 0;
}

/* bytes of the level-`level` data cache (1 = L1d, 2 = L2, 3 = L3) as the machine reports it:
 * /sys (the kernel's reading of cpuid) first, then sysconf; 0 when neither says (the caller has its
 * own fallbacks). /sys first because glibc's sysconf can be wrong in a VM: on a 2-core AMD EPYC (Zen 4)
 * guest it gave an L3 of 320 MiB where /sys and lscpu say 32 MiB. */
int64_t gg_cache_bytes(int32_t level) {
    if (level < 1 || level > 3) return 0;
    int64_t size = sys_cache_bytes(level);
    if (size > 0) return size;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE) && defined(_SC_LEVEL3_CACHE_SIZE)
    long got = level == 1 ? sysconf(_SC_LEVEL1_DCACHE_SIZE)
             : level == 2 ? sysconf(_SC_LEVEL2_CACHE_SIZE) : sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (got > 0) return got;
#endif
    return 0;
}
