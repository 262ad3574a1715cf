/* safetensors reader.  Layout: 8-byte little-endian header length N, N bytes
 * of JSON (an object: tensor name -> {dtype, shape, data_offsets}, plus an
 * optional "__metadata__" object of strings), then the data section that the
 * offsets index.  The header is fully validated before anything is exposed:
 * a malformed file gives an error naming the file, the tensor and the rule. */
#include "runtime/safetensors.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "runtime/hugepages.h"

enum st_storage { ST_BORROWED, ST_OWNED_HEAP, ST_MMAP };

struct sr_st_file {
    char *path;
    const uint8_t *buf;        /* whole file */
    size_t len;
    enum st_storage storage;
    size_t n;
    sr_tensor *tensors;        /* header order */
    const sr_tensor **by_name; /* sorted by name, for sr_st_find */
    char *strings;             /* tensor names and metadata, one block */
    size_t n_meta;
    struct st_meta { const char *key, *value; } *meta;   /* sorted by key */
};

int64_t sr_tensor_numel(const sr_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- validation of one header entry --------------------------------------------- */

/* A tensor's byte range inside the data section, kept for the overlap check. */
typedef struct st_range {
    uint64_t begin, end;
    size_t index;
} st_range;

static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Checks entry `name` -> `v` and fills t (except name/data/file) and r. */
static int parse_entry(const char *file, const char *name, const json_t *v, uint64_t data_len,
                       sr_tensor *t, st_range *r, sr_error *err)
{
    if (!json_is_object(v))
        return sr_fail(err, "%s: tensor '%s': entry is not a JSON object", file, name);
    const json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
                 *jo = json_object_get(v, "data_offsets");
    if (!jd) return sr_fail(err, "%s: tensor '%s': missing \"dtype\"", file, name);
    if (!js) return sr_fail(err, "%s: tensor '%s': missing \"shape\"", file, name);
    if (!jo) return sr_fail(err, "%s: tensor '%s': missing \"data_offsets\"", file, name);
    if (!json_is_string(jd))
        return sr_fail(err, "%s: tensor '%s': \"dtype\" is not a string", file, name);

    const char *ds = json_string_value(jd);
    if (sr_dtype_is_f8(ds))
        return sr_fail(err, "%s: tensor '%s': dtype %s: F8 tensors are not supported", file,
                       name, ds);
    if (sr_dtype_parse(ds, &t->dtype))
        return sr_fail(err, "%s: tensor '%s': unknown dtype \"%.32s\"", file, name, ds);

    if (!json_is_array(js))
        return sr_fail(err, "%s: tensor '%s': \"shape\" is not an array", file, name);
    size_t ndim = json_array_size(js);
    if (ndim > SR_MAX_DIMS)
        return sr_fail(err, "%s: tensor '%s': shape has %zu dimensions, more than %d", file,
                       name, ndim, SR_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    int overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        const json_t *d = json_array_get(js, i);
        uint64_t dim;
        if (get_u64(d, &dim))
            return sr_fail(err, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                           file, name, i);
        t->shape[i] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t nbytes;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)sr_dtype_size(t->dtype), &nbytes) ||
        numel > (uint64_t)INT64_MAX)
        return sr_fail(err, "%s: tensor '%s': shape size overflows", file, name);

    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return sr_fail(err, "%s: tensor '%s': \"data_offsets\" is not an array of 2 integers",
                       file, name);
    if (get_u64(json_array_get(jo, 0), &r->begin) || get_u64(json_array_get(jo, 1), &r->end))
        return sr_fail(err, "%s: tensor '%s': \"data_offsets\" are not non-negative integers",
                       file, name);
    if (r->begin > r->end)
        return sr_fail(err, "%s: tensor '%s': data_offsets begin %llu > end %llu", file, name,
                       (unsigned long long)r->begin, (unsigned long long)r->end);
    if (r->end > data_len)
        return sr_fail(err,
                       "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section "
                       "(%llu bytes)",
                       file, name, (unsigned long long)r->begin, (unsigned long long)r->end,
                       (unsigned long long)data_len);
    if (nbytes != r->end - r->begin)
        return sr_fail(err,
                       "%s: tensor '%s': shape/size mismatch: %s shape needs %llu bytes, "
                       "data_offsets give %llu",
                       file, name, sr_dtype_name(t->dtype), (unsigned long long)nbytes,
                       (unsigned long long)(r->end - r->begin));
    t->nbytes = nbytes;
    return 0;
}

/* ---- whole-header checks ----------------------------------------------------------- */

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Ranges must not share a byte.  Empty tensors occupy nothing, so they may
 * sit anywhere. */
static int check_overlaps(sr_st_file *f, st_range *r, size_t n, sr_error *err)
{
    qsort(r, n, sizeof *r, cmp_range);
    size_t last = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (r[i].begin == r[i].end) continue;
        if (last != (size_t)-1 && r[i].begin < r[last].end)
            return sr_fail(err,
                           "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' "
                           "[%llu, %llu]",
                           f->path, f->tensors[r[i].index].name,
                           (unsigned long long)r[i].begin, (unsigned long long)r[i].end,
                           f->tensors[r[last].index].name, (unsigned long long)r[last].begin,
                           (unsigned long long)r[last].end);
        if (last == (size_t)-1 || r[i].end > r[last].end) last = i;
    }
    return 0;
}

static int check_metadata(const char *file, const json_t *meta, size_t *strings_len, sr_error *err)
{
    if (!json_is_object(meta))
        return sr_fail(err, "%s: header: __metadata__ is not a JSON object", file);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)meta, k, v) {
        if (!json_is_string(v))
            return sr_fail(err, "%s: header: __metadata__ entry '%s' is not a string", file, k);
        *strings_len += strlen(k) + 1 + strlen(json_string_value(v)) + 1;
    }
    return 0;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const sr_tensor *const *)a)->name, (*(const sr_tensor *const *)b)->name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const struct st_meta *)a)->key, ((const struct st_meta *)b)->key);
}

/* Copies names and metadata out of the JSON tree (freed after parsing) into
 * one block, and builds the sorted lookup tables. */
static int build_tables(sr_st_file *f, json_t *root, const json_t *meta, size_t strings_len,
                        sr_error *err)
{
    f->strings = sr_malloc(strings_len ? strings_len : 1);
    f->by_name = sr_malloc((f->n ? f->n : 1) * sizeof *f->by_name);
    f->meta = sr_malloc((f->n_meta ? f->n_meta : 1) * sizeof *f->meta);
    if (!f->strings || !f->by_name || !f->meta)
        return sr_fail(err, "%s: out of memory for the tensor table", f->path);

    char *s = f->strings;
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) continue;
        size_t l = strlen(k) + 1;
        memcpy(s, k, l);
        f->tensors[i].name = s;
        f->tensors[i].file = f;
        f->by_name[i] = &f->tensors[i];
        s += l;
        i++;
    }
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_by_name);
    if (!meta) return 0;
    i = 0;
    json_object_foreach((json_t *)meta, k, v) {
        size_t lk = strlen(k) + 1, lv = strlen(json_string_value(v)) + 1;
        f->meta[i].key = memcpy(s, k, lk);
        s += lk;
        f->meta[i].value = memcpy(s, json_string_value(v), lv);
        s += lv;
        i++;
    }
    qsort(f->meta, f->n_meta, sizeof *f->meta, cmp_meta);
    return 0;
}

/* jansson names a duplicate key only as `... near '"key"'`, at any depth:
 * pull the key out for a readable message. */
static int json_failure(const char *file, const json_error_t *jerr, sr_error *err)
{
    if (json_error_code(jerr) == json_error_duplicate_key) {
        const char *q = strstr(jerr->text, "near '\"");
        size_t l = q ? strlen(q + 7) : 0;
        if (l >= 2 && strcmp(q + 7 + l - 2, "\"'") == 0)
            return sr_fail(err, "%s: header: duplicate key '%.*s' (a tensor name, metadata "
                           "key or field given twice)", file, (int)(l - 2), q + 7);
        return sr_fail(err, "%s: header: duplicate key (%s)", file, jerr->text);
    }
    /* jansson leaves the text empty when it cannot allocate its lexer */
    if (json_error_code(jerr) == json_error_out_of_memory || !jerr->text[0])
        return sr_fail(err, "%s: header: out of memory parsing the JSON", file);
    return sr_fail(err, "%s: header: invalid JSON at byte %d: %s", file, jerr->position,
                   jerr->text);
}

/* Parses and validates the header of f->buf / f->len. */
static int parse(sr_st_file *f, sr_error *err)
{
    if (f->len < 8)
        return sr_fail(err, "%s: header: file is %zu bytes, too short for the 8-byte header "
                       "length", f->path, f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->buf[i];
    if (hlen > SR_ST_MAX_HEADER) {
        /* A text file (config.json given for the weights) always lands
         * here: 8 printable bytes read as a length over 2^61. */
        int text = 1;
        for (int i = 0; i < 8; i++) text = text && (isprint(f->buf[i]) || isspace(f->buf[i]));
        return sr_fail(err, "%s: header: length %llu exceeds the %u-byte limit%s", f->path,
                       (unsigned long long)hlen, SR_ST_MAX_HEADER,
                       text ? " (not a safetensors file: it starts with text)" : "");
    }
    if (hlen > f->len - 8)
        return sr_fail(err, "%s: header: length %llu runs past the end of the file "
                       "(%zu bytes)", f->path, (unsigned long long)hlen, f->len);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES,
                              &jerr);
    if (!root) return json_failure(f->path, &jerr, err);

    int rc = -1;
    st_range *ranges = NULL;
    if (!json_is_object(root)) {
        sr_fail(err, "%s: header: not a JSON object", f->path);
        goto out;
    }
    const json_t *meta = json_object_get(root, "__metadata__");
    size_t strings_len = 0;
    if (meta) {
        if (check_metadata(f->path, meta, &strings_len, err)) goto out;
        f->n_meta = json_object_size(meta);
    }
    size_t n = json_object_size(root) - (meta ? 1 : 0);
    if (n > SR_ST_MAX_TENSORS) {
        sr_fail(err, "%s: header: %zu tensors, more than the limit of %d", f->path, n,
                SR_ST_MAX_TENSORS);
        goto out;
    }
    f->tensors = sr_calloc(n ? n : 1, sizeof *f->tensors);
    ranges = sr_malloc((n ? n : 1) * sizeof *ranges);
    if (!f->tensors || !ranges) {
        sr_fail(err, "%s: out of memory for %zu tensors", f->path, n);
        goto out;
    }

    const uint8_t *data = f->buf + 8 + hlen;
    uint64_t data_len = f->len - 8 - hlen;
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) continue;
        if (parse_entry(f->path, k, v, data_len, &f->tensors[i], &ranges[i], err)) goto out;
        f->tensors[i].data = data + ranges[i].begin;
        ranges[i].index = i;
        strings_len += strlen(k) + 1;
        i++;
    }
    f->n = n;
    if (build_tables(f, root, meta, strings_len, err)) goto out;
    if (check_overlaps(f, ranges, n, err)) goto out;
    rc = 0;
out:
    sr_free(ranges);
    json_decref(root);
    return rc;
}

/* ---- open / close ------------------------------------------------------------------ */

static int finish_open(sr_st_file *f, sr_st_file **out, sr_error *err)
{
    if (parse(f, err)) {
        sr_st_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int sr_st_open(const char *path, sr_st_file **out, sr_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sr_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return sr_fail(err, "%s: not a regular file", path);
    }
    sr_st_file *f = sr_calloc(1, sizeof *f);
    char *p = sr_strdup(path);
    if (!f || !p) {
        close(fd);
        sr_free(f);
        sr_free(p);
        return sr_fail(err, "%s: out of memory", path);
    }
    f->path = p;
    f->len = (size_t)st.st_size;
    if (f->len >= 8) {   /* mmap of an empty file fails; parse() reports short files */
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            sr_st_close(f);
            return sr_fail(err, "%s: cannot mmap: %s", path, strerror(e));
        }
        sr_hugepages_advise(m, f->len); /* weights: runtime/hugepages.h */
        f->buf = m;
        f->storage = ST_MMAP;
    } else {
        static const uint8_t empty[8];
        f->buf = empty;
        f->storage = ST_BORROWED;
    }
    close(fd);
    return finish_open(f, out, err);
}

int sr_st_open_memory(const void *buf, size_t len, const char *name, int take_ownership,
                      sr_st_file **out, sr_error *err)
{
    *out = NULL;
    sr_st_file *f = sr_calloc(1, sizeof *f);
    char *p = sr_strdup(name ? name : "<memory>");
    if (!f || !p) {
        sr_free(f);
        sr_free(p);
        if (take_ownership) sr_free((void *)buf);
        return sr_fail(err, "%s: out of memory", name ? name : "<memory>");
    }
    f->path = p;
    f->buf = buf;
    f->len = len;
    f->storage = take_ownership ? ST_OWNED_HEAP : ST_BORROWED;
    return finish_open(f, out, err);
}

void sr_st_close(sr_st_file *f)
{
    if (!f) return;
    if (f->storage == ST_MMAP) munmap((void *)f->buf, f->len);
    else if (f->storage == ST_OWNED_HEAP) sr_free((void *)f->buf);
    sr_free(f->tensors);
    sr_free(f->by_name);
    sr_free(f->strings);
    sr_free(f->meta);
    sr_free(f->path);
    sr_free(f);
}

/* ---- accessors --------------------------------------------------------------------- */

const char *sr_st_path(const sr_st_file *f) { return f->path; }
int sr_st_release(const sr_st_file *f, const void *p, size_t len)
{
    const uintptr_t b0 = (uintptr_t)f->buf, q = (uintptr_t)p;
    if (!p || q < b0 || q - b0 > f->len || len > f->len - (q - b0)) return 0;
    if (f->storage != ST_MMAP) return 1;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = (q + page - 1) & ~(page - 1), e = (q + len) & ~(page - 1);
    /* Pages shared with a neighbouring tensor stay.  Not MADV_PAGEOUT: that
     * evicts the file's pages from the page cache too, and every later run
     * read the whole checkpoint from disk again. */
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
    return 1;
}

size_t sr_st_file_size(const sr_st_file *f) { return f->len; }
const void *sr_st_bytes(const sr_st_file *f) { return f->buf; }
size_t sr_st_count(const sr_st_file *f) { return f->n; }

const sr_tensor *sr_st_get(const sr_st_file *f, size_t i)
{
    return i < f->n ? &f->tensors[i] : NULL;
}

const sr_tensor *sr_st_find(const sr_st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const sr_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

size_t sr_st_metadata_count(const sr_st_file *f) { return f->n_meta; }

const char *sr_st_metadata_key(const sr_st_file *f, size_t i)
{
    return i < f->n_meta ? f->meta[i].key : NULL;
}

const char *sr_st_metadata_get(const sr_st_file *f, const char *key)
{
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, f->meta[mid].key);
        if (c == 0) return f->meta[mid].value;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}
