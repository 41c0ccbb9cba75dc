/*
 * cl_ident: hashing, UUIDs and MACs for slots (see cl_ident.h).
 */
#include "cl_ident.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

uint64_t cl_ident_hash(const char *s, uint64_t seed)
{
    uint64_t h = 1469598103934665603ULL ^ seed;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static uint64_t key_hash(const char *cloud, const char *slot, unsigned salt, uint64_t seed)
{
    char key[512];

    snprintf(key, sizeof(key), "%s/%s/%u", cloud, slot, salt);
    return cl_ident_hash(key, seed);
}

void cl_ident_uuid(const char *cloud, const char *slot, unsigned salt, char out[37])
{
    uint64_t hi = key_hash(cloud, slot, salt, 0x75756964ULL),
             lo = key_hash(cloud, slot, salt, 0x6c6f7775ULL);
    unsigned char b[16];
    int i;

    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char)(hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8: custom */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void cl_ident_mac_derived(const char *cloud, const char *slot, unsigned salt, char out[18])
{
    uint64_t h = key_hash(cloud, slot, salt, 0x6d6163ULL);

    snprintf(out, 18, "52:54:00:%02x:%02x:%02x", (unsigned)(h >> 16) & 0xff,
             (unsigned)(h >> 8) & 0xff, (unsigned)h & 0xff);
}

static int mac_parse(const char *s, uint64_t *v)
{
    unsigned int b[6];
    char tail;
    int i;

    if (!s || strlen(s) != 17 ||
        sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) !=
            6)
        return -1;
    for (i = 0; i < 17; i++)
        if ((i % 3 == 2) ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
            return -1;
    *v = 0;
    for (i = 0; i < 6; i++)
        *v = (*v << 8) | b[i];
    return 0;
}

int cl_ident_mac_offset(const char *start, unsigned long offset, char out[18], cl_err_t *err)
{
    uint64_t v;

    if (mac_parse(start, &v) < 0)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "derive MAC",
                          "starting_mac_address: '%s' is not a MAC address", start);
    if (v + offset > 0xffffffffffffULL)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "derive MAC",
                          "starting_mac_address: %s + %lu runs past ff:ff:ff:ff:ff:ff", start,
                          offset);
    v += offset;
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", (unsigned)(v >> 40) & 0xff,
             (unsigned)(v >> 32) & 0xff, (unsigned)(v >> 24) & 0xff, (unsigned)(v >> 16) & 0xff,
             (unsigned)(v >> 8) & 0xff, (unsigned)v & 0xff);
    return 0;
}

int cl_ident_mac_norm(char *mac)
{
    uint64_t v;
    char *p;

    if (mac_parse(mac, &v) < 0)
        return -1;
    for (p = mac; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return 0;
}
