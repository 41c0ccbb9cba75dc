/*
 * test_fence: self-fencing stops every copy of the cloud on the host at once -- each running
 * one paused before any is destroyed (cl_virt_stop_all) -- on libvirt's test driver, watched
 * through the driver's own lifecycle events (in the order the driver made them) and the
 * daemon's "-vm-run" lines (exactly one per copy).  Also cl_virt_suspend on its own.
 */
#include "check.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <string.h>
#include <unistd.h>

#include "cl_engine.h"
#include "cl_err.h"
#include "cl_log.h"
#include "cl_net.h"
#include "cl_tmpl.h"
#include "cl_virt.h"

#define URI "test:///default"
#define HOST "127.0.0.1"

static virConnectPtr conn; /* the test's own view of the world (and its events) */
static char tmp[64];
static FILE *logf;

static void quiet(void *ud, virErrorPtr e)
{
    (void)ud;
    (void)e;
}

/* ---------------------------------------------------------------------------------------- */
/* The world                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Define domain name, owned by cloud (a slot of the same name); started if run. */
static int dom_make(const char *cloud, const char *name, int run)
{
    char xml[1024];
    virDomainPtr d;
    int rc;

    snprintf(xml, sizeof(xml),
             "<domain type='test'><name>%s</name><memory unit='KiB'>65536</memory>"
             "<os><type arch='x86_64'>hvm</type></os><metadata>"
             "<" CL_META_PREFIX ":owner xmlns:" CL_META_PREFIX "='" CL_META_URI "' cloud='%s' "
             "slot='%s' role='node' index='0' host='" HOST "' epoch='1'/></metadata></domain>",
             name, cloud, name);
    d = virDomainDefineXML(conn, xml);
    if (!d)
        return -1;
    rc = run ? virDomainCreate(d) : 0;
    virDomainFree(d);
    return rc;
}

static int dom_state(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);
    int st = -1, reason = 0;

    if (!d) {
        virResetLastError();
        return -1;
    }
    if (virDomainGetState(d, &st, &reason, 0) < 0)
        st = -1;
    virDomainFree(d);
    return st;
}

static void dom_pause(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);

    if (d) {
        virDomainSuspend(d);
        virDomainFree(d);
    }
}

static void dom_drop(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);

    if (!d) {
        virResetLastError();
        return;
    }
    if (virDomainIsActive(d) == 1)
        virDomainDestroy(d);
    virDomainUndefine(d);
    virDomainFree(d);
    virResetLastError();
}

/* ---------------------------------------------------------------------------------------- */
/* Lifecycle events, in the order the driver made them                                       */
/* ---------------------------------------------------------------------------------------- */

typedef struct seen {
    char dom[64];
    int event; /* VIR_DOMAIN_EVENT_SUSPENDED, _STOPPED, ... */
} seen_t;

static seen_t seen[64];
static int nseen;

static int on_event(virConnectPtr c, virDomainPtr dom, int event, int detail, void *ud)
{
    (void)c;
    (void)detail;
    (void)ud;
    if (nseen < (int)(sizeof(seen) / sizeof(seen[0]))) {
        snprintf(seen[nseen].dom, sizeof(seen[0].dom), "%s", virDomainGetName(dom));
        seen[nseen++].event = event;
    }
    return 0;
}

static void on_tick(int timer, void *ud)
{
    (void)timer;
    (void)ud;
}

/* Run the event loop until want events of the "fz" cloud arrived (or 2 s passed). */
static void drain(int want)
{
    int i, k, n = 0;

    for (i = 0; i < 100 && n < want; i++) {
        virEventRunDefaultImpl();
        for (k = 0, n = 0; k < nseen; k++)
            n += strncmp(seen[k].dom, "fz-", 3) == 0;
    }
}

static int count_events(const char *prefix, int event)
{
    int k, n = 0;

    for (k = 0; k < nseen; k++)
        n += strncmp(seen[k].dom, prefix, strlen(prefix)) == 0 && seen[k].event == event;
    return n;
}

/* Index of the first (first=1) or last event of a kind among the fz domains' (-1: none). */
static int event_at(int event, int first)
{
    int k, at = -1;

    for (k = 0; k < nseen; k++)
        if (strncmp(seen[k].dom, "fz-", 3) == 0 && seen[k].event == event) {
            at = k;
            if (first)
                break;
        }
    return at;
}

/* ---------------------------------------------------------------------------------------- */
/* The log                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static char *log_text(void)
{
    long n;
    char *buf;

    cl_log_flush();
    fflush(logf);
    n = ftell(logf);
    buf = calloc(1, (size_t)n + 1);
    if (!buf)
        return NULL;
    rewind(logf);
    if (fread(buf, 1, (size_t)n, logf) != (size_t)n)
        buf[0] = '\0';
    fseek(logf, 0, SEEK_END);
    return buf;
}

static void log_reset(void)
{
    cl_log_flush();
    fflush(logf);
    if (ftruncate(fileno(logf), 0) == 0)
        rewind(logf);
}

static int count_lines(const char *text, const char *needle)
{
    const char *p = text;
    int n = 0;

    while (p && (p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Tests                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void test_suspend(void)
{
    cl_virt_t *v = NULL;
    cl_err_t err;
    char *text;

    cl_err_clear(&err);
    if (!CHECK(cl_virt_open(URI, HOST, 0, &v, &err) == 0))
        return;
    CHECK_INT_EQ(dom_make("sp", "sp-node-0", 1), 0);
    CHECK_INT_EQ(dom_make("sp", "sp-node-1", 0), 0);
    log_reset();

    CHECK_INT_EQ(cl_virt_suspend(v, "sp-node-0", "fence", &err), 1);
    CHECK_INT_EQ(dom_state("sp-node-0"), VIR_DOMAIN_PAUSED);
    /* already paused, shut off, missing: nothing to do, no error, no line */
    CHECK_INT_EQ(cl_virt_suspend(v, "sp-node-0", "fence", &err), 0);
    CHECK_INT_EQ(cl_virt_suspend(v, "sp-node-1", "fence", &err), 0);
    CHECK_INT_EQ(cl_virt_suspend(v, "sp-nothing", "fence", &err), 0);
    CHECK_INT_EQ(dom_state("sp-node-1"), VIR_DOMAIN_SHUTOFF);
    text = log_text();
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=sp-node-0 why=fence"), 1);
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=sp-node-1"), 0);
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=sp-nothing"), 0);
    free(text);

    /* a paused domain destroyed on its own (not by cl_virt_stop_all): its line is logged then */
    log_reset();
    CHECK_INT_EQ(cl_virt_destroy(v, "sp-node-0", "restart", &err), 0);
    CHECK_INT_EQ(dom_state("sp-node-0"), VIR_DOMAIN_SHUTOFF);
    text = log_text();
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=sp-node-0 why=restart"), 1);
    free(text);

    dom_drop("sp-node-0");
    dom_drop("sp-node-1");
    cl_virt_close(v);
}

static void test_stop_all_missing(void)
{
    cl_virt_t *v = NULL;
    cl_virt_stop_t s[2];
    cl_err_t err;

    cl_err_clear(&err);
    if (!CHECK(cl_virt_open(URI, HOST, 0, &v, &err) == 0))
        return;
    CHECK_INT_EQ(dom_make("sm", "sm-node-0", 1), 0);
    memset(s, 0, sizeof(s));
    s[0].name = "sm-node-0";
    s[1].name = "sm-gone"; /* undefined meanwhile: nothing runs, no error */
    CHECK_INT_EQ(cl_virt_stop_all(v, s, 2, "fence"), 2);
    CHECK_INT_EQ(s[0].state, CL_DOM_SHUTOFF);
    CHECK_INT_EQ(s[1].state, CL_DOM_SHUTOFF);
    CHECK_INT_EQ(dom_state("sm-node-0"), VIR_DOMAIN_SHUTOFF);
    CHECK_INT_EQ(cl_virt_stop_all(v, s, 0, "fence"), 0);
    dom_drop("sm-node-0");
    cl_virt_close(v);
}

static void test_self_fence(cl_engine_t *eng)
{
    static const char *const running[] = {"fz-db-0", "fz-server-0", "fz-server-1", "fz-lb-0"};
    const size_t nrun = sizeof(running) / sizeof(running[0]);
    cl_err_t err;
    char *text, line[128];
    size_t i;
    int cb;

    for (i = 0; i < nrun; i++)
        CHECK_INT_EQ(dom_make("fz", running[i], 1), 0);
    CHECK_INT_EQ(dom_make("fz", "fz-paused-0", 1), 0); /* paused by someone else before */
    dom_pause("fz-paused-0");
    CHECK_INT_EQ(dom_make("fz", "fz-off-0", 0), 0);  /* defined, not running */
    CHECK_INT_EQ(dom_make("fy", "fy-node-0", 1), 0); /* another cloud's */
    CHECK_INT_EQ(dom_state("fz-paused-0"), VIR_DOMAIN_PAUSED);

    cb = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                          VIR_DOMAIN_EVENT_CALLBACK(on_event), NULL, NULL);
    CHECK(cb >= 0);
    drain(100); /* what the set-up made: not counted */
    nseen = 0;
    log_reset();

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_engine_self_fence(eng, "fz", URI, &err), (int)nrun + 1);

    /* every copy of the cloud is stopped, and kept defined; the rest is left alone */
    for (i = 0; i < nrun; i++)
        CHECK_INT_EQ(dom_state(running[i]), VIR_DOMAIN_SHUTOFF);
    CHECK_INT_EQ(dom_state("fz-paused-0"), VIR_DOMAIN_SHUTOFF);
    CHECK_INT_EQ(dom_state("fz-off-0"), VIR_DOMAIN_SHUTOFF);
    CHECK_INT_EQ(dom_state("fy-node-0"), VIR_DOMAIN_RUNNING);

    /* each running copy was paused, and every pause came before the first destroy */
    drain(2 * (int)nrun + 1);
    CHECK_INT_EQ(count_events("fz-", VIR_DOMAIN_EVENT_SUSPENDED), nrun);
    CHECK_INT_EQ(count_events("fz-", VIR_DOMAIN_EVENT_STOPPED), nrun + 1);
    CHECK_INT_EQ(count_events("fy-", VIR_DOMAIN_EVENT_STOPPED), 0);
    CHECK(event_at(VIR_DOMAIN_EVENT_SUSPENDED, 1) >= 0);
    CHECK(event_at(VIR_DOMAIN_EVENT_SUSPENDED, 0) < event_at(VIR_DOMAIN_EVENT_STOPPED, 1));

    /* one "-vm-run" line per copy, none for the others */
    text = log_text();
    for (i = 0; i < nrun; i++) {
        snprintf(line, sizeof(line), "-vm-run dom=%s why=fence", running[i]);
        CHECK_INT_EQ(count_lines(text, line), 1);
        snprintf(line, sizeof(line), "+self-fence cloud=fz slot=%s stopped", running[i]);
        CHECK_INT_EQ(count_lines(text, line), 1);
    }
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=fz-paused-0 why=fence"), 1);
    CHECK_INT_EQ(count_lines(text, "+self-fence cloud=fz slot=fz-paused-0 stopped"), 1);
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=fz-off-0"), 0);
    CHECK_INT_EQ(count_lines(text, "-vm-run dom=fy-"), 0);
    CHECK_INT_EQ(count_lines(text, "+vm-run"), 0);
    CHECK_INT_EQ(count_lines(text, " -fence "), 0);
    CHECK_CONTAINS(text, "=stop-all host=self why=fence domains=5 paused=4 in ");
    if (getenv("TEST_DEBUG"))
        fputs(text, stderr);
    free(text);

    /* nothing left to stop: a second fence finds nothing */
    log_reset();
    CHECK_INT_EQ(cl_engine_self_fence(eng, "fz", URI, &err), 0);
    text = log_text();
    CHECK_INT_EQ(count_lines(text, "-vm-run"), 0);
    free(text);

    if (cb >= 0)
        virConnectDomainEventDeregisterAny(conn, cb);
    for (i = 0; i < nrun; i++)
        dom_drop(running[i]);
    dom_drop("fz-paused-0");
    dom_drop("fz-off-0");
    dom_drop("fy-node-0");
}

int main(void)
{
    cl_engine_opts_t eo;
    cl_engine_t *eng = NULL;
    cl_addrs_t self = {0};
    char state_dir[128], logpath[128];
    cl_err_t err;
    int rc, tick;

    /* the default event loop first: the test driver delivers its events through it */
    virEventRegisterDefaultImpl();
    virSetErrorFunc(NULL, quiet);
    cl_virt_global_init();
    conn = virConnectOpen(URI);
    if (!conn) {
        fprintf(stderr, "cannot open %s\n", URI);
        return EXIT_FAILURE;
    }
    tick = virEventAddTimeout(20, on_tick, NULL, NULL); /* drain() never blocks for long */
    check_tmpdir(tmp, sizeof(tmp), "cl-fence");
    snprintf(state_dir, sizeof(state_dir), "%s/state", tmp);
    snprintf(logpath, sizeof(logpath), "%s/log", tmp);
    logf = fopen(logpath, "w+");
    if (!logf) {
        perror(logpath);
        return EXIT_FAILURE;
    }
    cl_log_set_stream(logf);
    cl_addrs_add(&self, HOST);
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = state_dir;
    eo.self = &self;
    cl_err_clear(&err);
    if (cl_engine_new(&eo, &eng, &err) < 0) {
        fprintf(stderr, "cl_engine_new: %s\n", err.msg);
        return EXIT_FAILURE;
    }
    cl_addrs_free(&self);

    test_suspend();
    test_stop_all_missing();
    test_self_fence(eng);

    cl_engine_free(eng);
    cl_log_set_stream(NULL);
    fclose(logf);
    if (tick >= 0)
        virEventRemoveTimeout(tick);
    virConnectClose(conn);
    rc = check_summary();
    check_rmtree(tmp);
    return rc;
}
