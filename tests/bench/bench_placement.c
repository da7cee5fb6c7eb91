/*
 * Where the machine has put our two threads, for reading engine benchmarks: the time to
 * hand a cache line from one thread to the other and back (two threads spinning on one
 * atomic counter, each adding one when it sees the other's value), and the read bandwidth
 * of two threads streaming a 256 MiB buffer. On the 2-vCPU benchmark VM the hypervisor
 * moves the vCPUs between one CCD (a handoff ~30-50 ns, ~30-35 GB/s) and two (~160-210
 * ns, ~45-55 GB/s) within minutes; batched products lose most when the cores are far
 * apart, streaming decode gains from the wider memory path.
 * Usage: bench_placement [-q]   (-q: one line "HANDOFF_NS GBPS")
 */
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static _Alignas(64) _Atomic long g_turn;

/* Nanoseconds per one-way handoff of a cache line between two threads. */
static double handoff_ns(long rounds)
{
    atomic_store(&g_turn, 0);
    double t0 = now();
#pragma omp parallel num_threads(2)
    {
        const long me = omp_get_thread_num();
        if (omp_get_num_threads() == 2)
            for (long i = 0; i < rounds; i++) {
                const long want = 2 * i + me;
                while (atomic_load_explicit(&g_turn, memory_order_acquire) != want)
                    ;
                atomic_store_explicit(&g_turn, want + 1, memory_order_release);
            }
    }
    return (now() - t0) / (2.0 * (double)rounds) * 1e9;
}

/* GB/s of two threads each summing its half of a buffer of n words (eight independent
 * integer sums, so the adds keep up with memory). */
static double read_gbps(const uint64_t *a, size_t n)
{
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        uint64_t total = 0;
        const double t0 = now();
#pragma omp parallel num_threads(2) reduction(+ : total)
        {
            const size_t nt = (size_t)omp_get_num_threads(), me = (size_t)omp_get_thread_num();
            const size_t lo = n / 8 * me / nt * 8, hi = n / 8 * (me + 1) / nt * 8;
            uint64_t s[8] = {0};
            for (size_t i = lo; i < hi; i += 8)
                for (int j = 0; j < 8; j++)
                    s[j] += a[i + j];
            for (int j = 0; j < 8; j++)
                total += s[j];
        }
        const double t = now() - t0, g = (double)(n * sizeof *a) / t / 1e9;
        if (g > best && total != 1)
            best = g;
    }
    return best;
}

int main(int argc, char **argv)
{
    const int quiet = argc > 1 && strcmp(argv[1], "-q") == 0;
    if (argc > 1 && !quiet) {
        fprintf(stderr, "usage: bench_placement [-q]\n");
        return 2;
    }
    const size_t n = (256u << 20) / sizeof(uint64_t);
    uint64_t *a = malloc(n * sizeof *a);
    if (!a) {
        fprintf(stderr, "bench_placement: out of memory\n");
        return 1;
    }
#pragma omp parallel for num_threads(2) schedule(static)
    for (size_t i = 0; i < n; i++)
        a[i] = i & 7;
    handoff_ns(20000); /* warm-up */
    const double ns = handoff_ns(200000), gbps = read_gbps(a, n);
    free(a);
    if (quiet)
        printf("%.0f %.1f\n", ns, gbps);
    else
        printf("cache-line handoff between two threads %.0f ns, two-thread read %.1f GB/s\n", ns,
               gbps);
    return 0;
}
