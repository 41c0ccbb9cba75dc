/*
 * test_ctl: the control protocol's framing and errors, over socketpairs and a fake daemon on a
 * temporary unix socket.  Lines are reassembled across writes and split when they share one,
 * anything that is not a JSON object line is a protocol error, waits end at their bound, and an
 * error survives the trip through JSON with its domain, host and operation.
 */
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cl_ctl.h"
#include "cl_err.h"
#include "cl_time.h"

/* Both ends non-blocking, as cl_ctl_connect and cloudd's accept make them. */
static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("socketpair");
        exit(EXIT_FAILURE);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void put(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;

    while (off < len) {
        ssize_t w = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0)
            return;
        off += (size_t)w;
    }
}

/* A writer thread: sends pieces with pauses so that the reader sees them apart. */
typedef struct pieces {
    int fd;
    const char *const *v;
    int close_after;
} pieces_t;

static void *write_pieces(void *ud)
{
    pieces_t *p = ud;
    size_t i;

    for (i = 0; p->v[i]; i++) {
        sleep_ms(15);
        put(p->fd, p->v[i]);
    }
    if (p->close_after)
        close(p->fd);
    return NULL;
}

static int get_int(json_object *o, const char *key)
{
    json_object *v;

    return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int(v) : -1;
}

static void test_split_line(void)
{
    static const char *const parts[] = {"{\"op\": \"hel", "lo\", \"n\":", " 7}\n", NULL};
    pieces_t p;
    pthread_t th;
    cl_ctl_reader_t rd;
    json_object *o = NULL, *v;
    cl_err_t err;
    int sv[2];

    pair(sv);
    p.fd = sv[1];
    p.v = parts;
    p.close_after = 1;
    cl_ctl_reader_init(&rd, sv[0]);
    cl_err_clear(&err);
    pthread_create(&th, NULL, write_pieces, &p);
    CHECK_INT_EQ(cl_ctl_read(&rd, 5000, &o, &err), 1);
    CHECK(o && json_object_object_get_ex(o, "op", &v) &&
          strcmp(json_object_get_string(v), "hello") == 0);
    CHECK_INT_EQ(get_int(o, "n"), 7);
    json_object_put(o);
    /* then the end of the stream, cleanly */
    CHECK_INT_EQ(cl_ctl_read(&rd, 5000, &o, &err), 0);
    CHECK(o == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_NONE);
    pthread_join(th, NULL);
    cl_ctl_reader_free(&rd);
    close(sv[0]);
}

static void test_two_lines(void)
{
    cl_ctl_reader_t rd;
    json_object *o = NULL;
    cl_err_t err;
    int sv[2];

    pair(sv);
    cl_ctl_reader_init(&rd, sv[0]);
    cl_err_clear(&err);
    put(sv[1], "{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3");
    CHECK_INT_EQ(cl_ctl_read(&rd, 1000, &o, &err), 1);
    CHECK_INT_EQ(get_int(o, "n"), 1);
    json_object_put(o);
    CHECK_INT_EQ(cl_ctl_read(&rd, 1000, &o, &err), 1);
    CHECK_INT_EQ(get_int(o, "n"), 2);
    json_object_put(o);
    /* the third line ends in a later write */
    put(sv[1], "}\n");
    CHECK_INT_EQ(cl_ctl_read(&rd, 1000, &o, &err), 1);
    CHECK_INT_EQ(get_int(o, "n"), 3);
    json_object_put(o);
    CHECK_INT_EQ(err.domain, CL_ERR_NONE);
    cl_ctl_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
}

static void expect_proto(const char *text, int close_writer, const char *needle)
{
    cl_ctl_reader_t rd;
    json_object *o = (json_object *)1;
    cl_err_t err;
    int sv[2];

    pair(sv);
    cl_ctl_reader_init(&rd, sv[0]);
    cl_err_clear(&err);
    put(sv[1], text);
    if (close_writer)
        close(sv[1]);
    CHECK_INT_EQ(cl_ctl_read(&rd, 1000, &o, &err), -1);
    CHECK(o == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_PROTO);
    CHECK_CONTAINS(err.msg, needle);
    cl_ctl_reader_free(&rd);
    close(sv[0]);
    if (!close_writer)
        close(sv[1]);
}

static void test_bad_lines(void)
{
    expect_proto("hello\n", 0, "not a JSON object");
    expect_proto("[1, 2]\n", 0, "not a JSON object");
    expect_proto("{\"a\": 1} trailing\n", 0, "not a JSON object");
    expect_proto("\n", 0, "not a JSON object");
    /* the peer went away in the middle of a line */
    expect_proto("{\"a\": 1", 1, "mid-line");
}

static void test_timeout(void)
{
    cl_ctl_reader_t rd;
    json_object *o = NULL;
    cl_err_t err;
    uint64_t t0, dt;
    volatile int cancel = 0;
    int sv[2];

    pair(sv);
    cl_ctl_reader_init(&rd, sv[0]);
    cl_err_clear(&err);
    t0 = cl_time_real_us();
    CHECK_INT_EQ(cl_ctl_read(&rd, 50, &o, &err), -1);
    dt = (cl_time_real_us() - t0) / 1000;
    CHECK(o == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK(dt >= 45);
    CHECK(dt < 1000);

    /* a partial line does not extend the bound */
    put(sv[1], "{\"a\":");
    cl_err_clear(&err);
    t0 = cl_time_real_us();
    CHECK_INT_EQ(cl_ctl_read(&rd, 50, &o, &err), -1);
    dt = (cl_time_real_us() - t0) / 1000;
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK(dt < 1000);
    cl_ctl_reader_free(&rd);

    /* cancelled from elsewhere: abandoned long before the bound */
    cl_ctl_reader_init(&rd, sv[0]);
    rd.cancel = &cancel;
    cancel = 1;
    cl_err_clear(&err);
    t0 = cl_time_real_us();
    CHECK_INT_EQ(cl_ctl_read(&rd, 60000, &o, &err), -1);
    dt = (cl_time_real_us() - t0) / 1000;
    CHECK_INT_EQ(err.domain, CL_ERR_TIMEOUT);
    CHECK_CONTAINS(err.msg, "interrupted");
    CHECK(dt < 1000);
    cl_ctl_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
}

/* A writer thread for cl_ctl_write of a big object (the socket buffer fills up). */
typedef struct big_write {
    int fd;
    json_object *obj;
    int rc;
    cl_err_t err;
} big_write_t;

static void *do_big_write(void *ud)
{
    big_write_t *b = ud;

    cl_err_clear(&b->err);
    b->rc = cl_ctl_write(b->fd, b->obj, 5000, &b->err);
    return NULL;
}

static void test_write_read(void)
{
    size_t n = 2u * 1024u * 1024u;
    char *payload = malloc(n + 1);
    big_write_t b;
    pthread_t th;
    cl_ctl_reader_t rd;
    json_object *o = NULL, *v;
    cl_err_t err;
    int sv[2];

    memset(payload, 'p', n);
    payload[n] = '\0';
    pair(sv);
    b.fd = sv[1];
    b.obj = json_object_new_object();
    json_object_object_add(b.obj, "v", json_object_new_int(1));
    json_object_object_add(b.obj, "text", json_object_new_string("line\nbreak \"quoted\""));
    json_object_object_add(b.obj, "payload", json_object_new_string(payload));
    pthread_create(&th, NULL, do_big_write, &b);
    cl_ctl_reader_init(&rd, sv[0]);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ctl_read(&rd, 5000, &o, &err), 1);
    pthread_join(th, NULL);
    CHECK_INT_EQ(b.rc, 0);
    CHECK(o && json_object_equal(o, b.obj));
    CHECK(o && json_object_object_get_ex(o, "text", &v) &&
          strcmp(json_object_get_string(v), "line\nbreak \"quoted\"") == 0);
    json_object_put(o);
    json_object_put(b.obj);
    cl_ctl_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
    free(payload);
}

/* Sends more than a line may hold, without a newline, until the reader hangs up. */
static void *flood(void *ud)
{
    int fd = *(int *)ud;
    static char chunk[65536];
    size_t total = 0;

    memset(chunk, 'x', sizeof(chunk));
    while (total < 20u * 1024u * 1024u) {
        ssize_t w = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (w < 0)
            break;
        total += (size_t)w;
    }
    return NULL;
}

static void test_line_limit(void)
{
    cl_ctl_reader_t rd;
    json_object *o = NULL;
    pthread_t th;
    cl_err_t err;
    int sv[2];

    pair(sv);
    /* the flooding end blocks; it stops when the reader's end is closed */
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) & ~O_NONBLOCK);
    pthread_create(&th, NULL, flood, &sv[1]);
    cl_ctl_reader_init(&rd, sv[0]);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ctl_read(&rd, 10000, &o, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_PROTO);
    CHECK_CONTAINS(err.msg, "longer than");
    shutdown(sv[0], SHUT_RDWR);
    pthread_join(th, NULL);
    cl_ctl_reader_free(&rd);
    close(sv[0]);
    close(sv[1]);
}

static void test_error_json(void)
{
    static const cl_err_domain_t domains[] = {CL_ERR_VIRT,     CL_ERR_SSH,  CL_ERR_PROTO,
                                              CL_ERR_TIMEOUT,  CL_ERR_SPEC, CL_ERR_SYS,
                                              CL_ERR_ELECTION, CL_ERR_STATE};
    cl_err_t in, out;
    json_object *j, *back, *v;
    size_t i;

    for (i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
        cl_err_clear(&in);
        cl_err_set(&in, domains[i], 42, "10.0.0.1", "define web-server-0",
                   "boom: \"quoted\" and a\nnewline");
        j = cl_ctl_error_json(&in);
        CHECK(json_object_object_get_ex(j, "ok", &v) && !json_object_get_boolean(v));
        /* through the wire as text */
        back = json_tokener_parse(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        cl_err_clear(&out);
        CHECK_INT_EQ(cl_ctl_error_from(back, &out), -1);
        CHECK_INT_EQ(out.domain, domains[i]);
        CHECK_STR_EQ(cl_err_domain_name(out.domain), cl_err_domain_name(domains[i]));
        CHECK_INT_EQ(out.code, 42);
        CHECK_STR_EQ(out.host, "10.0.0.1");
        CHECK_STR_EQ(out.op, "define web-server-0");
        CHECK_STR_EQ(out.msg, "boom: \"quoted\" and a\nnewline");
        json_object_put(j);
        json_object_put(back);
    }

    /* an answer without a usable error is still an error, of the protocol */
    back = json_tokener_parse("{\"ok\": false}");
    cl_err_clear(&out);
    CHECK_INT_EQ(cl_ctl_error_from(back, &out), -1);
    CHECK_INT_EQ(out.domain, CL_ERR_PROTO);
    CHECK(out.msg[0] != '\0');
    json_object_put(back);
    back = json_tokener_parse("{\"ok\": false, \"error\": {\"domain\": \"martian\", \"host\": 7}}");
    cl_err_clear(&out);
    CHECK_INT_EQ(cl_ctl_error_from(back, &out), -1);
    CHECK_INT_EQ(out.domain, CL_ERR_PROTO);
    CHECK_STR_EQ(out.host, "");
    json_object_put(back);
}

/* ---------------------------------------------------------------------------------------- */
/* cl_ctl_call against a fake daemon                                                         */
/* ---------------------------------------------------------------------------------------- */

typedef struct fake {
    int lfd;
    const char *answer; /* lines sent after the request */
    json_object *request;
} fake_t;

static void *serve_one(void *ud)
{
    fake_t *f = ud;
    cl_ctl_reader_t rd;
    cl_err_t err;
    int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0) {
        /* the listening socket is non-blocking: wait for the client */
        struct timespec ts = {0, 5000000L};
        int tries;
        for (tries = 0; fd < 0 && tries < 400; tries++) {
            nanosleep(&ts, NULL);
            fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        }
        if (fd < 0)
            return NULL;
    }
    cl_ctl_reader_init(&rd, fd);
    cl_err_clear(&err);
    if (cl_ctl_read(&rd, 2000, &f->request, &err) == 1)
        put(fd, f->answer);
    cl_ctl_reader_free(&rd);
    close(fd);
    return NULL;
}

static int progress_seen;

static int on_progress(void *ud, json_object *line)
{
    json_object *v;

    (void)ud;
    if (json_object_object_get_ex(line, "event", &v) &&
        strncmp(json_object_get_string(v), "+step", 5) == 0)
        progress_seen++;
    return 0;
}

static int listen_on(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        perror("listen");
        exit(EXIT_FAILURE);
    }
    return fd;
}

static void test_call(const char *dir)
{
    char path[96];
    fake_t f;
    pthread_t th;
    json_object *req = json_tokener_parse("{\"v\": 1, \"op\": \"hello\"}"), *final = NULL, *v;
    cl_err_t err;

    snprintf(path, sizeof(path), "%s/cloudd.sock", dir);
    /* nobody listening: the caller can tell "no daemon" from other failures */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ctl_call(path, req, 1000, NULL, NULL, &final, &err), -1);
    CHECK(final == NULL);
    CHECK_INT_EQ(err.sys_errno, ENOENT);

    f.lfd = listen_on(path);
    f.request = NULL;
    f.answer = "{\"progress\": true, \"event\": \"+step1\"}\n"
               "{\"progress\": true, \"event\": \"+step2\"}\n"
               "{\"ok\": true, \"version\": \"0.1.0\"}\n";
    progress_seen = 0;
    pthread_create(&th, NULL, serve_one, &f);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ctl_call(path, req, 2000, on_progress, NULL, &final, &err), 0);
    pthread_join(th, NULL);
    CHECK_INT_EQ(progress_seen, 2);
    CHECK(final && json_object_object_get_ex(final, "version", &v) &&
          strcmp(json_object_get_string(v), "0.1.0") == 0);
    CHECK(f.request && json_object_equal(f.request, req));
    json_object_put(final);
    json_object_put(f.request);

    /* a final error line becomes the caller's error */
    f.request = NULL;
    f.answer = "{\"ok\": false, \"error\": {\"domain\": \"virt\", \"code\": 9, \"host\": "
               "\"10.0.0.2\", \"operation\": \"start web-db-0\", \"message\": \"no room\"}}\n";
    pthread_create(&th, NULL, serve_one, &f);
    cl_err_clear(&err);
    final = NULL;
    CHECK_INT_EQ(cl_ctl_call(path, req, 2000, NULL, NULL, &final, &err), -1);
    pthread_join(th, NULL);
    CHECK(final == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_VIRT);
    CHECK_STR_EQ(err.host, "10.0.0.2");
    CHECK_STR_EQ(err.op, "start web-db-0");
    CHECK_STR_EQ(err.msg, "no room");
    json_object_put(f.request);

    /* the daemon hangs up without a final line */
    f.request = NULL;
    f.answer = "{\"progress\": true, \"event\": \"+step1\"}\n";
    pthread_create(&th, NULL, serve_one, &f);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ctl_call(path, req, 2000, NULL, NULL, &final, &err), -1);
    pthread_join(th, NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_PROTO);
    json_object_put(f.request);

    close(f.lfd);
    json_object_put(req);
}

int main(void)
{
    char dir[64];
    int rc;

    check_tmpdir(dir, sizeof(dir), "cl-ctl");
    test_split_line();
    test_two_lines();
    test_bad_lines();
    test_timeout();
    test_write_read();
    test_line_limit();
    test_error_json();
    test_call(dir);
    rc = check_summary();
    check_rmtree(dir);
    return rc;
}
