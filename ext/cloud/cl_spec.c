/*
 * cl_spec: parsing and validating the spec JSON into cl_spec_t.  The Puppet types already
 * validate with friendlier messages; this is the daemon's own line of defence, so it checks
 * types, ranges and cross references without trusting the sender.
 */
#include "cl_spec.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_tmpl.h"

#define SPEC_ERR(err, ...) cl_err_set((err), CL_ERR_SPEC, 0, NULL, "validate spec", __VA_ARGS__)

int cl_spec_name_ok(const char *name)
{
    size_t i, n;

    if (!name || !isalnum((unsigned char)name[0]))
        return 0;
    n = strlen(name);
    if (n > CL_NAME_MAX)
        return 0;
    for (i = 1; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
            return 0;
    return 1;
}

static int ip_ok(const char *s)
{
    unsigned char buf[16];

    return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* Host: an IP literal or a DNS name (letters, digits, '-', '.'). */
static int host_ok(const char *s)
{
    size_t i, n;

    if (!s || !*s)
        return 0;
    if (ip_ok(s))
        return 1;
    n = strlen(s);
    if (n > 253)
        return 0;
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.')
            return 0;
    return 1;
}

static const char *get_str(json_object *o, const char *key, int required, const char *what,
                           cl_err_t *err, int *bad)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        if (required) {
            SPEC_ERR(err, "%s: missing", what);
            *bad = 1;
        }
        return NULL;
    }
    if (!json_object_is_type(v, json_type_string)) {
        SPEC_ERR(err, "%s: expected a string", what);
        *bad = 1;
        return NULL;
    }
    return json_object_get_string(v);
}

/* A JSON array of strings into a calloc'ed array of borrowed pointers. */
static int str_array(json_object *arr, const char ***out, size_t *n, const char *what,
                     cl_err_t *err)
{
    size_t i, len;

    *out = NULL;
    *n = 0;
    if (!arr || json_object_is_type(arr, json_type_null))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return SPEC_ERR(err, "%s: expected an array", what);
    len = json_object_array_length(arr);
    if (len > 100000)
        return SPEC_ERR(err, "%s: too many entries (%zu)", what, len);
    *out = calloc(len + 1, sizeof(**out));
    if (!*out)
        return SPEC_ERR(err, "%s: out of memory", what);
    for (i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        if (!json_object_is_type(e, json_type_string))
            return SPEC_ERR(err, "%s[%zu]: expected a string", what, i);
        (*out)[i] = json_object_get_string(e);
    }
    *n = len;
    return 0;
}

static int get_uint(json_object *o, const char *key, unsigned long dflt, unsigned long lo,
                    unsigned long hi, unsigned long *out, cl_err_t *err)
{
    json_object *v;
    int64_t x;

    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
        *out = dflt;
        return 0;
    }
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;
        unsigned long long y;
        if (!*s || !isdigit((unsigned char)*s))
            return SPEC_ERR(err, "%s: '%s' is not a number", key, s);
        y = strtoull(s, &end, 10);
        if (*end || y > hi || y < lo)
            return SPEC_ERR(err, "%s: '%s' is out of range %lu..%lu", key, s, lo, hi);
        *out = (unsigned long)y;
        return 0;
    }
    if (!json_object_is_type(v, json_type_int))
        return SPEC_ERR(err, "%s: expected an integer", key);
    x = json_object_get_int64(v);
    if (x < (int64_t)lo || (uint64_t)x > hi)
        return SPEC_ERR(err, "%s: %lld is out of range %lu..%lu", key, (long long)x, lo, hi);
    *out = (unsigned long)x;
    return 0;
}

static const char *const step_names[CL_STEP_COUNT] = {"setup", "start", "check", "stop"};

const char *cl_step_name(int step)
{
    return step >= 0 && step < CL_STEP_COUNT ? step_names[step] : "?";
}

/* "steps": {"setup": script, ...} of role i (optional; each a non-empty string, no NUL). */
static int parse_steps(cl_role_t *role, json_object *r, size_t i, cl_err_t *err)
{
    json_object *steps = NULL, *v;
    int k, n = 0;

    if (!json_object_object_get_ex(r, "steps", &steps) ||
        json_object_is_type(steps, json_type_null))
        return 0;
    if (!json_object_is_type(steps, json_type_object))
        return SPEC_ERR(err, "roles[%zu].steps: expected an object of scripts", i);
    for (k = 0; k < CL_STEP_COUNT; k++) {
        if (!json_object_object_get_ex(steps, step_names[k], &v) ||
            json_object_is_type(v, json_type_null))
            continue;
        n++;
        if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) <= 0 ||
            strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
            return SPEC_ERR(err, "roles[%zu].steps.%s (%s): expected a non-empty script", i,
                            step_names[k], role->name);
        role->steps[k] = json_object_get_string(v);
    }
    if ((size_t)n != (size_t)json_object_object_length(steps)) {
        json_object_object_foreach(steps, key, val)
        {
            (void)val;
            for (k = 0; k < CL_STEP_COUNT && strcmp(key, step_names[k]) != 0; k++)
                ;
            if (k == CL_STEP_COUNT)
                return SPEC_ERR(err,
                                "roles[%zu].steps (%s): unknown step '%.40s' (setup, start, "
                                "check, stop)",
                                i, role->name, key);
        }
    }
    return 0;
}

/* The keys of "health" in the order of cl_health_t's fields, their ranges and defaults. */
static const struct health_key {
    const char *name;
    unsigned lo, hi, dflt; /* backoff_max_ms must also be >= backoff_ms */
} health_keys[] = {
    {"interval_ms", 100, 86400000, CL_HEALTH_INTERVAL_MS},
    {"timeout_ms", 100, 3600000, CL_HEALTH_TIMEOUT_MS},
    {"retries", 0, 10, CL_HEALTH_RETRIES},
    {"max_restarts", 1, 1000, CL_HEALTH_MAX_RESTARTS},
    {"window_ms", 1000, 86400000, CL_HEALTH_WINDOW_MS},
    {"backoff_ms", 0, 3600000, CL_HEALTH_BACKOFF_MS},
    {"backoff_max_ms", 0, 86400000, CL_HEALTH_BACKOFF_MAX_MS},
};
#define NHEALTH_KEYS (sizeof(health_keys) / sizeof(health_keys[0]))

/*
 * "health": {"interval_ms": ..., ...} of role i (optional, every key optional, each an integer
 * in range): role->health is always filled, the CL_HEALTH_* defaults for what is not given.
 */
static int parse_health(cl_role_t *role, json_object *r, size_t i, cl_err_t *err)
{
    cl_health_t *hl = &role->health;
    unsigned *const field[NHEALTH_KEYS] = {&hl->interval_ms,   &hl->timeout_ms, &hl->retries,
                                           &hl->max_restarts,  &hl->window_ms,  &hl->backoff_ms,
                                           &hl->backoff_max_ms};
    json_object *health = NULL, *v;
    size_t k, n = 0;

    for (k = 0; k < NHEALTH_KEYS; k++)
        *field[k] = health_keys[k].dflt;
    if (!json_object_object_get_ex(r, "health", &health) ||
        json_object_is_type(health, json_type_null))
        return 0;
    if (!json_object_is_type(health, json_type_object))
        return SPEC_ERR(err, "roles[%zu].health (%s): %.40s is not an object", i, role->name,
                        json_object_to_json_string(health));
    for (k = 0; k < NHEALTH_KEYS; k++) {
        const struct health_key *h = &health_keys[k];
        int64_t x;

        if (!json_object_object_get_ex(health, h->name, &v))
            continue;
        n++;
        if (json_object_is_type(v, json_type_null))
            continue;
        if (!json_object_is_type(v, json_type_int))
            return SPEC_ERR(err, "roles[%zu].health.%s (%s): %.40s is not an integer", i, h->name,
                            role->name, json_object_to_json_string(v));
        /* json-c saturates what int64 cannot hold: out of range all the same */
        x = json_object_get_int64(v);
        if (x < (int64_t)h->lo || x > (int64_t)h->hi)
            return SPEC_ERR(err, "roles[%zu].health.%s (%s): %lld is out of range %u..%u", i,
                            h->name, role->name, (long long)x, h->lo, h->hi);
        *field[k] = (unsigned)x;
    }
    if (n != (size_t)json_object_object_length(health)) {
        json_object_object_foreach(health, key, val)
        {
            (void)val;
            for (k = 0; k < NHEALTH_KEYS && strcmp(key, health_keys[k].name) != 0; k++)
                ;
            if (k == NHEALTH_KEYS)
                return SPEC_ERR(err,
                                "roles[%zu].health (%s): unknown key '%.40s' (interval_ms, "
                                "timeout_ms, retries, max_restarts, window_ms, backoff_ms, "
                                "backoff_max_ms)",
                                i, role->name, key);
        }
    }
    if (hl->backoff_max_ms < hl->backoff_ms) {
        v = NULL;
        json_object_object_get_ex(health, "backoff_max_ms", &v);
        return SPEC_ERR(err,
                        "roles[%zu].health.backoff_max_ms (%s): %u%s is less than "
                        "backoff_ms %u",
                        i, role->name, hl->backoff_max_ms, v ? "" : " (the default)",
                        hl->backoff_ms);
    }
    return 0;
}

static int parse_roles(cl_spec_t *s, json_object *arr, cl_err_t *err)
{
    size_t i, j, n;

    if (!arr || json_object_is_type(arr, json_type_null))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return SPEC_ERR(err, "roles: expected an array");
    n = json_object_array_length(arr);
    s->roles = calloc(n + 1, sizeof(*s->roles));
    if (!s->roles)
        return SPEC_ERR(err, "roles: out of memory");
    for (i = 0; i < n; i++) {
        json_object *r = json_object_array_get_idx(arr, i), *after = NULL;
        char what[64];
        int bad = 0;

        snprintf(what, sizeof(what), "roles[%zu].name", i);
        if (!json_object_is_type(r, json_type_object))
            return SPEC_ERR(err, "roles[%zu]: expected an object", i);
        s->roles[i].name = get_str(r, "name", 1, what, err, &bad);
        if (bad)
            return -1;
        for (j = 0; j < i; j++)
            if (strcmp(s->roles[j].name, s->roles[i].name) == 0)
                return SPEC_ERR(err, "roles: '%s' is declared twice", s->roles[i].name);
        json_object_object_get_ex(r, "after", &after);
        snprintf(what, sizeof(what), "roles[%zu].after", i);
        if (str_array(after, &s->roles[i].after, &s->roles[i].nafter, what, err) < 0)
            return -1;
        s->nroles = i + 1;
        if (parse_steps(&s->roles[i], r, i, err) < 0 || parse_health(&s->roles[i], r, i, err) < 0)
            return -1;
    }
    /* every "after" names an earlier role: the order given is a valid dependency order */
    for (i = 0; i < s->nroles; i++)
        for (j = 0; j < s->roles[i].nafter; j++) {
            size_t k;
            for (k = 0; k < i; k++)
                if (strcmp(s->roles[k].name, s->roles[i].after[j]) == 0)
                    break;
            if (k == i)
                return SPEC_ERR(err, "roles: '%s' comes after '%s', which is not an earlier role",
                                s->roles[i].name, s->roles[i].after[j]);
        }
    return 0;
}

static int role_known(const cl_spec_t *s, const char *name)
{
    size_t i;

    for (i = 0; i < s->nroles; i++)
        if (strcmp(s->roles[i].name, name) == 0)
            return 1;
    return 0;
}

static int parse_slots(cl_spec_t *s, json_object *arr, cl_err_t *err)
{
    size_t i, j, n;
    size_t prefix = strlen(s->name);

    if (!arr || json_object_is_type(arr, json_type_null))
        return 0;
    if (!json_object_is_type(arr, json_type_array))
        return SPEC_ERR(err, "slots: expected an array");
    n = json_object_array_length(arr);
    s->slots = calloc(n + 1, sizeof(*s->slots));
    if (!s->slots)
        return SPEC_ERR(err, "slots: out of memory");
    for (i = 0; i < n; i++) {
        json_object *o = json_object_array_get_idx(arr, i), *v;
        cl_slot_t *sl = &s->slots[i];
        char what[64];
        unsigned long idx;
        int bad = 0;

        if (!json_object_is_type(o, json_type_object))
            return SPEC_ERR(err, "slots[%zu]: expected an object", i);
        s->nslots = i + 1;
        snprintf(what, sizeof(what), "slots[%zu].name", i);
        sl->name = get_str(o, "name", 1, what, err, &bad);
        snprintf(what, sizeof(what), "slots[%zu].ip", i);
        if (!bad)
            sl->ip = get_str(o, "ip", 1, what, err, &bad);
        snprintf(what, sizeof(what), "slots[%zu].image", i);
        if (!bad)
            sl->image = get_str(o, "image", 1, what, err, &bad);
        if (bad)
            return -1;
        if (strlen(sl->name) > CL_DOMNAME_MAX || strncmp(sl->name, s->name, prefix) != 0 ||
            sl->name[prefix] != '-' || !cl_spec_name_ok(sl->name))
            return SPEC_ERR(err, "slots[%zu].name: '%s' is not '%s-<role>-<n>'", i, sl->name,
                            s->name);
        if (!ip_ok(sl->ip))
            return SPEC_ERR(err, "slots[%zu].ip: '%s' is not an IP address", i, sl->ip);
        if (sl->image[0] != '/')
            return SPEC_ERR(err, "slots[%zu].image: '%s' is not an absolute path", i, sl->image);
        if (strpbrk(sl->image, "'\"<>&\n"))
            return SPEC_ERR(err,
                            "slots[%zu].image: '%s' contains a character not allowed in a path", i,
                            sl->image);
        json_object_object_get_ex(o, "roles", &v);
        snprintf(what, sizeof(what), "slots[%zu].roles", i);
        if (str_array(v, &sl->roles, &sl->nroles, what, err) < 0)
            return -1;
        if (sl->nroles == 0)
            return SPEC_ERR(err, "slots[%zu].roles: a slot needs at least one role", i);
        for (j = 0; j < sl->nroles; j++)
            if (!role_known(s, sl->roles[j]))
                return SPEC_ERR(err, "slots[%zu].roles: '%s' is not a declared role", i,
                                sl->roles[j]);
        v = NULL;
        json_object_object_get_ex(o, "services", &v);
        snprintf(what, sizeof(what), "slots[%zu].services", i);
        if (str_array(v, &sl->services, &sl->nservices, what, err) < 0)
            return -1;
        if (!sl->services) {
            sl->services = calloc(sl->nroles + 1, sizeof(*sl->services));
            if (!sl->services)
                return SPEC_ERR(err, "slots: out of memory");
            memcpy(sl->services, sl->roles, sl->nroles * sizeof(*sl->roles));
            sl->nservices = sl->nroles;
        }
        if (get_uint(o, "index", 0, 0, 1000000, &idx, err) < 0)
            return -1;
        sl->index = (int)idx;
        for (j = 0; j < i; j++) {
            if (strcmp(s->slots[j].name, sl->name) == 0)
                return SPEC_ERR(err, "slots: name '%s' appears twice", sl->name);
            if (strcmp(s->slots[j].ip, sl->ip) == 0)
                return SPEC_ERR(err, "slots: IP %s is used by both %s and %s", sl->ip,
                                s->slots[j].name, sl->name);
        }
        for (j = 0; j < s->npool; j++)
            if (strcmp(s->pool[j], sl->ip) == 0)
                return SPEC_ERR(err, "slots[%zu].ip: %s is a pool host, not a VM address", i,
                                sl->ip);
    }
    return 0;
}

int cl_spec_parse(json_object *obj, cl_spec_t **out, cl_err_t *err)
{
    cl_spec_t *s = NULL;
    json_object *v = NULL;
    unsigned long ul;
    size_t i, j;
    int bad = 0;

    *out = NULL;
    if (!obj || !json_object_is_type(obj, json_type_object))
        return SPEC_ERR(err, "spec: expected a JSON object");
    s = calloc(1, sizeof(*s));
    if (!s)
        return SPEC_ERR(err, "spec: out of memory");
    s->json = json_object_get(obj);

    s->name = get_str(obj, "name", 1, "name", err, &bad);
    if (bad)
        goto cleanup;
    if (!cl_spec_name_ok(s->name)) {
        SPEC_ERR(err, "name: '%s' is not a valid cloud name ([A-Za-z0-9][A-Za-z0-9_.-]{0,39})",
                 s->name);
        goto cleanup;
    }
    s->type = get_str(obj, "type", 0, "type", err, &bad);
    s->ensure = get_str(obj, "ensure", 0, "ensure", err, &bad);
    s->hypervisor = get_str(obj, "hypervisor", 0, "hypervisor", err, &bad);
    s->tmpl = get_str(obj, "template", 0, "template", err, &bad);
    s->tmpl_path = get_str(obj, "template_path", 0, "template_path", err, &bad);
    s->mac_start = get_str(obj, "mac_start", 0, "mac_start", err, &bad);
    s->disk_pool = get_str(obj, "disk_pool", 0, "disk_pool", err, &bad);
    s->disk_pool_path = get_str(obj, "disk_pool_path", 0, "disk_pool_path", err, &bad);
    s->image_format = get_str(obj, "image_format", 0, "image_format", err, &bad);
    s->ssh_key = get_str(obj, "ssh_key", 0, "ssh_key", err, &bad);
    s->secret_file = get_str(obj, "secret_file", 0, "secret_file", err, &bad);
    if (bad)
        goto cleanup;
    if (!s->type)
        s->type = "cloud";
    if (!s->ensure)
        s->ensure = "running";
    if (strcmp(s->ensure, "running") != 0 && strcmp(s->ensure, "stopped") != 0) {
        SPEC_ERR(err, "ensure: '%s' is not running or stopped", s->ensure);
        goto cleanup;
    }
    s->running = strcmp(s->ensure, "running") == 0;
    if (!s->hypervisor || !*s->hypervisor)
        s->hypervisor = "test:///default";
    if (!strstr(s->hypervisor, ":/")) {
        SPEC_ERR(err, "hypervisor: '%s' is not a libvirt URI", s->hypervisor);
        goto cleanup;
    }
    if (!s->disk_pool || !*s->disk_pool)
        s->disk_pool = "cloud";
    if (!s->disk_pool_path || !*s->disk_pool_path)
        s->disk_pool_path = "/var/lib/libvirt/images/cloud";
    if (s->disk_pool_path[0] != '/' || strpbrk(s->disk_pool_path, "'\"<>&")) {
        SPEC_ERR(err, "disk_pool_path: '%s' is not an absolute path", s->disk_pool_path);
        goto cleanup;
    }
    if (!cl_spec_name_ok(s->disk_pool)) {
        SPEC_ERR(err, "disk_pool: '%s' is not a valid storage pool name", s->disk_pool);
        goto cleanup;
    }
    if (!s->image_format)
        s->image_format = "qcow2";
    if (strcmp(s->image_format, "qcow2") != 0 && strcmp(s->image_format, "raw") != 0) {
        SPEC_ERR(err, "image_format: '%s' is not qcow2 or raw", s->image_format);
        goto cleanup;
    }
    if (s->mac_start && *s->mac_start) {
        unsigned int b[6];
        char tail;
        int bad_mac =
            strlen(s->mac_start) != 17 || sscanf(s->mac_start, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0],
                                                 &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6;
        /* sscanf alone lets signs and blanks through ("52:54:00:01:00:+1") */
        for (i = 0; !bad_mac && i < 17; i++)
            bad_mac =
                i % 3 == 2 ? s->mac_start[i] != ':' : !isxdigit((unsigned char)s->mac_start[i]);
        if (bad_mac) {
            SPEC_ERR(err, "starting_mac_address: '%s' is not a MAC address", s->mac_start);
            goto cleanup;
        }
        if (b[0] & 1) {
            SPEC_ERR(err, "starting_mac_address: '%s' is a multicast address", s->mac_start);
            goto cleanup;
        }
    } else {
        s->mac_start = NULL;
    }

    json_object_object_get_ex(obj, "pool", &v);
    if (str_array(v, &s->pool, &s->npool, "pool", err) < 0)
        goto cleanup;
    if (s->npool == 0) {
        SPEC_ERR(err, "pool: the pool is empty: list at least one host");
        goto cleanup;
    }
    for (i = 0; i < s->npool; i++) {
        if (!host_ok(s->pool[i])) {
            SPEC_ERR(err, "pool: '%s' is neither an IP address nor a host name", s->pool[i]);
            goto cleanup;
        }
        for (j = 0; j < i; j++)
            if (strcmp(s->pool[i], s->pool[j]) == 0) {
                SPEC_ERR(err, "pool: host '%s' is listed twice", s->pool[i]);
                goto cleanup;
            }
    }
    if (get_uint(obj, "vm_mem", 1048576, 1024, 1UL << 40, &s->vm_mem_kib, err) < 0)
        goto cleanup;
    if (get_uint(obj, "vm_ncpu", 1, 1, 256, &ul, err) < 0)
        goto cleanup;
    s->vm_ncpu = (unsigned)ul;
    if (get_uint(obj, "peer_port", CL_SPEC_PEER_PORT, 1, 65535, &ul, err) < 0)
        goto cleanup;
    s->peer_port = (unsigned)ul;

    v = NULL;
    json_object_object_get_ex(obj, "roles", &v);
    if (parse_roles(s, v, err) < 0)
        goto cleanup;
    v = NULL;
    json_object_object_get_ex(obj, "slots", &v);
    if (parse_slots(s, v, err) < 0)
        goto cleanup;

    if (s->running) {
        if (s->nslots == 0) {
            SPEC_ERR(err, "slots: ensure => running needs at least one VM");
            goto cleanup;
        }
        if (!s->tmpl) {
            SPEC_ERR(err, "vm_domain: ensure => running needs a domain template");
            goto cleanup;
        }
        if (cl_tmpl_check(s->tmpl, err) < 0) {
            char tmp[sizeof(err->msg)];
            snprintf(tmp, sizeof(tmp), "%s", err->msg);
            SPEC_ERR(err, "vm_domain: %s: %s", s->tmpl_path ? s->tmpl_path : "template", tmp);
            goto cleanup;
        }
    }
    *out = s;
    return 0;

cleanup:
    cl_spec_free(s);
    return -1;
}

int cl_spec_parse_string(const char *text, cl_spec_t **out, cl_err_t *err)
{
    json_tokener *tok = json_tokener_new();
    json_object *obj;
    int rc;

    *out = NULL;
    if (!tok)
        return SPEC_ERR(err, "spec: out of memory");
    obj = json_tokener_parse_ex(tok, text, (int)strlen(text));
    if (!obj || json_tokener_get_error(tok) != json_tokener_success) {
        json_tokener_free(tok);
        json_object_put(obj);
        return SPEC_ERR(err, "spec: not valid JSON");
    }
    json_tokener_free(tok);
    rc = cl_spec_parse(obj, out, err);
    json_object_put(obj);
    return rc;
}

void cl_spec_free(cl_spec_t *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->nroles; i++)
        free(s->roles[i].after);
    free(s->roles);
    for (i = 0; i < s->nslots; i++) {
        free(s->slots[i].roles);
        free(s->slots[i].services);
    }
    free(s->slots);
    free(s->pool);
    json_object_put(s->json);
    free(s);
}

int cl_spec_slot_find(const cl_spec_t *spec, const char *name)
{
    size_t i;

    for (i = 0; spec && name && i < spec->nslots; i++)
        if (strcmp(spec->slots[i].name, name) == 0)
            return (int)i;
    return -1;
}

char *cl_spec_uri_for(const char *hypervisor, const char *host)
{
    const char *p = strstr(hypervisor, "%{host}");
    size_t n;
    char *out;

    if (!p)
        return strdup(hypervisor);
    n = strlen(hypervisor) - 7 + strlen(host) + 3;
    out = malloc(n);
    if (!out)
        return NULL;
    /* an IPv6 literal goes in brackets in a URI */
    snprintf(out, n, strchr(host, ':') ? "%.*s[%s]%s" : "%.*s%s%s", (int)(p - hypervisor),
             hypervisor, host, p + 7);
    return out;
}

unsigned long cl_spec_slot_mem_kib(const cl_spec_t *spec, size_t i)
{
    (void)i;
    return spec->vm_mem_kib;
}
