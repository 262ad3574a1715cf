/* Adapter metadata derived from config.json alone (spec granite-switch.md §3).
 *
 * adapter_token_ids, token_to_group_mask, adapter_hiding_matrix and the Gen B/C
 * control->substitute LUT are NEVER read from a checkpoint and never written
 * to one: they are rebuilt from the config on every tier that executes layers.
 * A checkpoint that still carries the old persistent copies is compared with
 * the rebuilt tables: equal -> ignored silently, different -> one warning
 * naming the key (the config wins). */
#ifndef SR_ADAPTER_META_H
#define SR_ADAPTER_META_H

#include <stdint.h>

#include "runtime/config.h"
#include "runtime/safetensors.h"

typedef struct sr_adapter_meta {
    int n_adapters;             /* N */
    int n_ctrl;                 /* number of control ids */
    int64_t *ctrl_ids;          /* [n_ctrl] = config adapter_token_ids */
    int *ctrl_index;            /* [n_ctrl] adapter index the id activates */
    uint32_t *ctrl_mem;         /* [n_ctrl] Gen A: Mem(t) group bits of each control id */

    int n_groups;               /* GRP */
    int64_t table_size;         /* T_tab = max(vocab, 1 + max id) (§3.2) */
    uint32_t *sup;              /* [N+1] Gen A: Sup(a) group bits, row 0 = base */

    int64_t lut_size;           /* Gen B/C: T_lut (§3.5); 0 otherwise */
    int64_t *lut;               /* [lut_size] substitute or -1 */

    sr_switch_gen gen;          /* which of the tables above are in use */
    int64_t *substitute_ids;    /* [n_ctrl] Gen B/C: config adapter_substitute_token_ids */
    int64_t codebook_rows;      /* Gen C: codebook shape [capacity, 2^m] (§6.2.6); 0 otherwise */
    int64_t codebook_cols;
} sr_adapter_meta;

/* On failure *m is zeroed and nothing leaks. */
int sr_adapter_meta_build(const sr_config *cfg, sr_adapter_meta *m, sr_error *err);
/* Safe on a zeroed or already freed m. */
void sr_adapter_meta_free(sr_adapter_meta *m);

/* Mem(t) for any token id (0 for ordinary tokens). */
uint32_t sr_adapter_meta_mem(const sr_adapter_meta *m, int64_t t);

/* Is `name` one of the derived keys (model.adapter_token_ids,
 * model.token_to_group_mask, model.adapter_hiding_matrix,
 * model.adapter_substitute_token_ids, model.control_to_substitute_lut,
 * model.switch.control_to_substitute_lut, model.switch.codebook)? */
int sr_is_derived_key(const char *name);

/* Compares a checkpoint's stored copy with the rebuilt table.  Returns 1 if
 * equal, 0 if different (and fills `why`), -1 if the key is not comparable
 * (e.g. the Gen C codebook, only shape-checked). */
int sr_adapter_meta_compare(const sr_adapter_meta *m, const sr_tensor *t, char *why, size_t why_len);

#endif
