// The OpenBLAS kernel: what the CPU can run, what the library chose, and the startup re-execution
// that replaces a generic choice by the best kernel the library has (see blas.h).
#include "blas.h"
#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#define BLAS_REEXEC_ENV   "RLHF_BLAS_REEXEC"    // "BEST CHOSEN" in the re-executed image only
#define BLAS_SELECTED_ENV "RLHF_BLAS_SELECTED"  // "BEST CHOSEN" after a selection, for info
#define BLAS_WAIT_SET_ENV "RLHF_OMP_WAIT_SET"   // "1": OMP_WAIT_POLICY=passive set at startup,
                                                // "2": GOMP_SPINCOUNT=BLAS_SPINCOUNT with it
// A thread waiting at a region's end spins this many rounds (about 0.2 ms here) before it sleeps:
// a decoding step's ~50-100 short regions otherwise pay a sleep and a wake-up each (bf16 B=1,
// GPT-2, idle: 0.80 of the read limit sleeping at once, 0.95 with this spin); at load 10 spinning
// 10,000 rounds cost 6% more CPU time than sleeping at once, the default 300,000 far more
#define BLAS_SPINCOUNT    "20000"
#define BLAS_NO_CORE      "-"                   // the marker's BEST when only the policy is set

static const struct { const char *name; unsigned bit; } blas_flag_table[] = {
    {"sse3", BLAS_SSE3}, {"avx", BLAS_AVX}, {"avx2", BLAS_AVX2}, {"fma", BLAS_FMA},
    {"avx512f", BLAS_AVX512F}, {"avx512bw", BLAS_AVX512BW}, {"avx512vl", BLAS_AVX512VL},
    {"avx512dq", BLAS_AVX512DQ}, {"avx512cd", BLAS_AVX512CD}, {"avx512_vnni", BLAS_AVX512_VNNI},
    {"avx512_bf16", BLAS_AVX512_BF16}, {"amx_bf16", BLAS_AMX_BF16},
};
#define BLAS_NFLAGS (sizeof blas_flag_table / sizeof blas_flag_table[0])

// OpenBLAS 0.3.21's x86-64 kernels (its names) by the vector width their sgemm uses:
// 0 SSE, 1 AVX, 2 AVX2 + FMA, 3 AVX-512. A name not listed is not ranked (no decision).
static const struct { const char *name; int level; } blas_core_table[] = {
    {"Unknown", 0}, {"Katmai", 0}, {"Coppermine", 0}, {"Northwood", 0}, {"Prescott", 0},
    {"Banias", 0}, {"Atom", 0}, {"Core2", 0}, {"Penryn", 0}, {"Dunnington", 0}, {"Nehalem", 0},
    {"Athlon", 0}, {"Opteron", 0}, {"Opteron_SSE3", 0}, {"Barcelona", 0}, {"Nano", 0},
    {"Sandybridge", 1}, {"Bulldozer", 1}, {"Piledriver", 1}, {"Steamroller", 1},
    {"Haswell", 2}, {"Zen", 2}, {"Excavator", 2},
    {"SkylakeX", 3}, {"Cooperlake", 3}, {"SapphireRapids", 3},
};

#define BLAS_AVX512_ALL                                                                            \
    (BLAS_AVX512F | BLAS_AVX512BW | BLAS_AVX512VL | BLAS_AVX512DQ | BLAS_AVX512CD)

static int blas_core_level(const char *name) {
    for (size_t i = 0; name && i < sizeof blas_core_table / sizeof blas_core_table[0]; i++)
        if (!strcasecmp(name, blas_core_table[i].name)) return blas_core_table[i].level;
    return -1;
}

// The widest vectors these features allow, as a level of blas_core_table, and its best kernel.
static int blas_cpu_level(unsigned f, const char **core) {
    if ((f & BLAS_AVX512_ALL) == BLAS_AVX512_ALL) {
        *core = (f & BLAS_AVX512_BF16) ? "Cooperlake" : "SkylakeX";
        return 3;
    }
    if ((f & (BLAS_AVX2 | BLAS_FMA)) == (BLAS_AVX2 | BLAS_FMA)) { *core = "Haswell"; return 2; }
    if (f & BLAS_AVX) { *core = "Sandybridge"; return 1; }
    *core = NULL;
    return 0;
}

const char *blas_best_core(unsigned cpu_flags, const char *chosen) {
    const char *best;
    int have = blas_core_level(chosen), can = blas_cpu_level(cpu_flags, &best);
    return have >= 0 && can > have ? best : NULL;
}

unsigned blas_parse_flags(const char *names) {
    unsigned f = 0;
    const char *p = names ? names : "";
    while (*p) {
        size_t n = strcspn(p, " \t,");
        for (size_t i = 0; i < BLAS_NFLAGS; i++)
            if (n == strlen(blas_flag_table[i].name) && !strncasecmp(p, blas_flag_table[i].name, n))
                f |= blas_flag_table[i].bit;
        p += n;
        p += strspn(p, " \t,");
    }
    return f;
}

void blas_flag_names(unsigned flags, char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = '\0';
    for (size_t i = 0; i < BLAS_NFLAGS && n; i++) {
        if (!(flags & blas_flag_table[i].bit)) continue;
        int k = snprintf(buf + used, n - used, "%s%s", used ? " " : "", blas_flag_table[i].name);
        if (k < 0 || (size_t)k >= n - used) { buf[used] = '\0'; break; }   // whole names only
        used += (size_t)k;
    }
}

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long blas_xgetbv(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

unsigned blas_cpu_flags(void) {
    unsigned f = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (c & bit_SSE3) f |= BLAS_SSE3;
    // AVX state must be enabled by the OS (XSAVE, XMM + YMM in XCR0), AVX-512's too (opmask, ZMM)
    unsigned long long xcr0 = (c & bit_OSXSAVE) ? blas_xgetbv() : 0;
    int os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = (xcr0 & 0xe6) == 0xe6;
    if (os_avx && (c & bit_AVX)) f |= BLAS_AVX;
    if (os_avx && (c & bit_FMA)) f |= BLAS_FMA;
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    if (os_avx && (b & bit_AVX2)) f |= BLAS_AVX2;
    if (os_avx512) {
        if (b & bit_AVX512F) f |= BLAS_AVX512F;
        if (b & bit_AVX512BW) f |= BLAS_AVX512BW;
        if (b & bit_AVX512VL) f |= BLAS_AVX512VL;
        if (b & bit_AVX512DQ) f |= BLAS_AVX512DQ;
        if (b & bit_AVX512CD) f |= BLAS_AVX512CD;
        if (c & (1u << 11)) f |= BLAS_AVX512_VNNI;
        unsigned max_sub = a;
        if (max_sub >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            if (a & (1u << 5)) f |= BLAS_AVX512_BF16;
        }
        // AMX (leaf 7 EDX: 24 tiles, 22 their bf16 product) with its state in XCR0 (17-18); a
        // process still asks Linux for it before use (lowp_gemm.c)
        __cpuid_count(7, 0, a, b, c, d);
        if ((d & (1u << 24)) && (d & (1u << 22)) && (xcr0 & 0x60000) == 0x60000)
            f |= BLAS_AMX_BF16;
    }
#endif
    return f;
}

// The features the decision sees: the test hook's, or the CPU's.
static unsigned blas_decision_flags(void) {
    const char *test = getenv("RLHF_BLAS_TEST_CPU");
    return test ? blas_parse_flags(test) : blas_cpu_flags();
}

const char *blas_core_name(void) {
    // the hooks mirror the library: without OPENBLAS_CORETYPE it chose at load, with it it took
    // (or, for the AFTER hook, ignored) the name
    const char *test =
        getenv(getenv("OPENBLAS_CORETYPE") ? "RLHF_BLAS_TEST_CORE_AFTER" : "RLHF_BLAS_TEST_CORE");
    if (test && *test) return test;
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

// A probe's product, row-major: out (M, 24) = a (M, 40) @ b (40 x 24, or its transpose (24, 40))
#define BLAS_PROBE_K 40
#define BLAS_PROBE_N 24
#define BLAS_PROBE_ROWS 40
static void blas_probe_product(float *out, const float *a, const float *b, int M, int trans) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans, M, BLAS_PROBE_N,
                BLAS_PROBE_K, 1.0f, a, BLAS_PROBE_K, b, trans ? BLAS_PROBE_K : BLAS_PROBE_N, 0.0f,
                out, BLAS_PROBE_N);
}

static int blas_rows_probe(void) {
    enum { K = BLAS_PROBE_K, N = BLAS_PROBE_N, R = BLAS_PROBE_ROWS };
    float a[R * K], b[K * N], all[R * N], part[R * N];
    // values of 24 significant bits (a hash of the index), so that the sums round
    for (int i = 0; i < R * K; i++)
        a[i] = (float)((uint32_t)(i + 1) * 2654435761u >> 8) / 16777216.0f - 0.5f;
    for (int i = 0; i < K * N; i++)
        b[i] = (float)((uint32_t)(i + 7) * 2246822519u >> 8) / 16777216.0f - 0.5f;
    // rows off.. of an M-row product against the same rows of the R-row one: M from 9 (the
    // kernels' few-row limit is 8) to R - off, over offsets 0-7, so that every row is once at
    // the end of a product and once inside one, whatever the library's tile height up to 32
    for (int trans = 0; trans < 2; trans++) {
        blas_probe_product(all, a, b, R, trans);
        for (int off = 0; off < 8; off++)
            for (int M = 9; M + off <= R; M += 3) {
                blas_probe_product(part, a + off * K, b, M, trans);
                if (memcmp(part, all + off * N, (size_t)M * N * sizeof(float)) != 0) return 0;
            }
    }
    return 1;
}

int blas_rows_fixed(void) {
    // the loaded library's property: probed once per process (two threads racing at the first
    // call both probe and store the same answer)
    static int fixed = -1;
    int f = __atomic_load_n(&fixed, __ATOMIC_RELAXED);
    if (f < 0) {
        f = blas_rows_probe();
        __atomic_store_n(&fixed, f, __ATOMIC_RELAXED);
    }
    return f;
}

// Under mpirun only rank 0 speaks (the launchers' variables: MPI_Init has not run yet).
static int blas_quiet_rank(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && strcmp(v, "0")) return 1;
    }
    return 0;
}

static const char *blas_isa_of(const char *core) {
    static const char *isa[] = {"SSE", "AVX", "AVX2", "AVX-512"};
    int level = blas_core_level(core);
    return level >= 0 ? isa[level] : "?";
}

// The second image: did the library take the name the first one set?
static void blas_check_reexec(const char *prog, const char *marker) {
    char best[64] = "", chosen[64] = "";
    if (sscanf(marker, "%63s %63s", best, chosen) != 2) snprintf(chosen, sizeof chosen, "?");
    const char *now = blas_core_name();
    int quiet = blas_quiet_rank();
    if (!strcasecmp(now, best)) {
        setenv(BLAS_SELECTED_ENV, marker, 1);
        if (!quiet)
            fprintf(stderr,
                    "%s: OpenBLAS chose its %s kernel but this CPU has %s: running its %s kernel "
                    "(OPENBLAS_CORETYPE=%s; set OPENBLAS_CORETYPE to choose another)\n",
                    prog, chosen, blas_isa_of(best), best, best);
    } else if (!quiet) {
        fprintf(stderr, "%s: OpenBLAS did not take OPENBLAS_CORETYPE=%s and runs its %s kernel: "
                "the matrix products run slower than this CPU allows\n", prog, best, now);
    }
    unsetenv(BLAS_REEXEC_ENV);
}

void blas_startup(const char *prog, char **argv) {
    const char *marker = getenv(BLAS_REEXEC_ENV);
    if (marker) {                                   // never a second re-execution
        char copy[160];
        snprintf(copy, sizeof copy, "%s", marker);
        if (strncmp(copy, BLAS_NO_CORE " ", strlen(BLAS_NO_CORE) + 1))
            blas_check_reexec(prog, copy);
        unsetenv(BLAS_REEXEC_ENV);
        return;
    }
    // under valgrind (its preload libraries in LD_PRELOAD) a new image would run outside it
    // (children are not traced by default), unchecked; the speed of the kernel and of idle
    // threads does not matter there
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return;
    // the user's OPENBLAS_CORETYPE (or a parent's selection) and OMP_WAIT_POLICY are kept
    const char *chosen = blas_core_name(), *best = NULL;
    if (!getenv("OPENBLAS_CORETYPE")) best = blas_best_core(blas_decision_flags(), chosen);
    int set_wait = getenv("OMP_WAIT_POLICY") == NULL;
    if ((!best && !set_wait) || !argv || !argv[0]) return;
    char value[160];
    snprintf(value, sizeof value, "%s %s", best ? best : BLAS_NO_CORE, chosen);
    if (best) setenv("OPENBLAS_CORETYPE", best, 1);
    int set_spin = set_wait && getenv("GOMP_SPINCOUNT") == NULL;
    if (set_wait) {   // idle threads sleep: programs sharing the cores do not slow each other
        setenv("OMP_WAIT_POLICY", "passive", 1);
        if (set_spin) setenv("GOMP_SPINCOUNT", BLAS_SPINCOUNT, 1);   // after a short spin
        setenv(BLAS_WAIT_SET_ENV, set_spin ? "2" : "1", 1);
    }
    setenv(BLAS_REEXEC_ENV, value, 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);                  // the same binary, whatever argv[0] says
    if (strchr(argv[0], '/')) execv(argv[0], argv); // no /proc: the path it was started by
    int e = errno;
    if (best) unsetenv("OPENBLAS_CORETYPE");
    if (set_wait) {
        unsetenv("OMP_WAIT_POLICY");
        if (set_spin) unsetenv("GOMP_SPINCOUNT");
        unsetenv(BLAS_WAIT_SET_ENV);
    }
    unsetenv(BLAS_REEXEC_ENV);
    if (blas_quiet_rank()) return;
    if (best)
        fprintf(stderr,
                "%s: OpenBLAS chose its %s kernel but this CPU has %s, and re-executing with "
                "OPENBLAS_CORETYPE=%s failed (%s): set it yourself for the faster kernel\n",
                prog, chosen, blas_isa_of(best), best, strerror(e));
    else
        fprintf(stderr, "%s: re-executing with OMP_WAIT_POLICY=passive failed (%s): idle OpenMP "
                "threads spin; set OMP_WAIT_POLICY yourself\n", prog, strerror(e));
}

// The value of a "key : value" line of /proc/cpuinfo (its first processor), or "".
static void blas_cpuinfo_value(const char *key, char *buf, size_t n) {
    buf[0] = '\0';
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        char *v = strchr(line, ':');
        if (!v || strncmp(line, key, k) || strspn(line + k, " \t") != (size_t)(v - line - k))
            continue;
        v += 1 + strspn(v + 1, " \t");
        v[strcspn(v, "\n")] = '\0';
        snprintf(buf, n, "%s", v);
        break;
    }
    if (f) fclose(f);
}

// The CPU: /proc/cpuinfo's model name, family and model, else the CPUID brand string.
static void blas_cpu_model(char *buf, size_t n) {
    char name[192], family[32], model[32];
    blas_cpuinfo_value("model name", name, sizeof name);
    blas_cpuinfo_value("cpu family", family, sizeof family);
    blas_cpuinfo_value("model", model, sizeof model);
    if (name[0]) {
        if (family[0] && model[0])
            snprintf(buf, n, "%s (family %s, model %s)", name, family, model);
        else snprintf(buf, n, "%s", name);
        return;
    }
    snprintf(buf, n, "unknown");
#if defined(__x86_64__) || defined(__i386__)
    unsigned r[12];
    if (__get_cpuid_max(0x80000000u, NULL) < 0x80000004u) return;
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char brand[49];
    memcpy(brand, r, 48);
    brand[48] = '\0';
    char *s = brand + strspn(brand, " ");
    if (*s) snprintf(buf, n, "%s", s);
#endif
}

static void blas_print_env(FILE *out, const char *name, const char *unset) {
    const char *v = getenv(name);
    fprintf(out, "%-20s %s\n", name, v ? v : unset);
}

void blas_print_system(FILE *out) {
    char model[320], names[256];
    blas_cpu_model(model, sizeof model);
    unsigned cpu = blas_cpu_flags();
    blas_flag_names(cpu, names, sizeof names);
    const char *core = blas_core_name(), *best = NULL;
    blas_cpu_level(cpu, &best);
    fprintf(out, "cpu                  %s\n", model);
    fprintf(out, "cpus online          %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(out, "isa                  %s\n",
            names[0] ? names : "(none of the checked extensions)");
    const char *how = "chosen by the library at load";
    char sel[200];
    const char *forced = getenv("OPENBLAS_CORETYPE"), *selected = getenv(BLAS_SELECTED_ENV);
    if (forced && selected && !strncasecmp(selected, forced, strlen(forced)) &&
        selected[strlen(forced)] == ' ') {
        snprintf(sel, sizeof sel, "selected at startup in place of %s",
                 selected + strlen(forced) + 1);
        how = sel;
    } else if (forced) {
        how = "set by OPENBLAS_CORETYPE";
    }
    fprintf(out, "openblas core        %s (%s; best for this CPU: %s)\n", core, how,
            best ? best : "generic");
    fprintf(out, "openblas config      %s\n", openblas_get_config());
    fprintf(out, "openblas sgemm rows  %s\n", blas_rows_fixed()
            ? "row-invariant (a row's bits do not depend on the others): every forward uses it"
            : "not row-invariant: stored and compared forwards use the few-row kernels (frozen "
              "models, DPO, PPO's scoring), so a sequence's numbers do not depend on the others "
              "in its micro-batch");
    static const char *par[] = {"sequential", "pthreads", "OpenMP"};
    int p = openblas_get_parallel();
    fprintf(out, "openblas threads     %d (%s%s)\n", openblas_get_num_threads(),
            p >= 0 && p <= 2 ? par[p] : "?",
            p == 2 ? " build: each call runs on OpenMP's thread count" : "");
    fprintf(out, "openmp threads       %d\n", omp_get_max_threads());
    blas_print_env(out, "OMP_NUM_THREADS", "unset (one thread per online CPU)");
    const char *wait = getenv("OMP_WAIT_POLICY"), *wait_set = getenv(BLAS_WAIT_SET_ENV);
    if (wait && wait_set && !strcmp(wait, "passive"))
        fprintf(out, "%-20s passive (set at startup, as it was unset: idle threads sleep; "
                "OMP_WAIT_POLICY=active spins, faster for big models alone on a machine)\n",
                "OMP_WAIT_POLICY");
    else if (wait) fprintf(out, "%-20s %s (set by the user)\n", "OMP_WAIT_POLICY", wait);
    else blas_print_env(out, "OMP_WAIT_POLICY", "unset (libgomp: spin a while, then sleep)");
    const char *spin = getenv("GOMP_SPINCOUNT");
    if (spin && wait_set && !strcmp(wait_set, "2") && !strcmp(spin, BLAS_SPINCOUNT))
        fprintf(out, "%-20s %s (set at startup with passive: a waiting thread spins about 0.2 ms "
                "before it sleeps)\n", "GOMP_SPINCOUNT", spin);
    else blas_print_env(out, "GOMP_SPINCOUNT", "unset");
    blas_print_env(out, "OMP_PROC_BIND", "unset");
    blas_print_env(out, "OPENBLAS_NUM_THREADS", "unset");
    blas_print_env(out, "OPENBLAS_CORETYPE", "unset");
}
