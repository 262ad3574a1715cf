/* Running a plan on CUDA tiers (offload/exec.c over offload/tier_exec.c):
 * the placements of the sim test (tests/offload/test_offload_exec.c) on
 * logical slices of the GPU(s) (--logical-gpus), with host-tier layers run
 * on the CPU or streamed into staging slots by the copy stream, on every
 * golden model and on 4-bit / 8-bit conversions of them.
 *
 *   logits      prefill + decode, against the single-tier CPU run
 *               (sr_forward) within |Δlogit| <= 1e-4: the CUDA kernels
 *               compute in f32 (STRATA_CUDA_PREFILL unset) and differ from
 *               the CPU only by summation order and expf/sinf/cosf ulps, the
 *               tolerance of test_cuda_forward;
 *   holdings    every tier holds exactly its planned bytes (device.c's
 *               accounting of cudaMalloc / pinned allocations);
 *   streaming   the bytes copied into staging slots per decode step equal
 *               the plan's prediction.
 * Without a device: "skipped: no CUDA device". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cuda_test.h"
#include "offload_layouts.h"

#define LOGIT_TOL 1e-4

/* The GPU(s) as "--devices cuda --logical-gpus n" gives them, split into as
 * many logical devices as the layout places over. */
static int make_plan(const sr_model *m, const sr_unit_list *ul, layout lay, sr_device_set *devs,
                     sr_plan *plan, sr_error *err)
{
    if (sr_device_set_parse("cuda", devs, err)) return -1;
    const int want = layout_gpus(lay);
    if (devs->n_gpu > want) devs->n_gpu = want;     /* the first GPUs are enough */
    if (devs->n_gpu < want) {
        const int whole = devs->n_gpu, per = (want + whole - 1) / whole;
        if (sr_device_set_split_gpus(devs, per, err)) return -1;
        devs->n_gpu = want;
    }
    for (int g = 0; g < devs->n_gpu; g++) assert_non_null(devs->gpu[g].ops);
    return layout_plan(m, ul, lay, devs, plan, err);
}

static void test_golden_models(void **state)
{
    (void)state;
    layout_check_golden(ONE_DEVICE, make_plan, LOGIT_TOL, false);
}

static void test_quantized(void **state)
{
    (void)state;
    layout_check_quantized(ONE_DEVICE, make_plan, LOGIT_TOL, false);
}

/* Each decode step copies exactly the plan's streamed bytes into the slots,
 * on the copy stream. */
static void test_stream_bytes(void **state)
{
    (void)state;
    layout_check_stream_bytes(NEIGHBOURS_STREAM, make_plan);
    layout_check_stream_bytes(SEQUENTIAL_SPILL, make_plan);
}

int main(void)
{
    cuda_test_require_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_models),
        cmocka_unit_test(test_quantized),
        cmocka_unit_test(test_stream_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
