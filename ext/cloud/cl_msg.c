/*
 * cl_msg: encoding, signing and checking peer messages (doc/ELECTION.md, "Wire format").
 * The receiver trusts nothing before the HMAC verifies, and little after: the header is parsed
 * byte by byte within len, the JSON by json-c with a depth limit on at most CL_MSG_MAX bytes,
 * every field typed and range-checked.  Each reason to drop is counted in the receiver.
 */
#include "cl_msg.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MSG_ERR(err, ...) cl_err_set((err), CL_ERR_PROTO, 0, NULL, "peer message", __VA_ARGS__)
#define MAC_LEN 32 /* SHA-256 */

/* ---------------------------------------------------------------------------------------- */
/* Names                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static const char *const type_names[CL_MSG_TYPE_COUNT] = {
    [CL_MSG_HB] = "HB",
    [CL_MSG_HB_ACK] = "HB_ACK",
    [CL_MSG_ELECTION] = "ELECTION",
    [CL_MSG_ANSWER] = "ANSWER",
    [CL_MSG_COORDINATOR] = "COORDINATOR",
    [CL_MSG_COORD_ACK] = "COORD_ACK",
};

static const char *const drop_names[CL_MSG_DROP_COUNT] = {
    [CL_MSG_OK] = "ok",
    [CL_MSG_DROP_TRUNCATED] = "truncated",
    [CL_MSG_DROP_OVERSIZED] = "oversized",
    [CL_MSG_DROP_BAD_HEADER] = "bad_header",
    [CL_MSG_DROP_UNKNOWN_CLOUD] = "unknown_cloud",
    [CL_MSG_DROP_BAD_MAC] = "bad_mac",
    [CL_MSG_DROP_BAD_JSON] = "bad_json",
    [CL_MSG_DROP_BAD_FIELD] = "bad_field",
    [CL_MSG_DROP_UNKNOWN_TYPE] = "unknown_type",
    [CL_MSG_DROP_VERSION] = "version",
    [CL_MSG_DROP_REPLAY] = "replay",
    [CL_MSG_DROP_NOT_MEMBER] = "not_member",
    [CL_MSG_DROP_STALE_EPOCH] = "stale_epoch",
};

const char *cl_msg_type_name(cl_msg_type_t type)
{
    return (unsigned)type < CL_MSG_TYPE_COUNT ? type_names[type] : "?";
}

int cl_msg_type_from_name(const char *name)
{
    int i;

    for (i = 0; name && i < CL_MSG_TYPE_COUNT; i++)
        if (strcmp(name, type_names[i]) == 0)
            return i;
    return -1;
}

const char *cl_msg_drop_name(int reason)
{
    return reason >= 0 && reason < CL_MSG_DROP_COUNT ? drop_names[reason] : "?";
}

/* A cloud name as cl_spec_name_ok, without reading past n: [A-Za-z0-9][A-Za-z0-9_.-]*. */
static int name_char(char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return !first && (c == '_' || c == '.' || c == '-');
}

static int name_ok(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > CL_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (!name_char(s[i], i == 0))
            return 0;
    return 1;
}

static int mac_compute(const unsigned char *key, size_t keylen, const char *data, size_t n,
                       unsigned char mac[MAC_LEN])
{
    unsigned int maclen = 0;

    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, n, mac, &maclen) ||
        maclen != MAC_LEN)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Encoding                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* A JSON string literal of s into out[0..cap); -1 if it does not fit. */
static int json_quote(const char *s, char *out, size_t cap, size_t *n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (cap < 3)
        return -1;
    out[o++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (o + 7 >= cap)
            return -1;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    *n = o;
    return 0;
}

int cl_msg_encode(const cl_msg_t *m, const char *cloud, const unsigned char *key, size_t keylen,
                  char *buf, size_t cap, size_t *len, cl_err_t *err)
{
    char json[CL_MSG_MAX], sender[2 * CL_MSG_SENDER_MAX + 8], tail[64 + CL_MSG_LIVE_HEX_MAX];
    unsigned char mac[MAC_LEN];
    size_t slen, jlen, hlen, i, limit;
    int n;

    if (!m || !cloud || !buf || !len)
        return MSG_ERR(err, "encode: missing argument");
    if (!name_ok(cloud, strnlen(cloud, CL_NAME_MAX + 1)))
        return MSG_ERR(err, "encode: invalid cloud name '%.60s'", cloud);
    if (!key || keylen < CL_MSG_KEY_MIN || keylen > CL_MSG_KEY_MAX)
        return MSG_ERR(err, "encode: cloud %s: key of %zu bytes (%d..%d required)", cloud, keylen,
                       CL_MSG_KEY_MIN, CL_MSG_KEY_MAX);
    if ((unsigned)m->type >= CL_MSG_TYPE_COUNT)
        return MSG_ERR(err, "encode: unknown message type %d", (int)m->type);
    slen = strnlen(m->sender, sizeof(m->sender));
    if (slen == 0 || slen > CL_MSG_SENDER_MAX)
        return MSG_ERR(err, "encode: sender name empty or longer than %d", CL_MSG_SENDER_MAX);
    if (m->prio >= CL_MSG_POOL_MAX)
        return MSG_ERR(err, "encode: priority %u out of range", m->prio);
    if (m->epoch > CL_MSG_NUM_MAX || m->inc > CL_MSG_NUM_MAX || m->seq > CL_MSG_NUM_MAX ||
        (m->has_ack && m->ack_epoch > CL_MSG_NUM_MAX) ||
        (m->has_round && m->round > CL_MSG_NUM_MAX))
        return MSG_ERR(err, "encode: %s: a number is above %" PRIu64, type_names[m->type],
                       (uint64_t)CL_MSG_NUM_MAX);
    if ((m->type == CL_MSG_HB_ACK || m->type == CL_MSG_COORD_ACK) && !m->has_ack)
        return MSG_ERR(err, "encode: %s without the epoch acknowledged", type_names[m->type]);
    if (json_quote(m->sender, sender, sizeof(sender), &i) < 0)
        return MSG_ERR(err, "encode: sender name too long");
    sender[i] = '\0';

    tail[0] = '\0';
    if (m->has_ack && m->has_round)
        snprintf(tail, sizeof(tail), ",\"x\":%" PRIu64 ",\"r\":%" PRIu64, m->ack_epoch, m->round);
    else if (m->has_ack)
        snprintf(tail, sizeof(tail), ",\"x\":%" PRIu64, m->ack_epoch);
    else if (m->has_round)
        snprintf(tail, sizeof(tail), ",\"r\":%" PRIu64, m->round);
    if (m->has_live) {
        size_t tl = strlen(tail), ll = strnlen(m->live, sizeof(m->live));
        if (ll == 0 || ll > CL_MSG_LIVE_HEX_MAX || strspn(m->live, "0123456789abcdef") != ll)
            return MSG_ERR(err, "encode: %s: live set not 1..%d lowercase hex digits",
                           type_names[m->type], CL_MSG_LIVE_HEX_MAX);
        snprintf(tail + tl, sizeof(tail) - tl, ",\"l\":\"%s\"", m->live);
    }
    n = snprintf(json, sizeof(json),
                 "{\"v\":%d,\"t\":\"%s\",\"e\":%" PRIu64 ",\"s\":%s,\"p\":%u,\"i\":%" PRIu64
                 ",\"q\":%" PRIu64 "%s}",
                 CL_MSG_VERSION, type_names[m->type], m->epoch, sender, m->prio, m->inc, m->seq,
                 tail);
    if (n < 0 || (size_t)n >= sizeof(json))
        return MSG_ERR(err, "encode: %s from %s: message too long", type_names[m->type], sender);
    jlen = (size_t)n;
    if (mac_compute(key, keylen, json, jlen, mac) < 0)
        return MSG_ERR(err, "encode: HMAC-SHA256 failed");

    hlen = strlen(CL_MSG_MAGIC) + 1 + strlen(cloud) + 1 + CL_MSG_MAC_HEX + 1;
    limit = cap < CL_MSG_MAX ? cap : CL_MSG_MAX;
    if (hlen + jlen > limit)
        return MSG_ERR(err, "encode: %s for cloud %s: %zu bytes, above the limit of %zu",
                       type_names[m->type], cloud, hlen + jlen, limit);
    n = snprintf(buf, cap, "%s %s ", CL_MSG_MAGIC, cloud);
    for (i = 0; i < MAC_LEN; i++) {
        static const char hex[] = "0123456789abcdef";
        buf[n++] = hex[mac[i] >> 4];
        buf[n++] = hex[mac[i] & 15];
    }
    buf[n++] = ' ';
    memcpy(buf + n, json, jlen);
    *len = (size_t)n + jlen;
    if (*len < cap)
        buf[*len] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Receiver                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void cloud_clear(cl_msg_cloud_t *c)
{
    size_t i;

    if (c->key) {
        OPENSSL_cleanse(c->key, c->keylen);
        free(c->key);
    }
    for (i = 0; c->pool && i < c->npool; i++)
        free(c->pool[i]);
    free(c->pool);
    free(c->peers);
    memset(c, 0, sizeof(*c));
}

cl_msg_rx_t *cl_msg_rx_new(cl_err_t *err)
{
    cl_msg_rx_t *rx = calloc(1, sizeof(*rx));

    if (!rx) {
        MSG_ERR(err, "receiver: out of memory");
        return NULL;
    }
    rx->tok = json_tokener_new_ex(CL_MSG_JSON_DEPTH);
    if (!rx->tok) {
        free(rx);
        MSG_ERR(err, "receiver: out of memory");
        return NULL;
    }
    return rx;
}

void cl_msg_rx_free(cl_msg_rx_t *rx)
{
    size_t i;

    if (!rx)
        return;
    for (i = 0; i < rx->nclouds; i++)
        cloud_clear(&rx->clouds[i]);
    free(rx->clouds);
    if (rx->tok)
        json_tokener_free(rx->tok);
    free(rx);
}

static cl_msg_cloud_t *cloud_find(cl_msg_rx_t *rx, const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < rx->nclouds; i++)
        if (strlen(rx->clouds[i].name) == n && memcmp(rx->clouds[i].name, name, n) == 0)
            return &rx->clouds[i];
    return NULL;
}

int cl_msg_rx_add_cloud(cl_msg_rx_t *rx, const char *cloud, const unsigned char *key, size_t keylen,
                        const char *const *pool, size_t npool, cl_err_t *err)
{
    cl_msg_cloud_t c, *old;
    size_t i, j;
    int rc = -1;

    memset(&c, 0, sizeof(c));
    if (!rx || !cloud || !name_ok(cloud, strnlen(cloud, CL_NAME_MAX + 1)))
        return MSG_ERR(err, "add cloud: invalid cloud name '%.60s'", cloud ? cloud : "");
    if (!key || keylen < CL_MSG_KEY_MIN || keylen > CL_MSG_KEY_MAX)
        return MSG_ERR(err, "add cloud %s: key of %zu bytes (%d..%d required)", cloud, keylen,
                       CL_MSG_KEY_MIN, CL_MSG_KEY_MAX);
    if (!pool || npool == 0 || npool > CL_MSG_POOL_MAX)
        return MSG_ERR(err, "add cloud %s: pool of %zu entries (1..%d required)", cloud, npool,
                       CL_MSG_POOL_MAX);
    for (i = 0; i < npool; i++) {
        size_t n = pool[i] ? strnlen(pool[i], CL_MSG_SENDER_MAX + 1) : 0;
        if (n == 0 || n > CL_MSG_SENDER_MAX)
            return MSG_ERR(err, "add cloud %s: pool[%zu] empty or longer than %d", cloud, i,
                           CL_MSG_SENDER_MAX);
    }
    snprintf(c.name, sizeof(c.name), "%s", cloud);
    c.key = malloc(keylen);
    c.pool = calloc(npool, sizeof(*c.pool));
    c.peers = calloc(npool, sizeof(*c.peers));
    c.npool = npool;
    if (!c.key || !c.pool || !c.peers) {
        MSG_ERR(err, "add cloud %s: out of memory", cloud);
        goto cleanup;
    }
    memcpy(c.key, key, keylen);
    c.keylen = keylen;
    for (i = 0; i < npool; i++) {
        if (!(c.pool[i] = strdup(pool[i]))) {
            MSG_ERR(err, "add cloud %s: out of memory", cloud);
            goto cleanup;
        }
    }

    old = cloud_find(rx, cloud, strlen(cloud));
    if (old) {
        /* a new key or pool: what was accepted from a member still in it stays the floor */
        for (i = 0; i < npool; i++)
            for (j = 0; j < old->npool; j++)
                if (strcmp(c.pool[i], old->pool[j]) == 0)
                    c.peers[i] = old->peers[j];
        cloud_clear(old);
        *old = c;
    } else {
        cl_msg_cloud_t *grown = realloc(rx->clouds, (rx->nclouds + 1) * sizeof(*grown));
        if (!grown) {
            MSG_ERR(err, "add cloud %s: out of memory", cloud);
            goto cleanup;
        }
        rx->clouds = grown;
        rx->clouds[rx->nclouds++] = c;
    }
    memset(&c, 0, sizeof(c)); /* now owned by rx */
    rc = 0;
cleanup:
    cloud_clear(&c); /* what is left if not handed over */
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Decoding                                                                                  */
/* ---------------------------------------------------------------------------------------- */

typedef struct header {
    const char *cloud;
    size_t cloud_len;
    const char *mac_hex;
    const char *json;
    size_t json_len;
} header_t;

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase refused: one spelling of a MAC */
}

/* "CLOUD1 <name> <64 hex> <json>": running out of bytes is truncated, a wrong one bad_header. */
static int parse_header(const char *buf, size_t len, header_t *h)
{
    static const char magic[] = CL_MSG_MAGIC " ";
    size_t pos, start, i;

    for (pos = 0; pos < sizeof(magic) - 1; pos++) {
        if (pos >= len)
            return CL_MSG_DROP_TRUNCATED;
        if (buf[pos] != magic[pos])
            return CL_MSG_DROP_BAD_HEADER;
    }
    start = pos;
    for (; pos < len && buf[pos] != ' '; pos++)
        if (pos - start >= CL_NAME_MAX || !name_char(buf[pos], pos == start))
            return CL_MSG_DROP_BAD_HEADER;
    if (pos >= len)
        return CL_MSG_DROP_TRUNCATED;
    if (pos == start)
        return CL_MSG_DROP_BAD_HEADER;
    h->cloud = buf + start;
    h->cloud_len = pos - start;
    pos++;
    h->mac_hex = buf + pos;
    for (i = 0; i < CL_MSG_MAC_HEX; i++, pos++) {
        if (pos >= len)
            return CL_MSG_DROP_TRUNCATED;
        if (hex_val(buf[pos]) < 0)
            return CL_MSG_DROP_BAD_HEADER;
    }
    if (pos >= len)
        return CL_MSG_DROP_TRUNCATED;
    if (buf[pos] != ' ')
        return CL_MSG_DROP_BAD_HEADER;
    pos++;
    if (pos >= len)
        return CL_MSG_DROP_TRUNCATED;
    h->json = buf + pos;
    h->json_len = len - pos;
    return CL_MSG_OK;
}

/*
 * json-c keeps the last of duplicate keys; the protocol refuses them.  Count the members of
 * the top-level object in the text (one ':' each, outside strings, at depth 1; at any depth
 * when all is set) and compare with what json-c kept.  Only called on text json-c accepted in
 * strict mode, which still takes single-quoted names: a quote (or a slash) outside a string
 * answers SIZE_MAX, a mismatch.
 */
static size_t count_members(const char *s, size_t n, int all)
{
    size_t i, count = 0;
    int depth = 0, in_str = 0, esc = 0;

    for (i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"')
            in_str = 1;
        else if (c == '\'' || c == '/')
            return SIZE_MAX;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        else if (c == ':' && (all || depth == 1))
            count++;
    }
    return count;
}

/* A required (or optional) integer field in 0..max; BAD_FIELD otherwise. */
static int get_num(json_object *o, const char *key, int required, uint64_t max, uint64_t *out,
                   int *present)
{
    json_object *v;
    int64_t x;

    if (present)
        *present = 0;
    if (!json_object_object_get_ex(o, key, &v))
        return required ? CL_MSG_DROP_BAD_FIELD : CL_MSG_OK;
    if (!json_object_is_type(v, json_type_int))
        return CL_MSG_DROP_BAD_FIELD;
    /* json-c holds integers above INT64_MAX as uint64; get_int64 then answers INT64_MAX */
    x = json_object_get_int64(v);
    if (x < 0 || (uint64_t)x > max)
        return CL_MSG_DROP_BAD_FIELD;
    *out = (uint64_t)x;
    if (present)
        *present = 1;
    return CL_MSG_OK;
}

static int get_str(json_object *o, const char *key, size_t max, char *out, size_t cap)
{
    json_object *v;
    const char *s;
    int n;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return CL_MSG_DROP_BAD_FIELD;
    s = json_object_get_string(v);
    n = json_object_get_string_len(v);
    /* empty, too long, or an embedded NUL ("\u0000") */
    if (!s || n <= 0 || (size_t)n > max || (size_t)n >= cap || strlen(s) != (size_t)n)
        return CL_MSG_DROP_BAD_FIELD;
    memcpy(out, s, (size_t)n + 1);
    return CL_MSG_OK;
}

/* The fields of a parsed object into out; the drop reason or OK. */
static int read_fields(json_object *o, cl_msg_t *out)
{
    char type[16];
    uint64_t v = 0, prio = 0;
    int r, t;

    if ((r = get_num(o, "v", 1, CL_MSG_NUM_MAX, &v, NULL)))
        return r;
    if (v != CL_MSG_VERSION)
        return CL_MSG_DROP_VERSION;
    if ((r = get_str(o, "t", sizeof(type) - 1, type, sizeof(type))))
        return r;
    if ((t = cl_msg_type_from_name(type)) < 0)
        return CL_MSG_DROP_UNKNOWN_TYPE;
    out->type = (cl_msg_type_t)t;
    if ((r = get_num(o, "e", 1, CL_MSG_NUM_MAX, &out->epoch, NULL)) ||
        (r = get_str(o, "s", CL_MSG_SENDER_MAX, out->sender, sizeof(out->sender))) ||
        (r = get_num(o, "p", 1, CL_MSG_POOL_MAX - 1, &prio, NULL)) ||
        (r = get_num(o, "i", 1, CL_MSG_NUM_MAX, &out->inc, NULL)) ||
        (r = get_num(o, "q", 1, CL_MSG_NUM_MAX, &out->seq, NULL)) ||
        (r = get_num(o, "x", 0, CL_MSG_NUM_MAX, &out->ack_epoch, &out->has_ack)) ||
        (r = get_num(o, "r", 0, CL_MSG_NUM_MAX, &out->round, &out->has_round)))
        return r;
    out->prio = (unsigned)prio;
    if ((out->type == CL_MSG_HB_ACK || out->type == CL_MSG_COORD_ACK) && !out->has_ack)
        return CL_MSG_DROP_BAD_FIELD;
    out->has_live = json_object_object_get_ex(o, "l", NULL);
    if (out->has_live &&
        ((r = get_str(o, "l", CL_MSG_LIVE_HEX_MAX, out->live, sizeof(out->live))) ||
         strspn(out->live, "0123456789abcdef") != strlen(out->live)))
        return CL_MSG_DROP_BAD_FIELD;
    return CL_MSG_OK;
}

static int decode(cl_msg_rx_t *rx, const char *buf, size_t len, cl_msg_t *out)
{
    unsigned char mac[MAC_LEN], want[MAC_LEN];
    enum json_tokener_error jerr;
    json_object *obj = NULL;
    cl_msg_cloud_t *c;
    cl_msg_peer_t *peer;
    header_t h;
    size_t i;
    int r;

    if (len > CL_MSG_MAX)
        return CL_MSG_DROP_OVERSIZED;
    if (!buf || len == 0)
        return CL_MSG_DROP_TRUNCATED;
    if ((r = parse_header(buf, len, &h)))
        return r;
    if (!(c = cloud_find(rx, h.cloud, h.cloud_len)))
        return CL_MSG_DROP_UNKNOWN_CLOUD;
    for (i = 0; i < MAC_LEN; i++)
        want[i] = (unsigned char)(hex_val(h.mac_hex[2 * i]) << 4 | hex_val(h.mac_hex[2 * i + 1]));
    if (mac_compute(c->key, c->keylen, h.json, h.json_len, mac) < 0 ||
        CRYPTO_memcmp(mac, want, MAC_LEN) != 0)
        return CL_MSG_DROP_BAD_MAC;

    /* authenticated from here on, still not trusted */
    if (memchr(h.json, '\0', h.json_len))
        return CL_MSG_DROP_BAD_JSON;
    json_tokener_reset(rx->tok);
    json_tokener_set_flags(rx->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    obj = json_tokener_parse_ex(rx->tok, h.json, (int)h.json_len);
    jerr = json_tokener_get_error(rx->tok);
    if (!obj || jerr != json_tokener_success || json_tokener_get_parse_end(rx->tok) != h.json_len ||
        !json_object_is_type(obj, json_type_object) ||
        count_members(h.json, h.json_len, 0) != (size_t)json_object_object_length(obj)) {
        r = CL_MSG_DROP_BAD_JSON;
        goto cleanup;
    }
    memset(out, 0, sizeof(*out));
    if ((r = read_fields(obj, out)))
        goto cleanup;
    memcpy(out->cloud, h.cloud, h.cloud_len);
    out->cloud[h.cloud_len] = '\0';

    if (out->prio >= c->npool || strcmp(c->pool[out->prio], out->sender) != 0) {
        r = CL_MSG_DROP_NOT_MEMBER;
        goto cleanup;
    }
    peer = &c->peers[out->prio];
    if (peer->seen && (out->inc < peer->inc || (out->inc == peer->inc && out->seq <= peer->seq))) {
        r = CL_MSG_DROP_REPLAY;
        goto cleanup;
    }
    if (peer->seen && out->epoch < peer->epoch) {
        r = CL_MSG_DROP_STALE_EPOCH;
        goto cleanup;
    }
    peer->seen = 1;
    peer->inc = out->inc;
    peer->seq = out->seq;
    peer->epoch = out->epoch;
    r = CL_MSG_OK;
cleanup:
    json_object_put(obj); /* ours: json_tokener_parse_ex returned the only reference */
    return r;
}

int cl_msg_decode(cl_msg_rx_t *rx, const char *buf, size_t len, cl_msg_t *out)
{
    cl_msg_t scratch;
    int r;

    if (!rx)
        return CL_MSG_DROP_UNKNOWN_CLOUD;
    r = decode(rx, buf, len, out ? out : &scratch);
    if (r == CL_MSG_OK)
        rx->accepted++;
    else
        rx->drops[r]++;
    return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Key files                                                                                 */
/* ---------------------------------------------------------------------------------------- */

int cl_msg_key_load(const char *path, unsigned char *buf, size_t cap, size_t *len, cl_err_t *err)
{
    struct stat st;
    size_t n = 0;
    ssize_t got;
    char extra;
    int fd = -1, rc = -1;

    if (!path || !buf || !len)
        return MSG_ERR(err, "load key: missing argument");
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return cl_err_sys(err, NULL, "load key", "secret file %s", path);
    if (fstat(fd, &st) < 0) {
        cl_err_sys(err, NULL, "load key", "secret file %s", path);
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "load key", "secret file %s: not a regular file",
                   path);
        goto cleanup;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "load key",
                   "secret file %s: mode %04o gives access to group or others (chmod 600)", path,
                   (unsigned)(st.st_mode & 07777));
        goto cleanup;
    }
    while (n < cap) {
        got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            cl_err_sys(err, NULL, "load key", "secret file %s", path);
            goto cleanup;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n == cap && read(fd, &extra, 1) > 0) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "load key", "secret file %s: longer than %zu bytes",
                   path, cap);
        goto cleanup;
    }
    /* a trailing newline (echo, editors, Puppet's file resource) is not part of the secret */
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n < CL_MSG_KEY_MIN) {
        cl_err_set(err, CL_ERR_STATE, 0, NULL, "load key",
                   "secret file %s: %zu bytes, shorter than %d", path, n, CL_MSG_KEY_MIN);
        goto cleanup;
    }
    *len = n;
    rc = 0;
cleanup:
    if (rc < 0)
        OPENSSL_cleanse(buf, cap);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Shared with cl_rpc: the same MAC and the same JSON checks on the TCP transport            */
/* ---------------------------------------------------------------------------------------- */

int cl_msg_mac_hex(const unsigned char *key, size_t keylen, const char *data, size_t n,
                   char hex[CL_MSG_MAC_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[MAC_LEN];
    size_t i;

    if (!key || keylen < CL_MSG_KEY_MIN || keylen > CL_MSG_KEY_MAX || !data ||
        mac_compute(key, keylen, data, n, mac) < 0)
        return -1;
    for (i = 0; i < MAC_LEN; i++) {
        hex[2 * i] = digits[mac[i] >> 4];
        hex[2 * i + 1] = digits[mac[i] & 15];
    }
    hex[CL_MSG_MAC_HEX] = '\0';
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

int cl_msg_mac_ok(const unsigned char *key, size_t keylen, const char *data, size_t n,
                  const char *hex)
{
    unsigned char mac[MAC_LEN], want[MAC_LEN];
    size_t i;
    int ok;

    if (!key || keylen < CL_MSG_KEY_MIN || keylen > CL_MSG_KEY_MAX || !data || !hex)
        return 0;
    for (i = 0; i < CL_MSG_MAC_HEX; i++)
        if (hex_val(hex[i]) < 0)
            return 0;
    for (i = 0; i < MAC_LEN; i++)
        want[i] = (unsigned char)(hex_val(hex[2 * i]) << 4 | hex_val(hex[2 * i + 1]));
    ok = mac_compute(key, keylen, data, n, mac) == 0 && CRYPTO_memcmp(mac, want, MAC_LEN) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return ok;
}

/* Members of every object in o (depth bounded by the tokener that built it). */
static size_t tree_members(json_object *o)
{
    size_t n = 0, i, len;

    if (json_object_is_type(o, json_type_object)) {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            n += 1 + tree_members(v);
        }
    } else if (json_object_is_type(o, json_type_array)) {
        len = json_object_array_length(o);
        for (i = 0; i < len; i++)
            n += tree_members(json_object_array_get_idx(o, i));
    }
    return n;
}

int cl_msg_parse_object(struct json_tokener *tok, const char *text, size_t n, json_object **out)
{
    json_object *obj = NULL;

    *out = NULL;
    if (!tok || !text || n == 0 || n > INT32_MAX || memchr(text, '\0', n))
        return CL_MSG_DROP_BAD_JSON;
    json_tokener_reset(tok);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    obj = json_tokener_parse_ex(tok, text, (int)n);
    if (!obj || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) != n || !json_object_is_type(obj, json_type_object) ||
        count_members(text, n, 1) != tree_members(obj)) {
        json_object_put(obj);
        return CL_MSG_DROP_BAD_JSON;
    }
    *out = obj; /* the only reference: the caller puts it */
    return CL_MSG_OK;
}
