/*
 * test_metrics: the Prometheus exposition (HELP/TYPE, escaping, numbers, cumulative histogram
 * buckets with +Inf, _sum and _count) and the metrics endpoint over real sockets on 127.0.0.1:
 * 200 with the format's Content-Type, HEAD, 404, 405, 400, an oversized request (431), a slow
 * client timed out (408) while others are served, a full server (the next client waits for a
 * slot, bounded by the timeout), a failed collector (500), and the refusal of a non-loopback
 * address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "cl_metrics.h"
#include "cl_time.h"

/* ------------------------------------------------------------------------------------------ */
/* Exposition                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static void test_names_and_numbers(void)
{
    char buf[40];

    CHECK(cl_metrics_name_ok("cloud_slot_up"));
    CHECK(cl_metrics_name_ok("a:b_c9"));
    CHECK(!cl_metrics_name_ok("9lives"));
    CHECK(!cl_metrics_name_ok("cloud-slot"));
    CHECK(!cl_metrics_name_ok(""));
    CHECK(cl_metrics_label_ok("cloud"));
    CHECK(!cl_metrics_label_ok("__name__"));
    CHECK(!cl_metrics_label_ok("a:b"));
    CHECK_STR_EQ(cl_metrics_fmt_double(1, buf, sizeof(buf)), "1");
    CHECK_STR_EQ(cl_metrics_fmt_double(0, buf, sizeof(buf)), "0");
    CHECK_STR_EQ(cl_metrics_fmt_double(0.005, buf, sizeof(buf)), "0.005");
    CHECK_STR_EQ(cl_metrics_fmt_double(2.5, buf, sizeof(buf)), "2.5");
    CHECK_STR_EQ(cl_metrics_fmt_double(0.1 + 0.2, buf, sizeof(buf)), "0.30000000000000004");
    CHECK_STR_EQ(cl_metrics_fmt_double(123456789012.0, buf, sizeof(buf)), "123456789012");
    CHECK_STR_EQ(cl_metrics_fmt_double(1e20, buf, sizeof(buf)), "1e+20");
    CHECK_STR_EQ(cl_metrics_fmt_double(1.0 / 0.0, buf, sizeof(buf)), "+Inf");
    CHECK_STR_EQ(cl_metrics_fmt_double(-1.0 / 0.0, buf, sizeof(buf)), "-Inf");
    CHECK_STR_EQ(cl_metrics_fmt_double(0.0 / 0.0, buf, sizeof(buf)), "NaN");
}

static void test_family_and_samples(void)
{
    cl_metrics_buf_t b;

    cl_metrics_buf_init(&b);
    CHECK_INT_EQ(cl_metrics_family(&b, "cloud_x_total", "counter", "Back\\slash and\nnewline."), 0);
    CHECK_INT_EQ(cl_metrics_sample(&b, "cloud_x_total",
                                   (const char *[]){"cloud", "a\"b\\c\nd", "slot", NULL, NULL}, 3),
                 0);
    CHECK_INT_EQ(cl_metrics_sample(&b, "cloud_x_total", NULL, 0.25), 0);
    CHECK_STR_EQ(b.p, "# HELP cloud_x_total Back\\\\slash and\\nnewline.\n"
                      "# TYPE cloud_x_total counter\n"
                      "cloud_x_total{cloud=\"a\\\"b\\\\c\\nd\",slot=\"\"} 3\n"
                      "cloud_x_total 0.25\n");
    /* refused: nothing written */
    {
        size_t n = b.n;
        CHECK_INT_EQ(cl_metrics_family(&b, "bad-name", "counter", "x"), -1);
        CHECK_INT_EQ(cl_metrics_family(&b, "good", "countr", "x"), -1);
        CHECK_INT_EQ(cl_metrics_sample(&b, "9bad", NULL, 1), -1);
        CHECK_INT_EQ(cl_metrics_sample(&b, "good", (const char *[]){"__bad", "v", NULL}, 1), -1);
        CHECK_INT_EQ(cl_metrics_sample(&b, "good", (const char *[]){"bad-label", "v", NULL}, 1),
                     -1);
        CHECK_INT_EQ(b.n, n);
    }
    cl_metrics_buf_free(&b);
    cl_metrics_buf_free(NULL);
}

static void test_histogram(void)
{
    static const double bounds[] = {0.1, 1, 10};
    static const double bad[] = {1, 0.5};
    cl_metrics_hist_t h;
    cl_metrics_buf_t b;
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_metrics_hist_init(&h, bad, 2, &err), -1);
    CHECK_CONTAINS(err.msg, "increase");
    CHECK_INT_EQ(cl_metrics_hist_init(&h, bounds, 3, &err), 0);
    cl_metrics_hist_observe(&h, 0.05);
    cl_metrics_hist_observe(&h, 0.1); /* on a bound: counted in it (le) */
    cl_metrics_hist_observe(&h, 0.5);
    cl_metrics_hist_observe(&h, 20);
    cl_metrics_hist_observe(&h, 0.0 / 0.0); /* NaN: ignored */
    cl_metrics_buf_init(&b);
    cl_metrics_family(&b, "cloud_d_seconds", "histogram", "D.");
    CHECK_INT_EQ(
        cl_metrics_hist_write(&b, "cloud_d_seconds", (const char *[]){"cloud", "c", NULL}, &h), 0);
    CHECK_STR_EQ(b.p, "# HELP cloud_d_seconds D.\n"
                      "# TYPE cloud_d_seconds histogram\n"
                      "cloud_d_seconds_bucket{cloud=\"c\",le=\"0.1\"} 2\n"
                      "cloud_d_seconds_bucket{cloud=\"c\",le=\"1\"} 3\n"
                      "cloud_d_seconds_bucket{cloud=\"c\",le=\"10\"} 3\n"
                      "cloud_d_seconds_bucket{cloud=\"c\",le=\"+Inf\"} 4\n"
                      "cloud_d_seconds_sum{cloud=\"c\"} 20.65\n"
                      "cloud_d_seconds_count{cloud=\"c\"} 4\n");
    cl_metrics_buf_free(&b);
    /* without labels, and the daemon's duration buckets: 16 of them, increasing */
    cl_metrics_hist_destroy(&h);
    CHECK_INT_EQ(
        cl_metrics_hist_init(&h, cl_metrics_duration_bounds, cl_metrics_duration_nbounds, &err), 0);
    cl_metrics_buf_init(&b);
    cl_metrics_hist_write(&b, "cloud_e_seconds", NULL, &h);
    CHECK_CONTAINS(b.p, "cloud_e_seconds_bucket{le=\"0.005\"} 0\n");
    CHECK_CONTAINS(b.p, "cloud_e_seconds_bucket{le=\"600\"} 0\n");
    CHECK_CONTAINS(b.p, "cloud_e_seconds_bucket{le=\"+Inf\"} 0\ncloud_e_seconds_sum 0\n"
                        "cloud_e_seconds_count 0\n");
    cl_metrics_buf_free(&b);
    cl_metrics_hist_destroy(&h);
}

static void test_listen_specs(void)
{
    char addr[64];
    unsigned port = 0;
    cl_err_t err;

    cl_err_clear(&err);
    CHECK(cl_metrics_parse_listen("9464", addr, sizeof(addr), &port, &err) == 0 &&
          strcmp(addr, "127.0.0.1") == 0 && port == 9464);
    CHECK(cl_metrics_parse_listen(":9100", addr, sizeof(addr), &port, &err) == 0 &&
          strcmp(addr, "127.0.0.1") == 0 && port == 9100);
    CHECK(cl_metrics_parse_listen("localhost:1", addr, sizeof(addr), &port, &err) == 0 &&
          strcmp(addr, "127.0.0.1") == 0 && port == 1);
    CHECK(cl_metrics_parse_listen("[::1]:9", addr, sizeof(addr), &port, &err) == 0 &&
          strcmp(addr, "::1") == 0 && port == 9);
    CHECK(cl_metrics_parse_listen("10.1.2.3:80", addr, sizeof(addr), &port, &err) == 0 &&
          strcmp(addr, "10.1.2.3") == 0 && port == 80);
    CHECK_INT_EQ(cl_metrics_parse_listen("foo:1", addr, sizeof(addr), &port, &err), -1);
    CHECK_CONTAINS(err.msg, "'foo:1'");
    CHECK_STR_EQ(err.op, "--metrics");
    CHECK_INT_EQ(cl_metrics_parse_listen("::1:9", addr, sizeof(addr), &port, &err), -1);
    CHECK_INT_EQ(cl_metrics_parse_listen("1.2.3.4:", addr, sizeof(addr), &port, &err), -1);
    CHECK_INT_EQ(cl_metrics_parse_listen("1.2.3.4:70000", addr, sizeof(addr), &port, &err), -1);
    CHECK_INT_EQ(cl_metrics_parse_listen("1.2.3.4:-1", addr, sizeof(addr), &port, &err), -1);
    CHECK_INT_EQ(cl_metrics_parse_listen("", addr, sizeof(addr), &port, &err), -1);
    CHECK(cl_metrics_loopback("127.0.0.1") && cl_metrics_loopback("127.9.8.7"));
    CHECK(cl_metrics_loopback("::1") && cl_metrics_loopback("::ffff:127.0.0.1"));
    CHECK(!cl_metrics_loopback("0.0.0.0") && !cl_metrics_loopback("10.0.0.1"));
    CHECK(!cl_metrics_loopback("::") && !cl_metrics_loopback("x"));
    CHECK_INT_EQ(cl_metrics_check_listen("127.0.0.5:1", 0, &err), 0);
    CHECK_INT_EQ(cl_metrics_check_listen("0.0.0.0:9464", 0, &err), -1);
    CHECK_CONTAINS(err.msg, "--metrics-any");
    CHECK_INT_EQ(cl_metrics_check_listen("0.0.0.0:9464", 1, &err), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* The endpoint                                                                               */
/* ------------------------------------------------------------------------------------------ */

#define BODY "# HELP cloud_t A test.\n# TYPE cloud_t gauge\ncloud_t 1\n"

static int fail_collect; /* the collector fails (500) */

static int collect(void *ud, cl_metrics_server_t *srv, cl_metrics_buf_t *b)
{
    (void)ud;
    (void)srv;
    if (fail_collect)
        return -1;
    cl_metrics_printf(b, "%s", BODY);
    return 0;
}

static int dial(unsigned port)
{
    struct sockaddr_in sa;
    struct timeval tv = {3, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Read to the end (the server closes: Connection: close); the bytes read, -1 on a timeout. */
static ssize_t read_all(int fd, char *buf, size_t len)
{
    size_t n = 0;

    for (;;) {
        ssize_t r = recv(fd, buf + n, len - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || n + (size_t)r >= len - 1) {
            n += (size_t)r;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    return (ssize_t)n;
}

/* One request, the whole answer into resp. */
static ssize_t http(unsigned port, const char *req, size_t len, char *resp, size_t rlen)
{
    int fd = dial(port);
    ssize_t n;

    if (fd < 0)
        return -1;
    if (send(fd, req, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    n = read_all(fd, resp, rlen);
    close(fd);
    return n;
}

#define REQ(s) (s), strlen(s)

static void test_server(void)
{
    cl_metrics_server_opts_t o;
    cl_metrics_server_t *s;
    static char resp[65536];
    unsigned port;
    cl_err_t err;
    char *big;

    memset(&o, 0, sizeof(o));
    o.address = "127.0.0.1";
    o.port = 0;
    o.io_ms = 300;
    o.collect = collect;
    cl_err_clear(&err);
    s = cl_metrics_server_new(&o, &err);
    if (!CHECK(s != NULL)) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    port = cl_metrics_server_port(s);
    CHECK(port > 0);

    /* GET /metrics */
    CHECK(http(port, REQ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 200 OK\r\n");
    CHECK_CONTAINS(resp, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n");
    CHECK_CONTAINS(resp, "\r\nConnection: close\r\n");
    {
        char cl[64];
        snprintf(cl, sizeof(cl), "\r\nContent-Length: %zu\r\n", strlen(BODY));
        CHECK_CONTAINS(resp, cl);
    }
    CHECK(strstr(resp, "\r\n\r\n") && strcmp(strstr(resp, "\r\n\r\n") + 4, BODY) == 0);
    /* a query string is ignored; HTTP/1.0 and bare newlines are fine */
    CHECK(http(port, REQ("GET /metrics?x=1 HTTP/1.0\n\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 200 OK\r\n");
    /* HEAD: the head alone */
    CHECK(http(port, REQ("HEAD /metrics HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 200 OK\r\n");
    CHECK(strstr(resp, "\r\n\r\n") && strstr(resp, "\r\n\r\n")[4] == '\0');
    /* other paths, methods, garbage */
    CHECK(http(port, REQ("GET / HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 404 Not Found\r\n");
    CHECK(http(port, REQ("GET /metricsx HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 404 ");
    CHECK(http(port, REQ("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), resp,
               sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 405 Method Not Allowed\r\n");
    CHECK_CONTAINS(resp, "\r\nAllow: GET, HEAD\r\n");
    CHECK(http(port, REQ("DELETE /metrics HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 405 ");
    CHECK(http(port, REQ("hello\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 400 Bad Request\r\n");
    CHECK(http(port, REQ("GET  /metrics HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 400 ");
    CHECK(http(port, REQ("GET /metrics SMTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 400 ");
    /* an oversized request head */
    big = malloc(CL_METRICS_REQUEST_MAX + 200);
    if (big) {
        size_t n = (size_t)snprintf(big, 64, "GET /metrics HTTP/1.1\r\nX-Pad: ");
        memset(big + n, 'a', CL_METRICS_REQUEST_MAX + 100 - n);
        memcpy(big + CL_METRICS_REQUEST_MAX + 100, "\r\n\r\n", 4);
        CHECK(http(port, big, CL_METRICS_REQUEST_MAX + 104, resp, sizeof(resp)) > 0);
        CHECK_CONTAINS(resp, "HTTP/1.1 431 ");
        free(big);
    }

    /* a slow client is answered 408 after io_ms, and others are served meanwhile */
    {
        int slow = dial(port);
        uint64_t t0 = cl_time_real_us(), t1;
        ssize_t n;
        CHECK(slow >= 0);
        CHECK(send(slow, "GET /metr", 9, MSG_NOSIGNAL) == 9);
        CHECK(http(port, REQ("GET /metrics HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
        CHECK_CONTAINS(resp, "HTTP/1.1 200 OK\r\n");
        CHECK(cl_time_real_us() - t0 < 250000); /* not queued behind the slow one */
        n = read_all(slow, resp, sizeof(resp));
        t1 = cl_time_real_us();
        CHECK(n > 0);
        CHECK_CONTAINS(resp, "HTTP/1.1 408 Request Timeout\r\n");
        CHECK(t1 - t0 >= 250000 && t1 - t0 < 2000000);
        close(slow);
    }
    /* a silent client: closed after io_ms too */
    {
        int idle = dial(port);
        CHECK(idle >= 0);
        CHECK(read_all(idle, resp, sizeof(resp)) >= 0);
        CHECK_CONTAINS(resp, "HTTP/1.1 408 ");
        close(idle);
        usleep(20000); /* the server sees it gone: its slot is free again */
    }
    /* full: CL_METRICS_CONN_MAX idle clients; the next one waits until their time is up */
    {
        int fds[CL_METRICS_CONN_MAX], i;
        uint64_t t0, dt;
        for (i = 0; i < CL_METRICS_CONN_MAX; i++)
            fds[i] = dial(port);
        usleep(50000); /* accepted */
        t0 = cl_time_real_us();
        CHECK(http(port, REQ("GET /metrics HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
        dt = cl_time_real_us() - t0;
        CHECK_CONTAINS(resp, "HTTP/1.1 200 OK\r\n");
        CHECK(dt >= 150000 && dt < 2000000);
        for (i = 0; i < CL_METRICS_CONN_MAX; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    }
    /* the collector fails */
    fail_collect = 1;
    CHECK(http(port, REQ("GET /metrics HTTP/1.1\r\n\r\n"), resp, sizeof(resp)) > 0);
    CHECK_CONTAINS(resp, "HTTP/1.1 500 ");
    fail_collect = 0;
    CHECK(cl_metrics_server_answers(s, 200) >= 4);
    CHECK_INT_EQ(cl_metrics_server_answers(s, 404), 2);
    CHECK_INT_EQ(cl_metrics_server_answers(s, 405), 2);
    CHECK_INT_EQ(cl_metrics_server_answers(s, 431), 1);
    CHECK_INT_EQ(cl_metrics_server_answers(s, 500), 1);
    CHECK(cl_metrics_server_answers(s, 408) >= 2 + CL_METRICS_CONN_MAX);
    {
        /* freed with a client still connected: no hang */
        int fd = dial(port);
        cl_metrics_server_free(s);
        if (fd >= 0)
            close(fd);
    }
    /* the port is closed now */
    CHECK(dial(port) < 0);
}

static void test_refusals(void)
{
    cl_metrics_server_opts_t o;
    cl_metrics_server_t *s;
    cl_err_t err;

    memset(&o, 0, sizeof(o));
    o.collect = collect;
    o.address = "0.0.0.0";
    cl_err_clear(&err);
    CHECK(cl_metrics_server_new(&o, &err) == NULL);
    CHECK_CONTAINS(err.msg, "not a loopback address");
    o.address = "not-an-address";
    CHECK(cl_metrics_server_new(&o, &err) == NULL);
    CHECK_CONTAINS(err.msg, "numeric");
    /* a port in use */
    o.address = "127.0.0.1";
    s = cl_metrics_server_new(&o, &err);
    if (CHECK(s != NULL)) {
        cl_metrics_server_t *t;
        o.port = cl_metrics_server_port(s);
        t = cl_metrics_server_new(&o, &err);
        CHECK(t == NULL);
        CHECK_CONTAINS(err.msg, "bind 127.0.0.1");
        cl_metrics_server_free(t);
        cl_metrics_server_free(s);
    }
    cl_metrics_server_free(NULL);
}

int main(void)
{
    test_names_and_numbers();
    test_family_and_samples();
    test_histogram();
    test_listen_specs();
    test_server();
    test_refusals();
    return check_summary();
}
