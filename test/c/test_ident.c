/*
 * test_ident: identities of slots.  The same cloud/slot/salt gives the same UUID and MAC on
 * every run (that is what lets any leader recognise a slot), different inputs give different
 * ones, UUIDs are RFC 9562 version 8, and starting_mac_address arithmetic carries and stops.
 */
#include "check.h"

#include <ctype.h>
#include <string.h>

#include "cl_err.h"
#include "cl_ident.h"

static int uuid_well_formed(const char *u)
{
    size_t i;

    if (strlen(u) != 36)
        return 0;
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (u[i] != '-')
                return 0;
        } else if (!isxdigit((unsigned char)u[i]) || isupper((unsigned char)u[i])) {
            return 0;
        }
    }
    return 1;
}

static int mac_well_formed(const char *m)
{
    size_t i;

    if (strlen(m) != 17)
        return 0;
    for (i = 0; i < 17; i++)
        if (i % 3 == 2 ? m[i] != ':'
                       : !isxdigit((unsigned char)m[i]) || isupper((unsigned char)m[i]))
            return 0;
    return 1;
}

static void test_uuid(void)
{
    char a[37], b[37], c[37], d[37], e[37];
    char seen[200][37];
    char slot[64];
    size_t i, j, dup = 0, bad = 0;

    cl_ident_uuid("web", "web-server-0", 0, a);
    cl_ident_uuid("web", "web-server-0", 0, b);
    CHECK_STR_EQ(a, b);
    CHECK(uuid_well_formed(a));
    CHECK_INT_EQ(a[14], '8');          /* version 8 */
    CHECK(strchr("89ab", a[19]) != 0); /* variant 10 */

    cl_ident_uuid("web", "web-server-1", 0, c);
    cl_ident_uuid("web2", "web-server-0", 0, d);
    cl_ident_uuid("web", "web-server-0", 1, e);
    CHECK(strcmp(a, c) != 0);
    CHECK(strcmp(a, d) != 0);
    CHECK(strcmp(a, e) != 0);
    CHECK(strcmp(c, d) != 0);

    /* many slots: all well-formed, all version 8 variant 10, all distinct */
    for (i = 0; i < 200; i++) {
        snprintf(slot, sizeof(slot), "big-node-%zu", i);
        cl_ident_uuid("big", slot, 0, seen[i]);
        bad += !uuid_well_formed(seen[i]) || seen[i][14] != '8' || !strchr("89ab", seen[i][19]);
        for (j = 0; j < i; j++)
            dup += strcmp(seen[i], seen[j]) == 0;
    }
    CHECK_INT_EQ(bad, 0);
    CHECK_INT_EQ(dup, 0);
}

static void test_mac_derived(void)
{
    char a[18], b[18], c[18], d[18];

    cl_ident_mac_derived("web", "web-server-0", 0, a);
    cl_ident_mac_derived("web", "web-server-0", 0, b);
    CHECK_STR_EQ(a, b);
    CHECK(mac_well_formed(a));
    CHECK(strncmp(a, "52:54:00:", 9) == 0);
    cl_ident_mac_derived("web", "web-server-1", 0, c);
    cl_ident_mac_derived("web", "web-server-0", 1, d);
    CHECK(strncmp(c, "52:54:00:", 9) == 0);
    CHECK(strcmp(a, c) != 0);
    CHECK(strcmp(a, d) != 0);

    CHECK(cl_ident_hash("x", 1) == cl_ident_hash("x", 1));
    CHECK(cl_ident_hash("x", 1) != cl_ident_hash("x", 2));
    CHECK(cl_ident_hash("x", 1) != cl_ident_hash("y", 1));
}

static void test_mac_offset(void)
{
    char out[18];
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:01:00:00", 0, out, &err), 0);
    CHECK_STR_EQ(out, "52:54:00:01:00:00");
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:01:00:00", 5, out, &err), 0);
    CHECK_STR_EQ(out, "52:54:00:01:00:05");
    /* the carry crosses bytes */
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:01:00:ff", 1, out, &err), 0);
    CHECK_STR_EQ(out, "52:54:00:01:01:00");
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:ff:ff:ff", 1, out, &err), 0);
    CHECK_STR_EQ(out, "52:54:01:00:00:00");
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:01:00:00", 256 + 16, out, &err), 0);
    CHECK_STR_EQ(out, "52:54:00:01:01:10");
    /* upper case in, lower case out */
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:0A:00:FE", 1, out, &err), 0);
    CHECK_STR_EQ(out, "52:54:00:0a:00:ff");
    /* the last address is usable, the next is not */
    CHECK_INT_EQ(cl_ident_mac_offset("ff:ff:ff:ff:ff:fe", 1, out, &err), 0);
    CHECK_STR_EQ(out, "ff:ff:ff:ff:ff:ff");
    CHECK_INT_EQ(err.domain, CL_ERR_NONE);
    CHECK_INT_EQ(cl_ident_mac_offset("ff:ff:ff:ff:ff:fe", 2, out, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    CHECK_CONTAINS(err.msg, "starting_mac_address:");
    CHECK_CONTAINS(err.msg, "past ff:ff:ff:ff:ff:ff");
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ident_mac_offset("ff:ff:ff:ff:ff:ff", 1, out, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:01:00", 1, out, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    CHECK_CONTAINS(err.msg, "'52:54:00:01:00' is not a MAC address");
    CHECK_INT_EQ(cl_ident_mac_offset("52:54:00:01:00:+1", 1, out, &err), -1);
    CHECK_INT_EQ(cl_ident_mac_offset(NULL, 1, out, &err), -1);
}

static void test_mac_norm(void)
{
    char m1[] = "52:54:00:AB:cD:EF";
    char m2[] = "52:54:00:ab:cd";
    char m3[] = "52:54:00:ab:cd:eg";
    char m4[] = "52-54-00-ab-cd-ef";
    char m5[] = "52:54:00:ab:cd:ef:";

    CHECK_INT_EQ(cl_ident_mac_norm(m1), 0);
    CHECK_STR_EQ(m1, "52:54:00:ab:cd:ef");
    CHECK_INT_EQ(cl_ident_mac_norm(m2), -1);
    CHECK_STR_EQ(m2, "52:54:00:ab:cd");
    CHECK_INT_EQ(cl_ident_mac_norm(m3), -1);
    CHECK_INT_EQ(cl_ident_mac_norm(m4), -1);
    CHECK_INT_EQ(cl_ident_mac_norm(m5), -1);
}

int main(void)
{
    test_uuid();
    test_mac_derived();
    test_mac_offset();
    test_mac_norm();
    return check_summary();
}
