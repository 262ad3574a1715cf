/* `strata inspect DIR|FILE [--json]` and `strata inspect --devices`. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "runtime/adapter_meta.h"
#include "runtime/alloc.h"
#include "runtime/catalog.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "runtime/devices.h"
#include "runtime/tokenizer.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: strata inspect MODEL_DIR|FILE.safetensors [--json]\n"
               "       strata inspect --devices [--json]\n");
}

static int inspect_devices(int json)
{
    sr_device_info dev[SR_MAX_DEVICES];
    char why[512] = "";
    int n = sr_list_devices(dev, SR_MAX_DEVICES, why, sizeof why);
    if (json) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++) {
            char cc[16];
            snprintf(cc, sizeof cc, "%d.%d", dev[i].cc_major, dev[i].cc_minor);
            json_array_append_new(arr, json_pack("{s:i,s:s,s:I,s:I,s:s}", "index", dev[i].index,
                                                 "name", dev[i].name, "free_bytes",
                                                 (json_int_t)dev[i].free_bytes, "total_bytes",
                                                 (json_int_t)dev[i].total_bytes,
                                                 "compute_capability", cc));
        }
        json_t *o = json_pack("{s:b,s:o,s:s}", "cuda_build", sr_have_cuda_build(), "devices", arr,
                              "note", n ? "" : why);
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
        return 0;
    }
    if (!n) {
        printf("no CUDA devices (%s)\n", why);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        char a[32], b[32];
        printf("cuda:%d  %s  sm_%d%d  free %s / total %s\n", dev[i].index, dev[i].name,
               dev[i].cc_major, dev[i].cc_minor, cli_fmt_bytes(dev[i].free_bytes, a, sizeof a),
               cli_fmt_bytes(dev[i].total_bytes, b, sizeof b));
    }
    return 0;
}

/* Tensor totals by (role, part, dtype). */
typedef struct { sr_role role; sr_part part; sr_dtype dtype; int count; uint64_t bytes; } bucket;

static int add_bucket(bucket *b, int nb, const sr_catalog_entry *e)
{
    for (int i = 0; i < nb; i++)
        if (b[i].role == e->role && b[i].part == e->part && b[i].dtype == e->t->dtype) {
            b[i].count++;
            b[i].bytes += e->t->nbytes;
            return nb;
        }
    b[nb] = (bucket){e->role, e->part, e->t->dtype, 1, e->t->nbytes};
    return nb + 1;
}

static const char *quant_desc(const sr_config *cfg, char *buf, size_t len)
{
    const sr_bnb_config *q = &cfg->quant;
    if (q->mode == SR_BNB_4BIT)
        snprintf(buf, len, "bitsandbytes 4-bit %s%s, blocksize %d, compute %s, storage %s",
                 q->nf4 ? "nf4" : "fp4", q->double_quant ? " + double quant" : "", q->blocksize,
                 sr_dtype_torch_name(q->compute_dtype), sr_dtype_torch_name(q->quant_storage));
    else if (q->mode == SR_BNB_8BIT)
        snprintf(buf, len, "bitsandbytes 8-bit (LLM.int8, threshold %g)", q->int8_threshold);
    else
        snprintf(buf, len, "none (%s weights)", sr_dtype_torch_name(cfg->dtype));
    return buf;
}

static json_t *json_str_list(char **v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_string(v[i]));
    return a;
}

static int report(const char *path, const sr_checkpoint *ck, const sr_config *cfg,
                  const sr_catalog *cat, int json)
{
    bucket b[SR_ROLE_COUNT * SR_PART_COUNT * 4];
    int nb = 0;
    for (size_t i = 0; i < cat->n && nb < (int)(sizeof b / sizeof *b) - 1; i++)
        nb = add_bucket(b, nb, &cat->entries[i]);
    uint64_t total = 0, disk = 0, raw = 0;
    for (size_t i = 0; i < cat->n; i++) total += cat->entries[i].t->nbytes;
    size_t ns = sr_ckpt_shard_count(ck);
    for (size_t i = 0; i < ns; i++) {
        disk += sr_ckpt_shard_disk_bytes(ck, i);
        raw += sr_ckpt_shard_bytes(ck, i);
    }
    char qbuf[256], s1[32], s2[32];
    quant_desc(cfg, qbuf, sizeof qbuf);

    if (json) {
        json_t *o = json_object();
        /* a path need not be UTF-8; JSON must */
        char *upath = sr_utf8_lossy(path, strlen(path), NULL);
        json_object_set_new(o, "path", json_string(upath ? upath : ""));
        sr_free(upath);
        json_object_set_new(o, "model_type", json_string(cfg->model_type));
        json_object_set_new(o, "architecture", json_string(sr_arch_name(cfg->arch)));
        json_object_set_new(o, "generation", json_string(sr_gen_name(cfg->gen)));
        json_object_set_new(o, "dims", json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
            "vocab_size", (json_int_t)cfg->vocab_size, "hidden_size", (json_int_t)cfg->hidden_size,
            "decoder_layers", (json_int_t)cfg->n_layers, "switch_cache_slots",
            (json_int_t)cfg->n_switch_slots, "num_attention_heads",
            (json_int_t)cfg->num_attention_heads, "num_key_value_heads",
            (json_int_t)cfg->num_key_value_heads, "head_dim", (json_int_t)cfg->head_dim,
            "intermediate_size", (json_int_t)cfg->intermediate_size,
            "shared_intermediate_size", (json_int_t)cfg->shared_intermediate_size,
            "max_position_embeddings", (json_int_t)cfg->max_position_embeddings));
        json_t *ad = json_array();
        for (int k = 0; k < cfg->num_adapters; k++) {
            int third = 0;
            for (int j = 0; j < cfg->n_third_party && cfg->adapter_names; j++)
                if (!strcmp(cfg->adapter_third_party[j], cfg->adapter_names[k])) third = 1;
            int64_t tok = cfg->n_adapter_token_ids > cfg->num_adapters
                              ? cfg->adapter_token_ids[k + 1] : cfg->adapter_token_ids[k];
            json_array_append_new(ad, json_pack("{s:i,s:s,s:i,s:I,s:b}", "index", k + 1, "name",
                cfg->adapter_names ? cfg->adapter_names[k] : "", "rank",
                cfg->adapter_ranks ? cfg->adapter_ranks[k] : 0, "control_token_id",
                (json_int_t)tok, "third_party", third));
        }
        json_object_set_new(o, "adapters", ad);
        json_t *groups = json_array();
        for (int g = 0; g < cfg->n_hiding_groups; g++)
            json_array_append_new(groups, json_pack("{s:s,s:o}", "name", cfg->hiding_groups[g].name,
                "members", json_str_list(cfg->hiding_groups[g].members,
                                         cfg->hiding_groups[g].n_members)));
        json_object_set_new(o, "hiding_groups", groups);
        json_t *pol = json_object();
        for (int r = 0; r < cfg->n_hiding_rules; r++)
            json_object_set_new(pol, cfg->hiding_rules[r].adapter,
                json_str_list(cfg->hiding_rules[r].groups, cfg->hiding_rules[r].n_groups));
        json_object_set_new(o, "hiding_policy", pol);
        json_object_set_new(o, "quantization", json_string(qbuf));
        json_t *tens = json_array();
        for (int i = 0; i < nb; i++)
            json_array_append_new(tens, json_pack("{s:s,s:s,s:s,s:i,s:I}", "role",
                sr_role_name(b[i].role), "part", sr_part_name(b[i].part), "dtype",
                sr_dtype_name(b[i].dtype), "count", b[i].count, "bytes", (json_int_t)b[i].bytes));
        json_object_set_new(o, "tensors", tens);
        json_t *der = json_array();
        for (size_t i = 0; i < cat->n; i++)
            if (cat->entries[i].role == SR_ROLE_DERIVED)
                json_array_append_new(der, json_string(cat->entries[i].t->name));
        json_object_set_new(o, "derived_keys_ignored", der);
        json_t *lb = json_array();
        for (int l = 0; l < cat->n_layers; l++)
            json_array_append_new(lb, json_integer((json_int_t)cat->layer_bytes[l]));
        json_object_set_new(o, "unit_bytes", json_pack("{s:I,s:o,s:I,s:b}", "embedding",
            (json_int_t)cat->embed_bytes, "layers", lb, "head", (json_int_t)cat->head_bytes,
            "head_tied_to_embedding", cat->head_tied));
        json_object_set_new(o, "total_bytes", json_integer((json_int_t)total));
        json_object_set_new(o, "shards", json_integer((json_int_t)ns));
        json_object_set_new(o, "disk_bytes", json_integer((json_int_t)disk));
        json_object_set_new(o, "compression_ratio", json_real(disk ? (double)raw / (double)disk : 1));
        json_object_set_new(o, "defaults_used", json_str_list(cfg->defaulted, cfg->n_defaulted));
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
        return 0;
    }

    printf("model         %s\n", path);
    printf("architecture  %s (model_type \"%s\")\n", sr_arch_name(cfg->arch), cfg->model_type);
    printf("generation    %s\n", sr_gen_name(cfg->gen));
    printf("dims          vocab %" PRId64 ", hidden %" PRId64 ", %" PRId64
           " decoder layers (+%d switch cache slots), heads %" PRId64 " q / %" PRId64
           " kv, head_dim %" PRId64 ", mlp %" PRId64 ", context %" PRId64 "\n",
           cfg->vocab_size, cfg->hidden_size, cfg->n_layers, cfg->n_switch_slots,
           cfg->num_attention_heads, cfg->num_key_value_heads, cfg->head_dim,
           cfg->shared_intermediate_size > 0 ? cfg->shared_intermediate_size
                                             : cfg->intermediate_size,
           cfg->max_position_embeddings);
    printf("multipliers   embedding %g, residual %g, attention %g, logits 1/%g; rope theta %g (%s)%s\n",
           cfg->embedding_multiplier, cfg->residual_multiplier, cfg->attention_multiplier,
           cfg->logits_scaling, cfg->rope_theta, cfg->rope_type,
           cfg->tie_word_embeddings ? "; lm_head tied to the embedding" : "");
    printf("quantization  %s\n", qbuf);
    if (cfg->num_adapters) {
        printf("adapters      %d, max rank %d, LoRA on%s%s%s%s\n", cfg->num_adapters,
               cfg->max_lora_rank, cfg->lora_targets & SR_LORA_QKV ? " qkv_proj" : "",
               cfg->lora_targets & SR_LORA_O ? " o_proj" : "",
               cfg->lora_targets & SR_LORA_IN ? " shared_input_linear" : "",
               cfg->lora_targets & SR_LORA_OUT ? " shared_output_linear" : "");
        printf("  %-5s %-28s %-5s %-8s %s\n", "index", "name", "rank", "token", "third-party");
        for (int k = 0; k < cfg->num_adapters; k++) {
            int third = 0;
            for (int j = 0; j < cfg->n_third_party && cfg->adapter_names; j++)
                if (!strcmp(cfg->adapter_third_party[j], cfg->adapter_names[k])) third = 1;
            int64_t tok = cfg->n_adapter_token_ids > cfg->num_adapters
                              ? cfg->adapter_token_ids[k + 1] : cfg->adapter_token_ids[k];
            printf("  %-5d %-28s %-5d %-8" PRId64 " %s\n", k + 1,
                   cfg->adapter_names ? cfg->adapter_names[k] : "?",
                   cfg->adapter_ranks ? cfg->adapter_ranks[k] : 0, tok, third ? "yes" : "no");
        }
        if (cfg->n_adapter_token_ids > cfg->num_adapters)
            printf("  base-reset token %" PRId64 "\n", cfg->adapter_token_ids[0]);
    }
    if (cfg->n_hiding_groups) {
        printf("hiding groups (control dims %d)\n", cfg->control_dims);
        for (int g = 0; g < cfg->n_hiding_groups; g++) {
            printf("  %d %-20s members:", g, cfg->hiding_groups[g].name);
            for (int j = 0; j < cfg->hiding_groups[g].n_members; j++)
                printf(" %s", cfg->hiding_groups[g].members[j]);
            printf("\n");
        }
        printf("hiding policy\n");
        for (int r = 0; r < cfg->n_hiding_rules; r++) {
            printf("  %-22s hides:", cfg->hiding_rules[r].adapter);
            for (int j = 0; j < cfg->hiding_rules[r].n_groups; j++)
                printf(" %s", cfg->hiding_rules[r].groups[j]);
            printf("%s\n", cfg->hiding_rules[r].n_groups ? "" : " (nothing)");
        }
    }
    printf("tensors       %zu in %zu shard%s, %s", cat->n, ns, ns == 1 ? "" : "s",
           cli_fmt_bytes(total, s1, sizeof s1));
    if (disk && disk != raw)
        printf(" (%s on disk, zstd ratio %.2f)", cli_fmt_bytes(disk, s2, sizeof s2),
               (double)raw / (double)disk);
    printf("\n  %-20s %-17s %-5s %6s %12s\n", "role", "part", "dtype", "count", "bytes");
    for (int i = 0; i < nb; i++)
        printf("  %-20s %-17s %-5s %6d %12" PRIu64 "\n", sr_role_name(b[i].role),
               sr_part_name(b[i].part), sr_dtype_name(b[i].dtype), b[i].count, b[i].bytes);
    if (cat->n_derived) {
        printf("derived keys  found and ignored (rebuilt from config.json):");
        for (size_t i = 0; i < cat->n; i++)
            if (cat->entries[i].role == SR_ROLE_DERIVED) printf(" %s", cat->entries[i].t->name);
        printf("\n");
    } else {
        printf("derived keys  none stored (adapter metadata is rebuilt from config.json)\n");
    }
    if (cat->lm_head_ignored) printf("note          stored lm_head.weight ignored: tied to the embedding\n");
    printf("unit bytes    (what the planner places)\n");
    printf("  embedding   %12" PRIu64 "\n", cat->embed_bytes);
    for (int l = 0; l < cat->n_layers; l++) printf("  layer %-5d %12" PRIu64 "\n", l, cat->layer_bytes[l]);
    printf("  head        %12" PRIu64 "%s\n", cat->head_bytes,
           cat->head_tied ? "  (+ the embedding, tied)" : "");
    if (cfg->n_defaulted) {
        printf("defaults      config.json lacks:");
        for (int i = 0; i < cfg->n_defaulted; i++) printf(" %s", cfg->defaulted[i]);
        printf("\n");
    }
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0, devices = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--devices")) devices = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (++i == argc) { usage(stderr); return 2; }
            path = argv[i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "strata inspect: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else { usage(stderr); return 2; }
    }
    if (devices) return inspect_devices(json);
    if (!path) { usage(stderr); return 2; }

    sr_error err;
    sr_checkpoint *ck = NULL;
    sr_config cfg;
    sr_adapter_meta meta;
    sr_catalog cat;
    memset(&cfg, 0, sizeof cfg);
    memset(&meta, 0, sizeof meta);
    memset(&cat, 0, sizeof cat);
    int rc = 1;
    if (sr_ckpt_open(path, &ck, &err)) goto out;
    if (!sr_ckpt_has_config(ck)) {
        sr_fail(&err, "%s: no config.json next to the weights; strata inspect needs the model "
                "directory", path);
        goto out;
    }
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", sr_ckpt_dir(ck));
    if (sr_config_load(cfgpath, &cfg, &err)) goto out;
    if (sr_adapter_meta_build(&cfg, &meta, &err)) goto out;
    if (sr_catalog_build(ck, &cfg, &meta, &cat, &err)) {
        sr_fail_prefix(&err, "%s", path);
        goto out;
    }
    rc = report(path, ck, &cfg, &cat, json);
out:
    if (rc) fprintf(stderr, "strata inspect: %s\n", err.msg);
    sr_catalog_free(&cat);
    sr_adapter_meta_free(&meta);
    sr_config_free(&cfg);
    sr_ckpt_close(ck);
    return rc;
}
