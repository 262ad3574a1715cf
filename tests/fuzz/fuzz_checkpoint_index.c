/* libFuzzer target: a sharded checkpoint's model.safetensors.index.json.
 * A scratch directory made once holds three small shards (one in a
 * subdirectory) and a file outside the checkpoint; each input is written as
 * the index and the directory opened.  An index that names a shard outside
 * the directory must be refused, and an opened checkpoint must find every
 * tensor it lists.  Seeds: tests/fuzz/corpus/checkpoint_index/. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[40], dir[64], index_path[128];
static const char *const files[] = {"model/model-00001-of-00002.safetensors",
                                    "model/model-00002-of-00002.safetensors",
                                    "model/sub/d.safetensors", "outside.safetensors",
                                    "model/model.safetensors.index.json"};

/* A safetensors file of F32 tensors with one element each. */
static void write_shard(const char *path, const char *const *names, int n)
{
    char hdr[512];
    int len = snprintf(hdr, sizeof hdr, "{");
    for (int i = 0; i < n; i++)
        len += snprintf(hdr + len, sizeof hdr - (size_t)len,
                        "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                        i ? "," : "", names[i], 4 * i, 4 * i + 4);
    len += snprintf(hdr + len, sizeof hdr - (size_t)len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    uint64_t hl = (uint64_t)len;
    float v[4] = {1, 2, 3, 4};
    if (fwrite(&hl, 8, 1, f) != 1 || fwrite(hdr, 1, (size_t)len, f) != (size_t)len ||
        fwrite(v, 4, (size_t)n, f) != (size_t)n)
        abort();
    fclose(f);
}

static void cleanup(void)
{
    char p[160];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i]);
        remove(p);
    }
    snprintf(p, sizeof p, "%s/sub", dir);
    remove(p);
    remove(dir);
    remove(root);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/strata-fuzz-ckpt-XXXXXX");
    if (!mkdtemp(root)) abort();
    atexit(cleanup);
    snprintf(dir, sizeof dir, "%s/model", root);
    char p[160];
    if (mkdir(dir, 0700)) abort();
    snprintf(p, sizeof p, "%s/sub", dir);
    if (mkdir(p, 0700)) abort();
    static const char *const a[] = {"a"}, *const bc[] = {"b", "c"}, *const d[] = {"d"},
                             *const out[] = {"outside"};
    const char *const *names[] = {a, bc, d, out}; /* out: ../outside.safetensors */
    const int counts[] = {1, 2, 1, 1};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i]);
        write_shard(p, names[i], counts[i]);
    }
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) setup();
    FILE *f = fopen(index_path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    sr_checkpoint *ck;
    sr_error err;
    if (sr_ckpt_open(dir, &ck, &err) == 0) {
        for (size_t i = 0; i < sr_ckpt_count(ck); i++) {
            const sr_tensor *t = sr_ckpt_get(ck, i);
            if (sr_ckpt_find(ck, t->name) != t) __builtin_trap();
            if (!strcmp(t->name, "outside")) __builtin_trap(); /* read outside the directory */
            if (*(const float *)t->data == 0) __builtin_trap();
        }
        sr_ckpt_close(ck);
    }
    return 0;
}
