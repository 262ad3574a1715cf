/* Checkpoint = one or more safetensors shards found from a path, with a
 * name -> tensor lookup across all of them.  Shards may be zstd-compressed
 * (`X.safetensors.zst` when `X.safetensors` is absent): they are decompressed
 * into memory, the frame checksum verified, then parsed like a file. */
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_getFrameHeader: checksum flag of a frame */
#include "runtime/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "runtime/alloc.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

typedef struct ckpt_shard {
    char *path;                /* as opened (ends in .zst when compressed) */
    char *name;                /* as the index names it (no .zst) */
    sr_st_file *file;
    uint64_t disk_bytes, bytes;
} ckpt_shard;

struct sr_checkpoint {
    char *dir;
    int has_config;
    size_t n_shards;           /* slots of shards[]; all open once sr_ckpt_open succeeded */
    ckpt_shard *shards;
    size_t n;
    const sr_tensor **tensors;   /* shard order, then header order */
    const sr_tensor **by_name;   /* sorted by name */
};

/* ---- zstd shards ------------------------------------------------------------------- */

static uint64_t physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

/* Makes room for at least `need` bytes after `len`: exactly when `exact`
 * (a frame's declared size), else growing by doubling; never beyond `max`. */
static int reserve(uint8_t **buf, size_t *cap, size_t len, size_t need, size_t max, int exact)
{
    if (*cap - len >= need) return 0;
    if (need > max - len) return -1;
    size_t want = len + need;
    if (!exact) {
        want = *cap ? *cap : (size_t)1 << 20;
        while (want - len < need && want < max) want = want > max / 2 ? max : want * 2;
        if (want > max) want = max;
    }
    uint8_t *b = sr_realloc(*buf, want);
    if (!b) return -1;
    *buf = b;
    *cap = want;
    return 0;
}

/* Decompresses every frame of src into a new sr_malloc'd buffer of at most
 * max_bytes.  Each zstd frame must carry a content checksum, which libzstd
 * verifies at the end of the frame. */
static int zst_decompress(const uint8_t *src, size_t len, const char *name, uint64_t max_bytes,
                          uint8_t **out, size_t *out_len, sr_error *err)
{
    size_t max = max_bytes > SIZE_MAX ? SIZE_MAX : (size_t)max_bytes;
    if (len == 0) return sr_fail(err, "%s: empty file, not a zstd frame", name);
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!ds) return sr_fail(err, "%s: out of memory for the zstd decoder", name);
    uint8_t *buf = NULL;
    size_t cap = 0, total = 0, pos = 0;
    int rc = -1;
    while (pos < len) {
        ZSTD_frameHeader fh;
        size_t r = ZSTD_getFrameHeader(&fh, src + pos, len - pos);
        if (ZSTD_isError(r)) {
            sr_fail(err, "%s: not a zstd frame at byte %zu: %s", name, pos, ZSTD_getErrorName(r));
            goto out;
        }
        if (r > 0) {
            sr_fail(err, "%s: truncated zstd data: frame header at byte %zu is cut off", name,
                    pos);
            goto out;
        }
        if (fh.frameType == ZSTD_frame && !fh.checksumFlag) {
            sr_fail(err, "%s: zstd frame at byte %zu has no content checksum "
                    "(compress with `zstd --check`)", name, pos);
            goto out;
        }
        if (fh.frameType == ZSTD_frame && fh.frameContentSize != ZSTD_CONTENTSIZE_UNKNOWN) {
            if (fh.frameContentSize > max - total) {
                sr_fail(err, "%s: zstd frame declares %llu bytes, more than the %zu allowed",
                        name, (unsigned long long)fh.frameContentSize, max - total);
                goto out;
            }
            /* libzstd checks the declared size, so reserving it exactly is safe */
            if (reserve(&buf, &cap, total, (size_t)fh.frameContentSize, max, 1)) {
                sr_fail(err, "%s: out of memory for %llu decompressed bytes", name,
                        (unsigned long long)fh.frameContentSize);
                goto out;
            }
        }
        ZSTD_inBuffer in = {src + pos, len - pos, 0};
        for (;;) {
            ZSTD_outBuffer o = {buf ? buf + total : NULL, cap - total, 0};
            size_t in_before = in.pos;
            size_t ret = ZSTD_decompressStream(ds, &o, &in);
            total += o.pos;
            if (ZSTD_isError(ret)) {
                if (ZSTD_getErrorCode(ret) == ZSTD_error_checksum_wrong)
                    sr_fail(err, "%s: zstd checksum mismatch: the data is corrupt", name);
                else
                    sr_fail(err, "%s: corrupt zstd data: %s", name, ZSTD_getErrorName(ret));
                goto out;
            }
            if (ret == 0) break;                      /* frame complete and verified */
            if (o.pos < o.size && in.pos == in.size) {  /* room left, wants more input */
                sr_fail(err, "%s: truncated zstd data: the frame ends early", name);
                goto out;
            }
            /* An empty output buffer may still let it consume input (the
             * checksum); grow only when it is stuck or the input is gone. */
            if (o.pos == o.size && (o.size > 0 || in.pos == in_before || in.pos == in.size)) {
                if (total >= max) {
                    sr_fail(err, "%s: decompresses to more than the %zu bytes allowed", name,
                            max);
                    goto out;
                }
                if (reserve(&buf, &cap, total, 1, max, 0)) {
                    sr_fail(err, "%s: out of memory after %zu decompressed bytes", name, total);
                    goto out;
                }
            }
        }
        pos += in.pos;
    }
    *out = buf;
    *out_len = total;
    buf = NULL;
    rc = 0;
out:
    sr_free(buf);
    ZSTD_freeDStream(ds);
    return rc;
}

int sr_ckpt_zst_open_memory(const void *buf, size_t len, const char *name, uint64_t max_bytes,
                          sr_st_file **out, sr_error *err)
{
    *out = NULL;
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    if (zst_decompress(buf, len, name, max_bytes, &plain, &plain_len, err)) return -1;
    return sr_st_open_memory(plain, plain_len, name, 1, out, err);
}

static int open_zst_file(const char *path, sr_st_file **out, uint64_t *disk_bytes,
                         sr_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sr_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return sr_fail(err, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    *disk_bytes = len;
    void *m = NULL;
    if (len) {
        m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return sr_fail(err, "%s: cannot mmap: %s", path, strerror(e));
        }
        madvise(m, len, MADV_SEQUENTIAL);
    }
    close(fd);
    int rc = sr_ckpt_zst_open_memory(m ? m : "", len, path, physical_memory(), out, err);
    if (m) munmap(m, len);
    return rc;
}

/* ---- paths ------------------------------------------------------------------------- */

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *join(const char *dir, const char *name, const char *suffix)
{
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *p = sr_malloc(n);
    if (p) snprintf(p, n, "%s/%s%s", dir, name, suffix);
    return p;
}

/* Opens shard `name` of directory `dir`: the plain file, else name + ".zst". */
static int open_shard(ckpt_shard *s, const char *dir, const char *name, sr_error *err)
{
    char *plain = join(dir, name, ""), *zst = join(dir, name, ".zst");
    int rc = -1;
    s->name = sr_strdup(name);
    if (!plain || !zst || !s->name) {
        sr_fail(err, "%s/%s: out of memory", dir, name);
    } else if (is_file(plain)) {
        s->path = plain;
        plain = NULL;
        if (sr_st_open(s->path, &s->file, err) == 0) {
            s->disk_bytes = s->bytes = sr_st_file_size(s->file);
            rc = 0;
        }
    } else if (is_file(zst)) {
        s->path = zst;
        zst = NULL;
        if (open_zst_file(s->path, &s->file, &s->disk_bytes, err) == 0) {
            s->bytes = sr_st_file_size(s->file);
            rc = 0;
        }
    } else {
        sr_fail(err, "shard '%s' is missing: neither %s nor %s.zst exists in %s", name, name,
                name, dir);
    }
    sr_free(plain);
    sr_free(zst);
    return rc;
}

/* ---- the sharded index --------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name must stay inside the checkpoint directory. */
static int safe_shard_name(const char *s)
{
    if (!*s || s[0] == '/') return 0;
    for (const char *p = s; *p;) {
        size_t l = strcspn(p, "/");
        if (l == 2 && p[0] == '.' && p[1] == '.') return 0;
        p += l;
        if (*p) p++;
    }
    return 1;
}

/* Reads the index, opens every shard it names (sorted by name, each once). */
static int open_index(sr_checkpoint *ck, const char *index_path, json_t **weight_map,
                      sr_error *err)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root && (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0]))
        return sr_fail(err, "%s: out of memory parsing the JSON", index_path);
    if (!root && json_error_code(&jerr) == json_error_cannot_open_file)
        return sr_fail(err, "%s: cannot open: %s", index_path, jerr.text);
    if (!root)
        return sr_fail(err, "%s: invalid JSON at line %d: %s", index_path, jerr.line, jerr.text);
    int rc = -1;
    const char **names = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        sr_fail(err, "%s: field weight_map: missing or not a JSON object", index_path);
        goto out;
    }
    json_t *meta = json_object_get(root, "metadata");
    if (meta && !json_is_object(meta) && !json_is_null(meta)) {
        sr_fail(err, "%s: field metadata: not a JSON object", index_path);
        goto out;
    }
    size_t n = json_object_size(wm);
    if (n == 0) {
        sr_fail(err, "%s: field weight_map: empty", index_path);
        goto out;
    }
    names = sr_malloc(n * sizeof *names);
    if (!names) {
        sr_fail(err, "%s: out of memory", index_path);
        goto out;
    }
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        if (!json_is_string(v) || !safe_shard_name(json_string_value(v))) {
            sr_fail(err, "%s: weight_map: tensor '%s': shard is not a relative file name "
                    "inside the directory", index_path, k);
            goto out;
        }
        names[i++] = json_string_value(v);
    }
    qsort(names, n, sizeof *names, cmp_str);
    size_t u = 0;
    for (i = 0; i < n; i++)
        if (u == 0 || strcmp(names[u - 1], names[i])) names[u++] = names[i];
    ck->shards = sr_calloc(u, sizeof *ck->shards);
    if (!ck->shards) {
        sr_fail(err, "%s: out of memory", index_path);
        goto out;
    }
    ck->n_shards = u;
    for (i = 0; i < u; i++) {
        if (open_shard(&ck->shards[i], ck->dir, names[i], err)) {
            sr_fail_prefix(err, "%s", index_path);
            goto out;
        }
    }
    *weight_map = json_incref(wm);
    rc = 0;
out:
    sr_free(names);
    json_decref(root);
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const sr_tensor *const *)a)->name, (*(const sr_tensor *const *)b)->name);
}

/* The shard holding t (shards are few; tensors know their file). */
static const ckpt_shard *shard_of(const sr_checkpoint *ck, const sr_tensor *t)
{
    for (size_t i = 0; i < ck->n_shards; i++)
        if (ck->shards[i].file == t->file) return &ck->shards[i];
    return NULL;
}

static const char *shard_name(const sr_checkpoint *ck, const sr_tensor *t)
{
    const ckpt_shard *s = shard_of(ck, t);
    return s ? s->name : "?";
}

static const ckpt_shard *shard_named(const sr_checkpoint *ck, const char *name)
{
    size_t lo = 0, hi = ck->n_shards;   /* sorted by name, see open_index */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ck->shards[mid].name);
        if (c == 0) return &ck->shards[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

/* Builds the tables over all shards; a name may live in one shard only. */
static int build_tables(sr_checkpoint *ck, sr_error *err)
{
    size_t n = 0;
    for (size_t i = 0; i < ck->n_shards; i++) n += sr_st_count(ck->shards[i].file);
    ck->tensors = sr_malloc((n ? n : 1) * sizeof *ck->tensors);
    ck->by_name = sr_malloc((n ? n : 1) * sizeof *ck->by_name);
    if (!ck->tensors || !ck->by_name) return sr_fail(err, "%s: out of memory", ck->dir);
    for (size_t i = 0; i < ck->n_shards; i++)
        for (size_t j = 0; j < sr_st_count(ck->shards[i].file); j++)
            ck->tensors[ck->n++] = sr_st_get(ck->shards[i].file, j);
    memcpy(ck->by_name, ck->tensors, n * sizeof *ck->tensors);
    qsort(ck->by_name, n, sizeof *ck->by_name, cmp_tensor_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ck->by_name[i - 1]->name, ck->by_name[i]->name) == 0)
            return sr_fail(err, "%s: tensor '%s' is present in two shards: %s and %s", ck->dir,
                           ck->by_name[i]->name, shard_name(ck, ck->by_name[i - 1]),
                           shard_name(ck, ck->by_name[i]));
    return 0;
}

/* Index and shards must agree exactly, both ways. */
static int check_index(sr_checkpoint *ck, const char *index_path, json_t *wm, sr_error *err)
{
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        const sr_tensor *t = sr_ckpt_find(ck, k);
        const ckpt_shard *want = shard_named(ck, json_string_value(v));
        if (!t || !want)
            return sr_fail(err, "%s: tensor '%s' is listed for shard %s but missing from it",
                           index_path, k, json_string_value(v));
        if (t->file != want->file)
            return sr_fail(err, "%s: tensor '%s' is listed for shard %s but is in shard %s",
                           index_path, k, want->name, shard_name(ck, t));
    }
    if (json_object_size(wm) != ck->n)
        for (size_t i = 0; i < ck->n; i++)
            if (!json_object_get(wm, ck->tensors[i]->name))
                return sr_fail(err, "%s: tensor '%s' of shard %s is not listed in weight_map",
                               index_path, ck->tensors[i]->name, shard_name(ck, ck->tensors[i]));
    return 0;
}

/* ---- open / close ------------------------------------------------------------------ */

/* Splits `path` into the checkpoint directory and, for a file, its name. */
static int locate(sr_checkpoint *ck, const char *path, const char **file, sr_error *err)
{
    struct stat st;
    if (stat(path, &st)) return sr_fail(err, "%s: cannot open: %s", path, strerror(errno));
    *file = NULL;
    if (S_ISDIR(st.st_mode)) {
        size_t l = strlen(path);
        while (l > 1 && path[l - 1] == '/') l--;
        ck->dir = sr_strndup(path, l);
        if (!ck->dir) return sr_fail(err, "%s: out of memory", path);
        char *cfg = join(ck->dir, "config.json", "");
        if (!cfg) return sr_fail(err, "%s: out of memory", path);
        ck->has_config = is_file(cfg);
        sr_free(cfg);
        return 0;
    }
    if (!S_ISREG(st.st_mode)) return sr_fail(err, "%s: not a file or directory", path);
    const char *slash = strrchr(path, '/');
    ck->dir = slash ? sr_strndup(path, slash == path ? 1 : (size_t)(slash - path))
                    : sr_strdup(".");
    if (!ck->dir) return sr_fail(err, "%s: out of memory", path);
    *file = slash ? slash + 1 : path;
    return 0;
}

static int open_single(sr_checkpoint *ck, const char *name, sr_error *err)
{
    ck->shards = sr_calloc(1, sizeof *ck->shards);
    if (!ck->shards) return sr_fail(err, "%s: out of memory", ck->dir);
    ck->n_shards = 1;
    ckpt_shard *s = &ck->shards[0];
    if (ends_with(name, ".zst")) {   /* an explicitly named .zst file */
        s->path = join(ck->dir, name, "");
        s->name = sr_strdup(name);
        if (!s->path || !s->name) return sr_fail(err, "%s: out of memory", ck->dir);
        if (open_zst_file(s->path, &s->file, &s->disk_bytes, err)) return -1;
        s->bytes = sr_st_file_size(s->file);
    } else if (open_shard(s, ck->dir, name, err)) {
        return -1;
    }
    return build_tables(ck, err);
}

static int open_sharded(sr_checkpoint *ck, const char *index_path, sr_error *err)
{
    json_t *wm = NULL;
    int rc = -1;
    if (open_index(ck, index_path, &wm, err) == 0 && build_tables(ck, err) == 0)
        rc = check_index(ck, index_path, wm, err);
    json_decref(wm);
    return rc;
}

static int open_dir(sr_checkpoint *ck, sr_error *err)
{
    char *single = join(ck->dir, SINGLE_NAME, ""), *single_zst = join(ck->dir, SINGLE_NAME, ".zst"),
         *index = join(ck->dir, INDEX_NAME, "");
    int rc = -1;
    if (!single || !single_zst || !index)
        sr_fail(err, "%s: out of memory", ck->dir);
    else if (is_file(single) || is_file(single_zst))   /* transformers' order: single first */
        rc = open_single(ck, SINGLE_NAME, err);
    else if (is_file(index))
        rc = open_sharded(ck, index, err);
    else {
        /* Hub checkpoints that predate safetensors hold pickled torch files. */
        char *pickle = join(ck->dir, "pytorch_model.bin", ""),
             *pickle_index = join(ck->dir, "pytorch_model.bin.index.json", "");
        const int torch = (pickle && is_file(pickle)) || (pickle_index && is_file(pickle_index));
        sr_fail(err, "%s: no %s, %s.zst or %s in the directory%s", ck->dir, SINGLE_NAME,
                SINGLE_NAME, INDEX_NAME,
                torch ? " (it holds pytorch_model.bin: strata reads safetensors only; "
                        "transformers' save_pretrained writes them)"
                      : "");
        sr_free(pickle);
        sr_free(pickle_index);
    }
    sr_free(single);
    sr_free(single_zst);
    sr_free(index);
    return rc;
}

int sr_ckpt_open(const char *path, sr_checkpoint **out, sr_error *err)
{
    *out = NULL;
    sr_checkpoint *ck = sr_calloc(1, sizeof *ck);
    if (!ck) return sr_fail(err, "%s: out of memory", path);
    const char *file;
    int rc = locate(ck, path, &file, err);
    if (rc == 0 && !file) {
        rc = open_dir(ck, err);
    } else if (rc == 0 && ends_with(file, ".index.json")) {
        char *index = join(ck->dir, file, "");
        rc = index ? open_sharded(ck, index, err) : sr_fail(err, "%s: out of memory", path);
        sr_free(index);
    } else if (rc == 0) {
        rc = open_single(ck, file, err);
    }
    if (rc) {
        sr_ckpt_close(ck);
        return -1;
    }
    *out = ck;
    return 0;
}

void sr_ckpt_close(sr_checkpoint *ck)
{
    if (!ck) return;
    for (size_t i = 0; ck->shards && i < ck->n_shards; i++) {
        sr_st_close(ck->shards[i].file);
        sr_free(ck->shards[i].path);
        sr_free(ck->shards[i].name);
    }
    sr_free(ck->shards);
    sr_free(ck->tensors);
    sr_free(ck->by_name);
    sr_free(ck->dir);
    sr_free(ck);
}

/* ---- accessors --------------------------------------------------------------------- */

const char *sr_ckpt_dir(const sr_checkpoint *ck) { return ck->dir; }
int sr_ckpt_has_config(const sr_checkpoint *ck) { return ck->has_config; }
size_t sr_ckpt_count(const sr_checkpoint *ck) { return ck->n; }

const sr_tensor *sr_ckpt_get(const sr_checkpoint *ck, size_t i)
{
    return i < ck->n ? ck->tensors[i] : NULL;
}

const sr_tensor *sr_ckpt_find(const sr_checkpoint *ck, const char *name)
{
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ck->by_name[mid]->name);
        if (c == 0) return ck->by_name[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

size_t sr_ckpt_shard_count(const sr_checkpoint *ck) { return ck->n_shards; }

const char *sr_ckpt_shard_path(const sr_checkpoint *ck, size_t i)
{
    return i < ck->n_shards ? ck->shards[i].path : NULL;
}

uint64_t sr_ckpt_shard_disk_bytes(const sr_checkpoint *ck, size_t i)
{
    return i < ck->n_shards ? ck->shards[i].disk_bytes : 0;
}

uint64_t sr_ckpt_shard_bytes(const sr_checkpoint *ck, size_t i)
{
    return i < ck->n_shards ? ck->shards[i].bytes : 0;
}

void sr_ckpt_release(const sr_checkpoint *ck, const void *p, size_t len)
{
    for (size_t i = 0; i < ck->n_shards; i++)
        if (ck->shards[i].file && sr_st_release(ck->shards[i].file, p, len)) return;
}
