/* `strata convert IN_DIR OUT_DIR --quant nf4|fp4|int8|none ...` */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/alloc.h"
#include "tools/cli_util.h"
#include "tools/commands.h"
#include "tools/convert.h"

static double sqrt_rms(double sum_sq, unsigned long long n) { return n ? sqrt(sum_sq / (double)n) : 0; }

static void usage(FILE *f)
{
    fprintf(f,
        "usage: strata convert IN_DIR OUT_DIR --quant nf4|fp4|int8|none [options]\n"
        "  --double-quant          quantize the 4-bit absmax too (bnb_4bit_use_double_quant)\n"
        "  --blocksize N           4-bit blocksize (default 64, what transformers uses)\n"
        "  --compute-dtype T       bf16|f16|f32 recorded in quantization_config (default: model dtype)\n"
        "  --skip M1,M2            modules left unquantized (lm_head always is): each entry\n"
        "                          names whole components of a module path (mlp,\n"
        "                          model.layers.1, self_attn.q_proj); config.json lists\n"
        "                          the paths it matched\n"
        "  --rules cuda|cpu        bnb's GPU (default, what Hub checkpoints hold) or CPU rounding rules\n"
        "  --shard-size SIZE       max shard size (default 5GB)\n"
        "  --zstd[=LEVEL]          also write *.safetensors.zst (default level 3); --zstd-only: only those\n"
        "  --threads N             worker threads\n"
        "  --force                 replace an existing OUT_DIR\n"
        "  --stats                 report the quantization error per tensor class\n"
        "  --match-offsets DIR     take double-quant offsets from a bnb checkpoint (bit-exact reproduction)\n"
        "  --quiet, --json         no progress / a JSON summary on stdout\n");
}

static void on_signal(int sig)
{
    (void)sig;
    convert_interrupted = 1;
}

static int parse_dtype(const char *s, int *out)
{
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *out = SR_BF16;
    else if (!strcmp(s, "f16") || !strcmp(s, "float16") || !strcmp(s, "fp16")) *out = SR_F16;
    else if (!strcmp(s, "f32") || !strcmp(s, "float32") || !strcmp(s, "fp32")) *out = SR_F32;
    else return -1;
    return 0;
}

int cmd_convert(int argc, char **argv)
{
    convert_opts o;
    convert_defaults(&o);
    int json = 0, have_quant = 0, rc = 2;
    const char *pos[2] = {0};
    int npos = 0;
    char *skip_copy = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (fprintf(stderr, "strata convert: %s needs a value\n", a), (char *)NULL))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--quant")) {
            const char *v = NEXT();
            if (!v) goto bad;
            have_quant = 1;
            if (!strcmp(v, "nf4")) o.quant = CQ_NF4;
            else if (!strcmp(v, "fp4")) o.quant = CQ_FP4;
            else if (!strcmp(v, "int8")) o.quant = CQ_INT8;
            else if (!strcmp(v, "none")) o.quant = CQ_NONE;
            else { fprintf(stderr, "strata convert: --quant %s: expected nf4, fp4, int8 or none\n", v); goto bad; }
        } else if (!strcmp(a, "--double-quant")) o.double_quant = true;
        else if (!strcmp(a, "--blocksize")) {
            const char *v = NEXT();
            if (!v) goto bad;
            o.blocksize = atoi(v);
        } else if (!strcmp(a, "--compute-dtype")) {
            const char *v = NEXT();
            if (!v || parse_dtype(v, &o.compute_dtype)) { fprintf(stderr, "strata convert: --compute-dtype: bf16, f16 or f32\n"); goto bad; }
        } else if (!strcmp(a, "--skip")) {
            const char *v = NEXT();
            if (!v) goto bad;
            sr_free(skip_copy);
            skip_copy = sr_strdup(v);
            sr_free(o.skip);
            o.skip = sr_calloc(strlen(v) + 1, sizeof *o.skip);
            o.n_skip = 0;
            for (char *tok = strtok(skip_copy, ","); tok; tok = strtok(NULL, ","))
                if (*tok) o.skip[o.n_skip++] = tok;
        } else if (!strcmp(a, "--rules")) {
            const char *v = NEXT();
            if (!v || sr_bnb_rules_parse(v, &o.rules)) { fprintf(stderr, "strata convert: --rules: cuda or cpu\n"); goto bad; }
        } else if (!strcmp(a, "--shard-size")) {
            const char *v = NEXT();
            if (!v || cli_parse_size(v, &o.shard_size) || !o.shard_size) { fprintf(stderr, "strata convert: bad --shard-size\n"); goto bad; }
        } else if (!strncmp(a, "--zstd", 6) && (a[6] == 0 || a[6] == '=')) {
            o.zstd_level = a[6] ? atoi(a + 7) : 3;
            if (o.zstd_level < 1 || o.zstd_level > 22) { fprintf(stderr, "strata convert: zstd level 1..22\n"); goto bad; }
        } else if (!strcmp(a, "--zstd-only")) {
            o.zstd_only = true;
            if (!o.zstd_level) o.zstd_level = 3;
        } else if (!strcmp(a, "--threads")) {
            const char *v = NEXT();
            if (!v) goto bad;
            o.threads = atoi(v);
        } else if (!strcmp(a, "--force")) o.force = true;
        else if (!strcmp(a, "--quiet")) o.quiet = true;
        else if (!strcmp(a, "--stats")) o.stats = true;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--match-offsets")) {
            o.match_offsets = NEXT();
            if (!o.match_offsets) goto bad;
        } else if (a[0] == '-') { fprintf(stderr, "strata convert: unknown option '%s'\n", a); goto bad; }
        else if (npos < 2) pos[npos++] = a;
        else { fprintf(stderr, "strata convert: unexpected argument '%s'\n", a); goto bad; }
#undef NEXT
    }
    if (npos != 2 || !have_quant) { usage(stderr); goto bad; }
    o.in_dir = pos[0];
    o.out_dir = pos[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    convert_report r;
    sr_error err;
    if (convert_run(&o, &r, &err)) {
        fprintf(stderr, "strata convert: %s\n", err.msg);
        rc = 1;
        goto bad;
    }
    char a[32], b[32], c[32];
    if (json) {
        printf("{\"out_dir\": ");
        cli_json_str(stdout, o.out_dir);
        printf(", \"tensors_quantized\": %d, \"tensors_kept\": %d, \"tensors_dropped\": %d, "
               "\"bytes_in\": %llu, \"bytes_out\": %llu, \"bytes_zstd\": %llu, \"shards\": %d, "
               "\"seconds\": %.3f, \"gb_per_s\": %.3f, \"peak_rss_bytes\": %llu",
               r.tensors_quantized, r.tensors_kept, r.tensors_dropped,
               (unsigned long long)r.bytes_in, (unsigned long long)r.bytes_out,
               (unsigned long long)r.bytes_zstd, r.shards, r.seconds,
               r.seconds > 0 ? (double)r.bytes_in / r.seconds / 1e9 : 0,
               (unsigned long long)r.peak_rss_kib * 1024);
        if (o.stats) {
            printf(", \"error\": {");
            for (int k = 0, first = 1; k < r.n_stats; k++) {
                if (!r.stats[k].count) continue;
                printf("%s\"%s\": {\"tensors\": %d, \"max_abs\": %.6g, \"rms\": %.6g}", first ? "" : ", ",
                       r.stats[k].name, r.stats[k].n, r.stats[k].max_abs,
                       sqrt_rms(r.stats[k].sum_sq, r.stats[k].count));
                first = 0;
            }
            printf("}");
        }
        printf("}\n");
    } else if (!o.quiet) {
        fprintf(stderr, "strata convert: %s: %d tensors quantized, %d kept, %d dropped (derived); "
                "%s -> %s in %d shard%s", o.out_dir, r.tensors_quantized, r.tensors_kept,
                r.tensors_dropped, cli_fmt_bytes(r.bytes_in, a, sizeof a),
                cli_fmt_bytes(r.bytes_out, b, sizeof b), r.shards, r.shards == 1 ? "" : "s");
        if (r.bytes_zstd) fprintf(stderr, " (zstd %s)", cli_fmt_bytes(r.bytes_zstd, c, sizeof c));
        fprintf(stderr, "; %.2f s, %.2f GB/s, peak RSS %s\n", r.seconds,
                r.seconds > 0 ? (double)r.bytes_in / r.seconds / 1e9 : 0,
                cli_fmt_bytes((uint64_t)r.peak_rss_kib * 1024, c, sizeof c));
        if (o.stats)
            for (int k = 0; k < r.n_stats; k++)
                if (r.stats[k].count)
                    fprintf(stderr, "  %-10s %3d tensors  max |err| %.4g  rms %.4g\n", r.stats[k].name,
                            r.stats[k].n, r.stats[k].max_abs, sqrt_rms(r.stats[k].sum_sq, r.stats[k].count));
    }
    rc = 0;
bad:
    sr_free(o.skip);
    sr_free(skip_copy);
    return rc;
}
