/*
 * test_view: `cloudctl status` as people read it (cl_view), from made-up status documents at a
 * fixed time: the header (leader, epoch, whether this host acts, members, monitor, election),
 * the slot table (its columns aligned, within 100 columns, long cells cut with '~', control
 * characters never reaching the terminal), relative failure times, the summary line, colours
 * that change no alignment, and the read-only view.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cl_view.h"

#define NOW 1800000000000ULL /* ms since the epoch */

/* The view of doc (JSON text) as a new string. */
static char *render(const char *doc_text, int color, unsigned width, int readonly)
{
    json_object *doc = json_tokener_parse(doc_text);
    cl_view_opts_t o = {color, width, NOW, readonly};
    char *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);

    if (!doc)
        fprintf(stderr, "bad test document: %s\n", doc_text);
    cl_view_status(fp, doc, &o);
    fclose(fp);
    json_object_put(doc);
    return out;
}

/* The longest line of s, in characters. */
static size_t widest(const char *s)
{
    size_t w = 0, cur = 0;

    for (; *s; s++) {
        if (*s == '\n') {
            if (cur > w)
                w = cur;
            cur = 0;
        } else if (((unsigned char)*s & 0xC0) != 0x80) {
            cur++;
        }
    }
    return cur > w ? cur : w;
}

/* s without its SGR sequences (ESC [ ... m), in place. */
static char *strip_sgr(char *s)
{
    char *r = s, *w = s;

    while (*r) {
        if (r[0] == '\033' && r[1] == '[') {
            r += 2;
            while (*r && *r != 'm')
                r++;
            if (*r)
                r++;
            continue;
        }
        *w++ = *r++;
    }
    *w = '\0';
    return s;
}

/* The column where header appears in the table's header line, -1 if not found. */
static long column_of(const char *out, const char *header)
{
    const char *line = strstr(out, "  SLOT  "), *p;

    if (!line || !(p = strstr(line, header)))
        return -1;
    return p - line;
}

static const char *single =
    "{\"clouds\":[{\"name\":\"myweb\",\"type\":\"web\",\"state\":\"degraded\","
    "\"leader\":\"127.0.0.1\",\"epoch\":7,\"hypervisor\":\"test:///default\","
    "\"members\":[{\"host\":\"127.0.0.1\",\"alive\":true,\"self\":true,\"priority\":0}],"
    "\"slots\":["
    "{\"name\":\"myweb-database-0\",\"roles\":[\"database\"],\"host\":\"127.0.0.1\","
    "\"state\":\"running\",\"health\":\"ok\",\"restarts\":0,\"last_failure\":null},"
    "{\"name\":\"myweb-server-0\",\"roles\":[\"server\",\"extra\"],\"host\":\"127.0.0.1\","
    "\"state\":\"running\",\"health\":\"repairing\",\"restarts\":2,"
    "\"last_failure\":{\"time_ms\":1799999820000,\"text\":\"domain crashed\"}},"
    "{\"name\":\"myweb-balancer-0\",\"roles\":[\"balancer\"],\"host\":null,"
    "\"state\":\"shutoff\",\"health\":\"flapping\",\"restarts\":6,"
    "\"last_failure\":{\"time_ms\":1799996400000,\"text\":\"not running\"}}],"
    "\"repairs\":3,\"monitor\":{\"watching\":true,\"sweep_ms\":5000,\"events\":12}}]}";

static void test_single_host(void)
{
    char *out = render(single, 0, 0, 0);

    CHECK_CONTAINS(out, "Cloud myweb (web): degraded\n");
    CHECK_CONTAINS(out, "  hypervisor: test:///default\n");
    CHECK_CONTAINS(out, "  leader:     127.0.0.1 (this host), epoch 7; this host acts\n");
    CHECK_CONTAINS(out, "  members:    127.0.0.1 (this host, priority 0, leader)\n");
    CHECK_CONTAINS(out, "  monitor:    watching, sweep 5 s, 12 events; 3 repairs since the last "
                        "apply (cloudctl events myweb)\n");
    CHECK(strstr(out, "election:") == NULL); /* a cloud of one host has none */
    CHECK_CONTAINS(out, "\n  SLOT              ROLES         HOST       STATE    HEALTH     "
                        "RESTARTS  LAST FAILURE\n");
    CHECK_CONTAINS(out, "\n  myweb-database-0  database      127.0.0.1  running  ok         "
                        "       0  -\n");
    CHECK_CONTAINS(out, "\n  myweb-server-0    server,extra  127.0.0.1  running  repairing  "
                        "       2  3m ago: domain crashed\n");
    CHECK_CONTAINS(out, "\n  myweb-balancer-0  balancer      -          shutoff  flapping   "
                        "       6  1h ago: not running\n");
    /* every column where its header is */
    {
        const char *row = strstr(out, "\n  myweb-server-0 ") + 1;
        CHECK_INT_EQ(column_of(out, "ROLES"), strstr(row, "server,extra") - row);
        CHECK_INT_EQ(column_of(out, "HOST"), strstr(row, "127.0.0.1") - row);
        CHECK_INT_EQ(column_of(out, "STATE"), strstr(row, "running") - row);
        CHECK_INT_EQ(column_of(out, "HEALTH"), strstr(row, "repairing") - row);
        CHECK_INT_EQ(column_of(out, "RESTARTS") + 7, strstr(row, "2  3m") - row);
        CHECK_INT_EQ(column_of(out, "LAST FAILURE"), strstr(row, "3m ago") - row);
    }
    CHECK_CONTAINS(out, "\n  2/3 slots running, 1 shutoff, 1 repairing, 1 flapping\n");
    CHECK(widest(out) <= 100);
    CHECK(strchr(out, '\033') == NULL);
    free(out);
}

static void test_colour_keeps_alignment(void)
{
    char *plain = render(single, 0, 0, 0), *col = render(single, 1, 0, 0);

    CHECK_CONTAINS(col, "\033[32mrunning\033[0m");
    CHECK_CONTAINS(col, "\033[31mshutoff\033[0m");
    CHECK_CONTAINS(col, "\033[31mflapping\033[0m");
    CHECK_CONTAINS(col, "\033[33mrepairing\033[0m");
    CHECK_CONTAINS(col, "\033[1mCloud myweb\033[0m");
    CHECK_STR_EQ(strip_sgr(col), plain);
    free(plain);
    free(col);
}

static void test_fits_the_width(void)
{
    char doc[8192], longname[64], text[400];
    char *out;
    size_t i;

    memset(longname, 'n', 39);
    longname[39] = '\0';
    for (i = 0; i + 1 < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    text[sizeof(text) - 1] = '\0';
    text[5] = '\033'; /* a guest's text must not drive the terminal */
    text[9] = '\n';
    snprintf(doc, sizeof(doc),
             "{\"clouds\":[{\"name\":\"%s\",\"type\":\"cloud\",\"state\":\"running\","
             "\"leader\":\"2001:db8:ffff:ffff:ffff:ffff:ffff:1\",\"epoch\":1,"
             "\"hypervisor\":\"qemu+ssh://root@%%{host}/system\",\"members\":["
             "{\"host\":\"2001:db8:ffff:ffff:ffff:ffff:ffff:1\",\"alive\":true,\"priority\":0},"
             "{\"host\":\"2001:db8:ffff:ffff:ffff:ffff:ffff:2\",\"alive\":true,\"priority\":1},"
             "{\"host\":\"2001:db8:ffff:ffff:ffff:ffff:ffff:3\",\"alive\":true,\"self\":true,"
             "\"priority\":2}],"
             "\"slots\":[{\"name\":\"%s-compute-12\",\"roles\":[\"compute\",\"login\","
             "\"zookeeper\",\"memcache\"],\"host\":\"2001:db8:ffff:ffff:ffff:ffff:ffff:2\","
             "\"state\":\"running\",\"health\":\"ok\",\"restarts\":123,"
             "\"last_failure\":{\"time_ms\":1799000000000,\"text\":\"%s\"}}],"
             "\"monitor\":{\"watching\":false,\"sweep_ms\":5000,\"events\":0}}]}",
             longname, longname, "x");
    out = render(doc, 0, 0, 0);
    CHECK(widest(out) <= 100);
    CHECK_CONTAINS(out, "\n  members:    2001:db8:ffff:ffff:ffff:ffff:ffff:1 (alive, priority 0, "
                        "leader)\n              2001:db8");
    CHECK_CONTAINS(out, "11d ago: x");
    CHECK_CONTAINS(out, "idle (does not act)");
    free(out);
    /* a long failure text with control characters: cut, sanitised */
    {
        json_object *d = json_tokener_parse(doc), *lf;
        json_object *s = json_object_array_get_idx(
            json_object_object_get(
                json_object_array_get_idx(json_object_object_get(d, "clouds"), 0), "slots"),
            0);
        lf = json_object_object_get(s, "last_failure");
        json_object_object_add(lf, "text", json_object_new_string(text));
        out = render(json_object_to_json_string(d), 0, 0, 0);
        CHECK(widest(out) <= 100);
        CHECK(strchr(out, '\033') == NULL);
        CHECK_CONTAINS(out, "\n  nnnnnnnnnnnnnnnnnnn~  compute~  2001:db8:ffff:~  running  ok    "
                            "       123  11d ago: abcde?ghi?kl~\n");
        CHECK_CONTAINS(out, "~\n");
        free(out);
        out = render(json_object_to_json_string(d), 0, 80, 0);
        CHECK(widest(strstr(out, "  SLOT ")) <= 80); /* the table; a header line may be longer */
        CHECK_CONTAINS(out, "~\n");
        free(out);
        json_object_put(d);
    }
}

static void test_election(void)
{
    const char *doc =
        "{\"clouds\":[{\"name\":\"pw\",\"type\":\"cloud\",\"state\":\"running\","
        "\"leader\":\"127.0.0.2\",\"epoch\":3,\"hypervisor\":\"test:///default\","
        "\"members\":[{\"host\":\"127.0.0.2\",\"alive\":true,\"self\":false,\"priority\":0},"
        "{\"host\":\"127.0.0.3\",\"alive\":true,\"self\":false,\"priority\":1},"
        "{\"host\":\"127.0.0.4\",\"alive\":true,\"self\":true,\"priority\":2},"
        "{\"host\":\"127.0.0.5\",\"alive\":false,\"self\":false,\"priority\":3}],"
        "\"election\":{\"state\":\"follower\",\"leader\":\"127.0.0.2\",\"epoch\":3,"
        "\"acting\":false,\"members\":["
        "{\"host\":\"127.0.0.2\",\"priority\":0,\"self\":false,\"alive\":true,"
        "\"seen_by\":\"direct\",\"last_heard_ms_ago\":12},"
        "{\"host\":\"127.0.0.3\",\"priority\":1,\"self\":false,\"alive\":true,"
        "\"seen_by\":\"leader\",\"last_heard_ms_ago\":null},"
        "{\"host\":\"127.0.0.4\",\"priority\":2,\"self\":true,\"alive\":true,\"seen_by\":\"self\"},"
        "{\"host\":\"127.0.0.5\",\"priority\":3,\"self\":false,\"alive\":false,"
        "\"seen_by\":\"nobody\",\"last_heard_ms_ago\":1500}],"
        "\"counters\":{\"elections\":1,\"leader_changes\":2,\"drops\":{\"bad_mac\":2,"
        "\"replay\":1}}},"
        "\"slots\":[{\"name\":\"pw-node-0\",\"roles\":[\"node\"],\"host\":\"127.0.0.2\","
        "\"state\":\"running\",\"health\":\"ok\",\"restarts\":0,\"last_failure\":null}],"
        "\"repairs\":0,\"monitor\":{\"watching\":false,\"sweep_ms\":5000,\"events\":0}}]}";
    char *out = render(doc, 0, 0, 0), *col;

    CHECK_CONTAINS(out, "  leader:     127.0.0.2, epoch 3; this host follows\n");
    CHECK_CONTAINS(out, "127.0.0.2 (alive, priority 0, leader)");
    CHECK_CONTAINS(out, "127.0.0.3 (alive, says the leader, priority 1)");
    CHECK_CONTAINS(out, "127.0.0.4 (this host, priority 2)");
    CHECK_CONTAINS(out, "127.0.0.5 (silent for 1.5 s, priority 3)");
    CHECK_CONTAINS(out, "  election:   follower; 1 election, 2 leader changes, 3 dropped "
                        "messages\n");
    CHECK_CONTAINS(out, "  1/1 slots running\n");
    CHECK(widest(out) <= 100);
    col = render(doc, 1, 0, 0);
    CHECK_CONTAINS(col, "\033[31m127.0.0.5 (silent for 1.5 s, priority 3)\033[0m");
    free(col);
    free(out);
    /* the leader without its majority says so */
    {
        out = render("{\"clouds\":[{\"name\":\"pw\",\"type\":\"cloud\",\"state\":\"running\","
                     "\"leader\":\"127.0.0.2\",\"epoch\":4,\"members\":[{\"host\":\"127.0.0.2\","
                     "\"self\":true,\"alive\":true,\"priority\":0}],"
                     "\"election\":{\"state\":\"leader\",\"acting\":false,\"members\":[],"
                     "\"counters\":{}},\"slots\":[]}]}",
                     0, 0, 0);
        CHECK_CONTAINS(out, "127.0.0.2 (this host), epoch 4; no majority: this host does not act");
        CHECK_CONTAINS(out, "no slot declared");
        free(out);
    }
}

static void test_readonly_and_empty(void)
{
    const char *doc = "{\"clouds\":[{\"name\":\"mx\",\"type\":\"cloud\",\"state\":\"degraded\","
                      "\"leader\":\"127.0.0.1\",\"epoch\":1,\"hypervisor\":\"test:///default\","
                      "\"members\":[{\"host\":\"127.0.0.1\",\"alive\":true,\"self\":true,"
                      "\"priority\":0}],\"slots\":[{\"name\":\"mx-node-0\",\"roles\":[\"node\"],"
                      "\"host\":null,\"domain\":null,\"state\":\"missing\"}]}]}";
    char *out = render(doc, 0, 0, 1);

    CHECK_CONTAINS(out, "  monitor:    unknown (read-only view: no cloudd answers)\n");
    CHECK_CONTAINS(out, "  leader:     127.0.0.1 (this host), epoch 1; this host leads\n");
    CHECK_CONTAINS(out, "  mx-node-0  node   -     missing  -              -  -\n");
    CHECK_CONTAINS(out, "  0/1 slots running, 1 missing\n");
    free(out);
    out = render("{\"clouds\":[]}", 0, 0, 0);
    CHECK_STR_EQ(out, "no cloud on this host\n");
    free(out);
}

static void test_ago(void)
{
    char buf[32];

    CHECK_STR_EQ(cl_view_ago(NOW, NOW, buf, sizeof(buf)), "0s ago");
    CHECK_STR_EQ(cl_view_ago(NOW - 59999, NOW, buf, sizeof(buf)), "59s ago");
    CHECK_STR_EQ(cl_view_ago(NOW - 60000, NOW, buf, sizeof(buf)), "1m ago");
    CHECK_STR_EQ(cl_view_ago(NOW - 3599000, NOW, buf, sizeof(buf)), "59m ago");
    CHECK_STR_EQ(cl_view_ago(NOW - 3600000, NOW, buf, sizeof(buf)), "1h ago");
    CHECK_STR_EQ(cl_view_ago(NOW - 47 * 3600000ULL, NOW, buf, sizeof(buf)), "47h ago");
    CHECK_STR_EQ(cl_view_ago(NOW - 48 * 3600000ULL, NOW, buf, sizeof(buf)), "2d ago");
    CHECK_STR_EQ(cl_view_ago(NOW + 5000, NOW, buf, sizeof(buf)), "0s ago"); /* clock skew */
}

int main(void)
{
    test_single_host();
    test_colour_keeps_alignment();
    test_fits_the_width();
    test_election();
    test_readonly_and_empty();
    test_ago();
    return check_summary();
}
