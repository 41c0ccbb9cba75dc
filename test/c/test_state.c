/*
 * test_state: the per-cloud state files, in a private temporary directory.  What is saved is
 * loaded back, a save replaces the file whole (no temporary left, a stale one ignored), a
 * corrupt file is a state error naming its path, and names that could escape the directory
 * are refused.
 */
#include "check.h"

#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_err.h"
#include "cl_state.h"

static char root[64], dir[PATH_MAX];

static void write_file(const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    fp = fopen(path, "w");
    if (!CHECK(fp != NULL))
        return;
    fputs(text, fp);
    fclose(fp);
}

static int exists(const char *rel)
{
    char path[PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return access(path, F_OK) == 0;
}

static int listed(char **names, const char *name)
{
    for (; names && *names; names++)
        if (strcmp(*names, name) == 0)
            return 1;
    return 0;
}

static json_object *doc(int epoch)
{
    json_object *o = json_object_new_object(), *pl = json_object_new_object();

    json_object_object_add(o, "epoch", json_object_new_int(epoch));
    json_object_object_add(pl, "web-server-0", json_object_new_string("127.0.0.1"));
    json_object_object_add(o, "placement", pl);
    return o;
}

static void test_save_load(void)
{
    json_object *d1 = doc(1), *d2 = doc(2), *got = NULL, *v;
    cl_err_t err;
    struct stat st;
    char path[PATH_MAX * 2];

    cl_err_clear(&err);
    /* nothing saved yet: not an error, just no state */
    CHECK_INT_EQ(cl_state_load(dir, "web", &got, &err), 0);
    CHECK(got == NULL);

    /* the first save creates the directories */
    CHECK_INT_EQ(cl_state_save(dir, "web", d1, &err), 0);
    CHECK(exists("clouds/web.json"));
    CHECK_INT_EQ(cl_state_load(dir, "web", &got, &err), 1);
    CHECK(got && json_object_equal(got, d1));
    json_object_put(got);
    got = NULL;

    /* state is for root only */
    snprintf(path, sizeof(path), "%s/clouds/web.json", dir);
    if (CHECK(stat(path, &st) == 0))
        CHECK_INT_EQ(st.st_mode & 077, 0);

    /* a save replaces the whole file and leaves no temporary behind */
    CHECK_INT_EQ(cl_state_save(dir, "web", d2, &err), 0);
    CHECK_INT_EQ(cl_state_load(dir, "web", &got, &err), 1);
    CHECK(got && json_object_object_get_ex(got, "epoch", &v) && json_object_get_int(v) == 2);
    CHECK(got && json_object_equal(got, d2));
    json_object_put(got);
    got = NULL;
    CHECK(!exists("clouds/web.json.tmp"));

    /* a temporary left by a crash during a save does not stand in the way */
    write_file("clouds/web.json.tmp", "{\"epoch\": 9, \"half");
    CHECK_INT_EQ(cl_state_load(dir, "web", &got, &err), 1);
    CHECK(got && json_object_equal(got, d2));
    json_object_put(got);
    got = NULL;
    CHECK_INT_EQ(cl_state_save(dir, "web", d1, &err), 0);
    CHECK(!exists("clouds/web.json.tmp"));
    CHECK_INT_EQ(cl_state_load(dir, "web", &got, &err), 1);
    CHECK(got && json_object_equal(got, d1));
    json_object_put(got);
    CHECK_INT_EQ(err.domain, CL_ERR_NONE);

    json_object_put(d1);
    json_object_put(d2);
}

static void test_list_remove(void)
{
    json_object *d = doc(1), *got = NULL;
    char **names = NULL;
    size_t n = 99;
    cl_err_t err;

    cl_err_clear(&err);
    /* no state dir at all: an empty list */
    {
        char missing[PATH_MAX * 2];
        snprintf(missing, sizeof(missing), "%s/nowhere", root);
        CHECK_INT_EQ(cl_state_list(missing, &names, &n, &err), 0);
        CHECK_INT_EQ(n, 0);
        CHECK(names && names[0] == NULL);
        cl_state_names_free(names);
    }

    CHECK_INT_EQ(cl_state_save(dir, "web", d, &err), 0);
    CHECK_INT_EQ(cl_state_save(dir, "b.c_d-9", d, &err), 0);
    /* files that are not state of a valid cloud name are not clouds */
    write_file("clouds/notes.txt", "x");
    write_file("clouds/bad name.json", "{}");
    write_file("clouds/.json", "{}");
    write_file("clouds/other.json.tmp", "{}");

    names = NULL;
    CHECK_INT_EQ(cl_state_list(dir, &names, &n, &err), 0);
    CHECK_INT_EQ(n, 2);
    CHECK(listed(names, "web"));
    CHECK(listed(names, "b.c_d-9"));
    CHECK(names && names[n] == NULL);
    cl_state_names_free(names);

    CHECK_INT_EQ(cl_state_remove(dir, "web", &err), 0);
    CHECK(!exists("clouds/web.json"));
    CHECK_INT_EQ(cl_state_load(dir, "web", &got, &err), 0);
    CHECK(got == NULL);
    /* removing what is not there is fine (stop is idempotent) */
    CHECK_INT_EQ(cl_state_remove(dir, "web", &err), 0);
    CHECK_INT_EQ(cl_state_remove(dir, "never", &err), 0);
    CHECK_INT_EQ(err.domain, CL_ERR_NONE);

    names = NULL;
    CHECK_INT_EQ(cl_state_list(dir, &names, &n, &err), 0);
    CHECK_INT_EQ(n, 1);
    CHECK(listed(names, "b.c_d-9"));
    CHECK(!listed(names, "web"));
    cl_state_names_free(names);
    cl_state_names_free(NULL);
    json_object_put(d);
}

static void test_corrupt(void)
{
    json_object *got = (json_object *)1;
    char path[PATH_MAX * 2];
    cl_err_t err;

    CHECK_INT_EQ(cl_state_init(dir, NULL), 0);
    write_file("clouds/broken.json", "{\"epoch\": 3, ");
    snprintf(path, sizeof(path), "%s/clouds/broken.json", dir);
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_state_load(dir, "broken", &got, &err), -1);
    CHECK(got == NULL);
    CHECK_INT_EQ(err.domain, CL_ERR_STATE);
    CHECK_CONTAINS(err.msg, path);

    /* JSON, but not an object */
    write_file("clouds/array.json", "[1, 2]");
    cl_err_clear(&err);
    CHECK_INT_EQ(cl_state_load(dir, "array", &got, &err), -1);
    CHECK_INT_EQ(err.domain, CL_ERR_STATE);
    CHECK_CONTAINS(err.msg, "array.json");
}

static void test_bad_names(void)
{
    static const char *const bad[] = {"../escape",
                                      "a/b",
                                      "",
                                      ".hidden",
                                      "-x",
                                      "a b",
                                      "0123456789012345678901234567890123456789x"};
    json_object *d = doc(1), *got = NULL;
    char escape[PATH_MAX * 2];
    cl_err_t err;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_state_save(dir, bad[i], d, &err), -1);
        CHECK_INT_EQ(err.domain, CL_ERR_STATE);
        CHECK_CONTAINS(err.msg, "invalid cloud name");
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_state_load(dir, bad[i], &got, &err), -1);
        CHECK_INT_EQ(err.domain, CL_ERR_STATE);
        cl_err_clear(&err);
        CHECK_INT_EQ(cl_state_remove(dir, bad[i], &err), -1);
        CHECK_INT_EQ(err.domain, CL_ERR_STATE);
    }
    snprintf(escape, sizeof(escape), "%s/escape.json", dir);
    CHECK(access(escape, F_OK) != 0);
    json_object_put(d);
}

int main(void)
{
    int rc;

    check_tmpdir(root, sizeof(root), "cl-state");
    snprintf(dir, sizeof(dir), "%s/var/lib/cloud", root);
    test_save_load();
    test_list_remove();
    test_corrupt();
    test_bad_names();
    rc = check_summary();
    if (check_rmtree(root) != 0)
        perror(root);
    return rc;
}
