/*
 * test_msg: the peer wire format.  Messages round-trip; every reason to drop is provoked and
 * counted (header, MAC, JSON, fields, ranges, version, replay, membership, stale epochs);
 * random and mutated datagrams never crash nor pass; key files are checked for mode and size.
 */
#include "check.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_err.h"
#include "cl_msg.h"

static const unsigned char KEY[] = "0123456789abcdef-secret";
static const unsigned char KEY2[] = "another-secret-of-32-bytes......";
#define KEYLEN (sizeof(KEY) - 1)
#define KEY2LEN (sizeof(KEY2) - 1)
static const char *const POOL[] = {"h0", "h1", "h\"2\\"};
#define NPOOL 3

static cl_msg_rx_t *new_rx(void)
{
    cl_msg_rx_t *rx;
    cl_err_t err;

    cl_err_clear(&err);
    rx = cl_msg_rx_new(&err);
    if (!CHECK(rx))
        exit(1);
    CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "web", KEY, KEYLEN, POOL, NPOOL, &err), 0);
    CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "db.2", KEY2, KEY2LEN, POOL, 2, &err), 0);
    return rx;
}

static cl_msg_t msg(cl_msg_type_t type, unsigned prio, uint64_t inc, uint64_t seq, uint64_t epoch)
{
    cl_msg_t m;

    memset(&m, 0, sizeof(m));
    m.type = type;
    m.prio = prio;
    snprintf(m.sender, sizeof(m.sender), "%s", POOL[prio]);
    m.inc = inc;
    m.seq = seq;
    m.epoch = epoch;
    if (type == CL_MSG_HB_ACK || type == CL_MSG_COORD_ACK) {
        m.has_ack = 1;
        m.ack_epoch = epoch;
    }
    return m;
}

static size_t enc(const cl_msg_t *m, const char *cloud, char *buf, size_t cap)
{
    cl_err_t err;
    size_t len = 0;

    cl_err_clear(&err);
    if (!CHECK_INT_EQ(cl_msg_encode(m, cloud, KEY, KEYLEN, buf, cap, &len, &err), 0))
        fprintf(stderr, "  encode: %s\n", err.msg);
    return len;
}

/* "CLOUD1 <cloud> <hmac(json)> <json>" for any json: signed garbage for the parser */
static size_t sign(const char *cloud, const unsigned char *key, size_t keylen, const char *json,
                   size_t jlen, char *buf, size_t cap)
{
    unsigned char mac[32];
    unsigned int maclen = 0;
    size_t n, i;

    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)json, jlen, mac, &maclen);
    n = (size_t)snprintf(buf, cap, "CLOUD1 %s ", cloud);
    for (i = 0; i < 32; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%02x", mac[i]);
    buf[n++] = ' ';
    memcpy(buf + n, json, jlen);
    return n + jlen;
}

/* Decode signed json in a fresh receiver; the drop reason. */
static int decode_json(const char *json)
{
    char buf[4096];
    cl_msg_rx_t *rx = new_rx();
    cl_msg_t out;
    size_t n = sign("web", KEY, KEYLEN, json, strlen(json), buf, sizeof(buf));
    int r = cl_msg_decode(rx, buf, n, &out);

    if (r > 0)
        CHECK_INT_EQ(rx->drops[r], 1);
    cl_msg_rx_free(rx);
    return r;
}

#define GOOD "\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1"

static void test_round_trip(void)
{
    cl_msg_rx_t *rx = new_rx();
    char buf[CL_MSG_MAX + 1];
    cl_msg_t m, out;
    size_t len;
    int t;

    for (t = 0; t < CL_MSG_TYPE_COUNT; t++) {
        m = msg((cl_msg_type_t)t, (unsigned)t % NPOOL, 7, 100 + (uint64_t)t, 40 + (uint64_t)t);
        if (t % 2) {
            m.has_round = 1;
            m.round = 1000 + (uint64_t)t;
        }
        len = enc(&m, "web", buf, sizeof(buf));
        CHECK(len > 0 && len <= CL_MSG_MAX);
        CHECK_INT_EQ(strlen(buf), len);
        CHECK(strncmp(buf, "CLOUD1 web ", 11) == 0);
        if (!CHECK_INT_EQ(cl_msg_decode(rx, buf, len, &out), CL_MSG_OK))
            continue;
        CHECK_INT_EQ(out.type, t);
        CHECK_STR_EQ(out.cloud, "web");
        CHECK_STR_EQ(out.sender, POOL[t % NPOOL]);
        CHECK_INT_EQ(out.prio, t % NPOOL);
        CHECK_INT_EQ(out.inc, 7);
        CHECK_INT_EQ(out.seq, 100 + t);
        CHECK_INT_EQ(out.epoch, 40 + t);
        CHECK_INT_EQ(out.has_ack, m.has_ack);
        CHECK_INT_EQ(out.ack_epoch, m.ack_epoch);
        CHECK_INT_EQ(out.has_round, m.has_round);
        CHECK_INT_EQ(out.round, m.round);
    }
    CHECK_INT_EQ(rx->accepted, CL_MSG_TYPE_COUNT);
    /* the largest numbers allowed travel */
    m = msg(CL_MSG_HB_ACK, 0, CL_MSG_NUM_MAX, CL_MSG_NUM_MAX, CL_MSG_NUM_MAX);
    m.has_round = 1;
    m.round = CL_MSG_NUM_MAX;
    len = enc(&m, "db.2", buf, sizeof(buf));
    CHECK(len > 0);
    {
        size_t n = 0;
        cl_err_t err;
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_msg_encode(&m, "db.2", KEY2, KEY2LEN, buf, sizeof(buf), &n, &err), 0);
        CHECK_INT_EQ(cl_msg_decode(rx, buf, n, &out), CL_MSG_OK);
        CHECK_INT_EQ(out.epoch, CL_MSG_NUM_MAX);
        CHECK_INT_EQ(out.round, CL_MSG_NUM_MAX);
        CHECK_STR_EQ(out.cloud, "db.2");
    }
    /* names */
    CHECK_STR_EQ(cl_msg_type_name(CL_MSG_COORD_ACK), "COORD_ACK");
    CHECK_INT_EQ(cl_msg_type_from_name("ELECTION"), CL_MSG_ELECTION);
    CHECK_INT_EQ(cl_msg_type_from_name("election"), -1);
    CHECK_STR_EQ(cl_msg_drop_name(CL_MSG_DROP_STALE_EPOCH), "stale_epoch");
    CHECK_STR_EQ(cl_msg_drop_name(CL_MSG_DROP_COUNT), "?");
    for (t = 1; t < CL_MSG_DROP_COUNT; t++) {
        int u;
        CHECK(strcmp(cl_msg_drop_name(t), "?") != 0);
        for (u = 1; u < t; u++)
            CHECK(strcmp(cl_msg_drop_name(t), cl_msg_drop_name(u)) != 0);
    }
    cl_msg_rx_free(rx);
    cl_msg_rx_free(NULL);
}

/* A heartbeat's live set survives the trip; a bad one is not encoded. */
static void test_live_set(void)
{
    cl_msg_rx_t *rx = new_rx();
    char buf[CL_MSG_MAX + 1];
    cl_msg_t m = msg(CL_MSG_HB, 1, 1, 1, 4), out;
    cl_err_t err;
    size_t len;

    m.has_live = 1;
    snprintf(m.live, sizeof(m.live), "%s", "5");
    len = enc(&m, "web", buf, sizeof(buf));
    if (CHECK_INT_EQ(cl_msg_decode(rx, buf, len, &out), CL_MSG_OK)) {
        CHECK_INT_EQ(out.has_live, 1);
        CHECK_STR_EQ(out.live, "5");
    }
    m = msg(CL_MSG_HB, 1, 1, 2, 4);
    len = enc(&m, "web", buf, sizeof(buf));
    if (CHECK_INT_EQ(cl_msg_decode(rx, buf, len, &out), CL_MSG_OK))
        CHECK_INT_EQ(out.has_live, 0);
    m.has_live = 1;
    snprintf(m.live, sizeof(m.live), "%s", "xyz");
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "live set");
    cl_msg_rx_free(rx);
}

static void test_encode_errors(void)
{
    char buf[CL_MSG_MAX], small[40];
    cl_msg_t m = msg(CL_MSG_HB, 0, 1, 1, 1);
    cl_err_t err;
    size_t len;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_msg_encode(&m, "bad/name", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "bad/name");
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, 8, buf, sizeof(buf), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "key of 8 bytes");
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, small, sizeof(small), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "above the limit");
    m.epoch = CL_MSG_NUM_MAX + 1;
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    m = msg(CL_MSG_COORD_ACK, 0, 1, 1, 1);
    m.has_ack = 0;
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "COORD_ACK");
    m = msg(CL_MSG_HB, 0, 1, 1, 1);
    m.sender[0] = '\0';
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    m = msg(CL_MSG_HB, 0, 1, 1, 1);
    m.type = CL_MSG_TYPE_COUNT;
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    /* a sender of control characters escaped six-fold still fits CL_MSG_MAX: checked */
    m = msg(CL_MSG_HB, 0, 1, 1, 1);
    memset(m.sender, '\x01', CL_MSG_SENDER_MAX);
    m.sender[CL_MSG_SENDER_MAX] = '\0';
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY, KEYLEN, buf, sizeof(buf), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "too long");
}

/* Each drop reason, one datagram each, counted once in one receiver. */
static void test_drops(void)
{
    cl_msg_rx_t *rx = new_rx();
    char buf[2 * CL_MSG_MAX], bad[2 * CL_MSG_MAX];
    cl_msg_t m, out;
    size_t len, hdr;
    uint64_t want[CL_MSG_DROP_COUNT];
    cl_err_t err;
    int r;

    memset(want, 0, sizeof(want));
#define EXPECT(b, n, reason)                                                                       \
    do {                                                                                           \
        r = cl_msg_decode(rx, (b), (n), &out);                                                     \
        if (!CHECK_INT_EQ(r, reason))                                                              \
            fprintf(stderr, "  got %s, want %s\n", cl_msg_drop_name(r), cl_msg_drop_name(reason)); \
        want[reason]++;                                                                            \
    } while (0)

    m = msg(CL_MSG_HB, 1, 3, 10, 20);
    len = enc(&m, "web", buf, sizeof(buf));
    hdr = strlen("CLOUD1 web ") + 64 + 1;

    /* wrong key: the same bytes signed for "web" with the key of "db.2" */
    {
        size_t n = 0;
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY2, KEY2LEN, bad, sizeof(bad), &n, &err), 0);
        EXPECT(bad, n, CL_MSG_DROP_BAD_MAC);
    }
    /* a flipped byte in the JSON, then in the MAC */
    memcpy(bad, buf, len);
    bad[len - 3] ^= 1;
    EXPECT(bad, len, CL_MSG_DROP_BAD_MAC);
    memcpy(bad, buf, len);
    bad[hdr - 2] = bad[hdr - 2] == '0' ? '1' : '0';
    EXPECT(bad, len, CL_MSG_DROP_BAD_MAC);
    /* cut anywhere: up to the JSON it is "truncated", inside the JSON the MAC fails */
    {
        size_t n;
        for (n = 0; n < len; n++) {
            r = cl_msg_decode(rx, buf, n, &out);
            if (!CHECK_INT_EQ(r, n <= hdr ? CL_MSG_DROP_TRUNCATED : CL_MSG_DROP_BAD_MAC))
                fprintf(stderr, "  prefix of %zu bytes: %s\n", n, cl_msg_drop_name(r));
            want[r > 0 ? r : 0]++;
        }
    }
    EXPECT(NULL, 0, CL_MSG_DROP_TRUNCATED);
    /* oversized: one byte over the limit, whatever the content */
    memset(bad, ' ', sizeof(bad));
    memcpy(bad, buf, len);
    EXPECT(bad, CL_MSG_MAX + 1, CL_MSG_DROP_OVERSIZED);
    EXPECT(bad, sizeof(bad), CL_MSG_DROP_OVERSIZED);
    /* bad headers */
    {
        static const char *const heads[] = {
            "CLOUD2 web ",  "cloud1 web ",  "CLOUD1  web ", "CLOUD1 w/b ",
            "CLOUD1 -web ", "CLOUD1\tweb ", "CLOUD1 web\t", "CLOUD1 we\x80 ",
        };
        size_t i;
        for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
            size_t hl = strlen(heads[i]);
            memcpy(bad, heads[i], hl);
            memcpy(bad + hl, buf + 11, len - 11);
            r = cl_msg_decode(rx, bad, hl + len - 11, &out);
            if (!CHECK_INT_EQ(r, CL_MSG_DROP_BAD_HEADER))
                fprintf(stderr, "  header \"%s\": %s\n", heads[i], cl_msg_drop_name(r));
            want[CL_MSG_DROP_BAD_HEADER]++;
        }
        /* uppercase hex, a non-hex digit, no space after the MAC, a 41-character name */
        memcpy(bad, buf, len);
        bad[11] = (char)(bad[11] >= 'a' ? bad[11] - 32 : 'G');
        EXPECT(bad, len, CL_MSG_DROP_BAD_HEADER);
        memcpy(bad, buf, len);
        bad[20] = 'g';
        EXPECT(bad, len, CL_MSG_DROP_BAD_HEADER);
        memcpy(bad, buf, len);
        bad[hdr - 1] = '{';
        EXPECT(bad, len, CL_MSG_DROP_BAD_HEADER);
        snprintf(bad, sizeof(bad), "CLOUD1 %041d %064d {}", 0, 0);
        EXPECT(bad, strlen(bad), CL_MSG_DROP_BAD_HEADER);
    }
    /* unknown cloud: valid for a cloud this receiver has no key for */
    {
        size_t n = 0;
        CHECK_INT_EQ(cl_msg_encode(&m, "other", KEY, KEYLEN, bad, sizeof(bad), &n, &err), 0);
        EXPECT(bad, n, CL_MSG_DROP_UNKNOWN_CLOUD);
    }
    /* the genuine one still passes after all that, and only once */
    EXPECT(buf, len, CL_MSG_OK);
    EXPECT(buf, len, CL_MSG_DROP_REPLAY);
    /* lower seq, same incarnation; higher seq, lower incarnation: replays */
    m.seq = 9;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_DROP_REPLAY);
    m.inc = 2;
    m.seq = 1000;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_DROP_REPLAY);
    /* a new incarnation starts its seq again */
    m.inc = 4;
    m.seq = 1;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_OK);
    /* stale epoch: below what that sender said before; another sender is not affected */
    m.seq = 2;
    m.epoch = 19;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_DROP_STALE_EPOCH);
    m.seq = 3;
    m.epoch = 20;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_OK);
    m = msg(CL_MSG_ANSWER, 2, 1, 1, 3);
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_OK);
    CHECK_STR_EQ(out.sender, "h\"2\\");
    /* the stale one was not recorded: the next seq is accepted */
    m = msg(CL_MSG_HB, 1, 4, 3, 20);
    m.seq = 4;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_OK);
    /* not a member: a name not in the pool, a name at another priority, a priority past it */
    m = msg(CL_MSG_HB, 1, 1, 1, 1);
    snprintf(m.sender, sizeof(m.sender), "intruder");
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_DROP_NOT_MEMBER);
    m = msg(CL_MSG_HB, 1, 1, 1, 1);
    m.prio = 0;
    len = enc(&m, "web", buf, sizeof(buf));
    EXPECT(buf, len, CL_MSG_DROP_NOT_MEMBER);
    m.prio = 2; /* "db.2" has two members */
    snprintf(m.sender, sizeof(m.sender), "%s", POOL[2]);
    {
        size_t n = 0;
        CHECK_INT_EQ(cl_msg_encode(&m, "db.2", KEY2, KEY2LEN, bad, sizeof(bad), &n, &err), 0);
        EXPECT(bad, n, CL_MSG_DROP_NOT_MEMBER);
    }

    {
        int i;
        for (i = 1; i < CL_MSG_DROP_COUNT; i++)
            if (!CHECK_INT_EQ(rx->drops[i], want[i]))
                fprintf(stderr, "  counter %s\n", cl_msg_drop_name(i));
        CHECK_INT_EQ(rx->accepted, want[0]);
    }
#undef EXPECT
    cl_msg_rx_free(rx);
}

/* Authenticated but malformed: the JSON and field checks. */
static void test_json_and_fields(void)
{
    static const struct {
        const char *json;
        int reason;
    } cases[] = {
        {"{" GOOD "}", CL_MSG_OK},
        {"{" GOOD ",\"zz\":{\"a\":[1,2,{\"b\":null}]},\"x\":5}", CL_MSG_OK}, /* unknown ignored */
        {"  {" GOOD "}", CL_MSG_OK},
        /* not one JSON object */
        {"hello", CL_MSG_DROP_BAD_JSON},
        {"[1,2]", CL_MSG_DROP_BAD_JSON},
        {"5", CL_MSG_DROP_BAD_JSON},
        {"{" GOOD "} \n", CL_MSG_OK}, /* json-c eats trailing white space */
        {"{" GOOD "}{}", CL_MSG_DROP_BAD_JSON},
        {"{" GOOD, CL_MSG_DROP_BAD_JSON},
        {"{" GOOD ",}", CL_MSG_DROP_BAD_JSON},
        {"{'v':1}", CL_MSG_DROP_BAD_JSON}, /* json-c takes it, the duplicate check not */
        {"{'v\"':1," GOOD ",\"v\":2}", CL_MSG_DROP_BAD_JSON},
        {"{" GOOD ",\"z\":NaN}", CL_MSG_OK},
        {"{" GOOD ",\"z\":[[[[[[[[[1]]]]]]]]]}", CL_MSG_DROP_BAD_JSON}, /* too deep */
        {"{" GOOD ",\"v\":1}", CL_MSG_DROP_BAD_JSON},                   /* duplicate key */
        {"{\"s\":\"h0\"," GOOD "}", CL_MSG_DROP_BAD_JSON},              /* duplicate key */
        {"{" GOOD ",\"z\":\"\xff\xfe\"}", CL_MSG_DROP_BAD_JSON},        /* not UTF-8 */
        {"{" GOOD ",\"z\":0123}", CL_MSG_DROP_BAD_JSON},                /* leading zero */
        {"{" GOOD ",\"z\":99999999999999999999999}", CL_MSG_OK},        /* unknown: ignored */
        /* "l", a leader's live set: lowercase hex digits, 1..CL_MSG_LIVE_HEX_MAX of them */
        {"{" GOOD ",\"l\":\"0f3\"}", CL_MSG_OK},
        {"{" GOOD ",\"l\":\"\"}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"l\":\"0F\"}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"l\":\"0g\"}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"l\":7}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"l\":\"0\\u00001\"}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"l\":\"00000000000000000000000000000000000000000000000000000000000000001\"}",
         CL_MSG_DROP_BAD_FIELD}, /* 65 digits */
        /* version first, then type */
        {"{\"v\":2,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_VERSION},
        {"{\"v\":0,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_VERSION},
        {"{\"v\":-1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":\"1\",\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}", CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"NOPE\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_UNKNOWN_TYPE},
        {"{\"v\":1,\"t\":\"hb\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_UNKNOWN_TYPE},
        {"{\"v\":1,\"t\":\"HB_ACK_AND_MORE_TEXT\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":3,\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}", CL_MSG_DROP_BAD_FIELD},
        /* wrong types */
        {"{\"v\":1,\"t\":\"HB\",\"e\":\"5\",\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":7,\"p\":1,\"i\":1,\"q\":1}", CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1.0,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":true,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":null}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":[1]}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"x\":\"5\"}", CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"r\":{}}", CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB_ACK\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD}, /* an ack without x */
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\\u0000x\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD}, /* embedded NUL */
        /* out of range */
        {"{\"v\":1,\"t\":\"HB\",\"e\":-1,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":4611686018427387905,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD}, /* 2^62 + 1 */
        {"{\"v\":1,\"t\":\"HB\",\"e\":9223372036854775807,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":18446744073709551615,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":99999999999999999999999,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":"
         "1}",
         CL_MSG_DROP_BAD_FIELD}, /* json-c clamps it to UINT64_MAX */
        {"{\"v\":1,\"t\":\"HB\",\"e\":-9223372036854775809,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":-9223372036854775808,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":-1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1024,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":1,\"i\":-3,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{\"v\":1,\"t\":\"HB\",\"e\":5e3,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
         CL_MSG_DROP_BAD_FIELD},
        {"{" GOOD ",\"x\":-5}", CL_MSG_DROP_BAD_FIELD},
        /* a priority inside the range but past the pool: membership */
        {"{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"h1\",\"p\":3,\"i\":1,\"q\":1}",
         CL_MSG_DROP_NOT_MEMBER},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int r = decode_json(cases[i].json);
        if (!CHECK_INT_EQ(r, cases[i].reason))
            fprintf(stderr, "  %s: got %s, want %s\n", cases[i].json, cl_msg_drop_name(r),
                    cl_msg_drop_name(cases[i].reason));
    }
    /* a sender name of 256 characters is refused, 255 accepted (but not a member) */
    {
        char json[1200], name[300];
        memset(name, 'a', sizeof(name));
        name[256] = '\0';
        snprintf(json, sizeof(json),
                 "{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"%s\",\"p\":1,\"i\":1,\"q\":1}", name);
        CHECK_INT_EQ(decode_json(json), CL_MSG_DROP_BAD_FIELD);
        name[255] = '\0';
        snprintf(json, sizeof(json),
                 "{\"v\":1,\"t\":\"HB\",\"e\":5,\"s\":\"%s\",\"p\":1,\"i\":1,\"q\":1}", name);
        CHECK_INT_EQ(decode_json(json), CL_MSG_DROP_NOT_MEMBER);
    }
    /* a NUL byte in the signed JSON */
    {
        static const char json[] = "{" GOOD ",\"z\":1}";
        char buf[512], copy[sizeof(json)];
        cl_msg_rx_t *rx = new_rx();
        cl_msg_t out;
        size_t n;
        memcpy(copy, json, sizeof(json));
        copy[sizeof(json) - 4] = '\0';
        n = sign("web", KEY, KEYLEN, copy, sizeof(json) - 1, buf, sizeof(buf));
        CHECK_INT_EQ(cl_msg_decode(rx, buf, n, &out), CL_MSG_DROP_BAD_JSON);
        cl_msg_rx_free(rx);
    }
}

/* Replacing a cloud's key keeps what was accepted from members still in the pool. */
static void test_rekey(void)
{
    cl_msg_rx_t *rx = new_rx();
    static const char *const pool2[] = {"h1", "h9"};
    char buf[CL_MSG_MAX];
    cl_msg_t m = msg(CL_MSG_HB, 1, 1, 5, 5), out;
    cl_err_t err;
    size_t len = enc(&m, "web", buf, sizeof(buf)), n = 0;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_msg_decode(rx, buf, len, &out), CL_MSG_OK);
    CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "web", KEY2, KEY2LEN, pool2, 2, &err), 0);
    CHECK_INT_EQ(rx->nclouds, 2);
    CHECK_INT_EQ(cl_msg_decode(rx, buf, len, &out), CL_MSG_DROP_BAD_MAC); /* old key */
    m.prio = 0;                                                           /* h1 moved up */
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY2, KEY2LEN, buf, sizeof(buf), &n, &err), 0);
    CHECK_INT_EQ(cl_msg_decode(rx, buf, n, &out), CL_MSG_DROP_REPLAY);
    m.seq = 6;
    CHECK_INT_EQ(cl_msg_encode(&m, "web", KEY2, KEY2LEN, buf, sizeof(buf), &n, &err), 0);
    CHECK_INT_EQ(cl_msg_decode(rx, buf, n, &out), CL_MSG_OK);
    /* refusals */
    CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "web", KEY, 15, pool2, 2, &err), -1);
    CHECK_CONTAINS(err.msg, "key of 15 bytes");
    CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "we b", KEY, KEYLEN, pool2, 2, &err), -1);
    CHECK_CONTAINS(err.msg, "we b");
    CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "web", KEY, KEYLEN, pool2, 0, &err), -1);
    {
        static const char *const holes[] = {"h1", ""};
        CHECK_INT_EQ(cl_msg_rx_add_cloud(rx, "web", KEY, KEYLEN, holes, 2, &err), -1);
        CHECK_CONTAINS(err.msg, "pool[1]");
    }
    cl_msg_rx_free(rx);
}

/* xorshift64*: deterministic noise */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

/* Random bytes and mutated genuine messages: never a crash, never accepted unless genuine. */
static void test_noise(void)
{
    cl_msg_rx_t *rx = new_rx();
    char buf[CL_MSG_MAX + 64], mut[CL_MSG_MAX + 64];
    cl_msg_t m, out;
    uint64_t total = 0, sum = 0, accepted_mutants = 0;
    size_t len;
    int i, k;

    for (i = 0; i < 20000; i++) {
        size_t n = (size_t)(rnd() % sizeof(mut));
        for (k = 0; k < (int)n; k++)
            mut[k] = (char)rnd();
        if (i % 2)
            memcpy(mut, "CLOUD1 web ", n < 11 ? n : 11);
        if (cl_msg_decode(rx, mut, n, &out) == CL_MSG_OK)
            accepted_mutants++;
        total++;
    }
    for (i = 0; i < 20000; i++) {
        int r;
        m = msg((cl_msg_type_t)(rnd() % CL_MSG_TYPE_COUNT), (unsigned)(rnd() % NPOOL), 1,
                (uint64_t)i + 1, 1);
        len = enc(&m, "web", buf, sizeof(buf));
        memcpy(mut, buf, len);
        for (k = 0; k < 1 + (int)(rnd() % 3); k++)
            mut[rnd() % len] ^= (char)(1u << (rnd() % 8));
        r = cl_msg_decode(rx, mut, len, &out);
        total++;
        if (r == CL_MSG_OK && memcmp(mut, buf, len) != 0)
            accepted_mutants++;
    }
    CHECK_INT_EQ(accepted_mutants, 0);
    for (k = 1; k < CL_MSG_DROP_COUNT; k++)
        sum += rx->drops[k];
    CHECK_INT_EQ(sum + rx->accepted, total);
    cl_msg_rx_free(rx);
}

static void write_file(const char *path, const char *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    if (!CHECK(fd >= 0))
        return;
    CHECK_INT_EQ(write(fd, data, n), (long long)n);
    close(fd);
    CHECK_INT_EQ(chmod(path, mode), 0);
}

static void test_key_file(void)
{
    char dir[64], path[128], sub[128];
    unsigned char key[64];
    cl_err_t err;
    size_t len = 0;

    check_tmpdir(dir, sizeof(dir), "test_msg");
    snprintf(path, sizeof(path), "%s/secret", dir);
    cl_err_clear(&err);

    write_file(path, "0123456789abcdef0123456789abcdef\n", 33, 0600);
    CHECK_INT_EQ(cl_msg_key_load(path, key, sizeof(key), &len, &err), 0);
    CHECK_INT_EQ(len, 32); /* the newline is not part of it */
    CHECK(memcmp(key, "0123456789abcdef0123456789abcdef", 32) == 0);
    write_file(path, "0123456789abcdef\r\n", 18, 0400);
    CHECK_INT_EQ(cl_msg_key_load(path, key, sizeof(key), &len, &err), 0);
    CHECK_INT_EQ(len, 16);
    write_file(path, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\xff", 16, 0600);
    CHECK_INT_EQ(cl_msg_key_load(path, key, sizeof(key), &len, &err), 0);
    CHECK_INT_EQ(len, 16); /* binary keys are fine */

    /* readable by group or others */
    write_file(path, "0123456789abcdef0123456789abcdef", 32, 0640);
    CHECK_INT_EQ(cl_msg_key_load(path, key, sizeof(key), &len, &err), -1);
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, "0640");
    CHECK_INT_EQ(chmod(path, 0604), 0);
    CHECK_INT_EQ(cl_msg_key_load(path, key, sizeof(key), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "group or others");
    /* too short, too long */
    write_file(path, "short-secret\n", 13, 0600);
    CHECK_INT_EQ(cl_msg_key_load(path, key, sizeof(key), &len, &err), -1);
    CHECK_CONTAINS(err.msg, path);
    CHECK_CONTAINS(err.msg, "12 bytes, shorter than 16");
    write_file(path, "0123456789abcdef0123456789abcdef", 32, 0600);
    CHECK_INT_EQ(cl_msg_key_load(path, key, 20, &len, &err), -1);
    CHECK_CONTAINS(err.msg, "longer than 20 bytes");
    /* missing, a directory */
    snprintf(sub, sizeof(sub), "%s/missing", dir);
    CHECK_INT_EQ(cl_msg_key_load(sub, key, sizeof(key), &len, &err), -1);
    CHECK_CONTAINS(err.msg, sub);
    CHECK_INT_EQ(err.domain, CL_ERR_SYS);
    snprintf(sub, sizeof(sub), "%s/d", dir);
    CHECK_INT_EQ(mkdir(sub, 0700), 0);
    CHECK_INT_EQ(cl_msg_key_load(sub, key, sizeof(key), &len, &err), -1);
    CHECK_CONTAINS(err.msg, "not a regular file");

    check_rmtree(dir);
}

int main(void)
{
    test_live_set();
    test_round_trip();
    test_encode_errors();
    test_drops();
    test_json_and_fields();
    test_rekey();
    test_noise();
    test_key_file();
    return check_summary();
}
