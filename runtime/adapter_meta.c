/* Adapter metadata rebuilt from config.json (spec granite-switch.md §3,
 * §6.2.5) and its comparison with the copies old checkpoints still store. */
#include "runtime/adapter_meta.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"

/* Adapter index (1-based) called `name`, or 0 if no adapter has that name
 * (unknown names are skipped by the reference, §3.2). */
static int adapter_by_name(const sr_config *cfg, const char *name)
{
    for (int k = 0; cfg->adapter_names && k < cfg->num_adapters; k++)
        if (!strcmp(cfg->adapter_names[k], name)) return k + 1;
    return 0;
}

static int group_by_name(const sr_config *cfg, const char *name)
{
    for (int g = 0; g < cfg->n_hiding_groups; g++)
        if (!strcmp(cfg->hiding_groups[g].name, name)) return g;
    return -1;
}

/* Sup(a) (§3.3): groups listed by hiding_policy[name]; a missing key hides
 * nothing, group names that are not groups are ignored. */
static uint32_t policy_bits(const sr_config *cfg, const char *name)
{
    for (int r = 0; r < cfg->n_hiding_rules; r++) {
        const sr_hiding_rule *rule = &cfg->hiding_rules[r];
        if (strcmp(rule->adapter, name)) continue;
        uint32_t bits = 0;
        for (int j = 0; j < rule->n_groups; j++) {
            int g = group_by_name(cfg, rule->groups[j]);
            if (g >= 0) bits |= 1u << g;
        }
        return bits;
    }
    return 0;
}

int sr_adapter_meta_build(const sr_config *cfg, sr_adapter_meta *m, sr_error *err)
{
    memset(m, 0, sizeof *m);
    int n = cfg->num_adapters, nc = cfg->n_adapter_token_ids;
    m->n_adapters = n;
    m->n_ctrl = nc;
    m->n_groups = cfg->n_hiding_groups;
    m->gen = cfg->gen;
    m->ctrl_ids = sr_calloc((size_t)nc + 1, sizeof *m->ctrl_ids);
    m->ctrl_index = sr_calloc((size_t)nc + 1, sizeof *m->ctrl_index);
    m->ctrl_mem = sr_calloc((size_t)nc + 1, sizeof *m->ctrl_mem);
    m->sup = sr_calloc((size_t)n + 1, sizeof *m->sup);
    if (!m->ctrl_ids || !m->ctrl_index || !m->ctrl_mem || !m->sup) goto oom;

    /* control ids and the adapter each activates (§3.1; Gen C base reset) */
    int64_t max_id = -1;
    int off = nc > n ? 0 : 1;
    for (int k = 0; k < nc; k++) {
        m->ctrl_ids[k] = cfg->adapter_token_ids[k];
        m->ctrl_index[k] = k + off;
        if (m->ctrl_ids[k] > max_id) max_id = m->ctrl_ids[k];
    }
    /* T_tab = max(vocab, 1 + max id) (§3.2); the ids are < vocab once the
     * config is validated, but the rule is the reference's */
    m->table_size = cfg->vocab_size > max_id + 1 ? cfg->vocab_size : max_id + 1;

    if (cfg->gen == SR_GEN_A) {
        /* Mem of adapter k's control id: the groups listing its name */
        for (int g = 0; g < cfg->n_hiding_groups; g++) {
            const sr_hiding_group *grp = &cfg->hiding_groups[g];
            for (int j = 0; j < grp->n_members; j++) {
                int a = adapter_by_name(cfg, grp->members[j]);
                if (a > 0) m->ctrl_mem[a - 1] |= 1u << g;
            }
        }
        /* rows in the order ["base"] + adapter_names */
        if (!cfg->hiding_policy_null && cfg->adapter_names) {
            m->sup[0] = policy_bits(cfg, "base");
            for (int k = 1; k <= n; k++) m->sup[k] = policy_bits(cfg, cfg->adapter_names[k - 1]);
        }
    }

    if (cfg->gen == SR_GEN_B || cfg->gen == SR_GEN_C) {
        /* control -> substitute table (§3.5), every pair incl. base reset */
        m->lut_size = cfg->vocab_size > max_id + 1 ? cfg->vocab_size : max_id + 1;
        m->lut = sr_malloc((size_t)m->lut_size * sizeof *m->lut);
        m->substitute_ids = sr_calloc((size_t)nc + 1, sizeof *m->substitute_ids);
        if (!m->lut || !m->substitute_ids) goto oom;
        memset(m->lut, 0xff, (size_t)m->lut_size * sizeof *m->lut);     /* all -1 */
        for (int k = 0; k < nc; k++) {
            m->substitute_ids[k] = cfg->adapter_substitute_token_ids[k];
            m->lut[m->ctrl_ids[k]] = m->substitute_ids[k];
        }
    }
    if (cfg->gen == SR_GEN_C) {
        /* kerdock: [2^(2m-1), 2^m]; dg1 (m = 6): [2^(3m-2), 2^m] = [65536, 64] */
        int mm = cfg->ms_code_m;
        m->codebook_cols = INT64_C(1) << mm;
        m->codebook_rows = !strcmp(cfg->ms_code_type, "dg1") ? INT64_C(1) << (3 * mm - 2)
                                                             : INT64_C(1) << (2 * mm - 1);
    }
    return 0;
oom:
    sr_adapter_meta_free(m);
    return sr_fail(err, "%s: out of memory building the adapter tables", cfg->source ? cfg->source
                                                                                   : "config.json");
}

void sr_adapter_meta_free(sr_adapter_meta *m)
{
    if (!m) return;
    sr_free(m->ctrl_ids);
    sr_free(m->ctrl_index);
    sr_free(m->ctrl_mem);
    sr_free(m->sup);
    sr_free(m->lut);
    sr_free(m->substitute_ids);
    memset(m, 0, sizeof *m);
}

uint32_t sr_adapter_meta_mem(const sr_adapter_meta *m, int64_t t)
{
    for (int k = 0; k < m->n_ctrl; k++)
        if (m->ctrl_ids[k] == t) return m->ctrl_mem[k];
    return 0;
}

static const char *const derived_keys[] = {
    "model.adapter_token_ids",
    "model.token_to_group_mask",
    "model.adapter_hiding_matrix",
    "model.adapter_substitute_token_ids",
    "model.control_to_substitute_lut",
    "model.switch.control_to_substitute_lut",
    "model.switch.codebook",
};

int sr_is_derived_key(const char *name)
{
    for (size_t i = 0; i < sizeof derived_keys / sizeof *derived_keys; i++)
        if (!strcmp(name, derived_keys[i])) return 1;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Comparison with stored copies                                             */

static int differ(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int differ(char *why, size_t len, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return 0;
}

static int not_comparable(char *why, size_t len, const char *reason)
{
    if (why && len) snprintf(why, len, "%s", reason);
    return -1;
}

/* dtype and shape check; 1 if they match. */
static int check_layout(const sr_tensor *t, sr_dtype dt, int ndim, const int64_t *shape, char *why,
                        size_t len)
{
    char want[64] = "", got[64] = "";
    size_t o = 0;
    for (int i = 0; i < ndim && o < sizeof want; i++)
        o += (size_t)snprintf(want + o, sizeof want - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    o = 0;
    for (int i = 0; i < t->ndim && i < SR_MAX_DIMS && o < sizeof got; i++)
        o += (size_t)snprintf(got + o, sizeof got - o, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (t->dtype != dt)
        return differ(why, len, "dtype %s, rebuilt table is %s", sr_dtype_name(t->dtype),
                      sr_dtype_name(dt));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    uint64_t need = sr_dtype_size(dt);
    for (int i = 0; same && i < ndim; i++) need *= (uint64_t)shape[i];
    if (!same) return differ(why, len, "shape [%s], rebuilt table is [%s]", got, want);
    if (t->nbytes < need || (need && !t->data))
        return differ(why, len, "holds %" PRIu64 " bytes, [%s] %s needs %" PRIu64, t->nbytes, want,
                      sr_dtype_name(dt), need);
    return 1;
}

static int64_t load_i64(const void *base, int64_t i)
{
    int64_t v;
    memcpy(&v, (const char *)base + i * 8, 8);     /* file data need not be aligned */
    return v;
}

static int compare_i64(const sr_tensor *t, const int64_t *want, int64_t n, char *why, size_t len)
{
    int r = check_layout(t, SR_I64, 1, &n, why, len);
    if (r != 1) return r;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = load_i64(t->data, i);
        if (v != want[i])
            return differ(why, len, "element %" PRId64 " is %" PRId64 ", rebuilt %" PRId64, i, v, want[i]);
    }
    return 1;
}

/* BOOL [rows, groups] against a bit row per index. */
static int compare_bool_row(const sr_tensor *t, int64_t row, uint32_t bits, int ng, char *why,
                            size_t len)
{
    const uint8_t *p = (const uint8_t *)t->data + row * ng;
    for (int g = 0; g < ng; g++) {
        int stored = p[g] != 0, want = (bits >> g) & 1;
        if (stored != want)
            return differ(why, len, "entry [%" PRId64 ", %d] is %s, rebuilt %s", row, g,
                          stored ? "true" : "false", want ? "true" : "false");
    }
    return 1;
}

static int compare_group_mask(const sr_adapter_meta *m, const sr_tensor *t, char *why, size_t len)
{
    int64_t shape[2] = {m->table_size, m->n_groups};
    int r = check_layout(t, SR_BOOL, 2, shape, why, len);
    if (r != 1 || m->n_groups == 0) return r;
    /* control rows first, then any other non-zero row (O(T_tab * GRP)) */
    for (int k = 0; k < m->n_ctrl; k++)
        if ((r = compare_bool_row(t, m->ctrl_ids[k], m->ctrl_mem[k], m->n_groups, why, len)) != 1)
            return r;
    const uint8_t *p = t->data;
    for (int64_t row = 0; row < m->table_size; row++) {
        const uint8_t *q = p + row * m->n_groups;
        int any = 0;
        for (int g = 0; g < m->n_groups; g++) any |= q[g];
        if (any && (r = compare_bool_row(t, row, sr_adapter_meta_mem(m, row), m->n_groups, why,
                                         len)) != 1)
            return r;
    }
    return 1;
}

static int compare_hiding_matrix(const sr_adapter_meta *m, const sr_tensor *t, char *why, size_t len)
{
    int64_t shape[2] = {(int64_t)m->n_adapters + 1, m->n_groups};
    int r = check_layout(t, SR_BOOL, 2, shape, why, len);
    for (int a = 0; r == 1 && a <= m->n_adapters; a++)
        r = compare_bool_row(t, a, m->sup[a], m->n_groups, why, len);
    return r;
}

int sr_adapter_meta_compare(const sr_adapter_meta *m, const sr_tensor *t, char *why, size_t why_len)
{
    const char *name = t->name ? t->name : "";
    int lut_gen = m->gen == SR_GEN_B || m->gen == SR_GEN_C;
    if (why && why_len) why[0] = 0;
    if (!strcmp(name, "model.adapter_token_ids"))
        return compare_i64(t, m->ctrl_ids, m->n_ctrl, why, why_len);
    if (!strcmp(name, "model.token_to_group_mask"))
        return m->gen == SR_GEN_A ? compare_group_mask(m, t, why, why_len)
                                  : not_comparable(why, why_len, "no hiding table outside Gen A");
    if (!strcmp(name, "model.adapter_hiding_matrix"))
        return m->gen == SR_GEN_A ? compare_hiding_matrix(m, t, why, why_len)
                                  : not_comparable(why, why_len, "no hiding table outside Gen A");
    if (!strcmp(name, "model.adapter_substitute_token_ids"))
        return lut_gen ? compare_i64(t, m->substitute_ids, m->n_ctrl, why, why_len)
                       : not_comparable(why, why_len, "no token exchange in this generation");
    if (!strcmp(name, "model.control_to_substitute_lut") ||
        !strcmp(name, "model.switch.control_to_substitute_lut"))
        return lut_gen ? compare_i64(t, m->lut, m->lut_size, why, why_len)
                       : not_comparable(why, why_len, "no token exchange in this generation");
    if (!strcmp(name, "model.switch.codebook")) {
        if (m->gen != SR_GEN_C) return not_comparable(why, why_len, "no codebook outside Gen C");
        /* a pure function of (ms_code_m, ms_code_type): only the shape is checked */
        int64_t shape[2] = {m->codebook_rows, m->codebook_cols};
        int r = check_layout(t, SR_F32, 2, shape, why, why_len);
        return r == 1 ? not_comparable(why, why_len, "codebook: shape checked only") : r;
    }
    return not_comparable(why, why_len, "not a derived key");
}
