/* The planner as a pure function (units + tiers + strategy -> plan) on sim
 * tiers, and from real checkpoints through the catalogue: budgets respected
 * to the byte, every unit and tensor placed once, the strategies, the
 * scenarios of spec offload-scenarios.md, streaming and failures. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "offload/budget.h"
#include "offload/device_map.h"
#include "offload/planner.h"
#include "offload/units.h"
#include "runtime/adapter_meta.h"
#include "runtime/alloc.h"
#include "runtime/catalog.h"
#include "runtime/checkpoint.h"
#include "runtime/config.h"
#include "test_util.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define MAXU 130

/* ---- synthetic models and tiers ------------------------------------------- */

typedef struct model {
    int n;
    sr_plan_unit u[MAXU];
} model;

/* embedding, L layers, head; a tied head carries `head` bytes of norm and
 * shares the embedding. */
static void make_model(model *m, int L, uint64_t embed, uint64_t layer, uint64_t kv, uint64_t head,
                       bool tied)
{
    memset(m, 0, sizeof *m);
    m->n = L + 2;
    m->u[0] = (sr_plan_unit){.unit = SR_UNIT_EMBED, .weight_bytes = embed, .read_bytes = 4096};
    snprintf(m->u[0].name, sizeof m->u[0].name, "model.embed_tokens");
    for (int i = 0; i < L; i++) {
        m->u[1 + i] = (sr_plan_unit){.unit = i, .weight_bytes = layer, .kv_bytes = kv,
                                     .macs = layer * 2};
        snprintf(m->u[1 + i].name, sizeof m->u[1 + i].name, "model.layers.%d", i);
    }
    m->u[L + 1] = (sr_plan_unit){.unit = SR_UNIT_HEAD, .weight_bytes = head,
                                 .shared_bytes = tied ? embed : 0, .macs = embed / 2};
    snprintf(m->u[L + 1].name, sizeof m->u[L + 1].name, "lm_head");
}

static int make_tiers(sr_tier *t, int n_gpu, const uint64_t *budgets, uint64_t host)
{
    for (int g = 0; g < n_gpu; g++) {
        memset(&t[g], 0, sizeof t[g]);
        snprintf(t[g].name, sizeof t[g].name, "sim:%d", g);
        t[g].gpu = g;
        t[g].budget = budgets[g];
        sr_tier_perf_default(SR_DEV_SIM, &t[g].perf);
    }
    memset(&t[n_gpu], 0, sizeof t[n_gpu]);
    snprintf(t[n_gpu].name, sizeof t[n_gpu].name, "cpu");
    t[n_gpu].gpu = -1;
    t[n_gpu].budget = host;
    sr_tier_perf_default(SR_DEV_CPU, &t[n_gpu].perf);
    return n_gpu + 1;
}

static sr_plan_request request(const model *m, const sr_tier *t, int n_tiers, sr_strategy s)
{
    return (sr_plan_request){.units = m->u, .n_units = m->n, .tiers = t, .n_tiers = n_tiers,
                             .strategy = s, .host_exec = SR_EXEC_CPU, .batch = 1,
                             .prefetch = -1, .hop_bytes = 8192};
}

static uint64_t size_of(const sr_plan_entry *e) { return e->weight_bytes + e->kv_bytes; }

/* What every plan must satisfy: each unit on one existing tier, usage equal
 * to the sum of what was placed, every total within its budget. */
static void check_invariants(const sr_plan_request *rq, const sr_plan *p)
{
    assert_int_equal(p->n_units, rq->n_units);
    assert_int_equal(p->n_tiers, rq->n_tiers);
    const int host = rq->n_tiers - 1;
    uint64_t w[SR_MAX_DEVICES + 1] = {0}, kv[SR_MAX_DEVICES + 1] = {0};
    uint64_t der[SR_MAX_DEVICES + 1] = {0};
    int n[SR_MAX_DEVICES + 1] = {0};
    int embed = sr_plan_unit_index(rq->units, rq->n_units, SR_UNIT_EMBED);
    for (int u = 0; u < p->n_units; u++) {
        const sr_plan_entry *e = &p->units[u];
        assert_in_range(e->tier, 0, host);
        assert_in_range(e->exec_tier, 0, host);
        assert_true(e->reason[0] != 0);
        if (e->tier != host) {
            assert_int_equal(e->exec, SR_EXEC_RESIDENT);
            assert_int_equal(e->exec_tier, e->tier);
        } else {
            assert_true(e->exec == SR_EXEC_CPU || e->exec == SR_EXEC_STREAM);
            if (e->exec == SR_EXEC_STREAM) {
                assert_true(rq->units[u].unit >= 0);
                assert_int_equal(e->exec_tier, p->stream.tier);
            }
        }
        uint64_t expect = rq->units[u].weight_bytes;
        if (rq->units[u].shared_bytes && !(embed >= 0 && p->units[embed].tier == e->tier))
            expect += rq->units[u].shared_bytes;   /* a tied head's own copy */
        assert_true(e->weight_bytes == expect);
        assert_true(e->kv_bytes == rq->units[u].kv_bytes);
        w[e->tier] += e->weight_bytes;
        kv[e->exec_tier] += e->kv_bytes;
        assert_true(e->derived_bytes == rq->units[u].derived_bytes);
        der[e->exec_tier] += e->derived_bytes;      /* held where it runs */
        n[e->tier]++;
    }
    for (int t = 0; t <= host; t++) {
        const sr_tier_usage *x = &p->tiers[t];
        assert_true(x->weights == w[t]);
        assert_true(x->kv == kv[t]);
        assert_true(x->derived == der[t]);
        assert_int_equal(x->n_units, n[t]);
        assert_true(x->total == x->weights + x->kv + x->staging + x->derived + x->reserve);
        if (x->total > rq->tiers[t].budget)
            fail_msg("%s holds %llu > budget %llu", rq->tiers[t].name,
                     (unsigned long long)x->total, (unsigned long long)rq->tiers[t].budget);
        if (t != p->stream.tier) assert_true(x->staging == 0);
    }
    if (p->stream.n_layers) {
        assert_true(p->tiers[p->stream.tier].staging ==
                    (uint64_t)p->stream.slots * p->stream.slot_bytes);
        uint64_t bpt = 0;
        int nl = 0;
        for (int u = 0; u < p->n_units; u++)
            if (p->units[u].exec == SR_EXEC_STREAM) {
                bpt += p->units[u].weight_bytes;
                nl++;
                assert_true(p->units[u].weight_bytes <= p->stream.slot_bytes);
            }
        assert_true(bpt == p->stream.bytes_per_token);
        assert_int_equal(nl, p->stream.n_layers);
    }
    assert_true(p->seconds_per_step > 0);
    assert_true(p->tokens_per_s > 0);
}

static int plan_ok(const sr_plan_request *rq, sr_plan *p)
{
    sr_error err;
    if (sr_plan_make(rq, p, &err)) fail_msg("plan failed: %s", err.msg);
    check_invariants(rq, p);
    return 0;
}

static void loads(const sr_plan *p, int n_gpu, uint64_t *load)
{
    for (int g = 0; g < n_gpu; g++) load[g] = p->tiers[g].weights + p->tiers[g].kv;
}

/* A 4-bit Granite-3B-like model: bf16 embedding (bnb leaves it unquantized),
 * 40 NF4 layers with double quant, ctx 4096 KV. */
#define EMBED_3B (49155ull * 2048 * 2)
#define LAYER_3B (57671680ull)
#define KV_3B (2ull * 8 * 64 * 4096 * 4)

/* ---- budgets, boundaries, sweep ------------------------------------------- */

static void test_budget_boundary_exact(void **state)
{
    (void)state;
    model m;
    make_model(&m, 6, 1000, 5000, 100, 10, false);
    sr_tier t[3];
    /* room for exactly embed + 3 layers on sim:0 (reserve inside) */
    uint64_t exact = 1000 + 3 * 5100 + 777;
    for (int minus = 0; minus <= 1; minus++) {
        uint64_t b[1] = {exact - (uint64_t)minus};
        int nt = make_tiers(t, 1, b, 1 * GiB);
        t[0].reserve = 777;
        sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_SEQUENTIAL);
        sr_plan p;
        plan_ok(&rq, &p);
        int on_gpu = 0;
        for (int u = 1; u < m.n - 1; u++) on_gpu += p.units[u].tier == 0;
        /* exactly full: 3 layers; one byte less: 2 (the small head is then
         * offered the room that is left) */
        assert_int_equal(on_gpu, minus ? 2 : 3);
        assert_int_equal(p.units[m.n - 1].tier, minus ? 0 : 1);
        if (!minus) assert_true(p.tiers[0].total == exact);
        sr_plan_free(&p);
    }
}

static void test_strategies_sweep(void **state)
{
    (void)state;
    static const sr_strategy strategies[] = {SR_STRATEGY_AUTO, SR_STRATEGY_BALANCED,
                                             SR_STRATEGY_BALANCED_LOW_0, SR_STRATEGY_SEQUENTIAL};
    static const sr_exec execs[] = {SR_EXEC_CPU, SR_EXEC_AUTO};
    uint32_t seed = 12345;
    int n_plans = 0, n_fail = 0;
    for (int trial = 0; trial < 24; trial++) {
        model m;
        int L = 4 + trial % 29;
        seed = seed * 1103515245u + 12345u;
        bool tied = seed & 1;
        make_model(&m, L, 300 * MiB + (seed % 97) * MiB, 50 * MiB, (trial % 3) * 4 * MiB,
                   tied ? 8192 : 200 * MiB, tied);
        for (int i = 1; i <= L; i++) {    /* layers of slightly different sizes */
            seed = seed * 1103515245u + 12345u;
            m.u[i].weight_bytes += (seed >> 8) % (3 * MiB);
        }
        uint64_t total = 0;
        for (int u = 0; u < m.n; u++) total += m.u[u].weight_bytes + m.u[u].kv_bytes;
        for (int ng = 1; ng <= 4; ng++)
            for (int tight = 0; tight <= 2; tight++)
                for (size_t s = 0; s < 4; s++)
                    for (size_t x = 0; x < 2; x++) {
                        uint64_t b[4];
                        for (int g = 0; g < ng; g++)   /* loose, tight, half */
                            b[g] = tight == 0 ? 2 * total : tight == 1 ? total / ng + 60 * MiB
                                                                       : total / (2 * ng);
                        sr_tier t[5];
                        int nt = make_tiers(t, ng, b, tight == 2 ? total / 2 + 700 * MiB : 64 * GiB);
                        for (int g = 0; g < ng; g++) t[g].reserve = 5 * MiB;
                        t[ng].reserve = 1 * MiB;
                        sr_plan_request rq = request(&m, t, nt, strategies[s]);
                        rq.host_exec = execs[x];
                        sr_plan p;
                        sr_error err;
                        n_plans++;
                        if (sr_plan_make(&rq, &p, &err)) {
                            n_fail++;
                            assert_non_null(strstr(err.msg, "fits on no tier"));
                            assert_non_null(strstr(err.msg, "--max-memory"));
                            continue;
                        }
                        check_invariants(&rq, &p);
                        if (tight == 0) /* loose: everything on accelerators */
                            assert_int_equal(p.tiers[ng].n_units, 0);
                        sr_plan_free(&p);
                    }
    }
    assert_true(n_plans == 24 * 4 * 3 * 4 * 2);
    assert_true(n_fail < n_plans / 4);
}

/* ---- scenario 1: balanced within one layer -------------------------------- */

/* Every layer count from 2 per GPU to 40 on 2..6 equal GPUs, with the 3B
 * model's bf16 embedding (2.7 layers) and with one of 0.4 layers (a tiny
 * NF4 switch model's proportions): with 5 layers on 3 GPUs the fill gave
 * [embed + 2, 2, 1] layers, which no single move between neighbours
 * improves; even_out passes a layer down the chain to [embed + 1, 2, 2]. */
static void test_s1_balanced_within_one_layer(void **state)
{
    (void)state;
    const uint64_t embeds[2] = {EMBED_3B, (LAYER_3B + KV_3B) * 2 / 5};
    for (int e = 0; e < 2; e++)
        for (int tied = 0; tied <= 1; tied++)
            for (int ng = 2; ng <= 6; ng++)
                for (int L = 2 * ng; L <= 40; L++) {
                    model m;
                    make_model(&m, L, embeds[e], LAYER_3B, KV_3B, tied ? 4096 : embeds[e], tied);
                    uint64_t b[6] = {8 * GiB, 8 * GiB, 8 * GiB, 8 * GiB, 8 * GiB, 8 * GiB};
                    sr_tier t[7];
                    int nt = make_tiers(t, ng, b, 64 * GiB);
                    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_BALANCED);
                    sr_plan p;
                    plan_ok(&rq, &p);
                    uint64_t load[6], lo = UINT64_MAX, hi = 0;
                    loads(&p, ng, load);
                    for (int g = 0; g < ng; g++) {
                        if (load[g] < lo) lo = load[g];
                        if (load[g] > hi) hi = load[g];
                        assert_true(p.tiers[g].n_units > 0);
                    }
                    if (hi - lo > LAYER_3B + KV_3B)
                        fail_msg("embedding %d, tied %d, %d GPUs, %d layers: loads differ by %llu "
                                 "> one layer %llu", e, tied, ng, L, (unsigned long long)(hi - lo),
                                 (unsigned long long)(LAYER_3B + KV_3B));
                    assert_int_equal(p.tiers[ng].n_units, 0);
                    /* contiguous: the layers run in order across the GPUs */
                    for (int u = 2; u < m.n - 1; u++)
                        assert_true(p.units[u].tier >= p.units[u - 1].tier);
                    sr_plan_free(&p);
                }
}

/* ---- scenario 2: sequential spills exactly -------------------------------- */

static void test_s2_sequential_spill(void **state)
{
    (void)state;
    model m;
    make_model(&m, 40, EMBED_3B, LAYER_3B, KV_3B, EMBED_3B, false);
    uint64_t b[3] = {1 * GiB, 1 * GiB, 2 * GiB};
    sr_tier t[4];
    int nt = make_tiers(t, 3, b, 64 * GiB);
    for (int g = 0; g < 3; g++) t[g].reserve = 100 * MiB;
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_SEQUENTIAL);
    sr_plan p;
    plan_ok(&rq, &p);
    /* order kept: tiers never go back */
    for (int u = 1; u < m.n; u++) assert_true(p.units[u].tier >= p.units[u - 1].tier);
    /* each accelerator is left exactly when the next unit would exceed it */
    for (int u = 1; u < m.n; u++) {
        int a = p.units[u - 1].tier, b2 = p.units[u].tier;
        if (a == b2 || a == nt - 1) continue;
        uint64_t room = t[a].budget - t[a].reserve - (p.tiers[a].weights + p.tiers[a].kv);
        assert_true(size_of(&p.units[u]) > room);
        assert_non_null(strstr(p.units[u].reason, "spilled"));
    }
    for (int g = 0; g < 3; g++) assert_true(p.tiers[g].n_units > 0);
    /* a bigger first budget moves the spill point by the units that fit */
    sr_plan_free(&p);
}

/* ---- scenario 3: quantized sizes ----------------------------------------- */

static void test_s3_quantized_sizes(void **state)
{
    (void)state;
    static const char *dirs[] = {"bnb/tiny_nf4_dq_bf16", "bnb/tiny_fp4_nodq_fp16",
                                 "bnb/tiny_int8_fp16"};
    for (size_t d = 0; d < 3; d++) {
        sr_checkpoint *ck;
        sr_error err;
        if (sr_ckpt_open(test_data(dirs[d]), &ck, &err)) fail_msg("%s", err.msg);
        sr_unit_list ul;
        if (sr_units_from_names(ck, 0, &ul, &err)) fail_msg("%s", err.msg);
        assert_int_equal(ul.n, 3);
        /* the layer's size is every stored byte of its tensors ... */
        uint64_t stored = 0;
        for (size_t i = 0; i < sr_ckpt_count(ck); i++) {
            const sr_tensor *x = sr_ckpt_get(ck, i);
            if (!strncmp(x->name, "model.layers.0.", 15)) stored += x->nbytes;
            assert_int_equal(ul.tensor_unit[i], !strncmp(x->name, "model.layers.0.", 15) ? 1
                                                : !strncmp(x->name, "model.embed", 11) ? 0 : 2);
        }
        assert_true(ul.units[1].weight_bytes == stored);
        /* ... far below the float size of its weights (up [128,64] + down [64,128]) */
        const uint64_t float_bytes = 2ull * 128 * 64 * 4, half = float_bytes / 2;
        assert_true(stored < half);
        /* a budget between the quantized and the float size holds the model */
        uint64_t b[1] = {ul.units[0].weight_bytes + ul.units[2].weight_bytes + half};
        sr_tier t[2];
        int nt = make_tiers(t, 1, b, 1 * GiB);
        sr_plan_request rq = {.units = ul.units, .n_units = ul.n, .tiers = t, .n_tiers = nt,
                              .strategy = SR_STRATEGY_AUTO, .host_exec = SR_EXEC_AUTO, .batch = 1,
                              .prefetch = -1, .hop_bytes = 256};
        sr_plan p;
        plan_ok(&rq, &p);
        assert_int_equal(p.tiers[0].n_units, 3);
        assert_true(p.tiers[0].weights == ul.units[0].weight_bytes + stored +
                                              ul.units[2].weight_bytes);
        sr_plan_free(&p);
        sr_unit_list_free(&ul);
        sr_ckpt_close(ck);
    }
}

/* ---- scenario 4: units larger than a share -------------------------------- */

static void test_s4_big_embedding(void **state)
{
    (void)state;
    model m;
    sr_tier t[5];
    sr_plan p;
    /* embedding 600 MiB > share of 550 MiB, every GPU still used, nothing on the host */
    make_model(&m, 10, 600 * MiB, 100 * MiB, 0, 50 * MiB, false);
    uint64_t b3[3] = {1 * GiB, 1 * GiB, 1 * GiB};
    int nt = make_tiers(t, 3, b3, 8 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_BALANCED);
    plan_ok(&rq, &p);
    assert_int_equal(p.units[0].tier, 0);
    for (int g = 0; g < 3; g++) assert_true(p.tiers[g].n_units > 0);
    assert_int_equal(p.tiers[3].n_units, 0);
    sr_plan_free(&p);

    /* embedding larger than GPU 0's whole budget: it goes to the first GPU
     * that can hold it, and GPU 0 still takes layers (for every strategy) */
    uint64_t b3b[3] = {500 * MiB, 1 * GiB, 1 * GiB};
    static const sr_strategy st[] = {SR_STRATEGY_BALANCED, SR_STRATEGY_SEQUENTIAL,
                                     SR_STRATEGY_AUTO};
    for (int s = 0; s < 3; s++) {
        nt = make_tiers(t, 3, b3b, 8 * GiB);
        rq = request(&m, t, nt, st[s]);
        plan_ok(&rq, &p);
        assert_int_equal(p.units[0].tier, 1);
        assert_non_null(strstr(p.units[0].reason, "first accelerator that holds it"));
        assert_true(p.tiers[0].n_units > 0);
        assert_int_equal(p.tiers[3].n_units, 0);
        sr_plan_free(&p);
    }

    /* the HF collapse: caps below the unquantized embedding and head on every
     * GPU; those two go to the host, the layers spread over every GPU */
    make_model(&m, 12, 600 * MiB, 100 * MiB, 0, 600 * MiB, false);
    uint64_t b4[4] = {400 * MiB, 400 * MiB, 400 * MiB, 400 * MiB};
    nt = make_tiers(t, 4, b4, 8 * GiB);
    rq = request(&m, t, nt, SR_STRATEGY_BALANCED);
    plan_ok(&rq, &p);
    assert_int_equal(p.units[0].tier, 4);
    assert_int_equal(p.units[m.n - 1].tier, 4);
    uint64_t load[4], lo = UINT64_MAX, hi = 0;
    loads(&p, 4, load);
    for (int g = 0; g < 4; g++) {
        assert_true(p.tiers[g].n_units >= 3);
        lo = load[g] < lo ? load[g] : lo;
        hi = load[g] > hi ? load[g] : hi;
    }
    assert_true(hi - lo <= 100 * MiB);
    sr_plan_free(&p);
}

/* ---- explicit maps: scenarios 6 and 7 ------------------------------------- */

static void test_s6_map_over_bnb(void **state)
{
    (void)state;
    sr_checkpoint *ck;
    sr_error err;
    if (sr_ckpt_open(test_data("bnb/tiny_nf4_dq_bf16"), &ck, &err)) fail_msg("%s", err.msg);
    sr_unit_list ul;
    if (sr_units_from_names(ck, 4096, &ul, &err)) fail_msg("%s", err.msg);
    static const char json[] =
        "{\"model.embed_tokens\": 0, \"model.layers.0\": \"cuda:1\", \"model.norm\": \"cpu\","
        " \"lm_head\": \"cpu\"}";
    sr_device_map map;
    if (sr_device_map_parse(json, sizeof json - 1, "map.json", &map, &err)) fail_msg("%s", err.msg);
    int tier[3];
    if (sr_device_map_resolve(&map, ul.units, ul.n, 2, tier, &err)) fail_msg("%s", err.msg);
    assert_int_equal(tier[0], 0);
    assert_int_equal(tier[1], 1);
    assert_int_equal(tier[2], 2);
    uint64_t b[2] = {1 * MiB, 1 * MiB};
    sr_tier t[3];
    int nt = make_tiers(t, 2, b, 1 * GiB);
    sr_plan_request rq = {.units = ul.units, .n_units = ul.n, .tiers = t, .n_tiers = nt,
                          .strategy = SR_STRATEGY_MAP, .map_tier = tier,
                          .host_exec = SR_EXEC_CPU, .batch = 1, .prefetch = -1, .hop_bytes = 256};
    sr_plan p;
    plan_ok(&rq, &p);
    /* the stored tensors are placed as they are: bytes on sim:1 = the stored layer */
    uint64_t stored = 0;
    for (size_t i = 0; i < ul.n_tensors; i++)
        if (ul.tensor_unit[i] == 1) stored += ul.tensors[i]->nbytes;
    assert_true(p.tiers[1].weights == stored);
    assert_true(p.tiers[1].kv == 4096);
    sr_plan_free(&p);
    sr_device_map_free(&map);
    sr_unit_list_free(&ul);
    sr_ckpt_close(ck);
}

static void test_s7_any_mix_per_layer(void **state)
{
    (void)state;
    model m;
    make_model(&m, 9, 10 * MiB, 20 * MiB, 1 * MiB, 10 * MiB, false);
    uint64_t b[3] = {1 * GiB, 1 * GiB, 1 * GiB};
    sr_tier t[4];
    int nt = make_tiers(t, 3, b, 4 * GiB);
    int tier[MAXU];
    for (int u = 0; u < m.n; u++) tier[u] = u % 4;  /* every neighbour on another tier */
    for (int x = 0; x < 2; x++) {
        sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_MAP);
        rq.map_tier = tier;
        rq.host_exec = x ? SR_EXEC_STREAM : SR_EXEC_CPU;
        sr_plan p;
        plan_ok(&rq, &p);
        for (int u = 0; u < m.n; u++) {
            assert_int_equal(p.units[u].tier, tier[u]);
            if (u && !x) assert_int_not_equal(p.units[u].exec_tier, p.units[u - 1].exec_tier);
            if (x && tier[u] == 3) assert_int_equal(p.units[u].exec, SR_EXEC_STREAM);
        }
        sr_plan_free(&p);
    }
}

static void test_map_over_budget_fails(void **state)
{
    (void)state;
    model m;
    make_model(&m, 4, 10 * MiB, 20 * MiB, 0, 10 * MiB, false);
    uint64_t b[1] = {50 * MiB};
    sr_tier t[2];
    int nt = make_tiers(t, 1, b, 4 * GiB);
    int tier[6] = {0, 0, 0, 0, 0, 0};
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_MAP);
    rq.map_tier = tier;
    sr_plan p;
    sr_error err;
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "the device map puts model.layers.2"));
    assert_non_null(strstr(err.msg, "sim:0"));
    assert_null(p.units);
}

/* ---- tied heads ----------------------------------------------------------- */

static void test_tied_head(void **state)
{
    (void)state;
    model m;
    make_model(&m, 8, 100 * MiB, 50 * MiB, 0, 4096, true);
    uint64_t b[2] = {300 * MiB, 300 * MiB};
    sr_tier t[3];
    int nt = make_tiers(t, 2, b, 4 * GiB);
    static const sr_strategy st[] = {SR_STRATEGY_BALANCED, SR_STRATEGY_SEQUENTIAL,
                                     SR_STRATEGY_BALANCED_LOW_0};
    for (int s = 0; s < 3; s++) {
        sr_plan_request rq = request(&m, t, nt, st[s]);
        sr_plan p;
        plan_ok(&rq, &p);
        /* with the embedding, sharing its storage: only the norm's bytes */
        assert_int_equal(p.units[m.n - 1].tier, p.units[0].tier);
        assert_true(p.units[m.n - 1].weight_bytes == 4096);
        assert_non_null(strstr(p.units[m.n - 1].reason, "shares the embedding"));
        sr_plan_free(&p);
    }
    /* a map that separates them: the head holds its own copy, counted there */
    int tier[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    uint64_t b2[2] = {400 * MiB, 400 * MiB};
    nt = make_tiers(t, 2, b2, 4 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_MAP);
    rq.map_tier = tier;
    sr_plan p;
    plan_ok(&rq, &p);
    assert_true(p.units[m.n - 1].weight_bytes == 4096 + 100 * MiB);
    assert_true(p.tiers[1].weights == 4 * 50 * MiB + 4096 + 100 * MiB);
    assert_non_null(strstr(p.units[m.n - 1].reason, "own copy"));
    sr_plan_free(&p);
}

/* ---- balanced_low_0 --------------------------------------------------------- */

static void test_balanced_low_0(void **state)
{
    (void)state;
    model m;
    make_model(&m, 12, 10 * MiB, 50 * MiB, 0, 10 * MiB, false);
    uint64_t b[3] = {1 * GiB, 1 * GiB, 1 * GiB};
    sr_tier t[4];
    int nt = make_tiers(t, 3, b, 4 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_BALANCED_LOW_0);
    sr_plan p;
    plan_ok(&rq, &p);
    assert_int_equal(p.tiers[0].n_units, 0);    /* GPU 0 keeps its room */
    assert_true(p.tiers[1].n_units > 0 && p.tiers[2].n_units > 0);
    sr_plan_free(&p);
    /* when the others are full, GPU 0 takes the rest before the host */
    uint64_t b2[3] = {1 * GiB, 200 * MiB, 200 * MiB};
    nt = make_tiers(t, 3, b2, 4 * GiB);
    rq = request(&m, t, nt, SR_STRATEGY_BALANCED_LOW_0);
    plan_ok(&rq, &p);
    assert_true(p.tiers[0].n_units > 0);
    assert_int_equal(p.tiers[3].n_units, 0);
    sr_plan_free(&p);
}

/* ---- streaming ------------------------------------------------------------ */

static void test_streaming_schedule(void **state)
{
    (void)state;
    model m;
    make_model(&m, 20, 50 * MiB, 100 * MiB, 10 * MiB, 50 * MiB, false);
    uint64_t b[1] = {1 * GiB};
    sr_tier t[2];
    int nt = make_tiers(t, 1, b, 16 * GiB);
    t[0].reserve = 24 * MiB;
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_SEQUENTIAL);
    rq.host_exec = SR_EXEC_AUTO;
    sr_plan p;
    plan_ok(&rq, &p);
    /* stated sim parameters: 12 GB/s copies beat a 10 GB/s CPU */
    assert_int_equal(p.host_exec, SR_EXEC_STREAM);
    assert_int_equal(p.stream.tier, 0);
    assert_int_equal(p.stream.prefetch, 2);
    assert_int_equal(p.stream.slots, 3);
    assert_true(p.stream.slot_bytes == 100 * MiB);
    assert_true(p.stream.n_layers > 10);
    assert_true(p.stream.bytes_per_token == (uint64_t)p.stream.n_layers * 100 * MiB);
    /* the KV of the streamed layers lives on the accelerator that runs them */
    assert_true(p.tiers[0].kv == 20 * 10 * MiB);
    assert_true(p.tiers[1].kv == 0);
    assert_non_null(strstr(p.exec_reason, "stream through sim:0"));
    double copy_s = (double)p.stream.bytes_per_token / t[0].perf.link_bw;
    assert_true(fabs(p.stream.copy_seconds - copy_s) < 1e-9);
    assert_true(p.seconds_per_step >= copy_s);
    sr_plan_free(&p);

    /* forced to the CPU: no staging, KV on the host */
    rq.host_exec = SR_EXEC_CPU;
    plan_ok(&rq, &p);
    assert_int_equal(p.stream.n_layers, 0);
    assert_true(p.tiers[0].staging == 0);
    assert_true(p.tiers[1].kv > 0);
    sr_plan_free(&p);

    /* a fast CPU (or a slow link) makes auto choose the CPU, and say why */
    sr_tier fast[2];
    memcpy(fast, t, sizeof fast);
    fast[1].perf.mem_bw = 1e12;
    fast[1].perf.flops = 1e14;
    rq.tiers = fast;
    rq.host_exec = SR_EXEC_AUTO;
    plan_ok(&rq, &p);
    assert_int_equal(p.host_exec, SR_EXEC_CPU);
    assert_non_null(strstr(p.exec_reason, "auto: host layers run on the CPU"));
    sr_plan_free(&p);
    rq.tiers = t;

    /* no prefetch: one slot, copies not overlapped */
    rq.host_exec = SR_EXEC_STREAM;
    rq.prefetch = 0;
    plan_ok(&rq, &p);
    assert_int_equal(p.stream.slots, 1);
    double sum = 0;
    for (int u = 0; u < m.n; u++) sum += p.units[u].seconds;
    assert_true(p.seconds_per_step > sum + p.stream.copy_seconds - 1e-9);
    sr_plan_free(&p);

    /* staging that cannot fit: stream refused, auto falls back with the reason */
    uint64_t small[1] = {250 * MiB};
    nt = make_tiers(t, 1, small, 16 * GiB);
    rq = request(&m, t, nt, SR_STRATEGY_SEQUENTIAL);
    rq.host_exec = SR_EXEC_STREAM;
    sr_error err;
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "--host-exec stream"));
    assert_non_null(strstr(err.msg, "staging slots"));
    rq.host_exec = SR_EXEC_AUTO;
    plan_ok(&rq, &p);
    assert_int_equal(p.host_exec, SR_EXEC_CPU);
    assert_non_null(strstr(p.exec_reason, "streaming is not possible"));
    sr_plan_free(&p);
}

/* A prefetch distance past the number of streamed layers makes no more
 * slots than there are layers, and its reservation must not ask for them
 * either: a tier that holds 4 slots and the KV of 4 layers streams them at
 * every distance from 3 up.  Past SR_MAX_PREFETCH the request is refused. */
static void test_prefetch_past_the_layers(void **state)
{
    (void)state;
    model m;
    make_model(&m, 4, 50 * MiB, 100 * MiB, 10 * MiB, 50 * MiB, false);
    uint64_t b[1] = {4 * 100 * MiB + 4 * 10 * MiB + 10 * MiB};
    sr_tier t[2];
    int nt = make_tiers(t, 1, b, 16 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_SEQUENTIAL);
    rq.host_exec = SR_EXEC_STREAM;
    const int distances[] = {3, 4, 10, SR_MAX_PREFETCH};
    for (size_t i = 0; i < sizeof distances / sizeof *distances; i++) {
        rq.prefetch = distances[i];
        sr_plan p;
        plan_ok(&rq, &p);
        assert_int_equal(p.stream.n_layers, 4);
        assert_int_equal(p.stream.slots, 4);
        assert_int_equal(p.stream.prefetch, distances[i] < 4 ? distances[i] : 4);
        assert_true(p.tiers[0].staging == 4 * 100 * MiB);
        sr_plan_free(&p);
    }
    rq.prefetch = SR_MAX_PREFETCH + 1;
    sr_plan p;
    sr_error err;
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "prefetch distance 65 is above 64"));
}

/* What a unit derives at load is held where it runs: on its own tier when
 * resident, on the staging accelerator when streamed, on the host when the
 * CPU runs it; it takes room like the KV cache, so a budget that fits the
 * weights but not the conversions moves units. */
static void test_derived_bytes_where_run(void **state)
{
    (void)state;
    model m;
    make_model(&m, 8, 10 * MiB, 40 * MiB, 2 * MiB, 1 * MiB, false);
    for (int u = 0; u < m.n; u++) m.u[u].derived_bytes = (uint64_t)(u + 1) * MiB;
    uint64_t b[2] = {140 * MiB, 140 * MiB};
    sr_tier t[3];
    int nt = make_tiers(t, 2, b, 16 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_SEQUENTIAL);
    rq.host_exec = SR_EXEC_STREAM;
    rq.prefetch = 1;
    sr_plan p;
    plan_ok(&rq, &p);
    assert_true(p.stream.n_layers > 0);
    uint64_t want[3] = {0};
    for (int u = 0; u < m.n; u++) {
        const sr_plan_entry *e = &p.units[u];
        assert_true(e->derived_bytes == m.u[u].derived_bytes);
        want[e->exec_tier] += e->derived_bytes;
        if (e->exec == SR_EXEC_STREAM) assert_int_equal(e->exec_tier, p.stream.tier);
    }
    for (int ti = 0; ti < nt; ti++) {
        assert_true(p.tiers[ti].derived == want[ti]);
        assert_true(p.tiers[ti].total <= t[ti].budget);
    }
    assert_true(p.tiers[p.stream.tier].derived > 0);
    assert_true(p.tiers[nt - 1].derived == 0);      /* the host runs nothing of these */
    sr_plan_free(&p);

    /* without derived bytes the same budgets hold more units on sim:0 */
    model bare = m;
    for (int u = 0; u < bare.n; u++) bare.u[u].derived_bytes = 0;
    sr_plan_request rb = request(&bare, t, nt, SR_STRATEGY_SEQUENTIAL);
    sr_plan q;
    rq.host_exec = rb.host_exec = SR_EXEC_CPU;
    plan_ok(&rq, &p);
    plan_ok(&rb, &q);
    assert_true(q.tiers[0].n_units > p.tiers[0].n_units);
    /* CPU-run host layers keep their conversions on the host */
    uint64_t host = 0;
    for (int u = 0; u < m.n; u++)
        if (p.units[u].exec == SR_EXEC_CPU) host += m.u[u].derived_bytes;
    assert_true(host > 0 && p.tiers[nt - 1].derived == host);
    sr_plan_free(&p);
    sr_plan_free(&q);
}

/* ---- failures ------------------------------------------------------------- */

static void test_nothing_fits(void **state)
{
    (void)state;
    model m;
    make_model(&m, 10, 100 * MiB, 100 * MiB, 20 * MiB, 100 * MiB, false);
    uint64_t b[2] = {300 * MiB, 300 * MiB};
    sr_tier t[3];
    int nt = make_tiers(t, 2, b, 500 * MiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_AUTO);
    sr_plan p;
    sr_error err;
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "fits on no tier"));
    assert_non_null(strstr(err.msg, "model.layers."));
    assert_non_null(strstr(err.msg, "sim:0"));
    assert_non_null(strstr(err.msg, "cpu=")); /* what to change */
    assert_non_null(strstr(err.msg, "--ctx"));
    assert_null(p.units);

    /* a host budget below its reserve */
    nt = make_tiers(t, 2, b, 1 * MiB);
    t[2].reserve = 2 * MiB;
    snprintf(t[2].budget_src, sizeof t[2].budget_src, "--max-memory");
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "smaller than its reserve"));

    /* malformed requests */
    nt = make_tiers(t, 2, b, 8 * GiB);
    rq.n_units = 0;
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    rq.n_units = m.n;
    rq.strategy = SR_STRATEGY_MAP;
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "device map"));
    rq.strategy = SR_STRATEGY_AUTO;
    m.u[3].unit = 1;   /* listed twice */
    assert_int_equal(sr_plan_make(&rq, &p, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
}

static void test_host_only(void **state)
{
    (void)state;
    model m;
    make_model(&m, 5, 10 * MiB, 10 * MiB, 1 * MiB, 10 * MiB, true);
    sr_tier t[1];
    int nt = make_tiers(t, 0, NULL, 1 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_AUTO);
    rq.host_exec = SR_EXEC_AUTO;
    sr_plan p;
    plan_ok(&rq, &p);
    assert_int_equal(p.tiers[0].n_units, m.n);
    assert_int_equal(p.host_exec, SR_EXEC_CPU);
    assert_non_null(strstr(p.exec_reason, "no accelerator"));
    sr_plan_free(&p);
}

/* ---- real checkpoints through the catalogue: scenarios 8, 9, 10 -------------- */

typedef struct loaded {
    sr_checkpoint *ck;
    sr_config cfg;
    sr_adapter_meta meta;
    sr_catalog cat;
} loaded;

static void load(const char *rel, loaded *L)
{
    sr_error err;
    memset(L, 0, sizeof *L);
    char path[4096];
    if (sr_ckpt_open(test_data(rel), &L->ck, &err)) fail_msg("%s", err.msg);
    snprintf(path, sizeof path, "%s/config.json", sr_ckpt_dir(L->ck));
    if (sr_config_load(path, &L->cfg, &err) || sr_adapter_meta_build(&L->cfg, &L->meta, &err) ||
        sr_catalog_build(L->ck, &L->cfg, &L->meta, &L->cat, &err))
        fail_msg("%s: %s", rel, err.msg);
}

static void unload(loaded *L)
{
    sr_catalog_free(&L->cat);
    sr_adapter_meta_free(&L->meta);
    sr_config_free(&L->cfg);
    sr_ckpt_close(L->ck);
}

static void test_s8_s10_catalog_every_tensor_once(void **state)
{
    (void)state;
    static const char *models[] = {"model/switch-3a-with-buffers", "model/switch-3a",
                                   "model/granite-dense", "model/switch-3a-bf16"};
    for (size_t k = 0; k < 4; k++) {
        loaded L;
        load(models[k], &L);
        sr_run_shape shape = {.ctx = 64, .batch = 1, .chunk = 64, .threads = 2};
        sr_unit_list ul;
        sr_error err;
        if (sr_units_from_catalog(&L.cat, &L.cfg, &shape, &ul, &err)) fail_msg("%s", err.msg);
        assert_int_equal(ul.n, L.cat.n_layers + 2);
        int derived = 0;
        uint64_t placed = 0, all_units = 0;
        for (size_t i = 0; i < ul.n_tensors; i++) {
            const sr_catalog_entry *e = &L.cat.entries[i];
            assert_ptr_equal(ul.tensors[i], e->t);
            if (e->role == SR_ROLE_DERIVED) {
                /* derived adapter metadata: never a placed tensor */
                assert_int_equal(ul.tensor_unit[i], -1);
                derived++;
            } else if (e->unit == SR_UNIT_NONE) {
                assert_int_equal(ul.tensor_unit[i], -1);   /* tied lm_head ignored */
            } else {
                assert_in_range(ul.tensor_unit[i], 0, ul.n - 1);
                assert_int_equal(ul.units[ul.tensor_unit[i]].unit, e->unit);
                placed += e->t->nbytes;
            }
        }
        for (int u = 0; u < ul.n; u++) all_units += ul.units[u].weight_bytes;
        assert_true(placed == all_units);
        if (k == 0) assert_int_equal(derived, 3);
        else assert_int_equal(derived, 0);

        /* a plan over 3 sim GPUs that puts neighbours apart */
        uint64_t b[3] = {1 * MiB, 1 * MiB, 1 * MiB};
        sr_tier t[4];
        int nt = make_tiers(t, 3, b, 1 * GiB);
        int tier[8];
        for (int u = 0; u < ul.n; u++) tier[u] = u % 4;
        sr_plan_request rq = {.units = ul.units, .n_units = ul.n, .tiers = t, .n_tiers = nt,
                              .strategy = SR_STRATEGY_MAP, .map_tier = tier,
                              .host_exec = SR_EXEC_AUTO, .batch = 1, .prefetch = -1,
                              .hop_bytes = 256};
        sr_plan p;
        plan_ok(&rq, &p);
        /* the tensors of each tier sum to its weights (tied copies aside) */
        uint64_t per_tier[4] = {0};
        for (size_t i = 0; i < ul.n_tensors; i++)
            if (ul.tensor_unit[i] >= 0) per_tier[p.units[ul.tensor_unit[i]].tier] +=
                                        ul.tensors[i]->nbytes;
        for (int x = 0; x < nt; x++) {
            uint64_t copies = 0;
            for (int u = 0; u < ul.n; u++)
                if (p.units[u].tier == x) copies += p.units[u].weight_bytes - ul.units[u].weight_bytes;
            assert_true(per_tier[x] + copies == p.tiers[x].weights);
        }
        /* scenario 9: the reserve is stated per tier, every unit says why */
        for (int u = 0; u < ul.n; u++) assert_true(strlen(p.units[u].reason) > 5);
        sr_plan_free(&p);
        sr_unit_list_free(&ul);
        unload(&L);
    }
}

static void test_alloc_failures(void **state)
{
    (void)state;
    model m;
    make_model(&m, 12, 100 * MiB, 100 * MiB, 10 * MiB, 4096, true);
    uint64_t b[2] = {700 * MiB, 700 * MiB};
    sr_tier t[3];
    int nt = make_tiers(t, 2, b, 8 * GiB);
    sr_plan_request rq = request(&m, t, nt, SR_STRATEGY_BALANCED);
    rq.host_exec = SR_EXEC_AUTO;    /* both placements, then the choice */
    for (long n = 0;; n++) {
        sr_plan p;
        sr_error err;
        sr_alloc_fail_after(n);
        int rc = sr_plan_make(&rq, &p, &err);
        sr_alloc_fail_after(-1);
        if (rc == 0) {
            check_invariants(&rq, &p);
            sr_plan_free(&p);
            assert_true(n > 3);
            break;
        }
        if (!strstr(err.msg, "out of memory")) fail_msg("allocation %ld: %s", n, err.msg);
        assert_null(p.units);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_boundary_exact),
        cmocka_unit_test(test_strategies_sweep),
        cmocka_unit_test(test_s1_balanced_within_one_layer),
        cmocka_unit_test(test_s2_sequential_spill),
        cmocka_unit_test(test_s3_quantized_sizes),
        cmocka_unit_test(test_s4_big_embedding),
        cmocka_unit_test(test_s6_map_over_bnb),
        cmocka_unit_test(test_s7_any_mix_per_layer),
        cmocka_unit_test(test_map_over_budget_fails),
        cmocka_unit_test(test_tied_head),
        cmocka_unit_test(test_balanced_low_0),
        cmocka_unit_test(test_streaming_schedule),
        cmocka_unit_test(test_prefetch_past_the_layers),
        cmocka_unit_test(test_derived_bytes_where_run),
        cmocka_unit_test(test_nothing_fits),
        cmocka_unit_test(test_host_only),
        cmocka_unit_test(test_s8_s10_catalog_every_tensor_once),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
