/*
 * cl_state: atomic per-cloud state files (see cl_state.h).
 */
#include "cl_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_spec.h"

static int mkdir_p(const char *path, cl_err_t *err)
{
    char tmp[PATH_MAX];
    char *p;

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "create state dir", "path too long");
    for (p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return cl_err_sys(err, NULL, "create state dir", "mkdir %s", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return cl_err_sys(err, NULL, "create state dir", "mkdir %s", tmp);
    return 0;
}

static int path_for(const char *dir, const char *name, const char *suffix, char *out, size_t len,
                    cl_err_t *err)
{
    if (!cl_spec_name_ok(name))
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "state", "invalid cloud name '%s'", name);
    if (snprintf(out, len, "%s/clouds/%s.json%s", dir, name, suffix) >= (int)len)
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "state", "path too long");
    return 0;
}

int cl_state_init(const char *dir, cl_err_t *err)
{
    char sub[PATH_MAX];

    if (mkdir_p(dir, err) < 0)
        return -1;
    snprintf(sub, sizeof(sub), "%s/clouds", dir);
    return mkdir_p(sub, err);
}

int cl_state_load(const char *dir, const char *name, json_object **doc, cl_err_t *err)
{
    char path[PATH_MAX];
    json_object *o;

    *doc = NULL;
    if (path_for(dir, name, "", path, sizeof(path), err) < 0)
        return -1;
    if (access(path, F_OK) < 0)
        return 0;
    o = json_object_from_file(path);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return cl_err_set(err, CL_ERR_STATE, 0, NULL, "load state",
                          "%s is not a JSON object: remove it to forget cloud %s", path, name);
    }
    *doc = o;
    return 1;
}

int cl_state_save(const char *dir, const char *name, json_object *doc, cl_err_t *err)
{
    char path[PATH_MAX], tmp[PATH_MAX], sub[PATH_MAX];
    const char *text;
    size_t len, off = 0;
    int fd = -1, dfd = -1, rc = -1;

    if (path_for(dir, name, "", path, sizeof(path), err) < 0 ||
        path_for(dir, name, ".tmp", tmp, sizeof(tmp), err) < 0)
        return -1;
    if (cl_state_init(dir, err) < 0)
        return -1;
    text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
    len = strlen(text);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        cl_err_sys(err, NULL, "save state", "open %s", tmp);
        goto cleanup;
    }
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            cl_err_sys(err, NULL, "save state", "write %s", tmp);
            goto cleanup;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        cl_err_sys(err, NULL, "save state", "fsync %s", tmp);
        goto cleanup;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) < 0) {
        cl_err_sys(err, NULL, "save state", "rename %s", tmp);
        goto cleanup;
    }
    snprintf(sub, sizeof(sub), "%s/clouds", dir);
    dfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0)
        fsync(dfd);
    rc = 0;

cleanup:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (dfd >= 0)
        close(dfd);
    return rc;
}

int cl_state_remove(const char *dir, const char *name, cl_err_t *err)
{
    char path[PATH_MAX];

    if (path_for(dir, name, "", path, sizeof(path), err) < 0)
        return -1;
    if (unlink(path) < 0 && errno != ENOENT)
        return cl_err_sys(err, NULL, "remove state", "unlink %s", path);
    return 0;
}

void cl_state_names_free(char **names)
{
    char **p;

    for (p = names; p && *p; p++)
        free(*p);
    free(names);
}

int cl_state_list(const char *dir, char ***names, size_t *n, cl_err_t *err)
{
    char sub[PATH_MAX];
    DIR *d;
    struct dirent *e;
    size_t cap = 8;

    *n = 0;
    *names = calloc(cap + 1, sizeof(**names));
    if (!*names)
        return cl_err_set(err, CL_ERR_SYS, 0, NULL, "list state", "out of memory");
    snprintf(sub, sizeof(sub), "%s/clouds", dir);
    d = opendir(sub);
    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char name[256];
        if (len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)(len - 5), e->d_name);
        if (!cl_spec_name_ok(name))
            continue;
        if (*n == cap) {
            char **nv = realloc(*names, (cap * 2 + 1) * sizeof(**names));
            if (!nv)
                break;
            *names = nv;
            cap *= 2;
        }
        (*names)[(*n)++] = strdup(name);
        (*names)[*n] = NULL;
    }
    closedir(d);
    return 0;
}
