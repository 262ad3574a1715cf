/* libFuzzer target: config.json parsing, the quantization-only reader and,
 * for configs that load, the adapter tables rebuilt from them.  Seeds:
 * tests/fuzz/corpus/config/. */
#include <stddef.h>
#include <stdint.h>

#include "runtime/adapter_meta.h"
#include "runtime/config.h"
#include "runtime/log.h"

static void quiet(sr_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    (void)user;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_log_set_sink(quiet, NULL);
    sr_error err;
    sr_config cfg;
    if (sr_config_parse((const char *)data, size, "fuzz", &cfg, &err) == 0) {
        /* the LUT is vocab-sized: keep the fuzzer's memory bounded */
        if (cfg.vocab_size <= (1 << 20)) {
            sr_adapter_meta m;
            if (sr_adapter_meta_build(&cfg, &m, &err) == 0) {
                for (int k = 0; k < m.n_ctrl; k++) (void)sr_adapter_meta_mem(&m, m.ctrl_ids[k]);
                sr_adapter_meta_free(&m);
            }
        }
        for (int64_t t = -1; t < 4; t++) (void)sr_config_control_index(&cfg, t);
    }
    sr_config_free(&cfg);
    sr_config_free(&cfg);

    sr_bnb_config q;
    sr_dtype dt;
    if (sr_quant_config_parse((const char *)data, size, "fuzz", &q, &dt, &err) == 0)
        sr_bnb_config_free(&q);
    return 0;
}
