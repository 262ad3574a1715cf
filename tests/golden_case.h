/* A golden model case (tests/data/model/<model>/cases/<file>.safetensors,
 * written by the upstream Python code; see tests/data/README.md): the
 * tensors the forward-pass tests compare against.  Optional tensors are NULL
 * when a case does not carry them.  Include after <cmocka.h>. */
#ifndef SR_TEST_GOLDEN_CASE_H
#define SR_TEST_GOLDEN_CASE_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>

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

/* Calls visit(name, kind, prefill_k, case, ctx) for every case of
 * tests/data/model/<model>/cases/manifest.json in order; each case file is
 * open during its call only.  Returns how many cases there were. */
typedef void (*case_visit)(const char *name, const char *kind, int64_t prefill_k,
                           const case_file *c, void *ctx);
static inline int for_each_case(const char *model, case_visit visit, void *ctx)
{
    char rel[512];
    snprintf(rel, sizeof rel, "model/%s/cases/manifest.json", model);
    json_error_t je;
    json_t *man = json_load_file(test_data(rel), 0, &je), *cs;
    if (!man) fprintf(stderr, "%s: %s\n", rel, je.text);
    assert_non_null(man);
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(man, "cases"), i, cs) {
        case_file c;
        open_case(model, json_string_value(json_object_get(cs, "file")), &c);
        visit(json_string_value(json_object_get(cs, "name")),
              json_string_value(json_object_get(cs, "kind")),
              json_integer_value(json_object_get(cs, "prefill_k")), &c, ctx);
        sr_st_close(c.f);
        n++;
    }
    json_decref(man);
    return n;
}

#endif
