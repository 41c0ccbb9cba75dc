/*
 * cl_ssh_known: host keys pinned on first contact.  The known-hosts file is OpenSSH's format
 * ("[address]:port type base64", so `ssh -o UserKnownHostsFile=FILE` can use it too), holds
 * the full key, and is only ever replaced whole (temporary file, fsync, rename) under a lock:
 * a mutex for the threads of a process, a flock of its directory for processes.  Beside a pin,
 * a comment line records which incarnation of the guest (which disk) the pin is for, so that a
 * guest recreated behind this host's back is pinned afresh while a changed key is refused.
 */
#include "cl_ssh_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_log.h"

#define TYPE_MAX 64                        /* a host key algorithm's name */
#define KNOWN_NAME_MAX 300                 /* a known-hosts name: "[address]:port" */
#define INCARNATION_TAG "#cl-incarnation " /* then the known-hosts name, a space and the id */
#define INCARNATION_MAX 256                /* longest id */

static pthread_mutex_t known_mutex = PTHREAD_MUTEX_INITIALIZER;

/* host:port as OpenSSH names it in known_hosts. */
static void known_name(const char *host, unsigned port, char *buf, size_t n)
{
    if (port == 22)
        snprintf(buf, n, "%s", host);
    else
        snprintf(buf, n, "[%s]:%u", host, port);
}

/* " port N" unless 22, for messages. */
static const char *port_note(unsigned port, char *buf, size_t n)
{
    if (port == 22)
        buf[0] = '\0';
    else
        snprintf(buf, n, " port %u", port);
    return buf;
}

/* "SHA256:<unpadded base64>" of a key blob, as ssh-keygen -l prints it. */
static void fingerprint(const unsigned char *blob, size_t len, char fp[CL_SSH_FP_MAX])
{
    unsigned char md[EVP_MAX_MD_SIZE], b64[4 * EVP_MAX_MD_SIZE / 3 + 8];
    unsigned mdlen = 0;
    int n = 0;

    if (EVP_Digest(blob, len, md, &mdlen, EVP_sha256(), NULL) == 1)
        n = EVP_EncodeBlock(b64, md, (int)mdlen);
    while (n > 0 && b64[n - 1] == '=')
        n--;
    snprintf(fp, CL_SSH_FP_MAX, "SHA256:%.*s", n, (const char *)b64);
}

/* The fingerprint of a base64 key blob; "(unreadable)" if it is not base64. */
static void b64_fingerprint(const char *b64, char fp[CL_SSH_FP_MAX])
{
    size_t n = strlen(b64), pad = 0;
    unsigned char *blob;
    int len;

    snprintf(fp, CL_SSH_FP_MAX, "(unreadable)");
    if (n == 0 || n % 4 || !(blob = malloc(n / 4 * 3 + 1)))
        return;
    len = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)n);
    pad = (b64[n - 1] == '=') + (b64[n - 2] == '=');
    if (len >= (int)pad)
        fingerprint(blob, (size_t)len - pad, fp);
    free(blob);
}

/* The algorithm named at the start of a key blob ("ssh-ed25519"...). */
static int blob_type(const unsigned char *blob, size_t len, char type[TYPE_MAX])
{
    size_t n, i;

    if (len < 4)
        return -1;
    n = (size_t)blob[0] << 24 | (size_t)blob[1] << 16 | (size_t)blob[2] << 8 | blob[3];
    if (n == 0 || n >= TYPE_MAX || n > len - 4)
        return -1;
    for (i = 0; i < n; i++)
        if (blob[4 + i] <= ' ' || blob[4 + i] > '~')
            return -1;
    memcpy(type, blob + 4, n);
    type[n] = '\0';
    return 0;
}

/*
 * Is name among the comma-separated names of a known-hosts line?  Hashed names, markers and
 * wildcards are not supported: the file is ours.
 */
static int line_names(const char *line, size_t len, const char *name)
{
    size_t nl = strlen(name), i = 0, start;

    if (len == 0 || line[0] == '#' || line[0] == '@' || line[0] == '|')
        return 0;
    while (i < len && line[i] != ' ' && line[i] != '\t') {
        for (start = i; i < len && line[i] != ',' && line[i] != ' ' && line[i] != '\t'; i++)
            ;
        if (i - start == nl && memcmp(line + start, name, nl) == 0)
            return 1;
        if (i < len && line[i] == ',')
            i++;
    }
    return 0;
}

/* Is the line the incarnation record of name?  Its id into *id (not NUL-terminated), *idlen. */
static int line_record(const char *line, size_t len, const char *name, const char **id,
                       size_t *idlen)
{
    size_t tl = strlen(INCARNATION_TAG), nl = strlen(name);

    if (len <= tl + nl + 1 || memcmp(line, INCARNATION_TAG, tl) != 0 ||
        memcmp(line + tl, name, nl) != 0 || line[tl + nl] != ' ')
        return 0;
    *id = line + tl + nl + 1;
    *idlen = len - tl - nl - 1;
    return 1;
}

/* Field 1 (type) and 2 (base64 key) of a known-hosts line, malloc'ed into *type and *key. */
static int line_key(const char *line, size_t len, char **type, char **key)
{
    size_t i = 0, f[3][2] = {{0}}, k;

    for (k = 0; k < 3; k++) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        f[k][0] = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        f[k][1] = i;
    }
    if (f[1][1] == f[1][0] || f[2][1] == f[2][0])
        return -1;
    *type = strndup(line + f[1][0], f[1][1] - f[1][0]);
    *key = strndup(line + f[2][0], f[2][1] - f[2][0]);
    return *type && *key ? 0 : -1;
}

/* mkdir -p dir (0700): the caller's state directory may not have a known_hosts/ yet. */
static int make_dirs(char *dir)
{
    char *p;

    for (p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            *p = '/';
            return -1;
        }
        *p = '/';
    }
    return mkdir(dir, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/*
 * Serialise updates of file: threads on a mutex, processes on a flock of its directory (the
 * file itself is replaced by rename).  Missing directories are made (0700).  *dfd is left
 * open for known_unlock and the directory's fsync.
 */
static int known_lock(const char *file, const char *host, int *dfd, cl_err_t *err)
{
    char dir[4096];
    const char *slash = strrchr(file, '/');

    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == file ? 1 : (int)(slash - file), file);
    pthread_mutex_lock(&known_mutex);
    *dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dfd < 0 && errno == ENOENT && make_dirs(dir) == 0)
        *dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*dfd < 0) {
        pthread_mutex_unlock(&known_mutex);
        return cl_err_sys(err, host, "hostkey", "known-hosts directory %s", dir);
    }
    while (flock(*dfd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            cl_err_sys(err, host, "hostkey", "lock %s", dir);
            close(*dfd);
            pthread_mutex_unlock(&known_mutex);
            return -1;
        }
    }
    return 0;
}

static void known_unlock(int dfd)
{
    close(dfd); /* releases the flock */
    pthread_mutex_unlock(&known_mutex);
}

/* The whole file, malloc'ed and NUL-terminated, into *text; a missing file reads as "". */
static int known_read(const char *file, const char *host, char **text, size_t *len, cl_err_t *err)
{
    struct stat st;
    size_t off = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC), rc = -1;

    *text = NULL;
    *len = 0;
    if (fd < 0 && errno == ENOENT)
        return (*text = strdup("")) ? 0 : cl_err_sys(err, host, "hostkey", "out of memory");
    if (fd < 0)
        return cl_err_sys(err, host, "hostkey", "open %s", file);
    if (fstat(fd, &st) < 0) {
        cl_err_sys(err, host, "hostkey", "stat %s", file);
        goto cleanup;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > CL_SSH_KNOWN_MAX) {
        cl_err_set(err, CL_ERR_SSH, 0, host, "hostkey", "%s: larger than %u bytes", file,
                   CL_SSH_KNOWN_MAX);
        goto cleanup;
    }
    if (!(*text = malloc((size_t)st.st_size + 1))) {
        cl_err_sys(err, host, "hostkey", "out of memory");
        goto cleanup;
    }
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, *text + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cl_err_sys(err, host, "hostkey", "read %s", file);
            goto cleanup;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    (*text)[off] = '\0';
    *len = off;
    rc = 0;

cleanup:
    if (rc < 0) {
        free(*text);
        *text = NULL;
    }
    close(fd);
    return rc;
}

/* Replace file by text atomically: FILE.tmp (0600), fsync, rename, fsync of the directory. */
static int known_write(const char *file, int dfd, const char *host, const char *text, size_t len,
                       cl_err_t *err)
{
    char tmp[4200];
    size_t off = 0;
    int fd = -1, rc = -1;

    snprintf(tmp, sizeof(tmp), "%s.tmp", file);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0) {
        cl_err_sys(err, host, "hostkey", "open %s", tmp);
        goto cleanup;
    }
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cl_err_sys(err, host, "hostkey", "write %s", tmp);
            goto cleanup;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        cl_err_sys(err, host, "hostkey", "write %s", tmp);
        goto cleanup;
    }
    fd = -1;
    if (rename(tmp, file) < 0) {
        cl_err_sys(err, host, "hostkey", "rename %s", tmp);
        goto cleanup;
    }
    fsync(dfd);
    rc = 0;

cleanup:
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int cl_ssh_known_check(const char *file, const char *host, unsigned port, const unsigned char *blob,
                       size_t blen, char fp[CL_SSH_FP_MAX], int *permanent, cl_err_t *err)
{
    char type[TYPE_MAX], name[KNOWN_NAME_MAX], pfp[CL_SSH_FP_MAX], pn[32];
    char *b64 = NULL, *text = NULL, *ptype = NULL, *pkey = NULL, *line, *eol, *ntext = NULL;
    size_t len, nlen;
    int dfd = -1, found = 0, rc = -1;

    if (!blob || blob_type(blob, blen, type) < 0)
        return cl_err_set(err, CL_ERR_SSH, 0, host, "hostkey", "no usable host key");
    fingerprint(blob, blen, fp);
    if (!(b64 = malloc(4 * ((blen + 2) / 3) + 1)))
        return cl_err_sys(err, host, "hostkey", "out of memory");
    EVP_EncodeBlock((unsigned char *)b64, blob, (int)blen);
    known_name(host, port, name, sizeof(name));
    *permanent = 1;
    if (known_lock(file, host, &dfd, err) < 0)
        goto cleanup;
    if (known_read(file, host, &text, &len, err) < 0)
        goto cleanup;
    for (line = text; *line && !found; line = *eol ? eol + 1 : eol) {
        eol = line + strcspn(line, "\n");
        if (line_names(line, (size_t)(eol - line), name))
            found = line_key(line, (size_t)(eol - line), &ptype, &pkey) == 0 ? 1 : -1;
    }
    if (found < 0) {
        cl_err_set(err, CL_ERR_SSH, 0, host, "hostkey", "unreadable entry for %s in %s", name,
                   file);
        goto cleanup;
    }
    if (found) {
        if (strcmp(ptype, type) != 0 || strcmp(pkey, b64) != 0) {
            b64_fingerprint(pkey, pfp);
            cl_log(CL_LOG_WARN, "-ssh-hostkey", "host=%s port=%u pinned=%s got=%s", host, port, pfp,
                   fp);
            cl_err_set(err, CL_ERR_SSH, CL_SSH_E_HOSTKEY_CHANGED, host, "hostkey",
                       "host key of %s%s changed: expected %s, got %s (%s pinned in %s, %s "
                       "presented; if the guest was recreated, cl_ssh_forget_host)",
                       host, port_note(port, pn, sizeof(pn)), pfp, fp, ptype, file, type);
            goto cleanup;
        }
        rc = 0;
        goto cleanup;
    }
    nlen = len + strlen(name) + strlen(type) + strlen(b64) + 5;
    if (!(ntext = malloc(nlen))) {
        cl_err_sys(err, host, "hostkey", "out of memory");
        goto cleanup;
    }
    nlen = (size_t)snprintf(ntext, nlen, "%s%s%s %s %s\n", text,
                            len && text[len - 1] != '\n' ? "\n" : "", name, type, b64);
    if (known_write(file, dfd, host, ntext, nlen, err) < 0)
        goto cleanup;
    cl_log(CL_LOG_INFO, "+ssh-pin", "host=%s port=%u key=%s %s file=%s", host, port, type, fp,
           file);
    rc = 0;

cleanup:
    if (dfd >= 0)
        known_unlock(dfd);
    if (rc == 0)
        *permanent = 0;
    free(b64);
    free(text);
    free(ptype);
    free(pkey);
    free(ntext);
    return rc;
}

int cl_ssh_forget_host(const char *known_hosts, const char *host, unsigned port, cl_err_t *err)
{
    char name[KNOWN_NAME_MAX];
    char *text = NULL, *out = NULL, *line, *eol, *o;
    const char *id;
    size_t len, idlen;
    int dfd = -1, removed = 0, records = 0, rc = -1;

    if (!known_hosts || !host)
        return cl_err_set(err, CL_ERR_SSH, 0, host, "forget host", "no file or host given");
    port = port ? port : 22;
    known_name(host, port, name, sizeof(name));
    if (known_lock(known_hosts, host, &dfd, err) < 0)
        return -1;
    if (known_read(known_hosts, host, &text, &len, err) < 0)
        goto cleanup;
    if (!(out = malloc(len + 1))) {
        cl_err_sys(err, host, "forget host", "out of memory");
        goto cleanup;
    }
    for (o = out, line = text; *line; line = *eol ? eol + 1 : eol) {
        eol = line + strcspn(line, "\n");
        if (line_names(line, (size_t)(eol - line), name)) {
            removed++;
            continue;
        }
        if (line_record(line, (size_t)(eol - line), name, &id, &idlen)) {
            records++;
            continue;
        }
        memcpy(o, line, (size_t)(eol - line + (*eol ? 1 : 0)));
        o += eol - line + (*eol ? 1 : 0);
    }
    if ((removed || records) &&
        known_write(known_hosts, dfd, host, out, (size_t)(o - out), err) < 0)
        goto cleanup;
    cl_log(CL_LOG_INFO, "+ssh-forget", "host=%s port=%u entries=%d file=%s", host, port, removed,
           known_hosts);
    rc = removed;

cleanup:
    known_unlock(dfd);
    free(text);
    free(out);
    return rc;
}

int cl_ssh_note_incarnation(const char *known_hosts, const char *host, unsigned port,
                            const char *id, cl_err_t *err)
{
    char name[KNOWN_NAME_MAX];
    char *text = NULL, *out = NULL, *line, *eol, *o, was[INCARNATION_MAX + 1] = "";
    const char *rid, *p;
    size_t len, idlen = id ? strlen(id) : 0, ridlen;
    int dfd = -1, pins = 0, dropped = 0, recorded = 0, rc = -1;

    if (!known_hosts || !host)
        return cl_err_set(err, CL_ERR_SSH, 0, host, "hostkey", "no file or host given");
    for (p = id; p && *p && (unsigned char)*p >= ' ' && *p != 0x7f; p++)
        ;
    if (!id || !*id || *p || idlen > INCARNATION_MAX)
        return cl_err_set(err, CL_ERR_SSH, 0, host, "hostkey",
                          "incarnation of %s: one printable line of 1 to %d characters expected",
                          host, INCARNATION_MAX);
    port = port ? port : 22;
    known_name(host, port, name, sizeof(name));
    if (known_lock(known_hosts, host, &dfd, err) < 0)
        return -1;
    if (known_read(known_hosts, host, &text, &len, err) < 0)
        goto cleanup;
    for (line = text; *line; line = *eol ? eol + 1 : eol) {
        eol = line + strcspn(line, "\n");
        if (line_names(line, (size_t)(eol - line), name))
            pins++;
        else if (line_record(line, (size_t)(eol - line), name, &rid, &ridlen) && !recorded++)
            snprintf(was, sizeof(was), "%.*s", (int)ridlen, rid);
    }
    if (recorded && strcmp(was, id) == 0) {
        rc = 0; /* the same guest: its pin stands */
        goto cleanup;
    }
    /* another incarnation recorded: a new disk, so a new key (a pin without a record is kept) */
    dropped = recorded ? pins : 0;
    if (!(out = malloc(len + strlen(INCARNATION_TAG) + strlen(name) + idlen + 8))) {
        cl_err_sys(err, host, "hostkey", "out of memory");
        goto cleanup;
    }
    for (o = out, line = text; *line; line = *eol ? eol + 1 : eol) {
        eol = line + strcspn(line, "\n");
        if ((dropped && line_names(line, (size_t)(eol - line), name)) ||
            line_record(line, (size_t)(eol - line), name, &rid, &ridlen))
            continue;
        memcpy(o, line, (size_t)(eol - line));
        o += eol - line;
        *o++ = '\n';
    }
    o += sprintf(o, "%s%s %s\n", INCARNATION_TAG, name, id);
    if (known_write(known_hosts, dfd, host, out, (size_t)(o - out), err) < 0)
        goto cleanup;
    if (dropped)
        cl_log(CL_LOG_INFO, "+ssh-unpin",
               "host=%s port=%u was=%s now=%s entries=%d file=%s: a new guest, pinned afresh", host,
               port, was, id, dropped, known_hosts);
    else
        cl_log(CL_LOG_DEBUG, "+ssh-incarnation", "host=%s port=%u now=%s pinned=%d file=%s", host,
               port, id, pins, known_hosts);
    rc = dropped;

cleanup:
    known_unlock(dfd);
    free(text);
    free(out);
    return rc;
}
