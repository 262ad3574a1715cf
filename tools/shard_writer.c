#include "tools/shard_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "runtime/alloc.h"
#include "runtime/iofault.h"

/* fwrite with the test fault hook (ENOSPC & co). */
static size_t io_write(const void *p, size_t n, FILE *f)
{
    if (sr_io_fault(1)) return 0;
    return fwrite(p, 1, n, f);
}

static size_t io_read(void *p, size_t n, FILE *f)
{
    if (sr_io_fault(0)) return 0;
    return fread(p, 1, n, f);
}

typedef struct sw_item {
    char *name;
    sr_dtype dtype;
    int ndim;
    int64_t shape[8];
    uint64_t begin, end;
} sw_item;

/* A tensor held back to the end of the shard (see sw_add). */
typedef struct sw_deferred {
    char *name;
    sr_dtype dtype;
    int ndim;
    int64_t shape[8];
    void *data;
    uint64_t nbytes;
} sw_deferred;

struct sw_shard {
    char *path;
    FILE *f;
    uint64_t reserve, data_len;
    sw_item *items;
    size_t n, cap;
    sw_deferred *def;
    size_t n_def, cap_def;
    uint64_t def_bytes;
};

uint64_t sw_entry_bound(const char *name, int ndim)
{
    /* "name":{"dtype":"BF16","shape":[d,...],"data_offsets":[b,e]}, with every
     * number at 20 digits and the name escaped at worst 6 bytes per byte */
    return 6 * strlen(name) + 64 + (uint64_t)(ndim + 2) * 21;
}

int sw_open(const char *path, uint64_t header_reserve, sw_shard **out, sr_error *err)
{
    *out = NULL;
    sw_shard *w = sr_calloc(1, sizeof *w);
    if (!w) return sr_fail(err, "%s: out of memory", path);
    w->reserve = (header_reserve + 64 + 7) & ~(uint64_t)7;
    w->path = sr_strdup(path);
    w->f = w->path ? fopen(path, "wb") : NULL;
    if (!w->f) {
        sr_fail(err, "%s: cannot create: %s", path, strerror(errno));
        sr_free(w->path);
        sr_free(w);
        return -1;
    }
    if (fseeko(w->f, (off_t)(8 + w->reserve), SEEK_SET)) {
        sr_fail(err, "%s: seek: %s", path, strerror(errno));
        sw_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

static int add_now(sw_shard *w, const char *name, sr_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, uint64_t nbytes, sr_error *err);

/* Keeps every tensor's data aligned to its element size (8 bytes at the
 * least) so readers can use it in place: a tensor whose size is not a
 * multiple of 8 (a quant_state JSON, a weight_format byte, odd absmax
 * counts, a bf16 bias of odd length) is held back and written at the end of
 * the shard, largest elements first.  safetensors allows no gap between
 * tensors, so holding back is the only way; it stops at SW_DEFER_MAX bytes
 * held per shard (memory stays bounded), after which an odd-sized tensor is
 * written in place and what follows it is only byte-aligned (strata's reader
 * copies such tensors). */
#define SW_DEFER_MAX (128u << 20)

int sw_add(sw_shard *w, const char *name, sr_dtype dtype, int ndim, const int64_t *shape,
           const void *data, uint64_t nbytes, sr_error *err)
{
    if (ndim < 0 || ndim > 8) return sr_fail(err, "%s: tensor '%s': rank %d", w->path, name, ndim);
    if (nbytes % 8 == 0 || w->def_bytes + nbytes > SW_DEFER_MAX)
        return add_now(w, name, dtype, ndim, shape, data, nbytes, err);
    if (w->n_def == w->cap_def) {
        size_t nc = w->cap_def ? 2 * w->cap_def : 64;
        sw_deferred *nd = sr_realloc(w->def, nc * sizeof *nd);
        if (!nd) return sr_fail(err, "%s: out of memory", w->path);
        w->def = nd;
        w->cap_def = nc;
    }
    sw_deferred *d = &w->def[w->n_def];
    memset(d, 0, sizeof *d);
    d->name = sr_strdup(name);
    d->data = sr_malloc(nbytes);
    if (!d->name || !d->data) {
        sr_free(d->name);
        sr_free(d->data);
        return sr_fail(err, "%s: out of memory", w->path);
    }
    memcpy(d->data, data, nbytes);
    d->dtype = dtype;
    d->ndim = ndim;
    for (int i = 0; i < ndim; i++) d->shape[i] = shape[i];
    d->nbytes = nbytes;
    w->n_def++;
    w->def_bytes += nbytes;
    return 0;
}

static int cmp_deferred(const void *a, const void *b)
{
    const sw_deferred *x = a, *y = b;
    size_t sx = sr_dtype_size(x->dtype), sy = sr_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void free_deferred(sw_shard *w)
{
    for (size_t i = 0; i < w->n_def; i++) {
        sr_free(w->def[i].name);
        sr_free(w->def[i].data);
    }
    sr_free(w->def);
    w->def = NULL;
    w->n_def = 0;
}

static int add_now(sw_shard *w, const char *name, sr_dtype dtype, int ndim, const int64_t *shape,
                   const void *data, uint64_t nbytes, sr_error *err)
{
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        sw_item *ni = sr_realloc(w->items, nc * sizeof *ni);
        if (!ni) return sr_fail(err, "%s: out of memory", w->path);
        w->items = ni;
        w->cap = nc;
    }
    sw_item *it = &w->items[w->n];
    it->name = sr_strdup(name);
    if (!it->name) return sr_fail(err, "%s: out of memory", w->path);
    it->dtype = dtype;
    it->ndim = ndim;
    for (int i = 0; i < ndim; i++) it->shape[i] = shape[i];
    it->begin = w->data_len;
    it->end = w->data_len + nbytes;
    w->n++;
    if (nbytes && io_write(data, nbytes, w->f) != nbytes)
        return sr_fail(err, "%s: writing tensor '%s': %s", w->path, name, strerror(errno));
    w->data_len += nbytes;
    return 0;
}

static void free_items(sw_shard *w)
{
    for (size_t i = 0; i < w->n; i++) sr_free(w->items[i].name);
    sr_free(w->items);
    free_deferred(w);
}

void sw_abort(sw_shard *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    if (w->path) unlink(w->path);
    free_items(w);
    sr_free(w->path);
    sr_free(w);
}

int sw_finish(sw_shard *w, uint64_t *total_bytes, sr_error *err)
{
    json_t *h = NULL, *meta = NULL;
    int rc = -1;
    char *txt = NULL;
    if (w->n_def) qsort(w->def, w->n_def, sizeof *w->def, cmp_deferred); /* def may be NULL */
    for (size_t i = 0; i < w->n_def; i++) {
        const sw_deferred *d = &w->def[i];
        if (add_now(w, d->name, d->dtype, d->ndim, d->shape, d->data, d->nbytes, err)) goto out;
    }
    free_deferred(w);
    h = json_object();
    meta = json_pack("{s:s}", "format", "pt");
    if (!h || !meta) { sr_fail(err, "%s: out of memory", w->path); goto out; }
    json_object_set_new(h, "__metadata__", meta);
    meta = NULL;
    for (size_t i = 0; i < w->n; i++) {
        const sw_item *it = &w->items[i];
        json_t *shape = json_array();
        for (int d = 0; d < it->ndim; d++) json_array_append_new(shape, json_integer(it->shape[d]));
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", sr_dtype_name(it->dtype), "shape", shape,
                              "data_offsets", (json_int_t)it->begin, (json_int_t)it->end);
        if (!e || json_object_set_new(h, it->name, e)) {
            sr_fail(err, "%s: tensor '%s': cannot build header", w->path, it->name);
            goto out;
        }
    }
    txt = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    if (!txt) { sr_fail(err, "%s: out of memory", w->path); goto out; }
    size_t len = strlen(txt);
    if (len > w->reserve) {
        sr_fail(err, "%s: internal error: header of %zu bytes exceeds the %" PRIu64
                " reserved", w->path, len, w->reserve);
        goto out;
    }
    uint64_t hl = w->reserve;
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)(hl >> (8 * i));
    if (fseeko(w->f, 0, SEEK_SET) || io_write(l8, 8, w->f) != 8 || io_write(txt, len, w->f) != len) {
        sr_fail(err, "%s: writing header: %s", w->path, strerror(errno));
        goto out;
    }
    for (uint64_t i = len; i < hl; i++)
        if (fputc(' ', w->f) == EOF) { sr_fail(err, "%s: writing header: %s", w->path, strerror(errno)); goto out; }
    if (fflush(w->f) || sr_io_fault(1) || sr_fsync(fileno(w->f))) {
        sr_fail(err, "%s: flushing: %s", w->path, strerror(errno));
        goto out;
    }
    if (total_bytes) *total_bytes = 8 + hl + w->data_len;
    rc = 0;
out:
    free(txt);
    json_decref(meta);
    json_decref(h);
    if (rc) { sw_abort(w); return rc; }
    int crc = fclose(w->f);
    w->f = NULL;
    free_items(w);
    sr_free(w->path);
    sr_free(w);
    if (crc) return sr_fail(err, "closing shard: %s", strerror(errno));
    return 0;
}

int sw_zstd_file(const char *src, const char *dst, int level, int threads, uint64_t *out_bytes,
                 sr_error *err)
{
    FILE *in = fopen(src, "rb"), *out = NULL;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t inCap = ZSTD_CStreamInSize(), outCap = ZSTD_CStreamOutSize();
    void *ib = sr_malloc(inCap), *ob = sr_malloc(outCap);
    int rc = -1;
    uint64_t written = 0;
    if (!in) { sr_fail(err, "%s: %s", src, strerror(errno)); goto out; }
    if (!cc || !ib || !ob) { sr_fail(err, "%s: out of memory", dst); goto out; }
    out = fopen(dst, "wb");
    if (!out) { sr_fail(err, "%s: cannot create: %s", dst, strerror(errno)); goto out; }
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    if (threads > 1) ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, threads);
    for (;;) {
        size_t r = io_read(ib, inCap, in);
        if (r < inCap && !feof(in)) { sr_fail(err, "%s: read error: %s", src, strerror(errno)); goto out; }
        int last = r < inCap;
        ZSTD_inBuffer inb = {ib, r, 0};
        int done;
        do {
            ZSTD_outBuffer outb = {ob, outCap, 0};
            size_t rem = ZSTD_compressStream2(cc, &outb, &inb, last ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(rem)) { sr_fail(err, "%s: zstd: %s", dst, ZSTD_getErrorName(rem)); goto out; }
            if (io_write(ob, outb.pos, out) != outb.pos) {
                sr_fail(err, "%s: write: %s", dst, strerror(errno));
                goto out;
            }
            written += outb.pos;
            done = last ? rem == 0 : inb.pos == inb.size;
        } while (!done);
        if (last) break;
    }
    if (fflush(out) || sr_fsync(fileno(out))) { sr_fail(err, "%s: flush: %s", dst, strerror(errno)); goto out; }
    if (out_bytes) *out_bytes = written;
    rc = 0;
out:
    if (in) fclose(in);
    if (out && fclose(out) && !rc) rc = sr_fail(err, "%s: close: %s", dst, strerror(errno));
    if (rc && out) unlink(dst);
    ZSTD_freeCCtx(cc);
    sr_free(ib);
    sr_free(ob);
    return rc;
}
