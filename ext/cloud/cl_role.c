/*
 * cl_role: facts and role steps in a guest (see cl_role.h).  Every value that reaches the guest's
 * shell is single-quoted here or travels as an argument cl_ssh quotes; a step's script is
 * carried in a here-document whose delimiter is derived from the script's own hash, and runs
 * with its stdin on /dev/null, so nothing it reads can eat the wrapper.
 */
#include "cl_role.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_log.h"
#include "cl_time.h"

/* ========================================================================================= */
/* A growing string                                                                          */
/* ========================================================================================= */

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* s single-quoted for a POSIX shell: 'it'\''s' */
static void quoted(buf_t *b, const char *s)
{
    const char *q;

    puts_(b, "'");
    while ((q = strchr(s, '\'')) != NULL) {
        put(b, s, (size_t)(q - s));
        puts_(b, "'\\''");
        s = q + 1;
    }
    puts_(b, s);
    puts_(b, "'");
}

/* export NAME='value' (NAME upper-cased, anything but [A-Z0-9_] made '_') */
static void fact(buf_t *b, const char *prefix, const char *name, const char *value)
{
    const char *c;
    char ch;

    puts_(b, "export ");
    puts_(b, prefix);
    for (c = name; c && *c; c++) {
        ch = (char)toupper((unsigned char)*c);
        put(b, isalnum((unsigned char)ch) ? &ch : "_", 1);
    }
    puts_(b, "=");
    quoted(b, value ? value : "");
    puts_(b, "\n");
}

static int slot_has(const cl_slot_t *sl, const char *role)
{
    size_t i;

    for (i = 0; i < sl->nroles; i++)
        if (strcmp(sl->roles[i], role) == 0)
            return 1;
    return 0;
}

/* ========================================================================================= */
/* Facts                                                                                     */
/* ========================================================================================= */

/* The addresses (names: slot names) of the slots holding role, space-separated, into list. */
static size_t role_list(buf_t *list, const cl_spec_t *spec, const char *role, int names)
{
    size_t j, n = 0;

    list->n = 0;
    if (list->p)
        list->p[0] = '\0';
    for (j = 0; j < spec->nslots; j++)
        if (slot_has(&spec->slots[j], role)) {
            if (n++)
                puts_(list, " ");
            puts_(list, names ? spec->slots[j].name : spec->slots[j].ip);
        }
    return n;
}

char *cl_role_facts(const cl_spec_t *spec, size_t slot, cl_err_t *err)
{
    const cl_slot_t *me = &spec->slots[slot];
    json_object *opts = NULL;
    buf_t b = {0}, list = {0};
    char num[32];
    size_t i, j, n;

    puts_(&b, "# The cloud's facts for this VM, written by cloudd: do not edit.\n");
    fact(&b, "CLOUD_", "name", spec->name);
    fact(&b, "CLOUD_", "type", spec->type);
    fact(&b, "CLOUD_", "slot", me->name);
    for (i = 0; i < me->nroles; i++) {
        if (i)
            puts_(&list, " ");
        puts_(&list, me->roles[i]);
    }
    fact(&b, "CLOUD_", "roles", list.p ? list.p : "");
    list.n = 0;
    snprintf(num, sizeof(num), "%d", me->index);
    fact(&b, "CLOUD_", "index", num);
    fact(&b, "CLOUD_", "ip", me->ip);
    /* the head: the first VM of the first role (torque's head, web's database...) */
    for (i = 0; spec->nroles && i < spec->nslots; i++)
        if (slot_has(&spec->slots[i], spec->roles[0].name))
            break;
    fact(&b, "CLOUD_", "head", i < spec->nslots ? spec->slots[i].ip : "");
    for (i = 0; i < spec->nslots; i++) {
        for (j = 0; j < i && strcmp(spec->slots[j].ip, spec->slots[i].ip) != 0; j++)
            ;
        if (j < i)
            continue; /* one VM, several roles */
        if (list.n)
            puts_(&list, " ");
        puts_(&list, spec->slots[i].ip);
    }
    fact(&b, "CLOUD_", "all_ips", list.p ? list.p : "");
    for (i = 0; i < spec->nroles; i++) {
        n = role_list(&list, spec, spec->roles[i].name, 0);
        fact(&b, "CLOUD_IPS_", spec->roles[i].name, list.p ? list.p : "");
        snprintf(num, sizeof(num), "%zu", n);
        fact(&b, "CLOUD_COUNT_", spec->roles[i].name, num);
        role_list(&list, spec, spec->roles[i].name, 1);
        fact(&b, "CLOUD_NAMES_", spec->roles[i].name, list.p ? list.p : "");
    }
    if (json_object_object_get_ex(spec->json, "options", &opts) &&
        json_object_is_type(opts, json_type_object)) {
        json_object_object_foreach(opts, key, val)
        {
            if (json_object_is_type(val, json_type_string) ||
                json_object_is_type(val, json_type_int) ||
                json_object_is_type(val, json_type_boolean) ||
                json_object_is_type(val, json_type_double))
                fact(&b, "CLOUD_OPT_", key, json_object_get_string(val));
        }
    }
    free(list.p);
    if (b.oom || list.oom) {
        free(b.p);
        cl_err_set(err, CL_ERR_SYS, ENOMEM, me->ip, "facts", "out of memory");
        return NULL;
    }
    return b.p;
}

/* ========================================================================================= */
/* Steps                                                                                     */
/* ========================================================================================= */

int cl_role_guest_key(const char *ssh_key, const char *cloud,
                      char out[2 * CL_ROLE_GUEST_KEY_LEN + 1], cl_err_t *err)
{
    unsigned char key[16384], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    char msg[64 + CL_NAME_MAX];
    size_t n = 0;
    FILE *f = fopen(ssh_key, "rb");
    int rc = -1;

    if (!f)
        return cl_err_sys(err, NULL, "guest key", "ssh_key %s", ssh_key);
    n = fread(key, 1, sizeof(key), f);
    if (ferror(f) || n == 0 || !feof(f)) {
        cl_err_set(err, CL_ERR_SPEC, 0, NULL, "guest key",
                   "ssh_key %s: empty, unreadable or larger than %zu bytes", ssh_key, sizeof(key));
        goto cleanup;
    }
    snprintf(msg, sizeof(msg), "cloud-guest-key:%s", cloud);
    if (!HMAC(EVP_sha256(), key, (int)n, (const unsigned char *)msg, strlen(msg), md, &mdlen) ||
        mdlen < CL_ROLE_GUEST_KEY_LEN) {
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "guest key", "HMAC-SHA256 failed");
        goto cleanup;
    }
    for (i = 0; i < CL_ROLE_GUEST_KEY_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    rc = 0;
cleanup:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(md, sizeof(md));
    fclose(f);
    return rc;
}

int cl_role_has_step(const cl_spec_t *spec, size_t slot, cl_step_t step)
{
    size_t i;

    for (i = 0; i < spec->nroles; i++)
        if (spec->roles[i].steps[step] && slot_has(&spec->slots[slot], spec->roles[i].name))
            return 1;
    return 0;
}

/* Hex SHA-256 of a and b (64 digits + NUL into out). */
static int sha256_hex(const char *a, const char *b, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, a, strlen(a)) && EVP_DigestUpdate(ctx, "\n", 1) &&
             EVP_DigestUpdate(ctx, b, strlen(b)) && EVP_DigestFinal_ex(ctx, md, &len);

    EVP_MD_CTX_free(ctx);
    for (i = 0; ok && i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return ok ? 0 : -1;
}

/*
 * The wrapper run by `/bin/sh -s -- STEP HASH`: facts, the role's name, the marker check of a
 * setup, the step in a here-document (delimiter from the hash) run by `sh -e` with stdin on
 * /dev/null, the marker written after a setup that succeeded.
 */
static char *wrapper(const char *dir, const char *role, const char *body, const char *hash)
{
    buf_t b = {0};
    char delim[40];

    snprintf(delim, sizeof(delim), "CLOUD_STEP_%.16s", hash);
    puts_(&b, "set -e\nexport CLOUD_DIR=");
    quoted(&b, dir);
    puts_(&b, "\nd=\"$CLOUD_DIR\"\n. \"$d/facts.sh\"\nexport CLOUD_ROLE=");
    quoted(&b, role);
    puts_(&b, "\nm=\"$d/setup-$CLOUD_ROLE\"\n"
              "if [ \"$1\" = setup ] && [ -f \"$m\" ] && [ \"$(cat \"$m\")\" = \"$2\" ]; then\n"
              "  echo \"cloud: setup of $CLOUD_ROLE is up to date\"; exit 0\n"
              "fi\n"
              "body=$(cat <<'");
    puts_(&b, delim);
    puts_(&b, "'\n");
    puts_(&b, body);
    puts_(&b, "\n");
    puts_(&b, delim);
    puts_(&b, "\n)\n"
              "cd /\n"
              "sh -ec \"$body\" </dev/null\n"
              "if [ \"$1\" = setup ]; then echo \"$2\" > \"$m\"; fi\n");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* The last CL_ROLE_TAIL_MAX bytes of what a failed step said (stderr, else stdout). */
static const char *tail_of(const cl_ssh_result_t *r)
{
    const char *t = r->errout_len ? r->errout : r->out ? r->out : "";
    size_t n = r->errout_len ? r->errout_len : r->out_len;

    while (n && (t[n - 1] == '\n' || t[n - 1] == ' '))
        n--;
    return n > CL_ROLE_TAIL_MAX ? t + n - CL_ROLE_TAIL_MAX : t;
}

int cl_role_run(cl_ssh_t *s, const cl_spec_t *spec, size_t slot, cl_step_t step,
                const cl_role_opts_t *opts, cl_role_report_t *rep, cl_err_t *err)
{
    const char *dir = opts && opts->dir ? opts->dir : CL_ROLE_DIR;
    const cl_slot_t *me = &spec->slots[slot];
    cl_role_report_t local = {0};
    cl_ssh_run_opts_t ro = {0};
    cl_ssh_result_t res;
    uint64_t t0 = cl_time_now_ms();
    char *facts = NULL, *script = NULL, path[512], hash[65], what[160];
    const char *mkdir_argv[] = {"mkdir", "-p", "-m", "0755", dir, NULL};
    size_t i;
    int rc = -1;

    if (!rep)
        rep = &local;
    memset(rep, 0, sizeof(*rep));
    memset(&res, 0, sizeof(res));
    ro.timeout_ms = opts ? opts->timeout_ms : 0;
    if (!cl_role_has_step(spec, slot, step))
        return 0;
    if (!(facts = cl_role_facts(spec, slot, err)))
        return -1;
    snprintf(path, sizeof(path), "%s/facts.sh", dir);
    /* the facts (and the key) go with a setup; later steps use what the last setup left */
    if (step != CL_STEP_SETUP)
        goto steps;
    if (cl_ssh_run(s, mkdir_argv, &ro, &res, err) < 0)
        goto cleanup;
    if (res.exit_status != 0) {
        cl_err_set(err, CL_ERR_SSH, 0, me->ip, "facts", "%s: cannot make %s in the guest: %s",
                   me->name, dir, tail_of(&res));
        goto cleanup;
    }
    cl_ssh_result_free(&res);
    if (cl_ssh_upload(s, path, facts, strlen(facts), 0644, err) < 0)
        goto cleanup;
    if (opts && opts->guest_key) {
        snprintf(path, sizeof(path), "%s/cloud.key", dir);
        if (cl_ssh_upload(s, path, opts->guest_key, opts->guest_key_len, 0600, err) < 0)
            goto cleanup;
    }
steps:
    for (i = 0; i < spec->nroles; i++) {
        const cl_role_t *role = &spec->roles[i];
        const char *args[3];
        if (!role->steps[step] || !slot_has(me, role->name))
            continue;
        if (sha256_hex(role->steps[step], facts, hash) < 0 ||
            !(script = wrapper(dir, role->name, role->steps[step], hash))) {
            cl_err_set(err, CL_ERR_SYS, ENOMEM, me->ip, cl_step_name(step), "out of memory");
            goto cleanup;
        }
        args[0] = cl_step_name(step);
        args[1] = hash;
        args[2] = NULL;
        snprintf(what, sizeof(what), "%s %s", cl_step_name(step), role->name);
        if (cl_ssh_run_script(s, what, script, args, &ro, &res, err) < 0)
            goto cleanup;
        free(script);
        script = NULL;
        if (res.exit_status != 0) {
            rep->failed++;
            cl_err_set(err, CL_ERR_SSH, res.exit_status, me->ip, what,
                       "%s: role %s, step %s exited %d%s%s: %s", me->name, role->name,
                       cl_step_name(step), res.exit_status, res.exit_signal[0] ? " by SIG" : "",
                       res.exit_signal, tail_of(&res));
            cl_log(CL_LOG_WARN, "-role", "cloud=%s slot=%s role=%s step=%s exit=%d", spec->name,
                   me->name, role->name, cl_step_name(step), res.exit_status);
            goto cleanup;
        }
        if (step == CL_STEP_SETUP && res.out && strstr(res.out, "cloud: setup of ") &&
            strstr(res.out, " is up to date"))
            rep->skipped++;
        else
            rep->ran++;
        cl_log(CL_LOG_INFO, "+role", "cloud=%s slot=%s role=%s step=%s ms=%llu", spec->name,
               me->name, role->name, cl_step_name(step), (unsigned long long)res.ms);
        cl_ssh_result_free(&res);
    }
    rc = 0;
cleanup:
    rep->ms = cl_time_now_ms() - t0;
    cl_ssh_result_free(&res);
    free(script);
    free(facts);
    return rc;
}
