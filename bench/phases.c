/*
 * phases: where the product's converge and tear-down time goes (bench/breakdown.rb runs it).
 * Links the C core (build/core/libcloudcore.a, built by `rake compile`) and times, in-process
 * against test:///default, layers that bench/converge.rb can only see together:
 *
 *   spec_parse         cl_spec_parse_string of the spec text (the daemon parses every request)
 *   engine             cl_engine_apply / cl_engine_stop, log silenced, no progress callback
 *   engine_log         the same, logging to a file as cloudd does (a flushed line per event)
 *   engine_progress    the same, log silenced, each progress event serialised and written to a
 *                      socket (drained by a thread) as cloudd does for its client
 *   engine_daemonlike  both: log lines and progress lines
 *   virt_calls         only the cl_virt calls the engine makes per slot (overlay, render,
 *                      define, start; remove, delete disk, delete disk by name): no scan, no
 *                      state, no plan, no status
 *   scan, scan_foreign cl_virt_scan of a host holding the N domains (without/with foreign ids)
 *   scan_parts         what one scan costs per part, over the N domains: the list call alone,
 *                      virDomainGetMetadata of each (the ownership check), virDomainGetXMLDesc
 *                      of each (cl_virt_scan formats every owned domain's XML to read its MAC)
 *   state_save         cl_state_save of the converged state document (write, fsync, rename)
 *
 * Each is the median of R runs, in seconds; one JSON object on stdout.
 * usage: phases [N [R]]
 */
#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cl_engine.h"
#include "cl_log.h"
#include "cl_spec.h"
#include "cl_state.h"
#include "cl_tmpl.h"
#include "cl_virt.h"

#define CLOUD "bench"
#define POOL "cloud"
#define POOL_PATH "/var/lib/libvirt/images/cloud"
#define IMAGE "/var/lib/cloud/images/bench.qcow2"
#define MAXR 64

static const char *tmpl = "<domain type='test'>\n"
                          "  <name>{{name}}</name>\n"
                          "  <uuid>{{uuid}}</uuid>\n"
                          "  <description>{{role}} VM at {{ip}}</description>\n"
                          "  <memory unit='KiB'>{{memory}}</memory>\n"
                          "  <currentMemory unit='KiB'>{{memory}}</currentMemory>\n"
                          "  <vcpu>{{vcpus}}</vcpu>\n"
                          "  <os>\n"
                          "    <type arch='x86_64'>hvm</type>\n"
                          "    <boot dev='hd'/>\n"
                          "  </os>\n"
                          "  <devices>\n"
                          "    <disk type='file' device='disk'>\n"
                          "      <source file='{{disk}}'/>\n"
                          "      <target dev='vda' bus='virtio'/>\n"
                          "    </disk>\n"
                          "    <interface type='network'>\n"
                          "      <mac address='{{mac}}'/>\n"
                          "      <source network='default'/>\n"
                          "    </interface>\n"
                          "  </devices>\n"
                          "</domain>\n";

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void fail(const char *what, const cl_err_t *err)
{
    char buf[1200];

    fprintf(stderr, "phases: %s: %s\n", what, cl_err_format(err, buf, sizeof(buf)));
    exit(1);
}

static char *spec_text(int n)
{
    json_object *o = json_object_new_object(), *pool = json_object_new_array();
    json_object *roles = json_object_new_array(), *role = json_object_new_object();
    json_object *slots = json_object_new_array();
    char *text;
    int i;

    json_object_object_add(o, "name", json_object_new_string(CLOUD));
    json_object_object_add(o, "type", json_object_new_string("cloud"));
    json_object_object_add(o, "ensure", json_object_new_string("running"));
    json_object_array_add(pool, json_object_new_string("127.0.0.1"));
    json_object_object_add(o, "pool", pool);
    json_object_object_add(o, "hypervisor", json_object_new_string("test:///default"));
    json_object_object_add(o, "template", json_object_new_string(tmpl));
    json_object_object_add(o, "vm_mem", json_object_new_int(1048576));
    json_object_object_add(o, "vm_ncpu", json_object_new_int(1));
    json_object_object_add(o, "disk_pool", json_object_new_string(POOL));
    json_object_object_add(o, "disk_pool_path", json_object_new_string(POOL_PATH));
    json_object_object_add(role, "name", json_object_new_string("server"));
    json_object_object_add(role, "after", json_object_new_array());
    json_object_array_add(roles, role);
    json_object_object_add(o, "roles", roles);
    for (i = 0; i < n; i++) {
        json_object *s = json_object_new_object(), *r = json_object_new_array();
        char name[64], ip[32];
        snprintf(name, sizeof(name), CLOUD "-server-%d", i);
        snprintf(ip, sizeof(ip), "10.1.%d.%d", i / 250, i % 250 + 2);
        json_object_array_add(r, json_object_new_string("server"));
        json_object_object_add(s, "name", json_object_new_string(name));
        json_object_object_add(s, "roles", r);
        json_object_object_add(s, "index", json_object_new_int(i));
        json_object_object_add(s, "ip", json_object_new_string(ip));
        json_object_object_add(s, "image", json_object_new_string(IMAGE));
        json_object_array_add(slots, s);
    }
    json_object_object_add(o, "slots", slots);
    text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return text;
}

/* The daemon's progress path: serialise each event and write it to the client's socket. */
static int sock_pair[2];

static void *drain(void *arg)
{
    char buf[65536];

    (void)arg;
    while (read(sock_pair[1], buf, sizeof(buf)) > 0) {
    }
    return NULL;
}

static void to_socket(void *ud, json_object *ev)
{
    const char *s = json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN);
    size_t len = strlen(s);

    (void)ud;
    if (write(sock_pair[0], s, len) < 0 || write(sock_pair[0], "\n", 1) < 0)
        perror("phases: write");
}

/* cl_engine_apply + cl_engine_stop; returns the two times. */
static void engine_run(cl_engine_t *e, const cl_spec_t *spec, int n, cl_progress_fn fn,
                       double *conv, double *down)
{
    json_object *res = NULL, *v;
    cl_err_t err;
    double t0;

    cl_err_clear(&err);
    t0 = now_s();
    if (cl_engine_apply(e, spec, 0, fn, NULL, &res, &err) < 0)
        fail("apply", &err);
    *conv = now_s() - t0;
    if (!json_object_object_get_ex(res, "changed", &v) || json_object_get_int(v) != n) {
        fprintf(stderr, "phases: apply changed %s\n", json_object_to_json_string(res));
        exit(1);
    }
    json_object_put(res);
    res = NULL;
    t0 = now_s();
    if (cl_engine_stop(e, CLOUD, spec, 0, fn, NULL, &res, &err) < 0)
        fail("stop", &err);
    *down = now_s() - t0;
    json_object_put(res);
}

/* The per-slot cl_virt calls of create_domain / remove_domain / cl_engine_stop, nothing else. */
static void virt_run(cl_virt_t *v, const cl_spec_t *s, double *conv, double *down)
{
    cl_err_t err;
    double t0;
    size_t i;

    cl_err_clear(&err);
    t0 = now_s();
    if (cl_virt_pool_ensure(v, POOL, POOL_PATH, &err) < 0)
        fail("pool", &err);
    for (i = 0; i < s->nslots; i++) {
        const cl_slot_t *sl = &s->slots[i];
        char vol[160], disk[512], uuid[48], mac[20], meta[1024], *xml;
        cl_tmpl_vars_t vars;
        snprintf(vol, sizeof(vol), "%s.qcow2", sl->name);
        if (cl_virt_overlay(v, POOL, vol, sl->image, "qcow2", disk, sizeof(disk), &err) < 0)
            fail("overlay", &err);
        snprintf(uuid, sizeof(uuid), "be7c0000-0000-4000-8000-%012zx", i);
        snprintf(mac, sizeof(mac), "52:54:00:00:%02zx:%02zx", (i >> 8) & 0xff, i & 0xff);
        snprintf(meta, sizeof(meta),
                 "<cloud:owner xmlns:cloud=\"" CL_META_URI "\" cloud=\"" CLOUD "\" slot=\"%s\" "
                 "role=\"server\" index=\"%d\" ip=\"%s\" host=\"127.0.0.1\" image=\"%s\" "
                 "disk=\"%s\" config=\"0\" epoch=\"1\"/>",
                 sl->name, sl->index, sl->ip, sl->image, disk);
        memset(&vars, 0, sizeof(vars));
        vars.name = vars.slot = sl->name;
        vars.uuid = uuid;
        vars.mac = mac;
        vars.disk = disk;
        vars.image = sl->image;
        vars.ip = sl->ip;
        vars.role = vars.roles = "server";
        vars.cloud = CLOUD;
        vars.host = "127.0.0.1";
        vars.memory = s->vm_mem_kib;
        vars.vcpus = s->vm_ncpu;
        vars.index = sl->index;
        xml = cl_tmpl_render(s->tmpl, &vars, meta, &err);
        if (!xml)
            fail("render", &err);
        if (cl_virt_define(v, sl->name, xml, &err) < 0 || cl_virt_start(v, sl->name, &err) < 0)
            fail("define/start", &err);
        free(xml);
    }
    *conv = now_s() - t0;
    t0 = now_s();
    for (i = 0; i < s->nslots; i++) {
        const cl_slot_t *sl = &s->slots[i];
        char vol[160], path[512];
        snprintf(vol, sizeof(vol), "%s.qcow2", sl->name);
        snprintf(path, sizeof(path), POOL_PATH "/%s", vol);
        if (cl_virt_remove(v, sl->name, 0, &err) < 0 || cl_virt_vol_delete(v, POOL, path, &err) < 0)
            fail("remove", &err);
    }
    /* cl_engine_stop then deletes every stored slot's overlay by name (already gone here). */
    for (i = 0; i < s->nslots; i++) {
        char vol[160];
        snprintf(vol, sizeof(vol), "%s.qcow2", s->slots[i].name);
        if (cl_virt_vol_delete_by_name(v, POOL, vol, &err) < 0)
            fail("delete by name", &err);
    }
    *down = now_s() - t0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100, runs = argc > 2 ? atoi(argv[2]) : 5, r;
    char dir[] = "/tmp/cloud-phases-XXXXXX", logpath[600];
    double parse[MAXR], ec[MAXR], ed[MAXR], dc[MAXR], dd[MAXR], vc[MAXR], vd[MAXR];
    double lc[MAXR], ld[MAXR], pc[MAXR], pd[MAXR];
    double sc[MAXR], sf[MAXR], ss[MAXR], ql[MAXR], qm[MAXR], qx[MAXR];
    cl_engine_opts_t eo;
    cl_engine_t *e = NULL;
    cl_spec_t *spec = NULL;
    cl_virt_t *v = NULL;
    cl_err_t err;
    char *text;
    FILE *logf;
    pthread_t th;

    if (n <= 0 || runs <= 0 || runs > MAXR) {
        fprintf(stderr, "usage: phases [N [R<=%d]]\n", MAXR);
        return 2;
    }
    if (!mkdtemp(dir)) {
        perror("phases: mkdtemp");
        return 1;
    }
    cl_err_clear(&err);
    text = spec_text(n);
    for (r = 0; r < runs; r++) {
        double t0 = now_s();
        if (cl_spec_parse_string(text, &spec, &err) < 0)
            fail("spec", &err);
        parse[r] = now_s() - t0;
        if (r + 1 < runs)
            cl_spec_free(spec);
    }
    memset(&eo, 0, sizeof(eo));
    eo.state_dir = dir;
    if (cl_engine_new(&eo, &e, &err) < 0)
        fail("engine", &err);
    /* Holds the test driver's shared state open across the engine's own connection. */
    if (cl_virt_open("test:///default", "127.0.0.1", 0, &v, &err) < 0)
        fail("open", &err);

    cl_log_set_stream(NULL);
    snprintf(logpath, sizeof(logpath), "%s/cloudd.log", dir);
    logf = fopen(logpath, "a");
    if (!logf || socketpair(AF_UNIX, SOCK_STREAM, 0, sock_pair) < 0) {
        perror("phases: log/socketpair");
        return 1;
    }
    pthread_create(&th, NULL, drain, NULL);
    /* Interleaved, so that drift on a busy machine hits every variant alike. */
    for (r = 0; r < runs; r++) {
        cl_log_set_stream(logf);
        engine_run(e, spec, n, NULL, &lc[r], &ld[r]);
        cl_log_set_stream(NULL);
        engine_run(e, spec, n, to_socket, &pc[r], &pd[r]);
        cl_log_set_stream(logf);
        engine_run(e, spec, n, to_socket, &dc[r], &dd[r]);
        cl_log_set_stream(NULL);
        engine_run(e, spec, n, NULL, &ec[r], &ed[r]);
    }
    close(sock_pair[0]);
    pthread_join(th, NULL);
    close(sock_pair[1]);
    fclose(logf);

    for (r = 0; r < runs; r++)
        virt_run(v, spec, &vc[r], &vd[r]);

    /* Components, measured on a converged cloud. */
    {
        json_object *res = NULL, *doc = NULL, *pl = json_object_new_object();
        size_t i;
        if (cl_engine_apply(e, spec, 0, NULL, NULL, &res, &err) < 0)
            fail("apply", &err);
        json_object_put(res);
        res = NULL;
        doc = json_object_new_object();
        json_object_object_add(doc, "spec", json_object_get(spec->json));
        json_object_object_add(doc, "epoch", json_object_new_int(1));
        json_object_object_add(doc, "leader", json_object_new_string("127.0.0.1"));
        for (i = 0; i < spec->nslots; i++)
            json_object_object_add(pl, spec->slots[i].name, json_object_new_string("127.0.0.1"));
        json_object_object_add(doc, "placement", pl);
        for (r = 0; r < runs; r++) {
            cl_dom_list_t l = {0};
            cl_idset_t f = {0};
            double t0 = now_s();
            if (cl_virt_scan(v, CLOUD, &l, NULL, &err) < 0)
                fail("scan", &err);
            sc[r] = now_s() - t0;
            if (l.n != (size_t)n) {
                fprintf(stderr, "phases: scan found %zu domains\n", l.n);
                return 1;
            }
            cl_dom_list_free(&l);
            t0 = now_s();
            if (cl_virt_scan(v, CLOUD, &l, &f, &err) < 0)
                fail("scan", &err);
            sf[r] = now_s() - t0;
            cl_dom_list_free(&l);
            cl_idset_free(&f);
            {
                virConnectPtr c = cl_virt_conn(v);
                virDomainPtr *doms = NULL;
                int k, nd;
                t0 = now_s();
                nd = virConnectListAllDomains(c, &doms, 0);
                ql[r] = now_s() - t0;
                t0 = now_s();
                for (k = 0; k < nd; k++) {
                    char *m =
                        virDomainGetMetadata(doms[k], VIR_DOMAIN_METADATA_ELEMENT, CL_META_URI, 0);
                    if (!m)
                        virResetLastError();
                    free(m);
                }
                qm[r] = now_s() - t0;
                t0 = now_s();
                for (k = 0; k < nd; k++)
                    free(virDomainGetXMLDesc(doms[k], 0));
                qx[r] = now_s() - t0;
                for (k = 0; k < nd; k++)
                    virDomainFree(doms[k]);
                free(doms);
            }
            t0 = now_s();
            if (cl_state_save(dir, "phases", doc, &err) < 0)
                fail("state", &err);
            ss[r] = now_s() - t0;
        }
        json_object_put(doc);
        cl_state_remove(dir, "phases", &err);
        if (cl_engine_stop(e, CLOUD, spec, 0, NULL, NULL, &res, &err) < 0)
            fail("stop", &err);
        json_object_put(res);
    }

    printf("{\"n\":%d,\"runs\":%d,\"spec_parse_s\":%.6f,"
           "\"engine_converge_s\":%.6f,\"engine_teardown_s\":%.6f,"
           "\"engine_log_converge_s\":%.6f,\"engine_log_teardown_s\":%.6f,"
           "\"engine_progress_converge_s\":%.6f,\"engine_progress_teardown_s\":%.6f,"
           "\"engine_daemonlike_converge_s\":%.6f,\"engine_daemonlike_teardown_s\":%.6f,"
           "\"virt_calls_converge_s\":%.6f,\"virt_calls_teardown_s\":%.6f,"
           "\"scan_s\":%.6f,\"scan_foreign_s\":%.6f,\"scan_list_s\":%.6f,"
           "\"scan_get_metadata_s\":%.6f,\"scan_get_xml_desc_s\":%.6f,\"state_save_s\":%.6f}\n",
           n, runs, median(parse, runs), median(ec, runs), median(ed, runs), median(lc, runs),
           median(ld, runs), median(pc, runs), median(pd, runs), median(dc, runs), median(dd, runs),
           median(vc, runs), median(vd, runs), median(sc, runs), median(sf, runs), median(ql, runs),
           median(qm, runs), median(qx, runs), median(ss, runs));
    cl_spec_free(spec);
    cl_virt_close(v);
    cl_engine_free(e);
    free(text);
    unlink(logpath);
    snprintf(logpath, sizeof(logpath), "%s/clouds", dir);
    rmdir(logpath);
    rmdir(dir);
    return 0;
}
