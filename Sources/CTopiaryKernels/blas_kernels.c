/* OpenBLAS kernel selection for CPUs newer than the installed OpenBLAS.

   A DYNAMIC_ARCH OpenBLAS picks its kernels from the CPU model when it loads. A release that predates the CPU
   (Debian 12's 0.3.21 on Emerald Rapids, family 6 model 207, for example) does not recognise it and falls back
   to its Prescott (SSE3) kernels: sgemm runs about 4x slower than with the AVX-512 kernels the CPU supports.

   This constructor runs after OpenBLAS has initialised (a library's initialisers run before those of the
   objects that depend on it). When OpenBLAS reports the Prescott fallback, OPENBLAS_CORETYPE is not set by the
   user, and the CPU has AVX-512 (or AVX2 + FMA), it repeats OpenBLAS's own dynamic selection with
   OPENBLAS_CORETYPE=SkylakeX (or Haswell), the documented override, before any BLAS call has run.
   Setting OPENBLAS_CORETYPE yourself (any value) disables this. The OpenBLAS entry points are looked up at run
   time, so a BLAS without them is left alone. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <strings.h>

__attribute__((constructor)) static void tk_select_blas_kernels(void) {
    if (getenv("OPENBLAS_CORETYPE") != NULL) return;
    char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
    void (*quit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void (*init)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (corename == NULL || quit == NULL || init == NULL) return;
    const char *name = corename();
    if (name == NULL || strcasecmp(name, "prescott") != 0) return;
#if defined(__x86_64__)
    __builtin_cpu_init();
    const char *core = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl")) {
        core = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        core = "Haswell";
    }
    if (core == NULL) return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    quit();
    init();
    unsetenv("OPENBLAS_CORETYPE");  /* child processes make their own choice */
#endif
}
