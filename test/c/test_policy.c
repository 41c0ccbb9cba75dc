/*
 * test_policy: the restart policy of a slot with injected time: escalation service -> domain ->
 * another host, exponential backoff with a cap, a healthy slot starting over, flapping (too
 * many failures in the window) pausing the repairs for a window, old failures forgotten.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "cl_policy.h"

static void test_escalation(void)
{
    cl_policy_cfg_t cfg;
    cl_policy_t p;
    uint64_t at = 0, t = 1000000;

    cl_policy_cfg_default(&cfg);
    CHECK_INT_EQ(cfg.max_failures, 5);
    CHECK_INT_EQ(cfg.window_ms, 600000);
    cl_policy_init(&p);
    /* a failing check: the service, then the domain, then another host, with backoff */
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t, &at), CL_REPAIR_SERVICE);
    CHECK_INT_EQ(at, t);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + 10, &at), CL_REPAIR_DOMAIN);
    CHECK_INT_EQ(at, t + 10 + 1000);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + 20, &at), CL_REPAIR_REPLACE);
    CHECK_INT_EQ(at, t + 20 + 2000);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + 30, &at), CL_REPAIR_REPLACE);
    CHECK_INT_EQ(at, t + 30 + 4000);
    CHECK_INT_EQ(p.restarts, 4);
    /* healthy again: it starts over, at once (5 failures in the window: not yet flapping) */
    cl_policy_healthy(&p);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + 40, &at), CL_REPAIR_SERVICE);
    CHECK_INT_EQ(at, t + 40);
    CHECK(!cl_policy_flapping(&p, t + 40));

    /* a stopped domain: where it is first, then elsewhere; a dead host: elsewhere at once */
    cl_policy_init(&p);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t, &at), CL_REPAIR_DOMAIN);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t + 1, &at), CL_REPAIR_REPLACE);
    cl_policy_init(&p);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_HOST, t, &at), CL_REPAIR_REPLACE);
    CHECK_INT_EQ(at, t);
    /* hosts dying under a slot never make it flap nor back off: the host failed, not the slot */
    {
        cl_policy_t q;
        int k, all = 1;
        cl_policy_init(&q);
        for (k = 0; k < 20; k++) {
            all &= cl_policy_failure(&q, &cfg, CL_FAIL_HOST, t + (uint64_t)k, &at) ==
                       CL_REPAIR_REPLACE &&
                   at == t + (uint64_t)k;
        }
        CHECK(all);
        CHECK(!cl_policy_flapping(&q, t + 20));
        CHECK_INT_EQ(q.restarts, 20);
        /* and a domain failure after them starts at the domain, without backoff */
        CHECK_INT_EQ(cl_policy_failure(&q, &cfg, CL_FAIL_DOMAIN, t + 30, &at), CL_REPAIR_DOMAIN);
        CHECK_INT_EQ(at, t + 30);
    }
    /* a check failing after the domain was restarted does not go back to the service */
    cl_policy_init(&p);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t, &at), CL_REPAIR_DOMAIN);
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + 1, &at), CL_REPAIR_REPLACE);
    CHECK_STR_EQ(cl_repair_name(CL_REPAIR_SERVICE), "service");
    CHECK_STR_EQ(cl_repair_name(CL_REPAIR_NONE), "none");
}

static void test_backoff_cap(void)
{
    cl_policy_cfg_t cfg = {1000, 600000, 1000, 8000};
    cl_policy_t p;
    uint64_t at = 0, t = 5000;
    unsigned i;

    cl_policy_init(&p);
    for (i = 0; i < 10; i++)
        cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + i, &at);
    CHECK_INT_EQ(at, t + 9 + 8000); /* 1, 2, 4, 8, 8, ... s */
    cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + 10, &at);
    CHECK_INT_EQ(at, t + 10 + 8000);
}

static void test_flapping(void)
{
    cl_policy_cfg_t cfg;
    cl_policy_t p;
    uint64_t at = 0, t = 1000000;
    unsigned i;

    cl_policy_cfg_default(&cfg);
    cl_policy_init(&p);
    for (i = 0; i < 5; i++) {
        CHECK(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t + i * 1000, &at) != CL_REPAIR_NONE);
        cl_policy_healthy(&p);
    }
    /* the sixth in ten minutes: stop trying for a window */
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t + 5000, &at), CL_REPAIR_NONE);
    CHECK_INT_EQ(at, t + 5000 + cfg.window_ms);
    CHECK(cl_policy_flapping(&p, t + 6000));
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t + 7000, &at), CL_REPAIR_NONE);
    CHECK_INT_EQ(at, t + 5000 + cfg.window_ms);
    /* after the pause it starts over from the first repair, at once */
    t += 5000 + cfg.window_ms;
    CHECK(!cl_policy_flapping(&p, t));
    CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_DOMAIN, t, &at), CL_REPAIR_DOMAIN);
    CHECK_INT_EQ(at, t);
}

static void test_window_forgets(void)
{
    cl_policy_cfg_t cfg;
    cl_policy_t p;
    uint64_t at = 0, t = 1000000;
    unsigned i;

    cl_policy_cfg_default(&cfg);
    cl_policy_init(&p);
    /* a failure every 3 minutes, healthy in between: at most 4 in any 10 minutes */
    for (i = 0; i < 20; i++) {
        CHECK_INT_EQ(cl_policy_failure(&p, &cfg, CL_FAIL_CHECK, t + i * 180000, &at),
                     CL_REPAIR_SERVICE);
        cl_policy_healthy(&p);
    }
    CHECK(!cl_policy_flapping(&p, t + 20 * 180000));
    CHECK(p.nfail <= 4);
    CHECK_INT_EQ(p.restarts, 20);
}

int main(void)
{
    test_escalation();
    test_backoff_cap();
    test_flapping();
    test_window_forgets();
    return check_summary();
}
