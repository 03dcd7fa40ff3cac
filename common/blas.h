// The OpenBLAS kernel behind every matrix product, and choosing the best one at startup.
//
// OpenBLAS (a DYNAMIC_ARCH build, as Debian's) picks a kernel for the CPU once, when it is
// loaded. A library older than the CPU does not know it and falls back to a generic kernel
// (Prescott: SSE3), which runs sgemm at a quarter of the speed of the AVX-512 one on the same
// machine. The library reads OPENBLAS_CORETYPE at load time only, so the one way to change its
// choice from inside a program is to run the program again with that variable set:
// blas_startup, the first call in every program's main, does exactly that when the CPU can run
// a better kernel than the one chosen, unless the user set OPENBLAS_CORETYPE, and says so in one
// line on stderr. It re-executes at most once (RLHF_BLAS_REEXEC marks the second image, which
// checks that the library took the name and never executes again), keeps argv and every other
// variable, and runs before MPI_Init, so under mpirun every rank does the same (rank 0 speaks).
// Under valgrind it does nothing (the new image would escape it).
//
// The same re-execution sets OMP_WAIT_POLICY=passive when it is unset (and only then: a value the
// user set is kept), so that idle OpenMP threads sleep instead of spinning: programs sharing the
// cores (a pipeline's stages, several runs, other users) do not slow each other down. libgomp
// reads the variable when it loads, before main, so it takes a new image; when only the policy is
// set, RLHF_BLAS_REEXEC's BEST is "-" and nothing is printed. RLHF_OMP_WAIT_SET=1 tells
// `rlhf info --system` that the value was set here. OMP_WAIT_POLICY=active (spinning) is faster
// for a big model alone on its machine.
//
// Test hooks (environment; they change what the decision sees, never the library):
//   RLHF_BLAS_TEST_CPU="avx2 fma ..."  the CPU's features, instead of asking the CPU
//   RLHF_BLAS_TEST_CORE=NAME           the kernel OpenBLAS "chose at load" (without
//   OPENBLAS_CORETYPE) RLHF_BLAS_TEST_CORE_AFTER=NAME     the kernel the library "runs" after the
//   re-execution
// No function here allocates; none keeps state but blas_rows_fixed, which keeps its answer (a
// property of the loaded library). Names returned are static strings.
#ifndef BLAS_H
#define BLAS_H
#include <stdio.h>

// CPU features that decide the kernel (and that `rlhf info --system` shows), as bits.
enum {
    BLAS_SSE3 = 1u << 0, BLAS_AVX = 1u << 1, BLAS_AVX2 = 1u << 2, BLAS_FMA = 1u << 3,
    BLAS_AVX512F = 1u << 4, BLAS_AVX512BW = 1u << 5, BLAS_AVX512VL = 1u << 6,
    BLAS_AVX512DQ = 1u << 7, BLAS_AVX512CD = 1u << 8, BLAS_AVX512_VNNI = 1u << 9,
    BLAS_AVX512_BF16 = 1u << 10, BLAS_AMX_BF16 = 1u << 11,   // AMX: tiles and their bf16 product
};

// The features of this CPU that the OS also enables (0 on other architectures).
unsigned    blas_cpu_flags(void);
// Space-separated feature names ("avx2 fma avx512f", as /proc/cpuinfo spells them) to bits;
// unknown names are ignored. blas_flag_names writes the names of flags into buf.
unsigned    blas_parse_flags(const char *names);
void        blas_flag_names(unsigned flags, char *buf, size_t n);

// The decision, a pure function: the kernel to select for a CPU with these features when the
// library chose `chosen` (OpenBLAS's own name, any case), or NULL when `chosen` already uses
// the widest vectors the CPU has (or is a name this table does not rank, e.g. another
// architecture's). AVX-512 (F, BW, VL, DQ, CD) gives SkylakeX, or Cooperlake with AVX512_BF16;
// AVX2 + FMA gives Haswell; AVX gives Sandybridge. Kernels of the same vector width count as
// equal (SkylakeX and Cooperlake run the same sgemm), so nothing re-executes for a rename.
const char *blas_best_core(unsigned cpu_flags, const char *chosen);

// The kernel the loaded library runs (openblas_get_corename, or a test hook's name).
const char *blas_core_name(void);

// Whether the loaded library's sgemm gives a row of a product the same bits whatever the rows
// around it (how many, where it sits among them) and the thread count: 1 or 0, from a probe of
// a few small products at the first call (both layouts the kernels use, under 2 ms). The
// AVX-512 kernels (SkylakeX, Cooperlake) and Sandybridge do; Haswell and Zen (AVX2) and the
// generic Prescott run the last rows of a product through other micro-kernels, which round
// differently (OPENBLAS_CORETYPE=Haswell shows it on any AVX2 CPU).
int         blas_rows_fixed(void);

// The startup call (first line of main, before MPI_Init and before anything is printed):
// re-executes argv with OPENBLAS_CORETYPE set when blas_best_core says so, and with
// OMP_WAIT_POLICY=passive when that is unset (one re-execution for both); in the re-executed
// image, checks the library took the name and prints one line about it on stderr, prefixed by
// prog. Returns only in the image that runs on (when exec fails it says so and goes on).
void        blas_startup(const char *prog, char **argv);

// `rlhf info --system`: the CPU, its features, the OpenBLAS kernel and configuration, the thread
// counts and the variables that set them, one "key: value" line each.
void        blas_print_system(FILE *out);
#endif
