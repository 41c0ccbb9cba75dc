/*
 * test_role: cl_role against a real sshd on 127.0.0.1 standing for a guest (sshd_fixture.h):
 * the facts file, steps in role order, a setup skipped while its text and the facts are the
 * same and run again when the facts change, a failing step reported with its exit status and
 * output, a step reading stdin without eating the wrapper, values with quotes arriving intact.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "cl_log.h"
#include "cl_role.h"
#include "cl_spec.h"
#include "cl_ssh.h"
#include "sshd_fixture.h"

static char tmp[64], p_client[128], p_known[128], p_hostkey[128], guest[128];
static fx_sshd_t fx;

/* A web-like cloud: database (10.0.0.3), two servers, a balancer holding the quoted option. */
static cl_spec_t *spec_with(const char *server2_ip, const char *check)
{
    char text[4096];
    cl_spec_t *s = NULL;
    cl_err_t err;

    snprintf(text, sizeof(text),
             "{\"name\":\"rw\",\"type\":\"web\",\"ensure\":\"stopped\",\"pool\":[\"127.0.0.1\"],"
             "\"options\":{\"motd\":\"it's \\\"quoted\\\" $(x)\",\"workers\":4},"
             "\"roles\":["
             "{\"name\":\"database\",\"after\":[],\"steps\":{"
             "\"setup\":\"echo setup-db >> \\\"$CLOUD_DIR/log\\\"\","
             "\"start\":\"echo start-db >> \\\"$CLOUD_DIR/log\\\"\"}},"
             "{\"name\":\"server\",\"after\":[\"database\"],\"steps\":{"
             "\"setup\":\"echo \\\"setup-server $CLOUD_INDEX $CLOUD_IPS_SERVER\\\" >> "
             "\\\"$CLOUD_DIR/log\\\"\\nread x || true\\necho \\\"read:[${x:-}]\\\" >> "
             "\\\"$CLOUD_DIR/log\\\"\","
             "\"check\":\"%s\"}},"
             "{\"name\":\"balancer\",\"after\":[\"server\"]}],"
             "\"slots\":["
             "{\"name\":\"rw-database-0\",\"roles\":[\"database\"],\"index\":0,\"ip\":\"10.0.0.3\","
             "\"image\":\"/i\"},"
             "{\"name\":\"rw-server-0\",\"roles\":[\"server\"],\"index\":0,\"ip\":\"10.0.0.5\","
             "\"image\":\"/i\"},"
             "{\"name\":\"rw-server-1\",\"roles\":[\"server\",\"balancer\"],\"index\":1,"
             "\"ip\":\"%s\",\"image\":\"/i\"}]}",
             check, server2_ip);
    cl_err_clear(&err);
    if (cl_spec_parse_string(text, &s, &err) < 0)
        fprintf(stderr, "test_role: spec refused: %s\n", err.msg);
    return s;
}

static char *guest_file(const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", guest, name);
    return fx_read_file(path, NULL);
}

static void test_facts(void)
{
    cl_spec_t *s = spec_with("10.0.0.6", "true");
    cl_err_t err;
    char *f;

    if (!CHECK(s))
        return;
    f = cl_role_facts(s, 2, &err);
    if (CHECK(f)) {
        CHECK_CONTAINS(f, "export CLOUD_NAME='rw'\n");
        CHECK_CONTAINS(f, "export CLOUD_SLOT='rw-server-1'\n");
        CHECK_CONTAINS(f, "export CLOUD_ROLES='server balancer'\n");
        CHECK_CONTAINS(f, "export CLOUD_INDEX='1'\n");
        CHECK_CONTAINS(f, "export CLOUD_IP='10.0.0.6'\n");
        CHECK_CONTAINS(f, "export CLOUD_HEAD='10.0.0.3'\n");
        CHECK_CONTAINS(f, "export CLOUD_ALL_IPS='10.0.0.3 10.0.0.5 10.0.0.6'\n");
        CHECK_CONTAINS(f, "export CLOUD_IPS_SERVER='10.0.0.5 10.0.0.6'\n");
        CHECK_CONTAINS(f, "export CLOUD_COUNT_SERVER='2'\n");
        CHECK_CONTAINS(f, "export CLOUD_NAMES_SERVER='rw-server-0 rw-server-1'\n");
        CHECK_CONTAINS(f, "export CLOUD_IPS_BALANCER='10.0.0.6'\n");
        CHECK_CONTAINS(f, "export CLOUD_OPT_WORKERS='4'\n");
        CHECK_CONTAINS(f, "export CLOUD_OPT_MOTD='it'\\''s \"quoted\" $(x)'\n");
    }
    free(f);
    cl_spec_free(s);
}

static int setup_sshd(void)
{
    char pub[160];
    const char *keys[] = {p_hostkey, NULL};

    snprintf(p_client, sizeof(p_client), "%s/client", tmp);
    snprintf(p_hostkey, sizeof(p_hostkey), "%s/hostkey", tmp);
    snprintf(p_known, sizeof(p_known), "%s/known_hosts", tmp);
    snprintf(guest, sizeof(guest), "%s/guest", tmp);
    snprintf(pub, sizeof(pub), "%s/client.pub", tmp);
    if (fx_sshd_init(&fx, tmp) < 0 || fx_keygen("ed25519", p_client) != 0 ||
        fx_keygen("ed25519", p_hostkey) != 0)
        return -1;
    return fx_copy_file(pub, fx.authorized_keys, 0600) == 0 ? fx_sshd_start(&fx, keys) : -1;
}

/* Runs step on slot of s, the guest's directory being `guest` (CLOUD_DIR_T for the steps). */
static int run(cl_ssh_t *ssh, cl_spec_t *s, size_t slot, cl_step_t step, cl_role_report_t *rep,
               cl_err_t *err)
{
    cl_role_opts_t o = {guest, 5000};

    return cl_role_run(ssh, s, slot, step, &o, rep, err);
}

static void test_steps(cl_ssh_t *ssh)
{
    cl_spec_t *s = spec_with("10.0.0.6", "echo checking; echo broken >&2; exit 3");
    cl_spec_t *moved = spec_with("10.0.0.7", "true");
    cl_role_report_t rep;
    cl_err_t err;
    char *log, *facts, marker[256];
    struct stat st;

    if (!CHECK(s) || !CHECK(moved))
        goto cleanup;
    /* the steps write to $CLOUD_DIR/log: the guest's directory of the options */
    cl_err_clear(&err);
    /* database: setup then start; server 0: setup (stdin is empty, the wrapper survives) */
    if (!CHECK_INT_EQ(run(ssh, s, 0, CL_STEP_SETUP, &rep, &err), 0))
        fprintf(stderr, "  %s: %s\n", err.op, err.msg);
    CHECK_INT_EQ(rep.ran, 1);
    CHECK_INT_EQ(run(ssh, s, 0, CL_STEP_START, &rep, &err), 0);
    CHECK_INT_EQ(run(ssh, s, 1, CL_STEP_SETUP, &rep, &err), 0);
    CHECK_INT_EQ(rep.ran, 1);
    log = guest_file("log");
    if (CHECK(log))
        CHECK_STR_EQ(log, "setup-db\nstart-db\nsetup-server 0 10.0.0.5 10.0.0.6\nread:[]\n");
    free(log);
    facts = guest_file("facts.sh");
    if (CHECK(facts))
        CHECK_CONTAINS(facts, "export CLOUD_SLOT='rw-server-0'\n");
    free(facts);
    snprintf(marker, sizeof(marker), "%s/setup-server", guest);
    CHECK_INT_EQ(stat(marker, &st), 0);
    /* the same setup again: skipped; with other facts (a server moved): run again */
    CHECK_INT_EQ(run(ssh, s, 1, CL_STEP_SETUP, &rep, &err), 0);
    CHECK_INT_EQ(rep.skipped, 1);
    CHECK_INT_EQ(rep.ran, 0);
    CHECK_INT_EQ(run(ssh, moved, 1, CL_STEP_SETUP, &rep, &err), 0);
    CHECK_INT_EQ(rep.ran, 1);
    log = guest_file("log");
    if (CHECK(log))
        CHECK_CONTAINS(log, "setup-server 0 10.0.0.5 10.0.0.7\n");
    free(log);
    /* a role without the step: nothing to do, no connection needed */
    CHECK_INT_EQ(cl_role_has_step(s, 0, CL_STEP_CHECK), 0);
    CHECK_INT_EQ(run(NULL, s, 0, CL_STEP_CHECK, &rep, &err), 0);
    /* a failing check: its exit status and what it said */
    cl_err_clear(&err);
    CHECK_INT_EQ(run(ssh, s, 2, CL_STEP_CHECK, &rep, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_SSH);
    CHECK_INT_EQ(err.code, 3);
    CHECK_STR_EQ(err.host, "10.0.0.6");
    CHECK_STR_EQ(err.op, "check server");
    CHECK_CONTAINS(err.msg, "rw-server-1: role server, step check exited 3");
    CHECK_CONTAINS(err.msg, "broken");
    CHECK_INT_EQ(rep.failed, 1);
cleanup:
    cl_spec_free(s);
    cl_spec_free(moved);
}

/* The guest key: derived from the ssh key and the cloud's name, uploaded 0600 with a setup. */
static void test_guest_key(cl_ssh_t *ssh)
{
    char k1[65], k2[65], k3[65], path[256], *got;
    cl_spec_t *s = spec_with("10.0.0.6", "true");
    cl_role_opts_t o = {guest, 5000, NULL, 0};
    struct stat st;
    cl_err_t err;

    cl_err_clear(&err);
    if (!CHECK(s) || !CHECK_INT_EQ(cl_role_guest_key(p_client, "rw", k1, &err), 0) ||
        !CHECK_INT_EQ(cl_role_guest_key(p_client, "rw", k2, &err), 0) ||
        !CHECK_INT_EQ(cl_role_guest_key(p_client, "other", k3, &err), 0))
        goto cleanup;
    CHECK_INT_EQ(strlen(k1), 64);
    CHECK_STR_EQ(k1, k2);
    CHECK(strcmp(k1, k3) != 0);
    CHECK_INT_EQ(cl_role_guest_key("/nonexistent/key", "rw", k3, &err), -1);
    CHECK_CONTAINS(err.msg, "/nonexistent/key");
    o.guest_key = (const unsigned char *)k1;
    o.guest_key_len = strlen(k1);
    CHECK_INT_EQ(cl_role_run(ssh, s, 0, CL_STEP_SETUP, &o, NULL, &err), 0);
    snprintf(path, sizeof(path), "%s/cloud.key", guest);
    got = fx_read_file(path, NULL);
    if (CHECK(got))
        CHECK_STR_EQ(got, k1);
    free(got);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
cleanup:
    cl_spec_free(s);
}

static void test_spec_steps(void)
{
    cl_spec_t *s = NULL;
    cl_err_t err;

    cl_err_clear(&err);
    CHECK_INT_EQ(cl_spec_parse_string("{\"name\":\"b\",\"pool\":[\"h\"],\"roles\":[{\"name\":"
                                      "\"r\",\"steps\":{\"setpu\":\"x\"}}],\"slots\":[]}",
                                      &s, &err),
                 -1);
    CHECK_CONTAINS(err.msg, "unknown step 'setpu'");
    CHECK_INT_EQ(cl_spec_parse_string("{\"name\":\"b\",\"pool\":[\"h\"],\"roles\":[{\"name\":"
                                      "\"r\",\"steps\":{\"start\":\"\"}}],\"slots\":[]}",
                                      &s, &err),
                 -1);
    CHECK_CONTAINS(err.msg, "roles[0].steps.start (r): expected a non-empty script");
    CHECK_STR_EQ(cl_step_name(CL_STEP_CHECK), "check");
}

int main(void)
{
    cl_ssh_opts_t o;
    cl_ssh_t *ssh = NULL;
    cl_err_t err;

    cl_log_set_stream(NULL);
    check_tmpdir(tmp, sizeof(tmp), "test-role");
    test_spec_steps();
    test_facts();
    if (CHECK_INT_EQ(setup_sshd(), 0) && CHECK_INT_EQ(mkdir(guest, 0755), 0)) {
        memset(&o, 0, sizeof(o));
        o.host = FX_HOST;
        o.port = fx.port;
        o.user = "root";
        o.key = p_client;
        o.known_hosts = p_known;
        cl_err_clear(&err);
        ssh = cl_ssh_connect(&o, &err);
        if (!CHECK(ssh))
            fprintf(stderr, "test_role: connect: %s\n", err.msg);
        else {
            test_steps(ssh);
            test_guest_key(ssh);
        }
    }
    cl_ssh_free(ssh);
    fx_sshd_fini(&fx);
    check_rmtree(tmp);
    return check_summary();
}
