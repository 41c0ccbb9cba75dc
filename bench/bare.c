/*
 * bare: the floor of the converge benchmark (bench/converge.rb).  A C loop linking libvirt only
 * that makes the libvirt calls cl_engine makes for N slots, and nothing else: no spec, no
 * daemon, no state file, no domain scan, no status document.
 *
 *   converge:  storage pool ensure (once), then per slot: overlay volume create (the engine's
 *              XML shape, with the <capacity> the test driver needs, plus <allocation>0: the
 *              test driver's pools hold 100 GiB, and an overlay without it books its whole
 *              capacity, so at most 100 of them fit), virStorageVolGetPath, virDomainDefineXML
 *              with a rendered test-driver domain carrying the ownership <metadata> element,
 *              virDomainCreate.
 *   teardown:  per slot: virDomainLookupByName, virDomainDestroy, virDomainUndefineFlags,
 *              virStorageVolLookupByName, virStorageVolDelete.
 *
 * Both phases are timed with CLOCK_MONOTONIC; opening the connection is timed apart.  After
 * each phase the running domains (resp. remaining domains and volumes) of the run are counted,
 * so a broken loop cannot report a fast time.  One JSON object is printed on stdout.
 *
 * usage: bare N [--uri URI] [--cloud NAME] [--pool NAME] [--pool-path DIR]
 */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define META_URI "urn:x-puppet-cloud:owner:1"

static void quiet(void *ud, virErrorPtr e)
{
    (void)ud;
    (void)e;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *name)
{
    virErrorPtr e = virGetLastError();

    fprintf(stderr, "bare: %s %s: %s\n", what, name ? name : "",
            e && e->message ? e->message : "libvirt reported no detail");
    exit(1);
}

/* FNV-1a, for stable per-slot identities (the engine derives its own the same way). */
static uint64_t hash(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Count the run's domains (names starting with prefix): active ones only, or all of them. */
static int count_domains(virConnectPtr c, const char *prefix, int active_only)
{
    virDomainPtr *doms = NULL;
    unsigned flags = active_only ? VIR_CONNECT_LIST_DOMAINS_ACTIVE : 0;
    int n = virConnectListAllDomains(c, &doms, flags), i, k = 0;

    if (n < 0)
        die("list domains", NULL);
    for (i = 0; i < n; i++) {
        if (strncmp(virDomainGetName(doms[i]), prefix, strlen(prefix)) == 0)
            k++;
        virDomainFree(doms[i]);
    }
    free(doms);
    return k;
}

static int count_volumes(virStoragePoolPtr p, const char *prefix)
{
    virStorageVolPtr *vols = NULL;
    int n = virStoragePoolListAllVolumes(p, &vols, 0), i, k = 0;

    if (n < 0)
        die("list volumes", NULL);
    for (i = 0; i < n; i++) {
        if (strncmp(virStorageVolGetName(vols[i]), prefix, strlen(prefix)) == 0)
            k++;
        virStorageVolFree(vols[i]);
    }
    free(vols);
    return k;
}

/* The engine's cl_virt_pool_ensure: look the pool up, define/build/start it if needed. */
static virStoragePoolPtr pool_ensure(virConnectPtr c, const char *pool, const char *path)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(c, pool);
    char xml[1024];

    if (!p) {
        virResetLastError();
        snprintf(xml, sizeof(xml),
                 "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>", pool,
                 path);
        p = virStoragePoolDefineXML(c, xml, 0);
        if (!p)
            die("define pool", pool);
        if (virStoragePoolBuild(p, 0) < 0)
            virResetLastError();
        virStoragePoolSetAutostart(p, 1);
        virResetLastError();
    }
    if (virStoragePoolIsActive(p) != 1 && virStoragePoolCreate(p, 0) < 0)
        die("start pool", pool);
    return p;
}

int main(int argc, char **argv)
{
    const char *uri = "test:///default", *cloud = "bench", *pool = "cloud";
    const char *pool_path = "/var/lib/libvirt/images/cloud";
    const char *image = "/var/lib/cloud/images/bench.qcow2";
    /* The engine also passes VIR_DOMAIN_UNDEFINE_NVRAM, which the test driver refuses (the
     * engine then retries with virDomainUndefine): the floor makes the one call that works. */
    unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
    virConnectPtr c;
    virStoragePoolPtr p;
    char prefix[128], name[128], vol[160], xml[4096];
    double t0, t_open, t_conv, t_down;
    int n, i, running, left_doms, left_vols;

    if (argc < 2 || (n = atoi(argv[1])) <= 0) {
        fprintf(stderr, "usage: bare N [--uri URI] [--cloud NAME] [--pool NAME] [--pool-path "
                        "DIR]\n");
        return 2;
    }
    for (i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--uri") == 0)
            uri = argv[i + 1];
        else if (strcmp(argv[i], "--cloud") == 0)
            cloud = argv[i + 1];
        else if (strcmp(argv[i], "--pool") == 0)
            pool = argv[i + 1];
        else if (strcmp(argv[i], "--pool-path") == 0)
            pool_path = argv[i + 1];
        else {
            fprintf(stderr, "bare: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    snprintf(prefix, sizeof(prefix), "%s-", cloud);
    virInitialize();
    virSetErrorFunc(NULL, quiet);

    t0 = now_s();
    c = virConnectOpen(uri);
    if (!c)
        die("connect", uri);
    t_open = now_s() - t0;

    /* Converge. */
    t0 = now_s();
    p = pool_ensure(c, pool, pool_path);
    for (i = 0; i < n; i++) {
        virStorageVolPtr sv;
        virDomainPtr d;
        char uuid[40], mac[20], *path;
        uint64_t h;

        snprintf(name, sizeof(name), "%s-server-%d", cloud, i);
        snprintf(vol, sizeof(vol), "%s.qcow2", name);
        h = hash(name, hash(cloud, 14695981039346656037ULL));
        snprintf(uuid, sizeof(uuid), "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)(h >> 32),
                 (unsigned)(h >> 16) & 0xffff, (unsigned)h & 0xfff, (unsigned)(h >> 52),
                 (unsigned long long)i);
        snprintf(mac, sizeof(mac), "52:54:00:%02x:%02x:%02x", (i >> 16) & 0xff, (i >> 8) & 0xff,
                 i & 0xff);
        snprintf(xml, sizeof(xml),
                 "<volume><name>%s</name><capacity unit='G'>1</capacity>"
                 "<allocation>0</allocation>"
                 "<target><format type='qcow2'/></target>"
                 "<backingStore><path>%s</path><format type='qcow2'/></backingStore></volume>",
                 vol, image);
        sv = virStorageVolCreateXML(p, xml, 0);
        if (!sv)
            die("create volume", vol);
        path = virStorageVolGetPath(sv);
        if (!path)
            die("volume path", vol);
        virStorageVolFree(sv);
        snprintf(xml, sizeof(xml),
                 "<domain type='test'>\n"
                 "  <name>%s</name>\n"
                 "  <uuid>%s</uuid>\n"
                 "  <description>server VM at 10.1.%d.%d</description>\n"
                 "  <memory unit='KiB'>1048576</memory>\n"
                 "  <currentMemory unit='KiB'>1048576</currentMemory>\n"
                 "  <vcpu>1</vcpu>\n"
                 "  <os>\n"
                 "    <type arch='x86_64'>hvm</type>\n"
                 "    <boot dev='hd'/>\n"
                 "  </os>\n"
                 "  <devices>\n"
                 "    <disk type='file' device='disk'>\n"
                 "      <source file='%s'/>\n"
                 "      <target dev='vda' bus='virtio'/>\n"
                 "    </disk>\n"
                 "    <interface type='network'>\n"
                 "      <mac address='%s'/>\n"
                 "      <source network='default'/>\n"
                 "    </interface>\n"
                 "  </devices>\n"
                 "  <metadata><cloud:owner xmlns:cloud=\"" META_URI "\" cloud=\"%s\" "
                 "slot=\"%s\" role=\"server\" index=\"%d\" ip=\"10.1.%d.%d\" host=\"127.0.0.1\" "
                 "image=\"%s\" disk=\"%s\" config=\"%016llx\" epoch=\"1\"/></metadata>\n"
                 "</domain>\n",
                 name, uuid, i / 250, i % 250 + 2, path, mac, cloud, name, i, i / 250, i % 250 + 2,
                 image, path, (unsigned long long)h);
        free(path);
        d = virDomainDefineXML(c, xml);
        if (!d)
            die("define", name);
        if (virDomainCreate(d) < 0)
            die("start", name);
        virDomainFree(d);
    }
    t_conv = now_s() - t0;
    running = count_domains(c, prefix, 1);

    /* Tear down. */
    t0 = now_s();
    for (i = 0; i < n; i++) {
        virDomainPtr d;
        virStorageVolPtr sv;

        snprintf(name, sizeof(name), "%s-server-%d", cloud, i);
        snprintf(vol, sizeof(vol), "%s.qcow2", name);
        d = virDomainLookupByName(c, name);
        if (!d)
            die("look up", name);
        if (virDomainDestroy(d) < 0)
            die("destroy", name);
        if (virDomainUndefineFlags(d, flags) < 0)
            die("undefine", name);
        virDomainFree(d);
        sv = virStorageVolLookupByName(p, vol);
        if (!sv)
            die("look up volume", vol);
        if (virStorageVolDelete(sv, 0) < 0)
            die("delete volume", vol);
        virStorageVolFree(sv);
    }
    t_down = now_s() - t0;
    left_doms = count_domains(c, prefix, 0);
    left_vols = count_volumes(p, prefix);

    virStoragePoolFree(p);
    virConnectClose(c);
    printf("{\"method\":\"bare\",\"n\":%d,\"open_s\":%.6f,\"converge_s\":%.6f,\"teardown_s\":%.6f,"
           "\"running_after_converge\":%d,\"domains_after_teardown\":%d,"
           "\"volumes_after_teardown\":%d}\n",
           n, t_open, t_conv, t_down, running, left_doms, left_vols);
    return running == n && left_doms == 0 && left_vols == 0 ? 0 : 1;
}
