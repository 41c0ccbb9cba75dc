/*
 * cl_rpc: what both sides of the host-operation transport share (see cl_rpc.h): the names of
 * operations and drop reasons, the line framing with its MAC, and reads and writes bounded in
 * size and time.  The server is cl_rpc_server.c, the client (a remote cl_host) cl_rpc_remote.c.
 */
#include "cl_rpc.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cl_msg.h"
#include "cl_spec.h"
#include "cl_time.h"

/* ========================================================================================= */
/* Names                                                                                     */
/* ========================================================================================= */

static const char *const op_names[CL_RPC_OP_COUNT] = {
    [CL_RPC_ALIVE] = "alive",
    [CL_RPC_IS_TEST] = "is_test",
    [CL_RPC_FREE_KIB] = "free_kib",
    [CL_RPC_SCAN] = "scan",
    [CL_RPC_STATE] = "state",
    [CL_RPC_POOL_ENSURE] = "pool_ensure",
    [CL_RPC_OVERLAY] = "overlay",
    [CL_RPC_DEFINE] = "define",
    [CL_RPC_START] = "start",
    [CL_RPC_SHUTDOWN_REQUEST] = "shutdown_request",
    [CL_RPC_REMOVE] = "remove",
    [CL_RPC_VOL_DELETE] = "vol_delete",
    [CL_RPC_VOL_DELETE_BY_NAME] = "vol_delete_by_name",
    [CL_RPC_DESTROY] = "destroy",
    [CL_RPC_LEADER] = "leader",
    [CL_RPC_CONTROL] = "control",
    [CL_RPC_POKE] = "poke",
    [CL_RPC_INTENT] = "intent",
};

static const char *const drop_names[CL_RPC_DROP_COUNT] = {
    [CL_RPC_OK] = "ok",
    [CL_RPC_DROP_TIMEOUT] = "timeout",
    [CL_RPC_DROP_IO] = "io",
    [CL_RPC_DROP_TRUNCATED] = "truncated",
    [CL_RPC_DROP_OVERSIZED] = "oversized",
    [CL_RPC_DROP_BAD_HEADER] = "bad_header",
    [CL_RPC_DROP_UNKNOWN_CLOUD] = "unknown_cloud",
    [CL_RPC_DROP_BAD_MAC] = "bad_mac",
    [CL_RPC_DROP_BAD_JSON] = "bad_json",
    [CL_RPC_DROP_BAD_FIELD] = "bad_field",
    [CL_RPC_DROP_UNKNOWN_OP] = "unknown_op",
    [CL_RPC_DROP_VERSION] = "version",
    [CL_RPC_DROP_REPLAY] = "replay",
    [CL_RPC_DROP_NOT_MEMBER] = "not_member",
    [CL_RPC_DROP_STALE_EPOCH] = "stale_epoch",
};

const char *cl_rpc_op_name(int op)
{
    return op >= 0 && op < CL_RPC_OP_COUNT ? op_names[op] : "?";
}

int cl_rpc_op_from_name(const char *name)
{
    int i;

    for (i = 0; name && i < CL_RPC_OP_COUNT; i++)
        if (strcmp(name, op_names[i]) == 0)
            return i;
    return -1;
}

int cl_rpc_op_mutates(int op)
{
    return op >= CL_RPC_POOL_ENSURE && op <= CL_RPC_DESTROY;
}

int cl_rpc_op_admin(int op)
{
    return op == CL_RPC_LEADER || op == CL_RPC_CONTROL || op == CL_RPC_POKE || op == CL_RPC_INTENT;
}

const char *cl_rpc_drop_name(int reason)
{
    return reason >= 0 && reason < CL_RPC_DROP_COUNT ? drop_names[reason] : "?";
}

int cl_rpc_drop_from_name(const char *name)
{
    int i;

    for (i = 0; name && i < CL_RPC_DROP_COUNT; i++)
        if (strcmp(name, drop_names[i]) == 0)
            return i;
    return -1;
}

/* ========================================================================================= */
/* Framing and bounded I/O                                                                   */
/* ========================================================================================= */

static int name_char(char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return !first && (c == '_' || c == '.' || c == '-');
}

int cl_rpc_frame(const char *cloud, const unsigned char *key, size_t keylen, const char *json,
                 size_t json_len, char **line, size_t *len, cl_err_t *err)
{
    char mac[CL_MSG_MAC_HEX + 1];
    size_t head, n;
    char *buf;

    *line = NULL;
    *len = 0;
    if (!cloud || !cl_spec_name_ok(cloud))
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "rpc frame", "invalid cloud name '%.60s'",
                          cloud ? cloud : "");
    if (!json || json_len == 0 || memchr(json, '\n', json_len))
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "rpc frame", "empty or multi-line JSON");
    head = strlen(CL_RPC_MAGIC) + 1 + strlen(cloud) + 1 + CL_MSG_MAC_HEX + 1;
    if (json_len > CL_RPC_MAX_LINE - head)
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "rpc frame",
                          "message of %zu bytes for cloud %s, above the limit of %u",
                          head + json_len, cloud, CL_RPC_MAX_LINE);
    if (cl_msg_mac_hex(key, keylen, json, json_len, mac) < 0)
        return cl_err_set(err, CL_ERR_PROTO, 0, NULL, "rpc frame",
                          "cloud %s: key of %zu bytes (%d..%d required) or HMAC failure", cloud,
                          keylen, CL_MSG_KEY_MIN, CL_MSG_KEY_MAX);
    n = head + json_len + 1;
    if (!(buf = malloc(n + 1)))
        return cl_err_set(err, CL_ERR_SYS, ENOMEM, NULL, "rpc frame", "out of memory");
    snprintf(buf, n + 1, "%s %s %s ", CL_RPC_MAGIC, cloud, mac);
    memcpy(buf + head, json, json_len);
    buf[n - 1] = '\n';
    buf[n] = '\0';
    *line = buf;
    *len = n;
    return 0;
}

int cl_rpc_parse_header(const char *line, size_t len, cl_rpc_header_t *h)
{
    static const char magic[] = CL_RPC_MAGIC " ";
    size_t pos, start, i;

    for (pos = 0; pos < sizeof(magic) - 1; pos++) {
        if (pos >= len)
            return CL_RPC_DROP_TRUNCATED;
        if (line[pos] != magic[pos])
            return CL_RPC_DROP_BAD_HEADER;
    }
    for (start = pos; pos < len && line[pos] != ' '; pos++)
        if (pos - start >= CL_NAME_MAX || !name_char(line[pos], pos == start))
            return CL_RPC_DROP_BAD_HEADER;
    if (pos >= len)
        return CL_RPC_DROP_TRUNCATED;
    if (pos == start)
        return CL_RPC_DROP_BAD_HEADER;
    h->cloud = line + start;
    h->cloud_len = pos - start;
    h->mac_hex = line + ++pos;
    for (i = 0; i < CL_MSG_MAC_HEX; i++, pos++) {
        if (pos >= len)
            return CL_RPC_DROP_TRUNCATED;
        if (!((line[pos] >= '0' && line[pos] <= '9') || (line[pos] >= 'a' && line[pos] <= 'f')))
            return CL_RPC_DROP_BAD_HEADER;
    }
    if (pos >= len)
        return CL_RPC_DROP_TRUNCATED;
    if (line[pos++] != ' ')
        return CL_RPC_DROP_BAD_HEADER;
    if (pos >= len)
        return CL_RPC_DROP_TRUNCATED;
    h->json = line + pos;
    h->json_len = len - pos;
    return CL_RPC_OK;
}

int cl_rpc_wait(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        uint64_t now = cl_time_now_ms();
        int n;
        if (now >= deadline)
            return 1;
        n = poll(&p, 1, deadline - now > 60000 ? 60000 : (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n > 0)
            return 0;
    }
}

int cl_rpc_read_line(int fd, uint64_t deadline, size_t max, char **line, size_t *len)
{
    size_t have = 0, cap = 0;
    char *buf = NULL, *nl;
    int r;

    *line = NULL;
    *len = 0;
    for (;;) {
        ssize_t n;
        if (have == cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *nb;
            if (ncap > max + 1)
                ncap = max + 1;
            if (!(nb = realloc(buf, ncap))) {
                r = CL_RPC_DROP_IO;
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        n = recv(fd, buf + have, cap - have, 0);
        if (n > 0) {
            nl = memchr(buf + have, '\n', (size_t)n);
            have += (size_t)n;
            if (nl) {
                *nl = '\0';
                *len = (size_t)(nl - buf);
                *line = buf;
                buf = NULL;
                r = CL_RPC_OK;
                goto cleanup;
            }
            if (have > max) {
                r = CL_RPC_DROP_OVERSIZED;
                goto cleanup;
            }
            continue;
        }
        if (n == 0) {
            r = CL_RPC_DROP_TRUNCATED;
            goto cleanup;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            r = CL_RPC_DROP_IO;
            goto cleanup;
        }
        if ((r = cl_rpc_wait(fd, POLLIN, deadline)) != 0) {
            r = r > 0 ? CL_RPC_DROP_TIMEOUT : CL_RPC_DROP_IO;
            goto cleanup;
        }
    }
cleanup:
    free(buf);
    return r;
}

int cl_rpc_write_all(int fd, const char *buf, size_t len, uint64_t deadline)
{
    size_t off = 0;
    int w;

    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if ((w = cl_rpc_wait(fd, POLLOUT, deadline)) != 0) {
            if (w > 0)
                errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

int cl_rpc_json_put(json_object *o, const char *k, json_object *v)
{
    if (!o || !v || json_object_object_add(o, k, v) < 0) {
        json_object_put(v);
        return -1;
    }
    return 0;
}

int cl_rpc_json_push(json_object *a, json_object *v)
{
    if (!a || !v || json_object_array_add(a, v) < 0) {
        json_object_put(v);
        return -1;
    }
    return 0;
}

int cl_rpc_json_num(json_object *o, const char *key, uint64_t *out)
{
    json_object *v;
    int64_t x;

    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
        return -1;
    x = json_object_get_int64(v);
    if (x < 0 || (uint64_t)x > CL_MSG_NUM_MAX)
        return -1;
    *out = (uint64_t)x;
    return 0;
}
