/*
 * cl_tmpl: template checking and rendering.  A small scanner, not an XML parser: libvirt
 * parses the result and reports what is wrong with the XML itself; here we make sure the
 * document is a domain and that each slot's identity really comes from the placeholders.
 */
#include "cl_tmpl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const cl_tmpl_required[] = {"name", "uuid", "mac", "disk", "memory", "vcpus", NULL};
const char *const cl_tmpl_known[] = {"name",  "uuid", "mac",        "disk",  "memory", "vcpus",
                                     "ip",    "role", "roles",      "cloud", "host",   "index",
                                     "image", "slot", "ssh_pubkey", NULL};

/* The seed's ERB keys and what they mean here. */
static const struct {
    const char *erb, *key;
} erb_alias[] = {
    {"name", "name"}, {"uuid", "uuid"},  {"disk", "disk"},
    {"mac", "mac"},   {"mem", "memory"}, {"ncpu", "vcpus"},
};

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *q;
        while (cap < b->len + n + 1)
            cap *= 2;
        q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_esc(sbuf_t *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sb_str(b, "&amp;"); break;
        case '<': sb_str(b, "&lt;"); break;
        case '>': sb_str(b, "&gt;"); break;
        case '"': sb_str(b, "&quot;"); break;
        case '\'': sb_str(b, "&apos;"); break;
        default: sb_add(b, s, 1);
        }
    }
}

char *cl_tmpl_escape(const char *src)
{
    sbuf_t b = {0};

    sb_esc(&b, src);
    sb_str(&b, "");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/*
 * Find the next placeholder at or after p.  On success the return value and *end delimit it and
 * key (<= keylen) holds the normalised key ("" for an ERB form we do not understand).
 */
static const char *next_placeholder(const char *p, const char **end, char *key, size_t keylen)
{
    for (; *p; p++) {
        const char *q, *e;
        size_t n;

        if (p[0] == '{' && p[1] == '{') {
            q = p + 2;
            e = strstr(q, "}}");
            if (!e)
                return NULL;
            while (q < e && isspace((unsigned char)*q))
                q++;
            n = (size_t)(e - q);
            while (n && isspace((unsigned char)q[n - 1]))
                n--;
            snprintf(key, keylen, "%.*s", (int)(n < keylen ? n : keylen - 1), q);
            *end = e + 2;
            return p;
        }
        if (p[0] == '<' && p[1] == '%') {
            size_t i;
            e = strstr(p, "%>");
            if (!e)
                return NULL;
            key[0] = '\0';
            q = p + 2;
            if (*q == '=')
                q++;
            while (q < e && isspace((unsigned char)*q))
                q++;
            if (strncmp(q, "vm[:", 4) == 0) {
                const char *k = q + 4, *kend = strchr(k, ']');
                if (kend && kend < e) {
                    for (i = 0; i < sizeof(erb_alias) / sizeof(erb_alias[0]); i++)
                        if ((size_t)(kend - k) == strlen(erb_alias[i].erb) &&
                            strncmp(k, erb_alias[i].erb, (size_t)(kend - k)) == 0)
                            snprintf(key, keylen, "%s", erb_alias[i].key);
                }
            }
            if (!key[0])
                snprintf(key, keylen, "<%%%.*s%%>", (int)((e - p - 2) > 40 ? 40 : (e - p - 2)),
                         p + 2);
            *end = e + 2;
            return p;
        }
    }
    return NULL;
}

static int known(const char *key)
{
    size_t i;

    for (i = 0; cl_tmpl_known[i]; i++)
        if (strcmp(cl_tmpl_known[i], key) == 0)
            return 1;
    return 0;
}

/* Skip the XML declaration, comments, doctype and whitespace; return the root element. */
static const char *root_element(const char *p)
{
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (strncmp(p, "<?", 2) == 0) {
            p = strstr(p, "?>");
            if (!p)
                return NULL;
            p += 2;
        } else if (strncmp(p, "<!--", 4) == 0) {
            p = strstr(p, "-->");
            if (!p)
                return NULL;
            p += 3;
        } else if (strncmp(p, "<!", 2) == 0) {
            p = strchr(p, '>');
            if (!p)
                return NULL;
            p++;
        } else {
            return *p == '<' ? p : NULL;
        }
    }
}

/* Is p inside an XML comment of doc?  A placeholder there does not count as present. */
static int in_comment(const char *doc, const char *p)
{
    const char *q, *close;

    for (q = doc; (q = strstr(q, "<!--")) != NULL && q < p; q = close + 3) {
        close = strstr(q + 4, "-->");
        if (!close || close > p)
            return 1;
    }
    return 0;
}

int cl_tmpl_check(const char *tmpl, cl_err_t *err)
{
    const char *root, *p, *end;
    char key[64];
    int found[16] = {0};
    size_t i;

    if (!tmpl || !*tmpl)
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "check template", "the template is empty");
    root = root_element(tmpl);
    if (!root || strncmp(root, "<domain", 7) != 0 ||
        !(isspace((unsigned char)root[7]) || root[7] == '>'))
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "check template",
                          "not a libvirt domain XML (the root element must be <domain>)");
    if (!strstr(root, "</domain>"))
        return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "check template",
                          "the <domain> element is not closed");
    for (p = tmpl; (p = next_placeholder(p, &end, key, sizeof(key))) != NULL; p = end) {
        if (!known(key))
            return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "check template",
                              "unknown placeholder '%s' (known: name uuid mac disk memory vcpus "
                              "ip role roles cloud host index image slot)",
                              key);
        if (in_comment(tmpl, p))
            continue;
        for (i = 0; cl_tmpl_required[i]; i++)
            if (strcmp(cl_tmpl_required[i], key) == 0)
                found[i] = 1;
    }
    for (i = 0; cl_tmpl_required[i]; i++)
        if (!found[i])
            return cl_err_set(err, CL_ERR_SPEC, 0, NULL, "check template",
                              "the required placeholder {{%s}} is missing", cl_tmpl_required[i]);
    return 0;
}

static void value_of(sbuf_t *b, const char *key, const cl_tmpl_vars_t *v)
{
    char num[32];

    if (strcmp(key, "memory") == 0) {
        snprintf(num, sizeof(num), "%lu", v->memory);
        sb_str(b, num);
    } else if (strcmp(key, "vcpus") == 0) {
        snprintf(num, sizeof(num), "%u", v->vcpus);
        sb_str(b, num);
    } else if (strcmp(key, "index") == 0) {
        snprintf(num, sizeof(num), "%d", v->index);
        sb_str(b, num);
    } else {
        const char *s = strcmp(key, "name") == 0         ? v->name
                        : strcmp(key, "uuid") == 0       ? v->uuid
                        : strcmp(key, "mac") == 0        ? v->mac
                        : strcmp(key, "disk") == 0       ? v->disk
                        : strcmp(key, "image") == 0      ? v->image
                        : strcmp(key, "ip") == 0         ? v->ip
                        : strcmp(key, "role") == 0       ? v->role
                        : strcmp(key, "roles") == 0      ? v->roles
                        : strcmp(key, "cloud") == 0      ? v->cloud
                        : strcmp(key, "host") == 0       ? v->host
                        : strcmp(key, "slot") == 0       ? v->slot
                        : strcmp(key, "ssh_pubkey") == 0 ? v->ssh_pubkey
                                                         : NULL;
        sb_esc(b, s);
    }
}

char *cl_tmpl_render(const char *tmpl, const cl_tmpl_vars_t *vars, const char *metadata_xml,
                     cl_err_t *err)
{
    sbuf_t b = {0}, out = {0};
    const char *p = tmpl, *tok, *end, *meta, *close;
    char key[64];

    if (cl_tmpl_check(tmpl, err) < 0)
        return NULL;
    while ((tok = next_placeholder(p, &end, key, sizeof(key))) != NULL) {
        sb_add(&b, p, (size_t)(tok - p));
        value_of(&b, key, vars);
        p = end;
    }
    sb_str(&b, p);
    if (b.oom)
        goto oom;
    if (!metadata_xml)
        return b.p;
    /* Insert the ownership element into <metadata>, creating it before </domain>. */
    meta = strstr(b.p, "<metadata>");
    if (meta) {
        meta += strlen("<metadata>");
        sb_add(&out, b.p, (size_t)(meta - b.p));
        sb_str(&out, metadata_xml);
        sb_str(&out, meta);
    } else if ((meta = strstr(b.p, "<metadata/>")) != NULL) {
        sb_add(&out, b.p, (size_t)(meta - b.p));
        sb_str(&out, "<metadata>");
        sb_str(&out, metadata_xml);
        sb_str(&out, "</metadata>");
        sb_str(&out, meta + strlen("<metadata/>"));
    } else {
        const char *q;
        close = NULL;
        for (q = b.p; (q = strstr(q, "</domain>")) != NULL; q++)
            close = q;
        sb_add(&out, b.p, (size_t)(close - b.p));
        sb_str(&out, "  <metadata>");
        sb_str(&out, metadata_xml);
        sb_str(&out, "</metadata>\n");
        sb_str(&out, close);
    }
    free(b.p);
    if (out.oom) {
        free(out.p);
        cl_err_set(err, CL_ERR_SYS, 0, NULL, "render template", "out of memory");
        return NULL;
    }
    return out.p;

oom:
    free(b.p);
    cl_err_set(err, CL_ERR_SYS, 0, NULL, "render template", "out of memory");
    return NULL;
}
