/* A golden model case (tests/data/model/<model>/cases/<file>.safetensors,
 * written by the upstream Python code; see tests/data/README.md): the
 * tensors the forward-pass tests compare against.  Optional tensors are NULL
 * when a case does not carry them.  Include after <cmocka.h>. */
#ifndef SR_TEST_GOLDEN_CASE_H
#define SR_TEST_GOLDEN_CASE_H

#include <stdio.h>
#include <string.h>

#include "runtime/safetensors.h"
#include "test_util.h"

typedef struct case_file {
    sr_st_file *f;
    const sr_tensor *ids, *mask, *logits, *logits_inc, *adapters, *adapters_inc, *rope, *hidden;
    const sr_tensor *gen_ids, *step_logits;
} case_file;

/* Opens the case or fails the test; close with sr_st_close(c->f). */
static inline void open_case(const char *model, const char *file, case_file *c)
{
    char rel[512];
    snprintf(rel, sizeof rel, "model/%s/cases/%s", model, file);
    sr_error err = {{0}};
    memset(c, 0, sizeof *c);
    int rc = sr_st_open(test_data(rel), &c->f, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    c->ids = sr_st_find(c->f, "input_ids");
    c->mask = sr_st_find(c->f, "attention_mask");
    c->logits = sr_st_find(c->f, "logits");
    c->logits_inc = sr_st_find(c->f, "logits_incremental");
    c->adapters = sr_st_find(c->f, "adapter_indices");
    c->adapters_inc = sr_st_find(c->f, "adapter_indices_incremental");
    c->rope = sr_st_find(c->f, "rope_position_ids");
    c->hidden = sr_st_find(c->f, "hidden_states");
    c->gen_ids = sr_st_find(c->f, "generated_ids");
    c->step_logits = sr_st_find(c->f, "step_logits");
    assert_non_null(c->ids);
    assert_int_equal(c->ids->dtype, SR_I64);
}

#endif
