/* safetensors writer: header via jansson, data in size-then-name order,
 * atomic replace through a temporary file. */
#include "runtime/safetensors_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/alloc.h"

int64_t sr_st_entry_nbytes(const sr_st_entry *e)
{
    int64_t n = (int64_t)sr_dtype_size(e->dtype);
    for (int i = 0; i < e->ndim; i++) {
        if (e->shape[i] < 0) return -1;
        if (e->shape[i] && n > INT64_MAX / e->shape[i]) return -1;
        n *= e->shape[i];
    }
    return n;
}

/* Order of the data section: larger elements first, then by name. */
static int cmp_entries(const void *a, const void *b)
{
    const sr_st_entry *x = *(const sr_st_entry *const *)a, *y = *(const sr_st_entry *const *)b;
    size_t sx = sr_dtype_size(x->dtype), sy = sr_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int check_entry(const char *path, const sr_st_entry *e, size_t i, sr_error *err)
{
    if (!e->name || !e->name[0])
        return sr_fail(err, "file %s: tensor #%zu has no name", path, i);
    if (!strcmp(e->name, "__metadata__"))
        return sr_fail(err, "file %s: \"__metadata__\" is not a valid tensor name", path);
    if ((unsigned)e->dtype >= SR_DTYPE_COUNT)
        return sr_fail(err, "file %s: tensor %s: invalid dtype %d", path, e->name, (int)e->dtype);
    if (e->ndim < 0 || e->ndim > SR_MAX_DIMS)
        return sr_fail(err, "file %s: tensor %s: rank %d out of range 0..%d", path, e->name, e->ndim,
                       SR_MAX_DIMS);
    if (sr_st_entry_nbytes(e) < 0)
        return sr_fail(err, "file %s: tensor %s: invalid shape", path, e->name);
    if (!e->data && !e->fill)
        return sr_fail(err, "file %s: tensor %s: neither data nor a fill callback", path, e->name);
    return 0;
}

/* Builds the header JSON (unpadded) for the entries in data order. */
static char *build_header(const char *path, const sr_st_entry *const *order, size_t n, sr_error *err)
{
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta || json_object_set_new(root, "__metadata__", meta)) {
        if (!root) json_decref(meta);
        json_decref(root);
        sr_fail(err, "file %s: out of memory for the header", path);
        return NULL;
    }
    int oom = json_object_set_new(meta, "format", json_string("pt"));
    uint64_t off = 0;
    for (size_t i = 0; i < n && !oom; i++) {
        const sr_st_entry *e = order[i];
        if (json_object_get(root, e->name)) {
            json_decref(root);
            sr_fail(err, "file %s: tensor %s: duplicate name", path, e->name);
            return NULL;
        }
        uint64_t nb = (uint64_t)sr_st_entry_nbytes(e);
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        oom = !t || !shape || !offs;
        for (int d = 0; d < e->ndim && !oom; d++)
            oom = json_array_append_new(shape, json_integer(e->shape[d]));
        oom = oom || json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_array_append_new(offs, json_integer((json_int_t)(off + nb)));
        if (oom) {
            json_decref(t);
            json_decref(shape);
            json_decref(offs);
            break;
        }
        oom = json_object_set_new(t, "dtype", json_string(sr_dtype_name(e->dtype))) ||
              json_object_set_new(t, "shape", shape) ||
              json_object_set_new(t, "data_offsets", offs) ||
              json_object_set_new(root, e->name, t);
        off += nb;
    }
    char *s = oom ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s) sr_fail(err, "file %s: out of memory for the header", path);
    return s;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        size_t chunk = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int write_body(int fd, const char *path, const char *tmp, const char *hdr,
                      const sr_st_entry *const *order, size_t n, sr_error *err)
{
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (write_all(fd, len8, 8) || write_all(fd, hdr, hlen) ||
        write_all(fd, "       ", padded - hlen))
        return sr_fail(err, "file %s: writing the header: %s", tmp, strerror(errno));
    for (size_t i = 0; i < n; i++) {
        const sr_st_entry *e = order[i];
        uint64_t nb = (uint64_t)sr_st_entry_nbytes(e);
        if (e->data) {
            if (write_all(fd, e->data, (size_t)nb))
                return sr_fail(err, "file %s: tensor %s: %s", tmp, e->name, strerror(errno));
            continue;
        }
        void *buf = sr_malloc((size_t)nb);
        if (!buf) return sr_fail(err, "file %s: tensor %s: out of memory (%llu bytes)", path, e->name,
                                 (unsigned long long)nb);
        int rc = e->fill(e->ctx, buf, nb, err);
        if (rc) sr_fail_prefix(err, "file %s: tensor %s", path, e->name);
        else if (write_all(fd, buf, (size_t)nb))
            rc = sr_fail(err, "file %s: tensor %s: %s", tmp, e->name, strerror(errno));
        sr_free(buf);
        if (rc) return rc;
    }
    if (fsync(fd)) return sr_fail(err, "file %s: fsync: %s", tmp, strerror(errno));
    return 0;
}

/* Makes the rename durable; failure here is not an error of the write. */
static void sync_parent_dir(const char *path)
{
    char *copy = sr_strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    sr_free(copy);
}

int sr_st_write(const char *path, const sr_st_entry *entries, size_t n, sr_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (check_entry(path, &entries[i], i, err)) return -1;
    const sr_st_entry **order = sr_malloc((n ? n : 1) * sizeof *order);
    if (!order) return sr_fail(err, "file %s: out of memory", path);
    for (size_t i = 0; i < n; i++) order[i] = &entries[i];
    qsort(order, n, sizeof *order, cmp_entries);

    int rc = -1;
    char *hdr = build_header(path, order, n, err);
    size_t tlen = strlen(path) + 32;
    char *tmp = sr_malloc(tlen);
    if (hdr && !tmp) sr_fail(err, "file %s: out of memory", path);
    if (hdr && tmp) {
        snprintf(tmp, tlen, "%s.tmp-%ld", path, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
            sr_fail(err, "file %s: cannot create: %s", tmp, strerror(errno));
        } else {
            rc = write_body(fd, path, tmp, hdr, order, n, err);
            if (close(fd) && !rc) rc = sr_fail(err, "file %s: close: %s", tmp, strerror(errno));
            if (!rc && rename(tmp, path))
                rc = sr_fail(err, "file %s: cannot rename %s into place: %s", path, tmp, strerror(errno));
            if (rc) unlink(tmp);
            else sync_parent_dir(path);
        }
    }
    free(hdr);      /* allocated by jansson */
    sr_free(tmp);
    sr_free(order);
    return rc;
}
