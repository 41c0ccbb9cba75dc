/*
 * check.h: the harness of the C unit tests, header-only so each test_*.c is one binary.
 * A failed check prints file:line and what was expected, then the test goes on; at the end
 * check_summary() prints "<test name>: N checks, M failed" and gives main's exit status.
 * Every CHECK* evaluates to 1 if it held, so a test can stop early: if (!CHECK(p)) return;
 * check_tmpdir()/check_rmtree() give a test a private directory and leave nothing behind.
 */
#ifndef CHECK_H
#define CHECK_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned check_count, check_failed;

static inline int check_record(int ok)
{
    check_count++;
    if (!ok)
        check_failed++;
    return ok;
}

static inline int check_true(int ok, const char *file, int line, const char *expr)
{
    if (!ok)
        fprintf(stderr, "%s:%d: CHECK(%s) failed\n", file, line, expr);
    return check_record(ok);
}

static inline int check_str_eq(const char *a, const char *b, const char *file, int line,
                               const char *ea, const char *eb)
{
    int ok = a && b && strcmp(a, b) == 0;

    if (!ok)
        fprintf(stderr, "%s:%d: CHECK_STR_EQ(%s, %s) failed: \"%s\" != \"%s\"\n", file, line, ea,
                eb, a ? a : "(null)", b ? b : "(null)");
    return check_record(ok);
}

static inline int check_int_eq(long long a, long long b, const char *file, int line, const char *ea,
                               const char *eb)
{
    int ok = a == b;

    if (!ok)
        fprintf(stderr, "%s:%d: CHECK_INT_EQ(%s, %s) failed: %lld != %lld\n", file, line, ea, eb, a,
                b);
    return check_record(ok);
}

static inline int check_contains(const char *hay, const char *needle, const char *file, int line,
                                 const char *eh)
{
    int ok = hay && needle && strstr(hay, needle) != NULL;

    if (!ok)
        fprintf(stderr, "%s:%d: CHECK_CONTAINS(%s, \"%s\") failed: got \"%s\"\n", file, line, eh,
                needle ? needle : "(null)", hay ? hay : "(null)");
    return check_record(ok);
}

#define CHECK(cond) check_true(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_STR_EQ(a, b) check_str_eq((a), (b), __FILE__, __LINE__, #a, #b)
#define CHECK_INT_EQ(a, b) check_int_eq((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)
/* hay contains needle (error messages: assert on the part that names the culprit) */
#define CHECK_CONTAINS(hay, needle) check_contains((hay), (needle), __FILE__, __LINE__, #hay)

/* A fresh directory /tmp/<prefix>-XXXXXX in buf (exits if none can be made). */
static inline char *check_tmpdir(char *buf, size_t len, const char *prefix)
{
    snprintf(buf, len, "/tmp/%s-XXXXXX", prefix);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(EXIT_FAILURE);
    }
    return buf;
}

static inline int check_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf path: tests leave nothing behind. */
static inline int check_rmtree(const char *path)
{
    return nftw(path, check_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* "<test name>: N checks, M failed"; the test name is the source file's base name. */
static inline int check_summary_of(const char *file)
{
    const char *base = strrchr(file, '/');
    size_t n;

    base = base ? base + 1 : file;
    n = strcspn(base, ".");
    printf("%.*s: %u checks, %u failed\n", (int)n, base, check_count, check_failed);
    fflush(stdout);
    /* a test binary that checked nothing has not tested anything */
    return check_failed == 0 && check_count > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#define check_summary() check_summary_of(__FILE__)

#endif
