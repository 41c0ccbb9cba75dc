/*
 * test_tmpl: the vm_domain template.  cl_tmpl_check accepts domain templates (also in the
 * seed's ERB form) and rejects, with a message naming the culprit, everything that would give
 * slots a wrong identity; cl_tmpl_render fills every placeholder, escapes values and stamps the
 * ownership metadata wherever the template keeps (or lacks) its <metadata>.
 */
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include "cl_err.h"
#include "cl_tmpl.h"

#define GOOD                                                                                       \
    "<domain type='test'>\n"                                                                       \
    "  <name>{{name}}</name>\n"                                                                    \
    "  <uuid>{{uuid}}</uuid>\n"                                                                    \
    "  <memory unit='KiB'>{{memory}}</memory>\n"                                                   \
    "  <vcpu>{{vcpus}}</vcpu>\n"                                                                   \
    "  <os><type>hvm</type></os>\n"                                                                \
    "  <devices>\n"                                                                                \
    "    <disk type='file' device='disk'><source file='{{disk}}'/><target dev='vda'/></disk>\n"    \
    "    <interface type='network'><mac address='{{mac}}'/><source network='default'/>"            \
    "</interface>\n"                                                                               \
    "  </devices>\n"                                                                               \
    "</domain>\n"

#define META "<cloud:owner xmlns:cloud=\"" CL_META_URI "\" cloud=\"c\" slot=\"c-a-0\"/>"

/* Replace the first occurrence of from by to in src (malloc'ed). */
static char *replace(const char *src, const char *from, const char *to)
{
    const char *p = strstr(src, from);
    size_t n;
    char *out;

    if (!p)
        return NULL;
    n = strlen(src) - strlen(from) + strlen(to) + 1;
    out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
    return out;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (; (hay = strstr(hay, needle)) != NULL; hay++)
        n++;
    return n;
}

static void vars_init(cl_tmpl_vars_t *v)
{
    memset(v, 0, sizeof(*v));
    v->name = "web-server-1";
    v->slot = "web-server-1";
    v->ssh_pubkey = "c3NoLWVkMjU1MTkgQUFBQQ==";
    v->uuid = "12345678-1234-8234-9234-123456789abc";
    v->mac = "52:54:00:aa:bb:cc";
    v->disk = "/pool/web-server-1.qcow2";
    v->image = "/images/base.qcow2";
    v->ip = "10.0.0.7";
    v->role = "server";
    v->roles = "server,login";
    v->cloud = "web";
    v->host = "192.0.2.1";
    v->memory = 524288;
    v->vcpus = 3;
    v->index = 1;
}

static void test_accepts(void)
{
    cl_err_t err;
    char *t;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_tmpl_check(GOOD, &err), 0);

    /* an XML declaration, comments and a doctype may come before the root */
    CHECK_INT_EQ(cl_tmpl_check("<?xml version='1.0'?>\n<!-- a <domain> for tests -->\n"
                               "<!DOCTYPE domain>\n" GOOD,
                               &err),
                 0);

    /* the seed's ERB forms stand for the placeholders */
    t = strdup(GOOD);
    {
        static const char *const pairs[][2] = {
            {"{{name}}", "<%= vm[:name] %>"},  {"{{uuid}}", "<%= vm[:uuid] %>"},
            {"{{disk}}", "<%= vm[:disk] %>"},  {"{{mac}}", "<%= vm[:mac] %>"},
            {"{{memory}}", "<%= vm[:mem] %>"}, {"{{vcpus}}", "<%=vm[:ncpu]%>"},
        };
        size_t i;
        for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
            char *n = replace(t, pairs[i][0], pairs[i][1]);
            CHECK(n != NULL);
            free(t);
            t = n;
        }
    }
    CHECK(t && !strstr(t, "{{"));
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_tmpl_check(t, &err), 0);
    CHECK_STR_EQ(err.msg, "");
    free(t);
}

static void expect_reject(const char *tmpl, const char *needle, int line)
{
    cl_err_t err;

    cl_err_clear(&err);
    if (!CHECK_INT_EQ(cl_tmpl_check(tmpl, &err), -1))
        fprintf(stderr, "  (template of line %d was accepted)\n", line);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
    if (!CHECK_CONTAINS(err.msg, needle))
        fprintf(stderr, "  (template of line %d)\n", line);
}

static void test_rejects(void)
{
    size_t i;
    char *t;

    expect_reject("", "empty", __LINE__);
    expect_reject(NULL, "empty", __LINE__);
    expect_reject("<network><name>{{name}}</name></network>", "<domain>", __LINE__);
    expect_reject("<domainx></domainx>", "<domain>", __LINE__);
    expect_reject("just text", "<domain>", __LINE__);
    t = replace(GOOD, "</domain>", "");
    expect_reject(t, "not closed", __LINE__);
    free(t);

    /* every required placeholder, one at a time: the message names the missing one */
    for (i = 0; cl_tmpl_required[i]; i++) {
        char ph[32], msg[64];
        char *m;
        snprintf(ph, sizeof(ph), "{{%s}}", cl_tmpl_required[i]);
        m = replace(GOOD, ph, "fixed");
        if (!CHECK(m != NULL))
            continue;
        CHECK(!strstr(m, ph));
        snprintf(msg, sizeof(msg), "{{%s}} is missing", cl_tmpl_required[i]);
        expect_reject(m, msg, __LINE__);
        free(m);
    }

    /* a required placeholder only inside a comment is not there (as in the Puppet type) */
    t = replace(GOOD, "<vcpu>{{vcpus}}</vcpu>", "<vcpu>1</vcpu><!-- <vcpu>{{vcpus}}</vcpu> -->");
    expect_reject(t, "{{vcpus}} is missing", __LINE__);
    free(t);

    t = replace(GOOD, "</devices>", "</devices><description>{{foo}}</description>");
    expect_reject(t, "'foo'", __LINE__);
    free(t);
    t = replace(GOOD, "</devices>", "</devices><description>{{ bar }}</description>");
    expect_reject(t, "'bar'", __LINE__);
    free(t);

    /* ERB the core does not understand: code, and vm keys that are not the seed's */
    t = replace(GOOD, "</devices>", "</devices><% if true %><description/><% end %>");
    expect_reject(t, "if true", __LINE__);
    free(t);
    t = replace(GOOD, "</devices>", "</devices><description><%= vm[:ip] %></description>");
    expect_reject(t, "vm[:ip]", __LINE__);
    free(t);
}

static void test_render(void)
{
    static const char *const all =
        "<domain type='test'><name>{{name}}</name><uuid>{{uuid}}</uuid>"
        "<memory>{{memory}}</memory><vcpu>{{vcpus}}</vcpu>"
        "<description>ip={{ip}} role={{role}} roles={{roles}} cloud={{cloud}} host={{host}} "
        "index={{index}} image={{image}} slot={{slot}}</description>"
        "<os><cmdline>cloud.sshkey={{ssh_pubkey}}</cmdline></os>"
        "<devices><disk><source file='{{disk}}'/></disk><mac address='{{mac}}'/></devices>"
        "</domain>";
    cl_tmpl_vars_t v;
    cl_err_t err;
    char *out;

    vars_init(&v);
    cl_err_clear(&err);
    out = cl_tmpl_render(all, &v, NULL, &err);
    if (!CHECK(out != NULL))
        return;
    CHECK(!strstr(out, "{{") && !strstr(out, "}}"));
    CHECK_CONTAINS(out, "<name>web-server-1</name>");
    CHECK_CONTAINS(out, "<uuid>12345678-1234-8234-9234-123456789abc</uuid>");
    CHECK_CONTAINS(out, "<memory>524288</memory>");
    CHECK_CONTAINS(out, "<vcpu>3</vcpu>");
    CHECK_CONTAINS(out, "ip=10.0.0.7 role=server roles=server,login cloud=web host=192.0.2.1 "
                        "index=1 image=/images/base.qcow2 slot=web-server-1<");
    CHECK_CONTAINS(out, "<source file='/pool/web-server-1.qcow2'/>");
    CHECK_CONTAINS(out, "<mac address='52:54:00:aa:bb:cc'/>");
    CHECK_CONTAINS(out, "<cmdline>cloud.sshkey=c3NoLWVkMjU1MTkgQUFBQQ==</cmdline>");
    CHECK(!strstr(out, "<metadata"));
    free(out);

    /* ERB forms are rendered like their placeholders */
    out = cl_tmpl_render("<domain><name><%= vm[:name] %></name><uuid><%= vm[:uuid] %></uuid>"
                         "<memory><%= vm[:mem] %></memory><vcpu><%= vm[:ncpu] %></vcpu>"
                         "<x f='<%= vm[:disk] %>' m='<%= vm[:mac] %>'/></domain>",
                         &v, NULL, &err);
    if (CHECK(out != NULL)) {
        CHECK_STR_EQ(out, "<domain><name>web-server-1</name>"
                          "<uuid>12345678-1234-8234-9234-123456789abc</uuid>"
                          "<memory>524288</memory><vcpu>3</vcpu>"
                          "<x f='/pool/web-server-1.qcow2' m='52:54:00:aa:bb:cc'/></domain>");
        free(out);
    }

    /* values are XML-escaped, in text and in attributes */
    v.disk = "/pool/a&b'c.qcow2";
    v.image = "/images/<x>&\"y\".qcow2";
    out = cl_tmpl_render(all, &v, NULL, &err);
    if (CHECK(out != NULL)) {
        CHECK_CONTAINS(out, "<source file='/pool/a&amp;b&apos;c.qcow2'/>");
        CHECK_CONTAINS(out, "image=/images/&lt;x&gt;&amp;&quot;y&quot;.qcow2 ");
        CHECK(!strstr(out, "a&b"));
        free(out);
    }
    out = cl_tmpl_escape("a&<>\"'z");
    CHECK_STR_EQ(out, "a&amp;&lt;&gt;&quot;&apos;z");
    free(out);

    /* an invalid template is not rendered */
    cl_err_clear(&err);
    CHECK(cl_tmpl_render("<network/>", &v, META, &err) == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_SPEC);
}

static void test_metadata(void)
{
    cl_tmpl_vars_t v;
    cl_err_t err;
    char *t, *out;
    const char *last, *p;

    vars_init(&v);
    cl_err_clear(&err);

    /* an existing <metadata> keeps its content and gains ours */
    t = replace(GOOD, "</devices>",
                "</devices>\n  <metadata><app:x xmlns:app='urn:a'/></metadata>");
    out = cl_tmpl_render(t, &v, META, &err);
    if (CHECK(out != NULL)) {
        CHECK_CONTAINS(out, "<metadata>" META "<app:x xmlns:app='urn:a'/></metadata>");
        CHECK_INT_EQ(count(out, "<metadata"), 1);
        free(out);
    }
    free(t);

    /* an empty <metadata/> is opened */
    t = replace(GOOD, "</devices>", "</devices>\n  <metadata/>");
    out = cl_tmpl_render(t, &v, META, &err);
    if (CHECK(out != NULL)) {
        CHECK_CONTAINS(out, "<metadata>" META "</metadata>");
        CHECK(!strstr(out, "<metadata/>"));
        CHECK_INT_EQ(count(out, "<metadata"), 1);
        free(out);
    }
    free(t);

    /* none: created inside the domain, before its (last) closing tag */
    t = replace(GOOD, "<os>", "<!-- </domain> --><os>");
    out = cl_tmpl_render(t, &v, META, &err);
    if (CHECK(out != NULL)) {
        CHECK_CONTAINS(out, "<metadata>" META "</metadata>");
        CHECK_INT_EQ(count(out, "<metadata"), 1);
        for (last = NULL, p = out; (p = strstr(p, "</domain>")) != NULL; p++)
            last = p;
        CHECK(last && strstr(out, META) < last);
        /* the comment is left whole, and the metadata is not in it */
        CHECK(strstr(out, "<!-- </domain> -->") != NULL);
        CHECK(strstr(out, "<!-- </domain> -->") < strstr(out, META));
        CHECK_STR_EQ(last, "</domain>\n");
        free(out);
    }
    free(t);
}

int main(void)
{
    test_accepts();
    test_rejects();
    test_render();
    test_metadata();
    return check_summary();
}
