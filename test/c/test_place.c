/*
 * test_place: placement of slots on pool hosts.  Slots of a role spread over the live hosts,
 * slots that run stay, dead hosts and hosts without room are skipped, and the answer is a pure
 * function of its input (every leader must compute the same one).
 */
#include "check.h"

#include <string.h>

#include "cl_err.h"
#include "cl_place.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_spread(void)
{
    cl_place_host_t hosts[] = {{"h0", 1, 0}, {"h1", 1, 0}};
    cl_place_slot_t slots[] = {
        {"c-database-0", "database", 1024, -1},
        {"c-server-0", "server", 1024, -1},
        {"c-server-1", "server", 1024, -1},
        {"c-balancer-0", "balancer", 1024, -1},
    };
    cl_err_t err;
    int per_host[2] = {0, 0};
    size_t i;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), slots, N(slots), &err), 0);
    for (i = 0; i < N(slots); i++) {
        if (CHECK(slots[i].host == 0 || slots[i].host == 1))
            per_host[slots[i].host]++;
    }
    /* the two servers do not share a host, and neither host is left empty */
    CHECK(slots[1].host != slots[2].host);
    CHECK_INT_EQ(per_host[0], 2);
    CHECK_INT_EQ(per_host[1], 2);

    /* the role spreads first: a host without a server wins even if it holds more slots */
    {
        cl_place_slot_t s3[] = {
            {"c-database-0", "database", 1, 1},
            {"c-database-1", "database", 1, 1},
            {"c-server-0", "server", 1, 0},
            {"c-server-1", "server", 1, -1},
        };
        CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), s3, N(s3), &err), 0);
        CHECK_INT_EQ(s3[3].host, 1);
    }

    /* a new slot goes to the host holding fewer slots, even if it is not the first */
    {
        cl_place_slot_t s2[] = {{"c-a-0", "a", 1, 0}, {"c-b-0", "b", 1, -1}};
        CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), s2, N(s2), &err), 0);
        CHECK_INT_EQ(s2[0].host, 0);
        CHECK_INT_EQ(s2[1].host, 1);
    }
}

static void test_kept(void)
{
    cl_place_host_t hosts[] = {{"h0", 1, 0}, {"h1", 1, 0}, {"h2", 1, 0}};
    /* both servers already run on h2: they stay there, the new one goes elsewhere */
    cl_place_slot_t slots[] = {
        {"c-server-0", "server", 1024, 2},
        {"c-server-1", "server", 1024, 2},
        {"c-server-2", "server", 1024, -1},
    };
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), slots, N(slots), &err), 0);
    CHECK_INT_EQ(slots[0].host, 2);
    CHECK_INT_EQ(slots[1].host, 2);
    CHECK_INT_EQ(slots[2].host, 0);
}

static void test_dead_hosts(void)
{
    cl_place_host_t hosts[] = {{"h0", 0, 0}, {"h1", 1, 0}, {"h2", 0, 0}};
    /* one slot was on a host that died: it is placed again, on the live one */
    cl_place_slot_t slots[] = {
        {"c-server-0", "server", 1024, 0},
        {"c-server-1", "server", 1024, -1},
        {"c-server-2", "server", 1024, 2},
    };
    cl_err_t err;
    size_t i;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), slots, N(slots), &err), 0);
    for (i = 0; i < N(slots); i++)
        CHECK_INT_EQ(slots[i].host, 1);

    /* all dead: nowhere to go, and the error says so */
    hosts[1].alive = 0;
    for (i = 0; i < N(slots); i++)
        slots[i].host = -1;
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), slots, N(slots), &err), -1);
    CHECK(err.domain != CL_ERR_NONE);
    CHECK_CONTAINS(err.msg, "no pool host");

    /* no hosts at all */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, 0, slots, N(slots), &err), -1);
    CHECK(err.domain != CL_ERR_NONE);
}

static void test_memory(void)
{
    /* h0 is first but too small for the slot: it goes to h1 */
    cl_place_host_t hosts[] = {{"h0", 1, 500}, {"h1", 1, 2000}};
    cl_place_slot_t one[] = {{"c-big-0", "big", 1000, -1}};
    cl_place_host_t two[] = {{"h0", 1, 1000}, {"h1", 1, 1000}};
    /* different roles would share a host by count alone; memory forbids it */
    cl_place_slot_t slots[] = {
        {"c-a-0", "a", 600, -1},
        {"c-b-0", "b", 600, -1},
        {"c-c-0", "c", 600, -1},
    };
    cl_place_host_t fit[] = {{"h0", 1, 1300}, {"h1", 1, 600}};
    cl_place_slot_t fits[] = {
        {"c-a-0", "a", 600, -1},
        {"c-a-1", "a", 600, -1},
        {"c-a-2", "a", 600, -1},
    };
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), one, N(one), &err), 0);
    CHECK_INT_EQ(one[0].host, 1);

    CHECK_INT_EQ(cl_place_compute(two, N(two), slots, N(slots), &err), -1);
    CHECK_CONTAINS(err.msg, "c-c-0");
    CHECK_CONTAINS(err.msg, "600");

    /* three fit exactly: 2 on h0 (1300 >= 1200), 1 on h1 */
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(fit, N(fit), fits, N(fits), &err), 0);
    CHECK_INT_EQ((fits[0].host == 0) + (fits[1].host == 0) + (fits[2].host == 0), 2);
    CHECK_INT_EQ((fits[0].host == 1) + (fits[1].host == 1) + (fits[2].host == 1), 1);

    /* free_kib 0 means unknown: no limit */
    {
        cl_place_host_t unk[] = {{"h0", 1, 0}};
        cl_place_slot_t huge[] = {{"c-a-0", "a", 1UL << 30, -1}};
        CHECK_INT_EQ(cl_place_compute(unk, N(unk), huge, N(huge), &err), 0);
        CHECK_INT_EQ(huge[0].host, 0);
    }
}

static void test_determinism(void)
{
    cl_place_host_t hosts[] = {{"h0", 1, 0}, {"h1", 1, 8000}, {"h2", 1, 0}, {"h3", 0, 0}};
    cl_place_slot_t a[7], b[7];
    static const char *const roles[] = {"db", "web", "web", "web", "lb", "db", "web"};
    char names[7][16];
    cl_err_t err;
    size_t i;
    int same = 1;

    for (i = 0; i < 7; i++) {
        snprintf(names[i], sizeof(names[i]), "c-%s-%zu", roles[i], i);
        a[i].name = names[i];
        a[i].role = roles[i];
        a[i].mem_kib = 1000 + 100 * i;
        a[i].host = i == 3 ? 2 : -1;
    }
    memcpy(b, a, sizeof(a));
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), a, 7, &err), 0);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), b, 7, &err), 0);
    for (i = 0; i < 7; i++) {
        same &= a[i].host == b[i].host;
        CHECK(a[i].host >= 0 && a[i].host <= 2);
    }
    CHECK(same);
    CHECK_INT_EQ(a[3].host, 2);
}

static void test_priority(void)
{
    /* nothing tells the hosts apart: the first (highest priority) wins */
    cl_place_host_t hosts[] = {{"h0", 1, 0}, {"h1", 1, 0}, {"h2", 1, 0}};
    cl_place_slot_t one[] = {{"c-a-0", "a", 1024, -1}};
    cl_place_host_t later[] = {{"h0", 0, 0}, {"h1", 1, 0}, {"h2", 1, 0}};
    cl_place_slot_t two[] = {{"c-a-0", "a", 1024, -1}};
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), one, N(one), &err), 0);
    CHECK_INT_EQ(one[0].host, 0);
    CHECK_INT_EQ(cl_place_compute(later, N(later), two, N(two), &err), 0);
    CHECK_INT_EQ(two[0].host, 1);
}

/* A slot leaving a host (the monitor's "another host") avoids it while another fits. */
static void test_not_on(void)
{
    cl_place_host_t hosts[] = {{"h0", 1, 0}, {"h1", 1, 0}, {"h2", 0, 0}};
    cl_place_slot_t a[] = {{"c-a-0", "a", 1, -1, 1}}; /* not on h0 */
    cl_place_slot_t b[] = {{"c-a-0", "a", 1, -1, 2}}; /* not on h1 */
    cl_place_slot_t only[] = {{"c-a-0", "a", 1, -1, 1}};
    cl_place_host_t one[] = {{"h0", 1, 0}, {"h1", 0, 0}};
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), a, N(a), &err), 0);
    CHECK_INT_EQ(a[0].host, 1);
    CHECK_INT_EQ(cl_place_compute(hosts, N(hosts), b, N(b), &err), 0);
    CHECK_INT_EQ(b[0].host, 0);
    /* nowhere else alive: it stays possible where it was */
    CHECK_INT_EQ(cl_place_compute(one, N(one), only, N(only), &err), 0);
    CHECK_INT_EQ(only[0].host, 0);
}

int main(void)
{
    test_not_on();
    test_spread();
    test_kept();
    test_dead_hosts();
    test_memory();
    test_determinism();
    test_priority();
    return check_summary();
}
