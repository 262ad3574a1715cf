/* `strata dequantize CHECKPOINT NAME --out FILE`
 *
 * Loads one weight in whatever format it is stored (float, bnb NF4/FP4 with
 * or without double quantization, LLM.int8) through the same loader the
 * runtime uses, writes its exact f32 dequantization as raw little-endian
 * floats (row-major [out, in]) and prints "NAME: FORMAT [rows, cols]". */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "quant/qload.h"
#include "runtime/alloc.h"
#include "tools/cli_util.h"
#include "tools/commands.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: strata dequantize MODEL_DIR|FILE.safetensors TENSOR_NAME --out FILE\n"
               "  Writes the exact f32 dequantization of a (quantized) weight as raw\n"
               "  little-endian floats and prints its format and shape.\n");
}

/* Rows per chunk: bounded memory for large matrices. */
#define CHUNK_ELEMS (1 << 22)

static int write_rows(const sr_qmatrix *m, FILE *f)
{
    int64_t rows_per = CHUNK_ELEMS / m->cols > 0 ? CHUNK_ELEMS / m->cols : 1;
    float *buf = sr_malloc((size_t)(rows_per * m->cols) * sizeof *buf);
    if (!buf) return -1;
    int rc = 0;
    for (int64_t r = 0; r < m->rows && !rc; r += rows_per) {
        int64_t nr = m->rows - r < rows_per ? m->rows - r : rows_per;
        sr_qmatrix_dequant_rows(m, r, nr, buf);
        if (fwrite(buf, sizeof *buf, (size_t)(nr * m->cols), f) != (size_t)(nr * m->cols)) rc = -1;
    }
    sr_free(buf);
    return rc;
}

int cmd_dequantize(int argc, char **argv)
{
    const char *in = NULL, *name = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "-o")) {
            if (++i == argc) { usage(stderr); return 2; }
            out = argv[i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "strata dequantize: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!in) in = argv[i];
        else if (!name) name = argv[i];
        else { usage(stderr); return 2; }
    }
    if (!in || !name || !out) { usage(stderr); return 2; }

    sr_error err;
    sr_checkpoint *ck = NULL;
    sr_qmatrix m;
    memset(&m, 0, sizeof m);
    int rc = 1;
    if (sr_ckpt_open(in, &ck, &err) || sr_qmatrix_from_ckpt(ck, name, &m, &err)) {
        fprintf(stderr, "strata dequantize: %s: %s\n", in, err.msg);
        goto done;
    }
    cli_out o;
    FILE *f = cli_out_open(&o, "strata dequantize", out);    /* OUT appears whole or not */
    if (!f) goto done;
    int wr = write_rows(&m, f);
    if (fclose(f) || wr) {
        fprintf(stderr, "strata dequantize: %s: write failed\n", out);
        cli_out_discard(&o);
        goto done;
    }
    if (cli_out_commit(&o, "strata dequantize")) goto done;
    printf("%s: %s [%lld, %lld]\n", name, sr_wformat_name(m.fmt), (long long)m.rows, (long long)m.cols);
    rc = 0;
done:
    sr_qmatrix_free(&m);
    sr_ckpt_close(ck);
    return rc;
}
