/*
 * fuzz_msg: libFuzzer target for cl_msg_decode, the first code to see bytes from the network.
 * The first input byte picks the mode: even, the rest is a datagram as received; odd, the rest
 * is JSON signed with the right key, so the fuzzer also reaches the parser, the field checks
 * and the per-sender state behind the MAC.  Built with -DFUZZ_MSG_SEEDS it writes the seeds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cl_err.h"
#include "cl_msg.h"

static const unsigned char KEY[] = "fuzzing-key-0123456789abcdef";
static const unsigned char KEY2[] = "second-cloud-key-0123456789";
static const char *const POOL[] = {"h0", "h1", "h2"};

static cl_msg_rx_t *rx_new(void)
{
    cl_msg_rx_t *rx = cl_msg_rx_new(NULL);

    if (!rx || cl_msg_rx_add_cloud(rx, "web", KEY, sizeof(KEY) - 1, POOL, 3, NULL) < 0 ||
        cl_msg_rx_add_cloud(rx, "db", KEY2, sizeof(KEY2) - 1, POOL, 2, NULL) < 0)
        abort();
    return rx;
}

/* "CLOUD1 web <hmac> <json>"; 0 if it does not fit. */
static size_t sign(const uint8_t *json, size_t jlen, char *buf, size_t cap)
{
    unsigned char mac[32];
    unsigned int maclen = 0;
    size_t n, i;

    n = (size_t)snprintf(buf, cap, "CLOUD1 web ");
    if (n + 65 + jlen > cap)
        return 0;
    HMAC(EVP_sha256(), KEY, (int)sizeof(KEY) - 1, json, jlen, mac, &maclen);
    for (i = 0; i < 32; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%02x", mac[i]);
    buf[n++] = ' ';
    memcpy(buf + n, json, jlen);
    return n + jlen;
}

static uint64_t counted(const cl_msg_rx_t *rx)
{
    uint64_t n = rx->accepted;
    int i;

    for (i = 1; i < CL_MSG_DROP_COUNT; i++)
        n += rx->drops[i];
    return n;
}

/* Decode one datagram in rx and check what can be checked of the answer. */
static void decode_one(cl_msg_rx_t *rx, const char *dgram, size_t len)
{
    uint64_t before = counted(rx);
    cl_msg_t out, again;
    int r = cl_msg_decode(rx, dgram, len, &out);

    if (r < 0 || r >= CL_MSG_DROP_COUNT || counted(rx) != before + 1)
        abort();
    if (r == CL_MSG_OK) {
        char enc[CL_MSG_MAX + 1];
        int db = strcmp(out.cloud, "db") == 0;
        size_t elen = 0;
        cl_msg_rx_t *fresh;

        /* what was accepted once is a replay the second time */
        if (cl_msg_decode(rx, dgram, len, &again) != CL_MSG_DROP_REPLAY)
            abort();
        if (out.prio >= 3 || strcmp(out.sender, POOL[out.prio]) != 0 ||
            (unsigned)out.type >= CL_MSG_TYPE_COUNT || out.epoch > CL_MSG_NUM_MAX ||
            out.inc > CL_MSG_NUM_MAX || out.seq > CL_MSG_NUM_MAX)
            abort();
        /* our own encoding of it decodes to the same message */
        if (cl_msg_encode(&out, out.cloud, db ? KEY2 : KEY, db ? sizeof(KEY2) - 1 : sizeof(KEY) - 1,
                          enc, sizeof(enc), &elen, NULL) == 0) {
            fresh = rx_new();
            if (cl_msg_decode(fresh, enc, elen, &again) != CL_MSG_OK || again.type != out.type ||
                again.epoch != out.epoch || again.prio != out.prio || again.inc != out.inc ||
                again.seq != out.seq || again.has_ack != out.has_ack ||
                again.ack_epoch != out.ack_epoch || again.has_round != out.has_round ||
                again.round != out.round || again.has_live != out.has_live ||
                strcmp(again.live, out.live) != 0 || strcmp(again.sender, out.sender) != 0 ||
                strcmp(again.cloud, out.cloud) != 0)
                abort();
            cl_msg_rx_free(fresh);
        }
    }
}

/*
 * data[0] even: data[1..] is one datagram.  Odd: data[1..] is up to four JSON texts separated
 * by 0xff (never in UTF-8 JSON), each signed and decoded in turn by the same receiver, so that
 * replays, incarnations and stale epochs are reached too.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[CL_MSG_MAX + 256];
    cl_msg_rx_t *rx;
    size_t len, i, start;
    int parts = 0;

    if (size == 0)
        return 0;
    rx = rx_new();
    if (!(data[0] & 1)) {
        /* exactly size - 1 bytes, not copied: ASan sees a read past the end */
        decode_one(rx, (const char *)data + 1, size - 1);
    } else {
        for (start = i = 1; i <= size && parts < 4; i++) {
            if (i < size && data[i] != 0xff)
                continue;
            len = sign(data + start, i - start, buf, sizeof(buf));
            if (len)
                decode_one(rx, buf, len);
            parts++;
            start = i + 1;
        }
    }
    cl_msg_rx_free(rx);
    return 0;
}

#ifdef FUZZ_MSG_SEEDS
/* The seed corpus: genuine messages of every type, and near misses of each drop reason. */
static int nseeds;

static void seed(const char *dir, uint8_t mode, const void *p, size_t n)
{
    char path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/seed-%03d", dir, nseeds++);
    fp = fopen(path, "wb");
    if (!fp || fwrite(&mode, 1, 1, fp) != 1 || (n && fwrite(p, 1, n, fp) != n) || fclose(fp)) {
        perror(path);
        exit(1);
    }
    {
        uint8_t in[CL_MSG_MAX + 300];
        in[0] = mode;
        memcpy(in + 1, p, n);
        LLVMFuzzerTestOneInput(in, n + 1); /* each seed runs once here too */
    }
}

int main(int argc, char **argv)
{
    static const char *const json[] = {
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1,\"r\":7}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1,\"r\":7,\"l\":\"7\"}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1,\"l\":\"7G\"}",
        "{\"v\":1,\"t\":\"HB_ACK\",\"e\":3,\"s\":\"h1\",\"p\":1,\"i\":2,\"q\":9,\"x\":3,\"r\":7}",
        "{\"v\":1,\"t\":\"ELECTION\",\"e\":3,\"s\":\"h2\",\"p\":2,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"ANSWER\",\"e\":3,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"COORDINATOR\",\"e\":4,\"s\":\"h1\",\"p\":1,\"i\":1,\"q\":2,\"r\":1}",
        "{\"v\":1,\"t\":\"COORD_ACK\",\"e\":4,\"s\":\"h2\",\"p\":2,\"i\":1,\"q\":5,\"x\":4,\"r\":"
        "1}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1,\"zz\":[{\"a\":null}]}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h\\u0030\",\"p\":0,\"i\":1,\"q\":1}",
        "{\"v\":2,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"HBX\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"HB\",\"e\":-3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"HB\",\"e\":18446744073709551615,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1,\"v\":1}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3.5,\"s\":\"h0\",\"p\":0,\"i\":\"1\",\"q\":1}",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h9\",\"p\":7,\"i\":1,\"q\":1}",
        "{\"v\":1,\"t\":\"HB_ACK\",\"e\":3,\"s\":\"h1\",\"p\":1,\"i\":2,\"q\":9}",
        "{\"a\":[[[[[[[[[[1]]]]]]]]]]}",
        "{'v':1}",
        "[1,2,3]",
        "{\"v\":1,\"t\":\"HB\",\"e\":3,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":1} trailing",
    };
    const char *dir = argc > 1 ? argv[1] : ".";
    char buf[CL_MSG_MAX + 256];
    size_t i, n;

    for (i = 0; i < sizeof(json) / sizeof(json[0]); i++) {
        seed(dir, 1, json[i], strlen(json[i]));
        n = sign((const uint8_t *)json[i], strlen(json[i]), buf, sizeof(buf));
        seed(dir, 0, buf, n);
        if (i < 6) {
            seed(dir, 0, buf, n / 2); /* truncated */
            buf[n - 2] ^= 0x20;       /* bad MAC */
            seed(dir, 0, buf, n);
            memcpy(buf, "CLOUD1 xyz", 10); /* unknown cloud */
            seed(dir, 0, buf, n);
            buf[3] = 'X'; /* bad header */
            seed(dir, 0, buf, n);
        }
    }
    {
        /* sequences from one sender: a replay, an older incarnation, a stale epoch */
        static const char seq[] =
            "{\"v\":1,\"t\":\"HB\",\"e\":9,\"s\":\"h0\",\"p\":0,\"i\":2,\"q\":5,\"r\":1}\xff"
            "{\"v\":1,\"t\":\"HB\",\"e\":9,\"s\":\"h0\",\"p\":0,\"i\":2,\"q\":4,\"r\":2}\xff"
            "{\"v\":1,\"t\":\"HB\",\"e\":9,\"s\":\"h0\",\"p\":0,\"i\":1,\"q\":9,\"r\":3}\xff"
            "{\"v\":1,\"t\":\"HB\",\"e\":8,\"s\":\"h0\",\"p\":0,\"i\":2,\"q\":6,\"r\":4}";
        seed(dir, 1, seq, sizeof(seq) - 1);
    }
    memset(buf, 'A', sizeof(buf));
    seed(dir, 0, buf, CL_MSG_MAX + 1); /* oversized */
    seed(dir, 0, "CLOUD1 web 00", 13);
    printf("fuzz_msg: %d seeds in %s\n", nseeds, dir);
    return 0;
}
#endif
