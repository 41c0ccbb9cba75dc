/*
 * cl_log: timestamped, level-filtered log lines "<time> <tag> <LEVEL> <event> <text>".
 * Thread-safe: one line per fprintf under a mutex.
 */
#include "cl_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static FILE *log_fp;
static int log_fp_set;
static cl_log_level_t log_min = CL_LOG_INFO;
static char log_tag[64] = "cloud";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static long last_flush_ms;

void cl_log_set_stream(FILE *fp)
{
    log_fp = fp;
    log_fp_set = 1;
}

void cl_log_set_level(cl_log_level_t min)
{
    log_min = min;
}

void cl_log_set_tag(const char *tag)
{
    snprintf(log_tag, sizeof(log_tag), "%s", tag);
}

void cl_log(cl_log_level_t level, const char *event, const char *fmt, ...)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    FILE *fp = log_fp_set ? log_fp : stderr;
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    va_list ap;

    if (!fp || level < log_min)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&log_lock);
    fprintf(fp, "%s.%03ldZ %s %s %s ", stamp, ts.tv_nsec / 1000000L, log_tag, names[level],
            event ? event : "-");
    va_start(ap, fmt);
    vfprintf(fp, fmt, ap);
    va_end(ap);
    fputc('\n', fp);
    /*
     * Warnings and errors are written at once; the rest within CL_LOG_FLUSH_MS (and at
     * cl_log_flush): a converge logs hundreds of lines in milliseconds.
     */
    if (level >= CL_LOG_WARN ||
        ts.tv_sec * 1000L + ts.tv_nsec / 1000000L - last_flush_ms >= CL_LOG_FLUSH_MS) {
        fflush(fp);
        last_flush_ms = ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
    }
    pthread_mutex_unlock(&log_lock);
}

void cl_log_flush(void)
{
    FILE *fp = log_fp_set ? log_fp : stderr;

    if (!fp)
        return;
    pthread_mutex_lock(&log_lock);
    fflush(fp);
    pthread_mutex_unlock(&log_lock);
}
