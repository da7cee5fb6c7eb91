/*
 * Minimal test harness: CHECK counts and reports, each test binary ends with
 * "N passed, M failed" and exits non-zero on failure. Fixtures are found through
 * LMP_FIXTURES (default ../shared/fixtures relative to the repository root).
 */
#ifndef LMP_TEST_H
#define LMP_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int t_pass, t_fail, t_skip;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (cond) {                                                                      \
            t_pass++;                                                                    \
        } else {                                                                         \
            t_fail++;                                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);              \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
        }                                                                                \
    } while (0)

#define SKIP(...)                                                                        \
    do {                                                                                 \
        t_skip++;                                                                        \
        fprintf(stderr, "SKIP: ");                                                       \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                           \
    } while (0)

/* Path of a fixture file (static buffer) or NULL when the fixtures folder is absent. */
static inline const char *fixture(const char *rel)
{
    static char buf[4][4096];
    static int k;
    const char *root = getenv("LMP_FIXTURES");
    char *b = buf[k++ & 3];
    if (!root || !*root)
        root = "../shared/fixtures";
    snprintf(b, 4096, "%s/%s", root, rel);
    return access(b, R_OK) == 0 ? b : NULL;
}

/* Scratch folder for a test (created; removed by the runner's clean-up). */
static inline const char *tmpdir(void)
{
    static char buf[256];
    if (!buf[0]) {
        const char *base = getenv("LMP_TEST_TMP");
        snprintf(buf, sizeof buf, "%s/t%ld", base && *base ? base : "build/test-tmp",
                 (long)getpid());
        char cmd[400];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", buf);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot create %s\n", buf);
    }
    return buf;
}

static inline int test_finish(void)
{
    if (t_skip)
        printf("%d passed, %d failed, %d skipped\n", t_pass, t_fail, t_skip);
    else
        printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}

#endif
