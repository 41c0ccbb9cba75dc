/*
 * cl_metrics: the Prometheus text exposition format 0.0.4 (see cl_metrics.h): a growing buffer,
 * HELP/TYPE lines, samples with escaped label values, numbers in their shortest exact text,
 * and histograms with fixed buckets written cumulatively (+Inf, _sum, _count).
 */
#include "cl_metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 5 ms .. 10 min: a repair run on the test driver takes milliseconds, an apply on guests minutes */
const double cl_metrics_duration_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                             2.5,   5,    10,    30,   60,  120,  300, 600};
const size_t cl_metrics_duration_nbounds =
    sizeof(cl_metrics_duration_bounds) / sizeof(cl_metrics_duration_bounds[0]);

/* ========================================================================================== */
/* Buffer                                                                                     */
/* ========================================================================================== */

void cl_metrics_buf_init(cl_metrics_buf_t *b)
{
    memset(b, 0, sizeof(*b));
}

void cl_metrics_buf_free(cl_metrics_buf_t *b)
{
    if (!b)
        return;
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int grow(cl_metrics_buf_t *b, size_t more)
{
    size_t cap;
    char *np;

    if (b->oom)
        return -1;
    if (b->n + more + 1 <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap < b->n + more + 1)
        cap *= 2;
    np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static void put(cl_metrics_buf_t *b, const char *s, size_t len)
{
    if (grow(b, len) < 0)
        return;
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void puts_(cl_metrics_buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

void cl_metrics_printf(cl_metrics_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0 || grow(b, (size_t)len) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)len + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)len;
}

/* ========================================================================================== */
/* Names, escaping, numbers                                                                   */
/* ========================================================================================== */

static int name_chars_ok(const char *s, int colon)
{
    size_t i;

    if (!s || !*s)
        return 0;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

int cl_metrics_name_ok(const char *name)
{
    return name_chars_ok(name, 1);
}

int cl_metrics_label_ok(const char *name)
{
    /* names beginning with __ are reserved for Prometheus itself */
    return name_chars_ok(name, 0) && strncmp(name, "__", 2) != 0;
}

/* s with backslash and newline escaped, and the double quote too when quote (label values). */
static void put_escaped(cl_metrics_buf_t *b, const char *s, int quote)
{
    const char *run = s;

    for (; *s; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : NULL;
        if (!esc)
            continue;
        put(b, run, (size_t)(s - run));
        puts_(b, esc);
        run = s + 1;
    }
    put(b, run, (size_t)(s - run));
}

const char *cl_metrics_fmt_double(double v, char *buf, size_t len)
{
    int prec;

    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
        snprintf(buf, len, "%.0f", v);
    else
        for (prec = 1; prec <= 17; prec++) {
            snprintf(buf, len, "%.*g", prec, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    return buf;
}

int cl_metrics_family(cl_metrics_buf_t *b, const char *name, const char *type, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (type && strcmp(type, types[i]) == 0)
            break;
    if (!cl_metrics_name_ok(name) || i == sizeof(types) / sizeof(types[0]))
        return -1;
    cl_metrics_printf(b, "# HELP %s ", name);
    put_escaped(b, help ? help : "", 0);
    cl_metrics_printf(b, "\n# TYPE %s %s\n", name, type);
    return b->oom ? -1 : 0;
}

/* name{labels[, extra_key="extra_val"]} value */
static int sample(cl_metrics_buf_t *b, const char *name, const char *const *labels,
                  const char *extra_key, const char *extra_val, double value)
{
    char num[40];
    size_t i;
    int first = 1;

    if (!cl_metrics_name_ok(name))
        return -1;
    for (i = 0; labels && labels[i]; i += 2)
        if (!cl_metrics_label_ok(labels[i]))
            return -1;
    puts_(b, name);
    for (i = 0; labels && labels[i]; i += 2) {
        cl_metrics_printf(b, "%s%s=\"", first ? "{" : ",", labels[i]);
        put_escaped(b, labels[i + 1] ? labels[i + 1] : "", 1);
        puts_(b, "\"");
        first = 0;
    }
    if (extra_key) {
        cl_metrics_printf(b, "%s%s=\"", first ? "{" : ",", extra_key);
        put_escaped(b, extra_val, 1);
        puts_(b, "\"");
        first = 0;
    }
    if (!first)
        puts_(b, "}");
    cl_metrics_printf(b, " %s\n", cl_metrics_fmt_double(value, num, sizeof(num)));
    return b->oom ? -1 : 0;
}

int cl_metrics_sample(cl_metrics_buf_t *b, const char *name, const char *const *labels,
                      double value)
{
    return sample(b, name, labels, NULL, NULL, value);
}

/* ========================================================================================== */
/* Histograms                                                                                 */
/* ========================================================================================== */

int cl_metrics_hist_init(cl_metrics_hist_t *h, const double *bounds, size_t n, cl_err_t *err)
{
    size_t i;

    memset(h, 0, sizeof(*h));
    if (n > CL_METRICS_BUCKETS_MAX)
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "metrics", "%zu buckets: at most %d", n,
                          CL_METRICS_BUCKETS_MAX);
    for (i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return cl_err_set(err, CL_ERR_SYS, 0, NULL, "metrics",
                              "histogram bounds must increase and be finite");
        h->bounds[i] = bounds[i];
    }
    h->nb = n;
    pthread_mutex_init(&h->lock, NULL);
    return 0;
}

void cl_metrics_hist_destroy(cl_metrics_hist_t *h)
{
    if (h)
        pthread_mutex_destroy(&h->lock);
}

void cl_metrics_hist_observe(cl_metrics_hist_t *h, double v)
{
    size_t i = 0;

    if (isnan(v))
        return;
    while (i < h->nb && v > h->bounds[i])
        i++; /* the first bucket whose upper bound is >= v (le: less or equal) */
    pthread_mutex_lock(&h->lock);
    h->counts[i]++;
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&h->lock);
}

int cl_metrics_hist_write(cl_metrics_buf_t *b, const char *name, const char *const *labels,
                          cl_metrics_hist_t *h)
{
    uint64_t counts[CL_METRICS_BUCKETS_MAX + 1], count, cum = 0;
    char bucket[256], num[40];
    double sum;
    size_t i;
    int rc = 0;

    if (strlen(name) + sizeof("_bucket") > sizeof(bucket))
        return -1;
    /* one consistent snapshot: the +Inf bucket equals _count */
    pthread_mutex_lock(&h->lock);
    memcpy(counts, h->counts, sizeof(counts));
    sum = h->sum;
    count = h->count;
    pthread_mutex_unlock(&h->lock);
    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    for (i = 0; i <= h->nb; i++) {
        cum += counts[i];
        rc |= sample(b, bucket, labels, "le",
                     i < h->nb ? cl_metrics_fmt_double(h->bounds[i], num, sizeof(num)) : "+Inf",
                     (double)cum);
    }
    snprintf(bucket, sizeof(bucket), "%s_sum", name);
    rc |= sample(b, bucket, labels, NULL, NULL, sum);
    snprintf(bucket, sizeof(bucket), "%s_count", name);
    rc |= sample(b, bucket, labels, NULL, NULL, (double)count);
    return rc ? -1 : 0;
}
